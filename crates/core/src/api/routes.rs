//! The service's routes, declared once, one line each: method, path template,
//! who may call it, the rate limiter in front of it and the id the Worker
//! dispatches on. The Worker's router (through `super::resolve`), the
//! `GET /api` and `GET /admin` listings, the 405 `Allow` header, the metric
//! route labels and the security suite's route matrix are all derived from
//! [`ROUTES`].
//!
//! Never performs a request (the Worker does), and no other module lists
//! routes.

use serde::Serialize;

/// What the Worker dispatches on: one variant per row of [`ROUTES`], split by
/// access so each side's dispatch is an exhaustive match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteId {
    /// A route anyone may call.
    Public(PublicRoute),
    /// A route behind the admin token.
    Admin(AdminRoute),
}

/// The public routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicRoute {
    /// `GET /`: the chat page (unless `CHAT_PAGE=off`).
    ChatPage,
    /// `GET /assets/chat.css`.
    ChatCss,
    /// `GET /assets/chat.js`.
    ChatJs,
    /// `GET /operator`: the operator page (its data comes from the admin API,
    /// with the token the operator types in).
    OperatorPage,
    /// `GET /assets/operator.css`.
    OperatorCss,
    /// `GET /assets/operator.js`.
    OperatorJs,
    /// `GET /api`: the public listing.
    ApiListing,
    /// `GET /api/health`.
    Health,
    /// `POST /api/search`.
    Search,
    /// `POST /api/chat`.
    Chat,
    /// `GET /api/companies`.
    Companies,
    /// `GET /api/documents`.
    Documents,
    /// `POST /v1/chat/completions`: OpenAI-compatible chat.
    ChatCompletions,
    /// `GET /v1/models`: the one model OpenAI clients may name.
    Models,
    /// `POST /mcp`: the Model Context Protocol server (Streamable HTTP).
    Mcp,
    /// `POST /api/feedback`: a reader's rating of an answer.
    Feedback,
}

/// The admin routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminRoute {
    /// `GET /admin`: the listing of every route of this table.
    Listing,
    /// `GET /admin/documents`: the paged list.
    DocumentList,
    /// `GET /admin/documents/{key}/runs`: the document's run history. A key
    /// that itself ends in `/runs` is reached with its last slash encoded.
    DocumentRuns,
    /// `POST /admin/documents/{key}/process`: manual (re)processing.
    DocumentProcess,
    /// `GET /admin/documents/{key}`: status.
    DocumentGet,
    /// `PUT /admin/documents/{key}`: store in R2 and enqueue.
    DocumentPut,
    /// `DELETE /admin/documents/{key}`: remove from R2 and enqueue the delete.
    DocumentDelete,
    /// `GET /admin/index`: describe the vector index.
    IndexDescribe,
    /// `GET /admin/index/check`: compare the index with D1.
    IndexCheck,
    /// `POST /admin/index/query`.
    IndexQuery,
    /// `POST /admin/index/upsert`.
    IndexUpsert,
    /// `POST /admin/index/get`.
    IndexGet,
    /// `POST /admin/index/delete`.
    IndexDelete,
    /// `POST /admin/reconcile`: start a run now.
    ReconcileStart,
    /// `GET /admin/reconcile/runs`: the latest run summaries.
    ReconcileRuns,
    /// `GET /admin/companies`: companies with their fields and legacy ids.
    CompanyList,
    /// `POST /admin/companies`: upsert companies and their legacy ids.
    CompanyImport,
    /// `POST /admin/legacy-ids/documents`: map source ids to stored documents.
    MapLegacyDocuments,
    /// `GET /admin/objects/{key}`: the stored object's bytes (rollback export).
    Object,
    /// `GET /admin/metrics?window=`: the metrics report.
    Metrics,
    /// `GET /admin/metrics/versions?window=`: public requests per Worker version.
    MetricsByVersion,
    /// `GET /admin/alerts`: active and recent alerts.
    Alerts,
    /// `GET /admin/availability`: availability against its objective, per
    /// day and over 30 days, and the fast-burn rules' state.
    Availability,
    /// `GET /admin/feedback?helpful=&limit=`: readers' ratings, newest first.
    Feedback,
    /// `GET /admin/dead-letters?cursor=&limit=`: dead letters, newest first.
    DeadLetters,
    /// `POST /admin/dead-letters/{id}/replay`: re-enqueue a dead letter's document.
    ReplayDeadLetter,
    /// `GET /admin/rollout`: the cut-over setting.
    RolloutGet,
    /// `PUT /admin/rollout`: change the cut-over setting.
    RolloutPut,
    /// `GET /admin/rollout/report`: shadow comparisons per day.
    RolloutReport,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone (CORS applies under `/api/`).
    Public,
    /// Only with `Authorization: Bearer <ADMIN_TOKEN>`, checked before anything else.
    Admin,
}

/// The per-client budget in front of a route (the Worker names the binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limiter {
    /// The search budget (each search embeds the query); MCP and the
    /// catalog (`/api/companies`, `/api/documents`) share it.
    Search,
    /// The chat budget; a reader's rating of an answer (`/api/feedback`) shares it.
    Chat,
}

impl Limiter {
    /// What the 429's message calls these requests.
    #[must_use]
    pub fn what(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Chat => "chat",
        }
    }
}

/// What a known path answers to a method it is not declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherMethods {
    /// 405 with `Allow` (the public API and the rollout setting).
    NotAllowed,
    /// 404, as for an unknown path (the older admin routes; clients rely on it).
    NotFound,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path template; `{key}` is a percent-encoded document key (slashes
    /// included), `{id}` a positive whole number.
    pub path: &'static str,
    /// What the Worker dispatches on.
    pub id: RouteId,
    /// Who may call it.
    pub access: Access,
    /// The rate limiter in front of it, if any.
    pub limiter: Option<Limiter>,
    /// Whether one trailing `/` names the same route.
    pub trailing_slash: bool,
    /// What other methods on this path answer.
    pub other_methods: OtherMethods,
    /// Whether `PUBLIC_API_KEYS`, when set, guards it (`super::access`).
    pub keyed: bool,
}

const fn public(method: &'static str, path: &'static str, id: PublicRoute) -> Route {
    Route {
        method,
        path,
        id: RouteId::Public(id),
        access: Access::Public,
        limiter: None,
        trailing_slash: false,
        other_methods: OtherMethods::NotFound,
        keyed: false,
    }
}

const fn admin(method: &'static str, path: &'static str, id: AdminRoute) -> Route {
    Route {
        method,
        path,
        id: RouteId::Admin(id),
        access: Access::Admin,
        limiter: None,
        trailing_slash: true,
        other_methods: OtherMethods::NotFound,
        keyed: false,
    }
}

impl Route {
    const fn limited(mut self, limiter: Limiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// A trailing `/` is another (unknown) path.
    const fn exact(mut self) -> Self {
        self.trailing_slash = false;
        self
    }

    /// Requires one of `PUBLIC_API_KEYS` when that secret is set.
    const fn keyed(mut self) -> Self {
        self.keyed = true;
        self
    }

    /// Other methods answer 405 with `Allow`.
    const fn refuses_other_methods(mut self) -> Self {
        self.other_methods = OtherMethods::NotAllowed;
        self
    }
}

use AdminRoute as A;
use PublicRoute as P;

/// Every route the Worker serves.
pub const ROUTES: [Route; 45] = [
    public("GET", "/", P::ChatPage),
    public("GET", "/assets/chat.css", P::ChatCss),
    public("GET", "/assets/chat.js", P::ChatJs),
    public("GET", "/operator", P::OperatorPage),
    public("GET", "/assets/operator.css", P::OperatorCss),
    public("GET", "/assets/operator.js", P::OperatorJs),
    public("GET", "/api", P::ApiListing),
    public("GET", "/api/health", P::Health).refuses_other_methods(),
    public("POST", "/api/search", P::Search)
        .limited(Limiter::Search)
        .keyed()
        .refuses_other_methods(),
    public("POST", "/api/chat", P::Chat)
        .limited(Limiter::Chat)
        .keyed()
        .refuses_other_methods(),
    public("GET", "/api/companies", P::Companies)
        .limited(Limiter::Search)
        .keyed()
        .refuses_other_methods(),
    public("GET", "/api/documents", P::Documents)
        .limited(Limiter::Search)
        .keyed()
        .refuses_other_methods(),
    public("POST", "/v1/chat/completions", P::ChatCompletions)
        .limited(Limiter::Chat)
        .keyed()
        .refuses_other_methods(),
    public("GET", "/v1/models", P::Models)
        .keyed()
        .refuses_other_methods(),
    public("POST", "/mcp", P::Mcp)
        .limited(Limiter::Search)
        .keyed()
        .refuses_other_methods(),
    public("POST", "/api/feedback", P::Feedback)
        .limited(Limiter::Chat)
        .keyed()
        .refuses_other_methods(),
    admin("GET", "/admin", A::Listing).exact(),
    admin("GET", "/admin/documents", A::DocumentList),
    admin("GET", "/admin/documents/{key}/runs", A::DocumentRuns).exact(),
    admin("POST", "/admin/documents/{key}/process", A::DocumentProcess).exact(),
    admin("GET", "/admin/documents/{key}", A::DocumentGet).exact(),
    admin("PUT", "/admin/documents/{key}", A::DocumentPut).exact(),
    admin("DELETE", "/admin/documents/{key}", A::DocumentDelete).exact(),
    admin("GET", "/admin/index", A::IndexDescribe).exact(),
    admin("GET", "/admin/index/check", A::IndexCheck).exact(),
    admin("POST", "/admin/index/query", A::IndexQuery).exact(),
    admin("POST", "/admin/index/upsert", A::IndexUpsert).exact(),
    admin("POST", "/admin/index/get", A::IndexGet).exact(),
    admin("POST", "/admin/index/delete", A::IndexDelete).exact(),
    admin("POST", "/admin/reconcile", A::ReconcileStart),
    admin("GET", "/admin/reconcile/runs", A::ReconcileRuns),
    admin("GET", "/admin/companies", A::CompanyList),
    admin("POST", "/admin/companies", A::CompanyImport),
    admin("POST", "/admin/legacy-ids/documents", A::MapLegacyDocuments),
    admin("GET", "/admin/objects/{key}", A::Object).exact(),
    admin("GET", "/admin/metrics", A::Metrics),
    admin("GET", "/admin/metrics/versions", A::MetricsByVersion),
    admin("GET", "/admin/alerts", A::Alerts),
    admin("GET", "/admin/availability", A::Availability),
    admin("GET", "/admin/feedback", A::Feedback),
    admin("GET", "/admin/dead-letters", A::DeadLetters),
    admin(
        "POST",
        "/admin/dead-letters/{id}/replay",
        A::ReplayDeadLetter,
    ),
    admin("GET", "/admin/rollout", A::RolloutGet)
        .exact()
        .refuses_other_methods(),
    admin("PUT", "/admin/rollout", A::RolloutPut)
        .exact()
        .refuses_other_methods(),
    admin("GET", "/admin/rollout/report", A::RolloutReport)
        .exact()
        .refuses_other_methods(),
];

/// One row of a listing (`GET /api`, `GET /admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedRoute {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its rate limiter, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Limiter>,
}

/// The routes with `access`, in table order.
#[must_use]
pub fn listing(access: Option<Access>) -> Vec<ListedRoute> {
    ROUTES
        .iter()
        .filter(|r| access.is_none_or(|a| a == r.access))
        .map(|r| ListedRoute {
            method: r.method,
            path: r.path,
            access: r.access,
            rate_limit: r.limiter,
        })
        .collect()
}
