//! The public query API: hybrid retrieval (`/api/search`), grounded chat with
//! sources (`/api/chat`, JSON or Server-Sent Events, or the AI SDK's stream),
//! the public catalog (`/api/companies`, `/api/documents`), and the same
//! pipeline in the shapes other clients speak: OpenAI's chat completions
//! (`/v1/…`) and an MCP server (`/mcp`). Reads only active generations.

pub mod catalog;
pub mod chat;
pub mod cors;
pub mod feedback;
pub mod ground;
pub mod mcp;
pub mod openai;
pub mod rollout;
pub mod search;
pub mod ui_chat;

use crate::bindings::{self, RATE_LIMIT_PERIOD_SECONDS};
use crate::error::ApiError;
use crate::root::Root;
use portfolio_core::api::access::{presented_key, PublicKeys};
use portfolio_core::api::routes::Limiter;
use portfolio_core::shared::client::rate_limit_key;
use worker::Request;

/// Whether `PUBLIC_API_KEYS` lets a request to a keyed route through, and
/// the name its key is rate-limited under when one is required. Unset: the
/// routes stay open (`None`); an unusable secret closes them rather than
/// opening them.
pub fn public_access(req: &Request, root: &Root) -> Result<Option<String>, ApiError> {
    let secret = root.secret(bindings::PUBLIC_API_KEYS);
    let keys =
        PublicKeys::parse(secret.as_deref()).map_err(|e| ApiError::Misconfigured(e.to_string()))?;
    let Some(keys) = keys else {
        return Ok(None);
    };
    let authorization = req.headers().get("Authorization")?;
    let x_api_key = req.headers().get("x-api-key")?;
    keys.check(presented_key(
        authorization.as_deref(),
        x_api_key.as_deref(),
    ))
    .map(Some)
    .map_err(ApiError::PublicKey)
}

/// Per-client budget of a route (its limiter's binding; absent: no limit),
/// keyed by the client's API key when keys are required (`key`), else by
/// IPv4 address or IPv6 /64.
pub async fn within_budget(
    req: &Request,
    root: &Root,
    limiter: Limiter,
    key: Option<&str>,
) -> Result<(), ApiError> {
    let Some(binding) = root.rate_limiter(limiter) else {
        return Ok(());
    };
    let name = match key {
        Some(key) => key.to_owned(),
        None => rate_limit_key(
            req.headers()
                .get("CF-Connecting-IP")
                .ok()
                .flatten()
                .as_deref(),
        ),
    };
    let outcome = binding.limit(name).await?;
    if outcome.success {
        Ok(())
    } else {
        Err(ApiError::TooManyRequests(format!(
            "too many {} requests from this client; try again in {RATE_LIMIT_PERIOD_SECONDS} s",
            limiter.what()
        )))
    }
}
