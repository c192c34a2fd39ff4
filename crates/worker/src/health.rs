//! `GET /api/health`: gathers the facts (which bindings the Worker sees,
//! the admin token, a D1 probe, the D1 index's size, the Worker version)
//! and renders `portfolio_core::api::health`'s verdict. Decides nothing.

use crate::bindings;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::vector_cache;
use portfolio_core::admin::admin_token_usable;
use portfolio_core::api::health::{assess, counts_d1_vectors, HealthFacts};
use worker::Response;

/// The health report (`503` while anything is wrong).
pub async fn report(root: &Root) -> Result<Response, ApiError> {
    let config = root.config().as_ref();
    let d1_answers = match root.documents() {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    };
    let d1_vectors = if d1_answers && counts_d1_vectors(config) {
        match root.db() {
            Ok(db) => vector_cache::vector_count(&db).await.ok(),
            Err(_) => None,
        }
    } else {
        None
    };
    let facts = HealthFacts {
        config,
        environment_var: root.var("ENVIRONMENT"),
        service_version: env!("CARGO_PKG_VERSION"),
        worker_version: root.version(),
        admin_token_usable: admin_token_usable(root.admin_token().as_deref()),
        d1_answers,
        d1_vectors,
    };
    let (report, status) = assess(facts, &bindings::ALL, |name| root.binding_present(name));
    Ok(json_response(&report, status)?)
}
