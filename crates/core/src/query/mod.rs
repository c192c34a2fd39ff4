//! The public query API's decisions: what a search or chat request may
//! contain, how a question becomes a safe FTS5 expression, and how fused
//! chunks are deduplicated and presented.
//!
//! The retrieval driver ([`retrieve`]) reads through traits: this module
//! never names D1, the vector index's backend or a provider.

pub mod retrieve;

pub use retrieve::{
    retrieve, KeywordHit, Retrieval, RetrievalError, RetrievalTimings, SearchStore, SourceFailure,
    TagHit,
};

use crate::chunk::split_heading_path;
use crate::fusion::{FusedHit, RetrievalSource};
use crate::providers::Passage;
use crate::tags::normalize_tag;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest search query or chat question, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// Default number of results of `/api/search`.
pub const DEFAULT_TOP_K: u32 = 8;
/// Largest `top_k`: Vectorize returns at most 50 matches with metadata.
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
    /// `top_k` is outside 1..=MAX_TOP_K.
    #[error("`top_k` must be between 1 and {MAX_TOP_K} (got {0})")]
    TopK(i64),
    /// Too many or unusable filter tags.
    #[error("`tags` {0}")]
    Tags(String),
    /// The company filter is not a slug.
    #[error("`company` must be a company slug (letters, digits, `-`, `_`, `.`)")]
    Company,
    /// The chat history is too long or malformed.
    #[error("`history` {0}")]
    History(String),
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
    /// Number of results (default 8, at most 50).
    #[serde(default)]
    pub top_k: Option<i64>,
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
}

impl SearchPlan {
    /// Candidates to fetch from each source for this request.
    #[must_use]
    pub fn candidates(&self) -> u32 {
        (self.top_k * CANDIDATES_PER_RESULT).clamp(10, MAX_TOP_K)
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

fn checked_company(company: Option<&str>) -> Result<Option<String>, QueryError> {
    let Some(company) = company.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let ok = company.len() <= 128
        && company
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(Some(company.to_owned()))
    } else {
        Err(QueryError::Company)
    }
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
        let tag = normalize_tag(raw)
            .ok_or_else(|| QueryError::Tags(format!("entry {raw:?} is not a usable tag")))?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// Parses and validates a search body.
pub fn plan_search(body: &[u8]) -> Result<SearchPlan, QueryError> {
    let body: SearchBody =
        serde_json::from_slice(body).map_err(|e| QueryError::BadJson(e.to_string()))?;
    let top_k = match body.top_k {
        None => DEFAULT_TOP_K,
        Some(k) if (1..=i64::from(MAX_TOP_K)).contains(&k) => k as u32,
        Some(k) => return Err(QueryError::TopK(k)),
    };
    Ok(SearchPlan {
        query: checked_text("query", &body.query)?,
        company: checked_company(body.company.as_deref())?,
        tags: checked_tags(body.tags.as_deref())?,
        top_k,
    })
}

/// Parses and validates a chat body; `accept_sse` is true when the client
/// sent `Accept: text/event-stream`.
pub fn plan_chat(body: &[u8], accept_sse: bool) -> Result<ChatPlan, QueryError> {
    let body: ChatBody =
        serde_json::from_slice(body).map_err(|e| QueryError::BadJson(e.to_string()))?;
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
        },
        history,
        stream: body.stream.unwrap_or(accept_sse),
    })
}

/// An FTS5 `MATCH` expression for free text: every whitespace-separated term
/// becomes a quoted phrase of its word pieces (so `ZX-4000` matches the
/// adjacent tokens `zx 4000`), OR'ed together. Quoting makes any FTS5 syntax
/// in the input inert. `None` when the text has no word at all.
#[must_use]
pub fn fts_expression(text: &str) -> Option<String> {
    let mut phrases: Vec<String> = Vec::new();
    for term in text.split_whitespace() {
        let pieces: Vec<String> = term
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| !p.is_empty())
            .map(str::to_lowercase)
            .collect();
        if pieces.is_empty() {
            continue;
        }
        let phrase = format!("\"{}\"", pieces.join(" "));
        if !phrases.contains(&phrase) {
            phrases.push(phrase);
        }
        if phrases.len() == MAX_KEYWORD_TERMS {
            break;
        }
    }
    (!phrases.is_empty()).then(|| phrases.join(" OR "))
}

/// Terms of the query used for tag matching when the request names no tags.
#[must_use]
pub fn query_tag_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for term in crate::tags::words(text) {
        if term.chars().count() < 3 || crate::tags::is_stop_word(&term) {
            continue;
        }
        if let Some(tag) = normalize_tag(&term) {
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
        if out.len() == MAX_FILTER_TAGS {
            break;
        }
    }
    out
}

/// A chunk of the active generation, as the Worker reads it from D1.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ChunkRow {
    /// Vector id: the fusion key shared by every source.
    pub vector_id: String,
    /// Document row id.
    pub document_id: i64,
    /// R2 key of the document.
    pub key: String,
    /// Document title.
    pub title: Option<String>,
    /// Company slug.
    pub company: Option<String>,
    /// Chunk index.
    pub chunk_index: u32,
    /// `A > B > C`.
    pub heading_path: String,
    /// Chunk text.
    pub content: String,
    /// JSON array of tags.
    pub tags: String,
    /// Byte range start in the source.
    pub start_byte: u64,
    /// Byte range end in the source.
    pub end_byte: u64,
}

/// Per-source scores shown with a result (raw: cosine, BM25 relevance, tag hits).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceScores {
    /// Cosine similarity, if the vector search found it.
    pub vector: Option<f64>,
    /// BM25 relevance (higher is better), if the keyword search found it.
    pub keyword: Option<f64>,
    /// Matching tags, if the tag search found it.
    pub tag: Option<f64>,
}

/// One search result, as the site's chat client receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    /// R2 key of the document.
    pub key: String,
    /// Document title.
    pub title: String,
    /// Company slug.
    pub company: Option<String>,
    /// Heading path of the chunk.
    pub heading_path: String,
    /// Chunk tags.
    pub tags: Vec<String>,
    /// Chunk text.
    pub text: String,
    /// Chunk index within the document.
    pub chunk_index: u32,
    /// Per-source scores.
    pub scores: SourceScores,
    /// Fused score (weighted reciprocal rank fusion).
    pub score: f64,
}

/// Whether two chunks of one document cover mostly the same text (their byte
/// ranges overlap by more than half of the shorter one).
#[must_use]
pub fn overlaps(a: &ChunkRow, b: &ChunkRow) -> bool {
    if a.document_id != b.document_id {
        return false;
    }
    let start = a.start_byte.max(b.start_byte);
    let end = a.end_byte.min(b.end_byte);
    let shared = end.saturating_sub(start);
    let shorter =
        (a.end_byte - a.start_byte.min(a.end_byte)).min(b.end_byte - b.start_byte.min(b.end_byte));
    shorter > 0 && shared * 2 > shorter
}

/// Joins fused hits (best first) with their rows, drops hits whose row is
/// missing (superseded generation, deleted document) or that fail the tag
/// filter, removes chunks overlapping a better one, and keeps `top_k`.
#[must_use]
pub fn assemble_results(
    fused: &[FusedHit<String>],
    rows: &[ChunkRow],
    required_tags: &[String],
    top_k: usize,
) -> Vec<SearchResult> {
    let mut kept: Vec<(&ChunkRow, &FusedHit<String>, Vec<String>)> = Vec::new();
    for hit in fused {
        let Some(row) = rows.iter().find(|r| r.vector_id == hit.id) else {
            continue;
        };
        let tags: Vec<String> = serde_json::from_str(&row.tags).unwrap_or_default();
        if !required_tags.is_empty() && !tags.iter().any(|t| required_tags.contains(t)) {
            continue;
        }
        if kept.iter().any(|(k, _, _)| overlaps(k, row)) {
            continue;
        }
        kept.push((row, hit, tags));
        if kept.len() == top_k {
            break;
        }
    }
    kept.into_iter()
        .map(|(row, hit, tags)| SearchResult {
            key: row.key.clone(),
            title: row.title.clone().unwrap_or_else(|| row.key.clone()),
            company: row.company.clone(),
            heading_path: row.heading_path.clone(),
            tags,
            text: row.content.clone(),
            chunk_index: row.chunk_index,
            scores: SourceScores {
                vector: hit.source(RetrievalSource::Vector).map(|m| m.raw_score),
                keyword: hit.source(RetrievalSource::Keyword).map(|m| m.raw_score),
                tag: hit.source(RetrievalSource::Tag).map(|m| m.raw_score),
            },
            score: hit.score,
        })
        .collect()
}

/// One cited source of a chat answer, numbered as in the answer's `[n]` citations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// Citation number, 1-based, in retrieval order.
    pub number: usize,
    /// R2 key of the document.
    pub key: String,
    /// Document title.
    pub title: String,
    /// Company slug.
    pub company: Option<String>,
    /// Heading path of the chunk.
    pub heading_path: String,
    /// Chunk text.
    pub text: String,
    /// Fused score.
    pub score: f64,
}

/// The sources a chat answer shows and the passages its prompt quotes, numbered alike:
/// citation `[n]` in the answer is source `n`.
#[must_use]
pub fn cite(results: &[SearchResult]) -> (Vec<Source>, Vec<Passage>) {
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let source = Source {
                number: i + 1,
                key: r.key.clone(),
                title: r.title.clone(),
                company: r.company.clone(),
                heading_path: r.heading_path.clone(),
                text: r.text.clone(),
                score: r.score,
            };
            let passage = Passage {
                number: i + 1,
                title: r.title.clone(),
                heading_path: split_heading_path(&r.heading_path),
                text: r.text.clone(),
            };
            (source, passage)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fusion::{fuse_rankings, FusionConfig, SourceRanking};

    #[test]
    fn sources_and_passages_are_numbered_alike() {
        let result = |key: &str, heading_path: &str| SearchResult {
            key: key.into(),
            title: format!("{key} title"),
            company: Some("acme".into()),
            heading_path: heading_path.into(),
            tags: vec![],
            text: format!("{key} text"),
            chunk_index: 0,
            scores: SourceScores {
                vector: Some(0.5),
                keyword: None,
                tag: None,
            },
            score: 0.03,
        };
        let results = [result("a.md", "Acme > Robots"), result("b.md", "")];
        let (sources, passages) = cite(&results);
        assert_eq!(
            sources
                .iter()
                .map(|s| (s.number, s.key.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a.md"), (2, "b.md")]
        );
        assert_eq!(
            passages
                .iter()
                .map(|p| (p.number, p.text.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a.md text"), (2, "b.md text")]
        );
        assert_eq!(passages[0].heading_path, ["Acme", "Robots"]);
        assert!(passages[1].heading_path.is_empty());
        assert_eq!(sources[0].heading_path, "Acme > Robots");
    }

    #[test]
    fn search_bodies_are_validated() {
        let ok = plan_search(
            br#"{"query":"  forklifts ","company":"acme","tags":["Robotics"],"top_k":5}"#,
        )
        .unwrap();
        assert_eq!(
            ok,
            SearchPlan {
                query: "forklifts".into(),
                company: Some("acme".into()),
                tags: vec!["robotics".into()],
                top_k: 5
            }
        );
        assert_eq!(
            plan_search(br#"{"query":"x"}"#).unwrap().top_k,
            DEFAULT_TOP_K
        );
        let long = format!(r#"{{"query":"{}"}}"#, "a".repeat(MAX_QUERY_CHARS + 1));
        let cases: Vec<(&[u8], &str)> = vec![
            (b"{", "bad_json"),
            (br#"{"query":"x","extra":1}"#, "bad_json"),
            (br#"{"query":5}"#, "bad_json"),
            (br#"{"query":"   "}"#, "empty_query"),
            (long.as_bytes(), "query_too_long"),
            (br#"{"query":"x","top_k":0}"#, "bad_top_k"),
            (br#"{"query":"x","top_k":51}"#, "bad_top_k"),
            (br#"{"query":"x","company":"a b"}"#, "bad_company"),
            (br#"{"query":"x","tags":["!!!"]}"#, "bad_tags"),
            (
                br#"{"query":"x","tags":["a","b","c","d","e","f","g","h","i","j","k"]}"#,
                "bad_tags",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(
                plan_search(body).unwrap_err().code(),
                code,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn chat_bodies_are_validated() {
        let plan = plan_chat(
            br#"{"question":"What?","history":[{"role":"user","content":"hi"}]}"#,
            true,
        )
        .unwrap();
        assert!(plan.stream);
        assert_eq!(plan.search.top_k, CHAT_PASSAGES);
        assert!(
            !plan_chat(br#"{"question":"What?","stream":false}"#, true)
                .unwrap()
                .stream
        );
        let many: Vec<String> = (0..21)
            .map(|_| r#"{"role":"user","content":"x"}"#.to_owned())
            .collect();
        let too_many = format!(r#"{{"question":"q","history":[{}]}}"#, many.join(","));
        assert_eq!(
            plan_chat(too_many.as_bytes(), false).unwrap_err().code(),
            "bad_history"
        );
        assert_eq!(
            plan_chat(
                br#"{"question":"q","history":[{"role":"system","content":"x"}]}"#,
                false
            )
            .unwrap_err()
            .code(),
            "bad_history"
        );
        assert_eq!(
            plan_chat(br#"{"question":""}"#, false).unwrap_err().code(),
            "empty_query"
        );
        assert_eq!(
            plan_chat(br#"{"query":"q"}"#, false).unwrap_err().code(),
            "bad_json"
        );
    }

    #[test]
    fn fts_expressions_quote_terms_and_neutralise_syntax() {
        assert_eq!(
            fts_expression("ZX-4000 pump").as_deref(),
            Some(r#""zx 4000" OR "pump""#)
        );
        assert_eq!(
            fts_expression(r#"a" OR NEAR(b c) *"#).as_deref(),
            Some(r#""a" OR "or" OR "near b" OR "c""#)
        );
        assert_eq!(fts_expression("  -- ** "), None);
        assert_eq!(fts_expression("pump pump").as_deref(), Some(r#""pump""#));
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(
            fts_expression(&many).unwrap().matches(" OR ").count(),
            MAX_KEYWORD_TERMS - 1
        );
    }

    #[test]
    fn tag_terms_skip_stop_words_and_short_words() {
        assert_eq!(
            query_tag_terms("What are the robotics projects of Acme?"),
            vec!["robotics", "projects", "acme"]
        );
    }

    fn row(id: &str, doc: i64, range: (u64, u64), tags: &str) -> ChunkRow {
        ChunkRow {
            vector_id: id.into(),
            document_id: doc,
            key: format!("doc{doc}.md"),
            title: Some(format!("Doc {doc}")),
            company: None,
            chunk_index: 0,
            heading_path: String::new(),
            content: id.into(),
            tags: tags.into(),
            start_byte: range.0,
            end_byte: range.1,
        }
    }

    #[test]
    fn overlap_needs_the_same_document_and_more_than_half() {
        assert!(overlaps(
            &row("a", 1, (0, 100), "[]"),
            &row("b", 1, (40, 140), "[]")
        ));
        assert!(!overlaps(
            &row("a", 1, (0, 100), "[]"),
            &row("b", 1, (60, 160), "[]")
        ));
        assert!(!overlaps(
            &row("a", 1, (0, 100), "[]"),
            &row("b", 2, (0, 100), "[]")
        ));
    }

    #[test]
    fn results_skip_missing_rows_overlaps_and_tag_misses() {
        let rankings = vec![
            SourceRanking::new(
                RetrievalSource::Vector,
                [
                    ("a".to_owned(), 0.9),
                    ("gone".to_owned(), 0.8),
                    ("b".to_owned(), 0.7),
                    ("c".to_owned(), 0.6),
                ],
            ),
            SourceRanking::new(RetrievalSource::Keyword, [("c".to_owned(), 3.0)]),
        ];
        let fused = fuse_rankings(&FusionConfig::new(), &rankings);
        let rows = vec![
            row("a", 1, (0, 100), r#"["pumps"]"#),
            row("b", 1, (10, 110), r#"["pumps"]"#),
            row("c", 2, (0, 50), r#"["valves"]"#),
        ];
        let all = assemble_results(&fused, &rows, &[], 10);
        assert_eq!(
            all.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["c", "a"]
        );
        assert_eq!(all[0].scores.keyword, Some(3.0));
        assert_eq!(all[0].scores.vector, Some(0.6));
        let tagged = assemble_results(&fused, &rows, &["pumps".to_owned()], 10);
        assert_eq!(
            tagged.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(assemble_results(&fused, &rows, &[], 1).len(), 1);
    }
}
