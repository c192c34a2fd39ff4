//! `GET /api/health`: which bindings the Worker can see, which providers are
//! configured, which Worker version answers.

use crate::bindings;
use crate::config::{ConfigError, ServiceConfig};
use crate::error::{json_response, ApiError};
use crate::store::d1::D1Documents;
use crate::store::vector_cache;
use portfolio_core::admin::{admin_token_usable, MIN_ADMIN_TOKEN_CHARS};
use portfolio_core::api::{BindingStatus, HealthReport, ProviderStatus};
use portfolio_core::index::IndexKind;
use portfolio_core::index::VectorIndexError;
use wasm_bindgen::JsValue;
use worker::{Env, Response};

/// Builds the health report (`503` while the configuration is invalid).
/// Presence is checked on the raw environment object because
/// `Env::get_binding` checks JS constructor names, which differ between real
/// bindings and local stand-ins.
pub async fn report(
    env: &Env,
    config: &Result<ServiceConfig, ConfigError>,
) -> Result<Response, ApiError> {
    let raw: &JsValue = env.as_ref();
    let statuses = bindings::ALL
        .iter()
        .filter(|(name, _, required)| *required || binding_present(raw, name))
        .map(|(name, kind, _)| BindingStatus {
            name: (*name).to_owned(),
            kind: (*kind).to_owned(),
            present: binding_present(raw, name),
        })
        .collect();
    let token = js_sys::Reflect::get(raw, &JsValue::from_str(crate::admin::ADMIN_TOKEN))
        .ok()
        .and_then(|v| v.as_string());
    let mut problems = Vec::new();
    if !admin_token_usable(token.as_deref()) {
        problems.push(format!(
            "ADMIN_TOKEN is missing or shorter than {MIN_ADMIN_TOKEN_CHARS} characters: the admin API refuses every request"
        ));
    }
    if let Ok(config) = config {
        for need in config.requirements() {
            if !binding_present(raw, need.name) {
                problems.push(format!(
                    "{} is missing: {} needs it",
                    need.name, need.needed_by
                ));
            }
        }
    }
    let d1_answers = match D1Documents::from_env(env) {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    };
    let mut report = match config {
        Ok(config) => HealthReport::new(
            config.environment.clone(),
            env!("CARGO_PKG_VERSION"),
            statuses,
            Some(ProviderStatus {
                embedding: config.embedding_provider.as_str().to_owned(),
                chat: config.chat_provider.as_str().to_owned(),
                vector_index: config.vector_index.as_str().to_owned(),
                dimensions: config.dimensions,
            }),
            problems,
        ),
        Err(error) => HealthReport::new(
            crate::config::var(env, "ENVIRONMENT").unwrap_or_default(),
            env!("CARGO_PKG_VERSION"),
            statuses,
            None,
            error
                .problems
                .iter()
                .map(ToString::to_string)
                .chain(problems)
                .collect(),
        ),
    };
    report = report.with_worker_version(crate::version::from_env(env));
    if !d1_answers {
        report
            .unavailable
            .push("D1 did not answer a probe query".into());
        report.status = "degraded".into();
    } else if let Some(config) = config
        .as_ref()
        .ok()
        .filter(|c| c.vector_index == IndexKind::D1)
    {
        // Past its budget the D1 index refuses queries: searches lose their vector source.
        let vectors = match env.d1(bindings::DB) {
            Ok(db) => vector_cache::vector_count(&db).await.ok(),
            Err(_) => None,
        };
        if let Some(vectors) = vectors.filter(|v| *v > config.d1_index_max_vectors) {
            report.unavailable.push(
                VectorIndexError::OverBudget {
                    vectors,
                    budget: config.d1_index_max_vectors,
                }
                .to_string(),
            );
            report.status = "degraded".into();
        }
    }
    let status = if report.configuration_errors.is_empty() && report.unavailable.is_empty() {
        200
    } else {
        503
    };
    Ok(json_response(&report, status)?)
}

fn binding_present(env: &JsValue, name: &str) -> bool {
    js_sys::Reflect::get(env, &JsValue::from_str(name))
        .map(|v| !v.is_undefined() && !v.is_null())
        .unwrap_or(false)
}
