//! `GET /admin/alerts`: the firing alerts and those resolved in the last
//! seven days, each with the delivery state of its notices.

use super::documents::store_error;
use crate::bindings;
use crate::error::{json_response, ApiError};
use crate::store::d1_alerts::{D1Alerts, RECENT_MS};
use crate::store::WorkerClock;
use portfolio_core::operations::alerts::{pending_notice, AlertRecord};
use portfolio_core::shared::storage::Clock;
use serde_json::{json, Value};
use worker::{Env, Request, Response};

fn entry(alert: &AlertRecord) -> Value {
    json!({
        "id": alert.id,
        "key": alert.key,
        "kind": alert.kind,
        "status": alert.status,
        "message": alert.message,
        "fired_at": alert.fired_at_ms,
        "resolved_at": alert.resolved_at_ms,
        "fire_sent_at": alert.fire_sent_at_ms,
        "resolve_sent_at": alert.resolve_sent_at_ms,
        "notice_owed": pending_notice(alert),
        "attempts": alert.attempts,
        "last_error": alert.last_error,
    })
}

pub async fn list(_req: Request, env: &Env) -> Result<Response, ApiError> {
    let store = D1Alerts::new(env.d1(bindings::DB)?);
    let since = WorkerClock.now_ms().saturating_sub(RECENT_MS);
    let (active, recent) = store.listing(since).await.map_err(store_error)?;
    Ok(json_response(
        &json!({
            "active": active.iter().map(entry).collect::<Vec<_>>(),
            "recent": recent.iter().map(entry).collect::<Vec<_>>(),
        }),
        200,
    )?)
}
