//! The operator (admin) API: every route here needs `Authorization: Bearer
//! <ADMIN_TOKEN>` (compared in constant time). Owns the token check and the
//! dispatch on the route table's ids (`portfolio_core::api::routes`); must
//! never answer an admin route, known or not, before the token passed.
//! Request checks come from `portfolio_core::admin`.

mod alerts;
mod companies;
mod documents;
mod index;
mod objects;
mod operations;
mod reconcile;
mod rollout;

use crate::error::{json_response, ApiError};
use crate::root::Root;
use portfolio_core::admin::is_authorized;
use portfolio_core::api::routes::{listing, resolve, OtherMethods, Resolution, RouteId};
use worker::{Request, Response};

/// `Ok` when the request carries the configured admin token.
fn authorize(req: &Request, root: &Root) -> Result<(), ApiError> {
    let presented = req.headers().get("Authorization").ok().flatten();
    if is_authorized(presented.as_deref(), root.admin_token().as_deref()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Handles any `/admin/...` request: token first, then the configuration
/// (its problems in full: the caller is the operator), then the route.
pub async fn handle(req: Request, root: &Root) -> Result<Response, ApiError> {
    authorize(&req, root)?;
    let config = root
        .config()
        .as_ref()
        .map_err(|e| ApiError::Misconfigured(e.to_string()))?;
    let (method, path) = (req.method(), req.path());
    let no_route = || ApiError::NotFound(format!("no route for {method} {path}"));
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
        Resolution::WrongMethod { .. } | Resolution::Unrouted => return Err(no_route()),
    };
    match (matched.route.id, matched.key, matched.id) {
        (RouteId::AdminListing, ..) => Ok(json_response(
            &serde_json::json!({ "routes": listing(None) }),
            200,
        )?),
        (RouteId::DocumentList, ..) => documents::list(req, root).await,
        (RouteId::DocumentGet, Some(key), _) => documents::status(key, root).await,
        (RouteId::DocumentPut, Some(key), _) => documents::put(key, req, root).await,
        (RouteId::DocumentDelete, Some(key), _) => documents::delete(key, root).await,
        (RouteId::DocumentProcess, Some(key), _) => documents::process(key, req, root).await,
        (RouteId::DocumentRuns, Some(key), _) => documents::runs(key, req, root).await,
        (RouteId::Object, Some(key), _) => objects::get(key, root).await,
        (RouteId::IndexDescribe, ..) => index::describe(root, config).await,
        (RouteId::IndexCheck, ..) => index::check(root, config).await,
        (RouteId::IndexQuery, ..) => index::query(req, root, config).await,
        (RouteId::IndexUpsert, ..) => index::upsert(req, root, config).await,
        (RouteId::IndexGet, ..) => index::get(req, root, config).await,
        (RouteId::IndexDelete, ..) => index::delete(req, root, config).await,
        (RouteId::ReconcileStart, ..) => reconcile::start(req, root, config).await,
        (RouteId::ReconcileRuns, ..) => reconcile::runs(req, root).await,
        (RouteId::CompanyList, ..) => companies::list(req, root).await,
        (RouteId::CompanyImport, ..) => companies::import(req, root).await,
        (RouteId::MapLegacyDocuments, ..) => companies::map_documents(req, root).await,
        (RouteId::Metrics, ..) => operations::metrics(req, root, config).await,
        (RouteId::MetricsByVersion, ..) => operations::metrics_by_version(req, root, config).await,
        (RouteId::Alerts, ..) => alerts::list(root).await,
        (RouteId::DeadLetters, ..) => operations::dead_letters(req, root).await,
        (RouteId::ReplayDeadLetter, _, Some(id)) => operations::replay(id, root).await,
        (RouteId::RolloutGet, ..) => rollout::get(root, config).await,
        (RouteId::RolloutPut, ..) => rollout::put(req, root, config).await,
        (RouteId::RolloutReport, ..) => rollout::report(req, root).await,
        _ => Err(no_route()),
    }
}
