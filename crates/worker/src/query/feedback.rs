//! `POST /api/feedback`: a reader's rating of an answer, checked by
//! `portfolio_core::api::feedback` and stored as it came (201 with its id).

use crate::body::read_limited;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::WorkerClock;
use portfolio_core::api::feedback::{parse_feedback, MAX_FEEDBACK_BODY_BYTES};
use portfolio_core::shared::storage::Clock;
use serde_json::json;
use worker::{Request, Response};

pub async fn post(mut req: Request, root: &Root) -> Result<Response, ApiError> {
    let body = read_limited(&mut req, MAX_FEEDBACK_BODY_BYTES).await?;
    let feedback = parse_feedback(&body)?;
    let id = root
        .feedback()?
        .add(&feedback, WorkerClock.now_ms())
        .await?;
    Ok(json_response(&json!({ "id": id }), 201)?)
}
