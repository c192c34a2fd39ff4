//! The Cloudflare Worker: one deployable with four entry points.
//!
//! `fetch` (public + admin HTTP API), `queue` (ingest consumer and dead-letter
//! consumer), `scheduled` (daily reconciliation and metrics retention) and the
//! `DocumentProcessor` Durable Object. Platform glue only: every decision is
//! `portfolio_core`'s; `root` builds each invocation's configuration and
//! adapters. Each invocation records data points (`store::metrics`), written
//! after the response through `waitUntil`.

mod admin;
mod alerts;
mod bindings;
mod body;
mod config;
mod cron;
mod error;
mod health;
mod ingest;
mod page;
mod providers;
mod query;
mod reconcile;
mod root;
mod router;
mod store;
mod version;

pub use ingest::gate::IngestGate;
pub use ingest::processor::DocumentProcessor;

use portfolio_core::operations::metrics::{route_label, DataPoint, MetricsSink};
use portfolio_core::operations::rollout::{ServedBy, SERVED_BY_HEADER};
use portfolio_core::shared::storage::Clock;
use root::Root;
use store::WorkerClock;
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started = WorkerClock.now_ms();
    let root = Root::new(env);
    let mut route = route_label(&req.inner().method(), &req.path());
    let response = router::handle(req, &root, &ctx).await;
    // Proxied chats and failovers have labels of their own.
    if let Some(served_by) = response.as_ref().ok().and_then(|r| {
        let header = r.headers().get(SERVED_BY_HEADER).ok().flatten();
        header.as_deref().and_then(ServedBy::from_header)
    }) {
        served_by.route_label().clone_into(&mut route);
    }
    let now = WorkerClock.now_ms();
    let status = response.as_ref().map_or(500, Response::status_code);
    let elapsed = now.saturating_sub(started);
    root.metrics()
        .record(DataPoint::request(now, route, status, elapsed));
    // Written after the response: a metric never delays or fails a request.
    ctx.wait_until(root.metrics().flush_later());
    response
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, ctx: ScheduleContext) {
    let root = Root::new(env);
    cron::run(&event.cron(), &root).await;
    ctx.wait_until(root.metrics().flush_later());
}

// The queue entry point is exported by hand (not with `#[event(queue)]`):
// workers-rs 0.8 does not expose a message's `attempts`, which the retry
// delay is computed from. See `ingest::consumer`.
pub use ingest::consumer::queue;
