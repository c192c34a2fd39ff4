//! The public query API: hybrid retrieval (`/api/search`), grounded chat with
//! sources (`/api/chat`, JSON or Server-Sent Events) and the public catalog
//! (`/api/companies`, `/api/documents`). Reads only active generations.

pub mod catalog;
pub mod chat;
pub mod cors;
pub mod rollout;
pub mod search;

use crate::bindings::RATE_LIMIT_PERIOD_SECONDS;
use crate::error::ApiError;
use crate::root::Root;
use portfolio_core::api::routes::Limiter;
use portfolio_core::shared::client::rate_limit_key;
use worker::Request;

/// Per-client budget of a route (its limiter's binding; absent: no limit),
/// keyed by IPv4 address or IPv6 /64.
pub async fn within_budget(req: &Request, root: &Root, limiter: Limiter) -> Result<(), ApiError> {
    let Some(binding) = root.rate_limiter(limiter) else {
        return Ok(());
    };
    let client = req.headers().get("CF-Connecting-IP").ok().flatten();
    let outcome = binding.limit(rate_limit_key(client.as_deref())).await?;
    if outcome.success {
        Ok(())
    } else {
        Err(ApiError::TooManyRequests(format!(
            "too many {} requests from this client; try again in {RATE_LIMIT_PERIOD_SECONDS} s",
            limiter.what()
        )))
    }
}
