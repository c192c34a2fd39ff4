//! `GET`/`PUT /admin/rollout` (the share of chat clients this service serves,
//! and of proxied requests it shadows) and `GET /admin/rollout/report` (the
//! shadow comparisons and the failovers per day). The setting's rules and the report's
//! arithmetic are `portfolio_core::operations::rollout`'s.

use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::query::rollout::{forget_setting, plan};
use crate::root::Root;
use crate::store::d1_rollout::MAX_REPORT_ROWS;
use crate::store::WorkerClock;
use portfolio_core::operations::rollout::{
    daily_report, parse_setting, report_days, SETTING_TTL_MS,
};
use portfolio_core::shared::storage::Clock;
use serde_json::{json, Value};
use std::collections::HashMap;
use worker::{Request, Response};

/// Largest `PUT /admin/rollout` body.
const MAX_SETTING_BODY_BYTES: usize = 4 * 1024;
const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// The old endpoint's origin (its path or query may hold a key).
fn legacy_origin(url: &str) -> Option<String> {
    let origin = worker::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

async fn state(root: &Root, config: &ServiceConfig) -> Result<Value, ApiError> {
    let setting = root.rollout()?.setting().await?;
    let effective = plan(root, config).await;
    Ok(json!({
        "ceiling_percent": config.rollout.ceiling_percent,
        "legacy": config.rollout.legacy_url.as_deref().and_then(legacy_origin),
        "setting": setting,
        "effective": { "percent": effective.percent, "shadow_percent": effective.shadow_percent },
        "cache_ms": SETTING_TTL_MS,
    }))
}

/// `GET /admin/rollout`.
pub async fn get(root: &Root, config: &ServiceConfig) -> Result<Response, ApiError> {
    Ok(json_response(&state(root, config).await?, 200)?)
}

/// `PUT /admin/rollout`: `{ "percent": 0-100, "shadow_percent": 0-100 }`.
pub async fn put(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body = read_limited(&mut req, MAX_SETTING_BODY_BYTES).await?;
    let store = root.rollout()?;
    let current = store.setting().await?;
    let setting = parse_setting(&body, current)?;
    store.put_setting(setting, WorkerClock.now_ms()).await?;
    // This isolate applies it at once; the others within `cache_ms`.
    forget_setting();
    Ok(json_response(&state(root, config).await?, 200)?)
}

/// `GET /admin/rollout/report?days=1-30`.
pub async fn report(req: Request, root: &Root) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = req.url()?.query_pairs().into_owned().collect();
    let days = report_days(query.get("days").map(String::as_str))
        .map_err(|m| ApiError::BadRequest("bad_days", m))?;
    let since = WorkerClock
        .now_ms()
        .saturating_sub(u64::from(days) * DAY_MS);
    let store = root.rollout()?;
    let records = store.comparisons(since).await?;
    let failovers = store.failovers(since).await?;
    let truncated = records.len() >= MAX_REPORT_ROWS as usize;
    let per_day = daily_report(&records, &failovers);
    let failed_over: u64 = per_day.iter().map(|d| d.failovers).sum();
    Ok(json_response(
        &json!({ "days": days, "compared": records.len(), "failovers": failed_over,
                 "truncated": truncated, "per_day": per_day }),
        200,
    )?)
}
