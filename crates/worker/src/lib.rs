//! The Cloudflare Worker: one deployable with four entry points.
//!
//! `fetch` (public + admin HTTP API), `queue` (ingest consumer and dead-letter
//! consumer), `scheduled` (daily reconciliation) and the `DocumentProcessor`
//! Durable Object. Platform glue only: every decision is `portfolio_core`'s.

mod admin;
mod bindings;
mod body;
mod config;
mod error;
mod health;
mod ingest;
mod page;
mod providers;
mod query;
mod reconcile;
mod router;
mod store;

pub use ingest::processor::DocumentProcessor;

use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let config = config::load(&env);
    router::handle(req, env, config).await
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    reconcile::run_scheduled(&event.cron(), &env).await;
}

// The queue entry point is exported by hand (not with `#[event(queue)]`):
// workers-rs 0.8 does not expose a message's `attempts`, which the retry
// delay is computed from. See `ingest::consumer`.
pub use ingest::consumer::queue;
