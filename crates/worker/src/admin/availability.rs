//! `GET /admin/availability`: the share of public requests answered without
//! a 5xx against `SLO_AVAILABILITY_PERCENT`, per day and over 30 days, the
//! error budget left, and each fast-burn rule's rates now. The arithmetic is
//! `portfolio_core::operations::availability`; the counts come from
//! `store::d1_availability` and the metrics reader (`store::point_reader`).

use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::WorkerClock;
use portfolio_core::operations::availability::{burn_status, report};
use portfolio_core::operations::metrics::MetricsReader;
use portfolio_core::shared::storage::Clock;
use serde_json::json;
use worker::Response;

pub async fn get(root: &Root, config: &ServiceConfig) -> Result<Response, ApiError> {
    let now = WorkerClock.now_ms();
    let objective = config.alerts.availability;
    let reader = root.point_reader(config)?;
    root.metrics().flush().await;
    let days = root.availability()?.window(now, &reader).await?;
    let windows = reader.burn_windows(now).await?;
    let burn = burn_status(objective, &windows, u64::from(config.alerts.min_requests));
    let mut body = serde_json::to_value(report(objective, now, &days))
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    body["fast_burn"] = json!(burn);
    Ok(json_response(&body, 200)?)
}
