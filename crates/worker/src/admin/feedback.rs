//! `GET /admin/feedback?helpful=&limit=`: readers' ratings of answers, newest
//! first (`helpful=false`: the answers to look into, with the documents they
//! cited). The filter's rules are `portfolio_core::api::feedback`'s.

use crate::error::{json_response, ApiError};
use crate::root::Root;
use portfolio_core::api::feedback::feedback_filter;
use serde_json::json;
use std::collections::HashMap;
use worker::{Request, Response};

pub async fn list(req: Request, root: &Root) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = req.url()?.query_pairs().into_owned().collect();
    let filter = feedback_filter(
        query.get("helpful").map(String::as_str),
        query.get("limit").map(String::as_str),
    )?;
    let feedback = root.feedback()?.recent(filter).await?;
    Ok(json_response(&json!({ "feedback": feedback }), 200)?)
}
