//! The operator (admin) API: every route here needs `Authorization: Bearer
//! <ADMIN_TOKEN>` (compared in constant time). Owns the token check and the
//! dispatch (documents, index, reconciliation); must never answer an admin
//! route, known or not, before the token passed. Request checks come from
//! `portfolio_core::admin`.

mod alerts;
mod companies;
mod documents;
pub mod index;
mod objects;
mod operations;
mod reconcile;
mod rollout;

use crate::config::{ConfigError, ServiceConfig};
use crate::error::json_response;
use crate::error::ApiError;
use crate::store::metrics::Metrics;
use portfolio_core::admin::is_authorized;
use portfolio_core::api::routes::{listing, resolve, OtherMethods, Resolution, RouteId};
use wasm_bindgen::JsValue;
use worker::{Env, Request, Response};

/// Name of the secret (or var, locally) holding the admin token.
pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";

/// `Ok` when the request carries the configured admin token. Read from the
/// raw environment: a secret and a var are both plain strings there.
pub fn authorize(req: &Request, env: &Env) -> Result<(), ApiError> {
    let expected = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(ADMIN_TOKEN))
        .ok()
        .and_then(|v| v.as_string());
    let presented = req.headers().get("Authorization").ok().flatten();
    if is_authorized(presented.as_deref(), expected.as_deref()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Handles any `/admin/...` request: token first, then the configuration
/// (its problems in full: the caller is the operator), then the route.
pub async fn handle(
    req: Request,
    env: Env,
    config: &Result<ServiceConfig, ConfigError>,
    metrics: &Metrics,
) -> Result<Response, ApiError> {
    authorize(&req, &env)?;
    let config = config
        .as_ref()
        .map_err(|e| ApiError::Misconfigured(e.to_string()))?;
    let path = req.path();
    let method = req.method();
    let matched = match resolve(method.as_ref(), &path) {
        Resolution::Found(matched) => matched,
        Resolution::BadParameter(e) => return Err(e.into()),
        Resolution::WrongMethod {
            answer: OtherMethods::NotAllowed,
            ..
        } => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{method} is not allowed on {path}"
            )))
        }
        Resolution::WrongMethod { .. } | Resolution::Unrouted => {
            return Err(ApiError::NotFound(format!("no route for {method} {path}")))
        }
    };
    let (key, id) = (matched.key, matched.id);
    match (matched.route.id, key, id) {
        (RouteId::AdminListing, ..) => Ok(json_response(
            &serde_json::json!({ "routes": listing(None) }),
            200,
        )?),
        (RouteId::DocumentList, ..) => documents::list(req, &env).await,
        (RouteId::DocumentGet, Some(key), _) => documents::status(key, &env).await,
        (RouteId::DocumentPut, Some(key), _) => documents::put(key, req, &env).await,
        (RouteId::DocumentDelete, Some(key), _) => documents::delete(key, &env).await,
        (RouteId::DocumentProcess, Some(key), _) => documents::process(key, req, &env).await,
        (RouteId::DocumentRuns, Some(key), _) => documents::runs(key, req, &env).await,
        (RouteId::Object, Some(key), _) => objects::get(key, &env).await,
        (RouteId::IndexDescribe, ..) => index::describe(req, env, config).await,
        (RouteId::IndexCheck, ..) => index::check(req, env, config).await,
        (RouteId::IndexQuery, ..) => index::query(req, env, config).await,
        (RouteId::IndexUpsert, ..) => index::upsert(req, env, config).await,
        (RouteId::IndexGet, ..) => index::get(req, env, config).await,
        (RouteId::IndexDelete, ..) => index::delete(req, env, config).await,
        (RouteId::ReconcileStart, ..) => reconcile::start(req, &env, config, metrics).await,
        (RouteId::ReconcileRuns, ..) => reconcile::runs(req, &env).await,
        (RouteId::CompanyList, ..) => companies::list(req, &env).await,
        (RouteId::CompanyImport, ..) => companies::import(req, &env).await,
        (RouteId::MapLegacyDocuments, ..) => companies::map_documents(req, &env).await,
        (RouteId::Metrics, ..) => operations::metrics(req, &env, config).await,
        (RouteId::MetricsByVersion, ..) => operations::metrics_by_version(req, &env, config).await,
        (RouteId::Alerts, ..) => alerts::list(req, &env).await,
        (RouteId::DeadLetters, ..) => operations::dead_letters(req, &env).await,
        (RouteId::ReplayDeadLetter, _, Some(id)) => operations::replay(id, &env).await,
        (RouteId::RolloutGet, ..) => rollout::get(&env, config).await,
        (RouteId::RolloutPut, ..) => rollout::put(req, &env, config).await,
        (RouteId::RolloutReport, ..) => rollout::report(req, &env).await,
        _ => Err(ApiError::NotFound(format!("no route for {method} {path}"))),
    }
}
