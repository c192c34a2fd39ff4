//! `GET /admin/alerts`: the firing alerts and those resolved in the last
//! seven days, each with the delivery state of its notices.

use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::d1_alerts::RECENT_MS;
use crate::store::WorkerClock;
use portfolio_core::operations::alerts::{pending_notice, AlertRecord};
use portfolio_core::shared::storage::Clock;
use serde_json::{json, Value};
use worker::Response;

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

pub async fn list(root: &Root) -> Result<Response, ApiError> {
    let store = root.alerts()?;
    let since = WorkerClock.now_ms().saturating_sub(RECENT_MS);
    let (active, recent) = store.listing(since).await?;
    Ok(json_response(
        &json!({
            "active": active.iter().map(entry).collect::<Vec<_>>(),
            "recent": recent.iter().map(entry).collect::<Vec<_>>(),
        }),
        200,
    )?)
}
