//! `GET /admin/alerts`: active and recent alerts (filled in with the alerts).

use crate::error::{json_response, ApiError};
use worker::{Env, Request, Response};

pub async fn list(_req: Request, _env: &Env) -> Result<Response, ApiError> {
    Ok(json_response(
        &serde_json::json!({ "active": [], "recent": [] }),
        200,
    )?)
}
