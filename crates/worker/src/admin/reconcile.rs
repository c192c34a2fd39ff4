//! `/admin/reconcile`: start a reconciliation run now, and read the latest
//! run summaries. The run itself is the reconciler's (`crate::reconcile`).

use crate::body::read_text_limited;
use crate::config::ServiceConfig;
use crate::error::{bad_json, json_response, ApiError};
use crate::reconcile::{self, Started};
use crate::root::Root;
use portfolio_core::admin::runs_limit;
use portfolio_core::api::MAX_ADMIN_JSON_BYTES;
use serde::Deserialize;
use std::collections::HashMap;
use worker::{Request, Response};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Objects per page for this run (1..=1000), instead of `RECONCILE_PAGE_SIZE`.
    page_size: Option<u32>,
}

pub async fn start(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let text = read_text_limited(&mut req, MAX_ADMIN_JSON_BYTES).await?;
    let body: StartBody = if text.trim().is_empty() {
        StartBody::default()
    } else {
        serde_json::from_str(&text).map_err(|e| bad_json(&e))?
    };
    match reconcile::start(root.env(), config, "admin", body.page_size, root.metrics()).await? {
        Started::Run { run_id, done } => Ok(json_response(
            &serde_json::json!({ "run_id": run_id, "status": if done { "done" } else { "running" } }),
            202,
        )?),
        Started::AlreadyRunning { run_id } => Err(ApiError::Conflict(
            "reconcile_running",
            format!("reconciliation run {run_id} is still running"),
        )),
    }
}

pub async fn runs(req: Request, root: &Root) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = req.url()?.query_pairs().into_owned().collect();
    let limit = runs_limit(query.get("limit").map(String::as_str))?;
    let runs: Vec<serde_json::Value> = reconcile::latest_runs(root.env(), limit)
        .await?
        .iter()
        .map(reconcile::RunRow::summary)
        .collect();
    Ok(json_response(&serde_json::json!({ "runs": runs }), 200)?)
}
