//! The operator (admin) API: every route here needs `Authorization: Bearer
//! <ADMIN_TOKEN>` (compared in constant time). Owns the token check and the
//! dispatch on the route table's ids (`portfolio_core::api::routes`); must
//! never answer an admin route, known or not, before the token passed.
//! Request checks come from `portfolio_core::admin`.

mod alerts;
mod availability;
mod companies;
mod documents;
mod feedback;
mod index;
mod objects;
mod operations;
mod reconcile;
mod rollout;

use crate::error::{json_response, ApiError};
use crate::root::Root;
use portfolio_core::admin::is_authorized;
use portfolio_core::api::resolve::{resolve, Resolution};
use portfolio_core::api::routes::{listing, AdminRoute as A, OtherMethods, RouteId};
use serde_json::json;
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
            let message = format!("{method} is not allowed on {path}");
            return Err(ApiError::MethodNotAllowed(message));
        }
        Resolution::WrongMethod { .. } | Resolution::Unrouted => return Err(no_route()),
    };
    let RouteId::Admin(id) = matched.route.id else {
        return Err(no_route());
    };
    // The resolver fills the parameter its template names.
    let key = || matched.key.clone().ok_or_else(no_route);
    match id {
        A::Listing => Ok(json_response(&json!({ "routes": listing(None) }), 200)?),
        A::DocumentList => documents::list(req, root).await,
        A::DocumentGet => documents::status(key()?, root).await,
        A::DocumentPut => documents::put(key()?, req, root).await,
        A::DocumentDelete => documents::delete(key()?, root).await,
        A::DocumentProcess => documents::process(key()?, req, root).await,
        A::DocumentRuns => documents::runs(key()?, req, root).await,
        A::Object => objects::get(key()?, root).await,
        A::IndexDescribe => index::describe(root, config).await,
        A::IndexCheck => index::check(root, config).await,
        A::IndexQuery => index::query(req, root, config).await,
        A::IndexUpsert => index::upsert(req, root, config).await,
        A::IndexGet => index::get(req, root, config).await,
        A::IndexDelete => index::delete(req, root, config).await,
        A::ReconcileStart => reconcile::start(req, root, config).await,
        A::ReconcileRuns => reconcile::runs(req, root).await,
        A::CompanyList => companies::list(req, root).await,
        A::CompanyImport => companies::import(req, root).await,
        A::MapLegacyDocuments => companies::map_documents(req, root).await,
        A::Metrics => operations::metrics(req, root, config).await,
        A::MetricsByVersion => operations::metrics_by_version(req, root, config).await,
        A::Alerts => alerts::list(root).await,
        A::Availability => availability::get(root, config).await,
        A::Feedback => feedback::list(req, root).await,
        A::DeadLetters => operations::dead_letters(req, root).await,
        A::ReplayDeadLetter => operations::replay(matched.id.ok_or_else(no_route)?, root).await,
        A::RolloutGet => rollout::get(root, config).await,
        A::RolloutPut => rollout::put(req, root, config).await,
        A::RolloutReport => rollout::report(req, root).await,
    }
}
