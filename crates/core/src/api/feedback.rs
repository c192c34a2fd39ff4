//! Reader feedback on an answer (`POST /api/feedback`): what the chat page
//! sends when a reader rates an answer, checked before it is stored. Holds
//! only what the reader saw or typed — the answer's id (the chat response's
//! `x-request-id`), the question, the cited documents' keys, the rating and
//! an optional comment; never an address, a client id or a header.
//!
//! Never stores anything (the Worker's `store::d1_feedback` does).

use crate::admin::{limit_param, PageSizeError};
use crate::document::keys::DocumentKey;
use crate::query::MAX_QUERY_CHARS;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest `POST /api/feedback` body.
pub const MAX_FEEDBACK_BODY_BYTES: usize = 16 * 1024;
/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1_000;
/// Most cited documents one rating names (a chat cites at most its passages).
pub const MAX_FEEDBACK_SOURCES: usize = 20;
/// Longest answer id (a request id: Cloudflare's ray id or 16 hex digits).
pub const MAX_ANSWER_ID_CHARS: usize = 64;
/// Ratings `GET /admin/feedback` returns by default, and at most.
pub const DEFAULT_FEEDBACK_LIMIT: u32 = 50;
/// See [`DEFAULT_FEEDBACK_LIMIT`].
pub const MAX_FEEDBACK_LIMIT: u32 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    answer_id: String,
    helpful: bool,
    question: String,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// A checked rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
    /// The rated answer's request id.
    pub answer_id: String,
    /// Whether the reader found it helpful.
    pub helpful: bool,
    /// The question asked (trimmed).
    pub question: String,
    /// The keys of the documents the answer cited, in citation order, without repeats.
    pub sources: Vec<DocumentKey>,
    /// What the reader wrote, if anything (trimmed; empty is none).
    pub comment: Option<String>,
}

/// Why a rating was refused (400 `invalid_feedback`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FeedbackError {
    /// Not the documented JSON object.
    #[error(
        "feedback must be a JSON object {{answer_id, helpful, question, sources?, comment?}}: {0}"
    )]
    Shape(String),
    /// A field outside its limits.
    #[error("feedback field {field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl FeedbackError {
    /// The error code clients see.
    pub const CODE: &'static str = "invalid_feedback";
}

fn field(field: &'static str, problem: impl Into<String>) -> FeedbackError {
    FeedbackError::Field {
        field,
        problem: problem.into(),
    }
}

/// Checks a `POST /api/feedback` body.
pub fn parse_feedback(body: &[u8]) -> Result<Feedback, FeedbackError> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| FeedbackError::Shape(e.to_string()))?;
    // Lengths are checked as sent, before any trimming: what the published
    // schema refuses, this refuses too.
    let answer_id = body.answer_id.as_str();
    if answer_id.is_empty()
        || answer_id.len() > MAX_ANSWER_ID_CHARS
        || !answer_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(field(
            "answer_id",
            format!(
                "the answer's x-request-id: 1 to {MAX_ANSWER_ID_CHARS} visible ASCII characters"
            ),
        ));
    }
    if body.question.chars().count() > MAX_QUERY_CHARS {
        return Err(field(
            "question",
            format!("longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let question = body.question.trim();
    if question
        .chars()
        .all(|c| c.is_whitespace() || c.is_control())
    {
        return Err(field("question", "must contain text"));
    }
    if body.sources.len() > MAX_FEEDBACK_SOURCES {
        return Err(field(
            "sources",
            format!("more than {MAX_FEEDBACK_SOURCES} keys"),
        ));
    }
    let mut sources: Vec<DocumentKey> = Vec::with_capacity(body.sources.len());
    for raw in &body.sources {
        let key = DocumentKey::parse(raw).map_err(|e| field("sources", format!("{raw:?}: {e}")))?;
        if !sources.contains(&key) {
            sources.push(key);
        }
    }
    if body
        .comment
        .as_deref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(field(
            "comment",
            format!("longer than {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let comment = body
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    Ok(Feedback {
        answer_id: answer_id.to_owned(),
        helpful: body.helpful,
        question: question.to_owned(),
        sources,
        comment: comment.map(str::to_owned),
    })
}

/// Which ratings `GET /admin/feedback?helpful=` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackFilter {
    /// `Some(false)`: only unhelpful ones; `None`: all.
    pub helpful: Option<bool>,
    /// How many, newest first.
    pub limit: u32,
}

/// Reads `helpful` (`true`/`false`, absent: all) and `limit` (1 to
/// [`MAX_FEEDBACK_LIMIT`], absent: [`DEFAULT_FEEDBACK_LIMIT`]).
pub fn feedback_filter(
    helpful: Option<&str>,
    limit: Option<&str>,
) -> Result<FeedbackFilter, FeedbackError> {
    let helpful = match helpful {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(field(
                "helpful",
                format!("{other:?} is neither true nor false"),
            ))
        }
    };
    let limit = limit_param(limit, DEFAULT_FEEDBACK_LIMIT, MAX_FEEDBACK_LIMIT)
        .map_err(|e: PageSizeError| field("limit", e.to_string()))?;
    Ok(FeedbackFilter { helpful, limit })
}

#[cfg(test)]
mod tests;
