//! What a search or chat request may contain: the bodies, their limits and
//! validation into a [`SearchPlan`] or [`ChatPlan`]. Pure parsing; never
//! retrieves anything.

use crate::ingest::tags::normalize_tag;
use crate::query::fusion::{FusionConfig, FusionMethod, RetrievalSource};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest search query or chat question, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// Default number of results of `/api/search`.
pub const DEFAULT_TOP_K: u32 = 8;
/// Largest `top_k` of a search. Each retrieval source is asked for at most this many
/// candidates ([`SearchPlan::candidates`]); the vector source asks without metadata, where
/// Vectorize allows up to 100 (`index::VECTORIZE_MAX_TOP_K`).
pub const MAX_TOP_K: u32 = 50;
/// Most tags a request may filter on.
pub const MAX_FILTER_TAGS: usize = 10;
/// Most history turns a chat request may carry.
pub const MAX_HISTORY_TURNS: usize = 20;
/// Longest history turn, in characters.
pub const MAX_TURN_CHARS: usize = 8_000;
/// Passages given to the answerer.
pub const CHAT_PASSAGES: u32 = 6;
/// Most terms of a keyword query (FTS5 cost grows with each OR'ed term).
pub const MAX_KEYWORD_TERMS: usize = 24;
/// Candidates fetched from each retrieval source per requested result.
pub const CANDIDATES_PER_RESULT: u32 = 4;

/// Why a query request is refused (all map to HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// The body is not the expected JSON (syntax, types or unknown fields).
    #[error("invalid JSON body: {0}")]
    BadJson(String),
    /// The query or question is empty after trimming.
    #[error("`{field}` must not be empty")]
    Empty {
        /// `query` or `question`.
        field: &'static str,
    },
    /// The query or question is too long.
    #[error("`{field}` is {chars} characters; the limit is {max}")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// `top_k` is not a whole number in 1..=MAX_TOP_K (the number as sent).
    #[error("`top_k` must be a whole number between 1 and {MAX_TOP_K} (got {0})")]
    TopK(String),
    /// Too many or unusable filter tags.
    #[error("`tags` {0}")]
    Tags(String),
    /// The company filter is not a slug.
    #[error("`company` must be at most 128 characters")]
    Company,
    /// The chat history is too long or malformed.
    #[error("`history` {0}")]
    History(String),
    /// `mode` is not one of the search modes.
    #[error("`mode` must be fused, fused_reranked, vector, keyword or tag (got {0:?})")]
    Mode(String),
    /// `fusion` is not a valid fusion spec.
    #[error("`fusion` {0}")]
    Fusion(String),
    /// `candidates` is not a whole number in 1..=MAX_TOP_K.
    #[error("`candidates` must be a whole number between 1 and {MAX_TOP_K} (got {0})")]
    Candidates(String),
    /// A message list (OpenAI, AI SDK) holds no question: empty, or its
    /// last message is not the user's.
    #[error("`messages` {0}")]
    Messages(String),
}

impl QueryError {
    /// Stable error code for the `{ "error": { "code" } }` body.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::Empty { .. } => "empty_query",
            Self::TooLong { .. } => "query_too_long",
            Self::TopK(_) => "bad_top_k",
            Self::Tags(_) => "bad_tags",
            Self::Company => "bad_company",
            Self::History(_) => "bad_history",
            Self::Mode(_) => "bad_mode",
            Self::Fusion(_) => "bad_fusion",
            Self::Candidates(_) => "bad_candidates",
            Self::Messages(_) => "bad_messages",
        }
    }
}

/// `POST /api/search` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// The search text.
    pub query: String,
    /// Restrict to one company (slug).
    #[serde(default)]
    pub company: Option<String>,
    /// Restrict to chunks carrying at least one of these tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Number of results (default 8, at most 50). Any JSON number: `27.0`
    /// is the integer 27 in JSON Schema (and in `openapi.yaml`).
    #[serde(default)]
    pub top_k: Option<serde_json::Number>,
    /// Which sources rank the results: `fused` (default), or one source alone.
    #[serde(default)]
    pub mode: Option<String>,
    /// Fusion weights and RRF `k` for this request, over the service's
    /// (`SEARCH_FUSION`): a JSON object only (a derived struct would also take
    /// an array of its fields in order), read as a [`FusionBody`].
    #[serde(default)]
    pub fusion: Option<serde_json::Map<String, serde_json::Value>>,
    /// Candidates asked of each source (default `4 × top_k`, 10 to 50).
    #[serde(default)]
    pub candidates: Option<serde_json::Number>,
    /// Rank vectors by exact cosine over their f32 values instead of the D1
    /// index's int8 estimates (default false; Vectorize ranks its own way).
    #[serde(default)]
    pub exact_vectors: Option<bool>,
}

/// A search request's `fusion`: any of the weights and `k`; what it leaves
/// out keeps the service's value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionBody {
    /// Weight of the vector ranking (>= 0; 0 leaves the source out).
    #[serde(default)]
    pub vector: Option<f64>,
    /// Weight of the keyword ranking.
    #[serde(default)]
    pub keyword: Option<f64>,
    /// Weight of the tag ranking.
    #[serde(default)]
    pub tag: Option<f64>,
    /// RRF constant (> 0).
    #[serde(default)]
    pub k: Option<f64>,
    /// `rrf`, `convex` or `convex-tmm` (see [`crate::query::fusion::FusionMethod`]).
    #[serde(default)]
    pub method: Option<String>,
}

impl FusionBody {
    /// The same settings as a `SEARCH_FUSION` spec (`Display` of an `f64`
    /// reads back to the same value).
    fn spec(&self) -> String {
        [
            ("vector", self.vector),
            ("keyword", self.keyword),
            ("tag", self.tag),
            ("k", self.k),
        ]
        .iter()
        .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
        .chain(self.method.as_ref().map(|m| format!("method={m}")))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// Which sources rank a search's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Vector, keyword and tag rankings fused (weights from `SEARCH_FUSION`
    /// or the request's `fusion`).
    #[default]
    Fused,
    /// The fused ranking with its best candidates reordered by the reranker
    /// (`RERANKER`; without one the fused order stands and the answer says
    /// `reranked: false`).
    FusedReranked,
    /// One source's ranking alone (for evaluation and comparison).
    Only(RetrievalSource),
}

impl SearchMode {
    /// Parses `fused`, `fused_reranked`, `vector`, `keyword` or `tag`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "fused" => return Some(Self::Fused),
            "fused_reranked" => return Some(Self::FusedReranked),
            _ => {}
        }
        RetrievalSource::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .map(Self::Only)
    }
}

/// One turn of chat history as the client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HistoryTurnBody {
    /// `user` or `assistant`.
    pub role: String,
    /// What was said.
    pub content: String,
}

/// `POST /api/chat` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    /// The question.
    pub question: String,
    /// Restrict to one company (slug).
    #[serde(default)]
    pub company: Option<String>,
    /// Restrict to chunks carrying at least one of these tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Earlier turns, oldest first.
    #[serde(default)]
    pub history: Option<Vec<HistoryTurnBody>>,
    /// Stream Server-Sent Events instead of one JSON answer.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// A validated retrieval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPlan {
    /// Trimmed query text.
    pub query: String,
    /// Company slug filter.
    pub company: Option<String>,
    /// Normalised tag filter (empty: no filter).
    pub tags: Vec<String>,
    /// Results wanted.
    pub top_k: u32,
    /// Which sources rank the results; `None`: the service's default
    /// (`SEARCH_MODE`).
    pub mode: Option<SearchMode>,
    /// The request's fusion as a spec (weights >= 0, k > 0), applied over the service's.
    pub fusion: Option<String>,
    /// The request's candidates per source, when it set them.
    pub candidates: Option<u32>,
    /// Whether the vector source ranks by exact cosine (`exact_vectors`).
    pub exact_vectors: bool,
}

impl SearchPlan {
    /// A fused search with the service's settings and `top_k` results.
    #[must_use]
    pub fn new(query: impl Into<String>, top_k: u32) -> Self {
        Self {
            query: query.into(),
            company: None,
            tags: Vec::new(),
            top_k,
            mode: None,
            fusion: None,
            candidates: None,
            exact_vectors: false,
        }
    }

    /// Candidates to fetch from each source for this request.
    #[must_use]
    pub fn candidates(&self) -> u32 {
        self.candidates
            .unwrap_or((self.top_k * CANDIDATES_PER_RESULT).clamp(10, MAX_TOP_K))
    }

    /// The fusion this request runs with, given the service's `default`: one
    /// source alone in a single-source mode, else the request's spec over the
    /// default (the default itself when that would leave every weight 0). A
    /// search that filters by tags asks the tag source too
    /// ([`TAG_FILTER_WEIGHT`](crate::query::settings::TAG_FILTER_WEIGHT)) when
    /// neither the service nor the request gave it a weight, so that the filter
    /// has tagged candidates.
    #[must_use]
    pub fn fusion_config(&self, default: &FusionConfig) -> FusionConfig {
        let config = match (self.mode, &self.fusion) {
            (Some(SearchMode::Only(source)), _) => return FusionConfig::only(source),
            (_, None) => default.clone(),
            (_, Some(spec)) => default
                .clone()
                .with_spec(spec)
                .unwrap_or_else(|_| default.clone()),
        };
        let request_sets_tag = self
            .fusion
            .as_deref()
            .is_some_and(|spec| spec.split(',').any(|part| part.trim().starts_with("tag=")));
        if self.tags.is_empty() || request_sets_tag || config.uses(RetrievalSource::Tag) {
            return config;
        }
        config
            .clone()
            .with_weight(
                RetrievalSource::Tag,
                crate::query::settings::TAG_FILTER_WEIGHT,
            )
            .unwrap_or(config)
    }

    /// Whether this search asks for reranking: `fused_reranked`, or no mode
    /// while the service reranks `by_default`.
    #[must_use]
    pub fn reranks(&self, by_default: bool) -> bool {
        match self.mode {
            Some(mode) => mode == SearchMode::FusedReranked,
            None => by_default,
        }
    }
}

/// A validated chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPlan {
    /// Retrieval for the question.
    pub search: SearchPlan,
    /// Validated history (`user`/`assistant` turns).
    pub history: Vec<HistoryTurnBody>,
    /// Whether to stream.
    pub stream: bool,
}

fn checked_text(field: &'static str, text: &str) -> Result<String, QueryError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(QueryError::Empty { field });
    }
    let chars = trimmed.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong {
            field,
            chars,
            max: MAX_QUERY_CHARS,
        });
    }
    Ok(trimmed.to_owned())
}

/// Longest company filter, in characters.
pub const MAX_COMPANY_CHARS: usize = 128;
/// Longest tag filter entry, in characters.
pub const MAX_FILTER_TAG_CHARS: usize = 40;

fn checked_company(company: Option<&str>) -> Result<Option<String>, QueryError> {
    let Some(company) = company else {
        return Ok(None);
    };
    // Any text names a company (an unknown one simply has no documents; the
    // value is only ever a bound parameter), so the rule is the length alone,
    // in characters of the value as sent, as the OpenAPI schema states it
    // (outer white space counts there too, then is trimmed here).
    if company.chars().count() > MAX_COMPANY_CHARS {
        return Err(QueryError::Company);
    }
    let company = company.trim();
    Ok((!company.is_empty()).then(|| company.to_owned()))
}

fn checked_tags(tags: Option<&[String]>) -> Result<Vec<String>, QueryError> {
    let Some(tags) = tags else {
        return Ok(Vec::new());
    };
    if tags.len() > MAX_FILTER_TAGS {
        return Err(QueryError::Tags(format!(
            "has {} entries; the limit is {MAX_FILTER_TAGS}",
            tags.len()
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for raw in tags {
        if raw.chars().count() > MAX_FILTER_TAG_CHARS {
            return Err(QueryError::Tags(format!(
                "entry {raw:?} is longer than {MAX_FILTER_TAG_CHARS} characters"
            )));
        }
        // An entry without a letter or digit names no tag: it filters nothing.
        if let Some(tag) = normalize_tag(raw) {
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
    }
    Ok(out)
}

/// `top_k` when it is a whole number in 1..=MAX_TOP_K, written as an integer
/// or as a float without a fraction (`27.0`).
fn whole_top_k(k: &serde_json::Number) -> Option<u32> {
    let whole = match k.as_i64() {
        Some(i) => i,
        None => {
            let f = k.as_f64()?;
            if f.fract() != 0.0 || !(1.0..=f64::from(MAX_TOP_K)).contains(&f) {
                return None;
            }
            f as i64
        }
    };
    u32::try_from(whole)
        .ok()
        .filter(|k| (1..=MAX_TOP_K).contains(k))
}

/// Parses and validates a search body.
pub fn plan_search(body: &[u8]) -> Result<SearchPlan, QueryError> {
    let body: SearchBody =
        serde_json::from_slice(body).map_err(|e| QueryError::BadJson(e.to_string()))?;
    let top_k = match &body.top_k {
        None => DEFAULT_TOP_K,
        Some(k) => whole_top_k(k).ok_or_else(|| QueryError::TopK(k.to_string()))?,
    };
    let mode = match body.mode.as_deref() {
        None => None,
        Some(m) => Some(SearchMode::parse(m).ok_or_else(|| QueryError::Mode(m.to_owned()))?),
    };
    let fusion: Option<FusionBody> = body
        .fusion
        .map(|map| serde_json::from_value(serde_json::Value::Object(map)))
        .transpose()
        .map_err(|e| QueryError::BadJson(format!("`fusion`: {e}")))?;
    if let Some(f) = &fusion {
        // Every weight 0 is allowed here (the service's fusion then applies);
        // a negative weight or k <= 0 is not.
        let sources = [
            (RetrievalSource::Vector, f.vector),
            (RetrievalSource::Keyword, f.keyword),
            (RetrievalSource::Tag, f.tag),
        ];
        let mut check = FusionConfig::new().with_k(f.k.unwrap_or(1.0));
        for (source, weight) in sources {
            check = check.and_then(|c| c.with_weight(source, weight.unwrap_or(0.0)));
        }
        check.map_err(|e| QueryError::Fusion(e.to_string()))?;
        if let Some(method) = &f.method {
            FusionMethod::parse(method).ok_or_else(|| {
                QueryError::Fusion(format!(
                    "`method` is rrf, convex or convex-tmm, got {method:?}"
                ))
            })?;
        }
    }
    let fusion = fusion.map(|f| f.spec());
    let candidates = match &body.candidates {
        None => None,
        Some(n) => Some(whole_top_k(n).ok_or_else(|| QueryError::Candidates(n.to_string()))?),
    };
    Ok(SearchPlan {
        query: checked_text("query", &body.query)?,
        company: checked_company(body.company.as_deref())?,
        tags: checked_tags(body.tags.as_deref())?,
        top_k,
        mode,
        fusion,
        candidates,
        exact_vectors: body.exact_vectors.unwrap_or(false),
    })
}

/// Parses and validates a chat body; `accept_sse` is true when the client
/// sent `Accept: text/event-stream`.
pub fn plan_chat(body: &[u8], accept_sse: bool) -> Result<ChatPlan, QueryError> {
    let body: ChatBody =
        serde_json::from_slice(body).map_err(|e| QueryError::BadJson(e.to_string()))?;
    body.into_plan(accept_sse)
}

impl ChatBody {
    /// Validates the body into a plan; the other front doors (OpenAI's
    /// messages, the AI SDK's) build a `ChatBody` so they get exactly these
    /// limits.
    pub fn into_plan(self, accept_sse: bool) -> Result<ChatPlan, QueryError> {
        let body = self;
        let history = body.history.unwrap_or_default();
        if history.len() > MAX_HISTORY_TURNS {
            return Err(QueryError::History(format!(
                "has {} turns; the limit is {MAX_HISTORY_TURNS}",
                history.len()
            )));
        }
        for (i, turn) in history.iter().enumerate() {
            if !matches!(turn.role.as_str(), "user" | "assistant") {
                return Err(QueryError::History(format!(
                    "turn {i} has role {:?}; expected user or assistant",
                    turn.role
                )));
            }
            if turn.content.chars().count() > MAX_TURN_CHARS {
                return Err(QueryError::History(format!(
                    "turn {i} is longer than {MAX_TURN_CHARS} characters"
                )));
            }
        }
        Ok(ChatPlan {
            search: SearchPlan {
                query: checked_text("question", &body.question)?,
                company: checked_company(body.company.as_deref())?,
                tags: checked_tags(body.tags.as_deref())?,
                top_k: CHAT_PASSAGES,
                mode: None,
                fusion: None,
                candidates: None,
                exact_vectors: false,
            },
            history,
            stream: body.stream.unwrap_or(accept_sse),
        })
    }
}

#[cfg(test)]
mod tests;
