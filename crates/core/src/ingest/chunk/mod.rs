//! Structure-aware markdown chunking: a document body becomes chunks that fit
//! a token budget, each with its heading path and its place in the source.
//!
//! Owns how text is cut and how tokens are estimated. Never reads storage and
//! never calls a model: embedding the chunks is the caller's business.
//!
//! How a body is cut:
//! 1. pulldown-cmark's events (with source offsets) give the block outline:
//!    headings, paragraphs, lists, code blocks, tables, quotes, HTML.
//! 2. Every top-level block is one unit if it fits the budget; a block that
//!    doesn't is split at the next finer level until the pieces fit:
//!    container children (list items, quoted blocks, table rows) → lines →
//!    sentences → words → characters (never inside a UTF-8 character).
//! 3. Units are packed greedily into chunks. A top-level heading starts a new
//!    chunk, unless the chunk so far holds only headings or is under
//!    `min_tokens`, and is never left as the last line of a chunk when what
//!    follows it doesn't fit.
//! 4. A chunk that continues a section starts with up to `overlap_tokens` of
//!    the previous chunk's end, cut at a line or sentence start where
//!    possible, else at a word start outside code and tables. A chunk that
//!    opens a section gets no overlap (the heading is the context), and
//!    overlap never reaches back across a heading.
//!
//! A chunk's heading path is the common prefix of the paths of its own units
//! (overlap excluded), so a chunk that merged two sibling sections is filed
//! under their parent; a chunk opening with `## Projects` then `### Search`
//! and its text is filed under `… > Projects > Search`.
//!
//! **What `text` is.** [`Chunk::text`] is the exact source slice
//! `source[byte_range]`, except that a piece of a split fenced code block
//! re-opens (and closes) its fence, and a piece of a split table repeats the
//! table's header rows, so every chunk still renders as what it is. Those
//! repeated lines count toward the budget (a block whose repeated lines
//! would take more than half of it is split without them);
//! [`Chunk::source_text`] is always the exact slice. The heading path is
//! *not* in `text` (ranges stay honest); [`Chunk::embedding_text`] prefixes
//! it for embedding, where the context helps retrieval.

mod blocks;
mod pack;
mod split;

#[cfg(test)]
mod baseline_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::ops::{Add, Range, Sub};

use crate::document::ParsedDocument;

/// Default budget of [`ChunkConfig::default`], in estimated tokens: well
/// inside every embedding model's input limit the service targets.
pub const DEFAULT_MAX_TOKENS: usize = 512;

/// Default overlap of [`ChunkConfig::default`], in estimated tokens.
pub const DEFAULT_OVERLAP_TOKENS: usize = 64;

/// Default minimum of [`ChunkConfig::default`], in estimated tokens.
pub const DEFAULT_MIN_TOKENS: usize = 64;

/// Separator of [`Chunk::heading_path_display`].
pub const HEADING_PATH_SEPARATOR: &str = " > ";

/// The headings of a displayed heading path (`A > B > C`), the inverse of
/// [`Chunk::heading_path_display`]; empty parts are dropped.
#[must_use]
pub fn split_heading_path(display: &str) -> Vec<String> {
    display
        .split(HEADING_PATH_SEPARATOR)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Estimates how many model tokens `text` costs, without a tokenizer.
///
/// One token per 4 ASCII bytes (rounded up), plus one token per non-ASCII
/// character. Four characters per token is the usual rule of thumb for
/// English with BPE tokenizers (OpenAI's `cl100k`); counting every non-ASCII
/// character as a whole token keeps CJK, Arabic and emoji text, which such
/// tokenizers spend one or more tokens per character on, from being
/// underestimated. The estimate errs high, the safe side for a budget.
/// Concatenating texts never costs more than the sum of their estimates.
#[must_use]
pub fn estimate_tokens(text: &str) -> usize {
    TokenCount::of(text).tokens()
}

/// The additive counts behind [`estimate_tokens`], so the cost of a
/// concatenation can be summed instead of rescanned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenCount {
    ascii_bytes: usize,
    other_chars: usize,
}

impl TokenCount {
    /// Counts of `text`.
    pub(crate) fn of(text: &str) -> Self {
        let bytes = text.as_bytes();
        let ascii_bytes = bytes.iter().filter(|b| b.is_ascii()).count();
        let continuation = bytes.iter().filter(|&&b| b & 0xC0 == 0x80).count();
        Self {
            ascii_bytes,
            other_chars: bytes.len() - ascii_bytes - continuation,
        }
    }

    /// Counts of one character.
    pub(crate) fn of_char(ch: char) -> Self {
        if ch.is_ascii() {
            Self {
                ascii_bytes: 1,
                other_chars: 0,
            }
        } else {
            Self {
                ascii_bytes: 0,
                other_chars: 1,
            }
        }
    }

    /// The estimate (see [`estimate_tokens`]).
    pub(crate) fn tokens(self) -> usize {
        self.ascii_bytes.div_ceil(4) + self.other_chars
    }
}

impl Add for TokenCount {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            ascii_bytes: self.ascii_bytes + other.ascii_bytes,
            other_chars: self.other_chars + other.other_chars,
        }
    }
}

impl Sub for TokenCount {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self {
            ascii_bytes: self.ascii_bytes - other.ascii_bytes,
            other_chars: self.other_chars - other.other_chars,
        }
    }
}

/// How big chunks may be and how they overlap, in estimated tokens
/// ([`estimate_tokens`]).
///
/// ```
/// use portfolio_core::ingest::chunk::{chunk_markdown, ChunkConfig};
///
/// let config = ChunkConfig::new(200)?.with_overlap(20)?.with_min_tokens(30)?;
/// let chunks = chunk_markdown("# Acme\n\nWe build search.\n", &config);
/// assert_eq!(chunks[0].heading_path, ["Acme"]);
/// assert!(chunks.iter().all(|c| c.tokens <= config.max_tokens()));
/// # Ok::<(), portfolio_core::ingest::chunk::ChunkConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    max_tokens: usize,
    overlap_tokens: usize,
    min_tokens: usize,
}

impl ChunkConfig {
    /// A budget of `max_tokens` per chunk (a hard limit: no chunk's
    /// [`Chunk::tokens`] exceeds it), no overlap, no minimum.
    pub fn new(max_tokens: usize) -> Result<Self, ChunkConfigError> {
        if max_tokens == 0 {
            return Err(ConfigProblem::ZeroMax.into());
        }
        Ok(Self {
            max_tokens,
            overlap_tokens: 0,
            min_tokens: 0,
        })
    }

    /// Up to `overlap_tokens` of the previous chunk's end repeated at the
    /// start of a chunk that continues the same section; part of the budget.
    /// Must be smaller than `max_tokens`.
    pub fn with_overlap(self, overlap_tokens: usize) -> Result<Self, ChunkConfigError> {
        if overlap_tokens >= self.max_tokens {
            return Err(ConfigProblem::OverlapTooLarge {
                overlap: overlap_tokens,
                max: self.max_tokens,
            }
            .into());
        }
        Ok(Self {
            overlap_tokens,
            ..self
        })
    }

    /// A chunk smaller than `min_tokens` is not ended by a heading: the next
    /// section joins it (if it fits), so short sections don't become tiny
    /// chunks. Must not exceed `max_tokens`.
    pub fn with_min_tokens(self, min_tokens: usize) -> Result<Self, ChunkConfigError> {
        if min_tokens > self.max_tokens {
            return Err(ConfigProblem::MinTooLarge {
                min: min_tokens,
                max: self.max_tokens,
            }
            .into());
        }
        Ok(Self { min_tokens, ..self })
    }

    /// The hard per-chunk limit.
    #[must_use]
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The overlap between consecutive chunks of one section.
    #[must_use]
    pub fn overlap_tokens(&self) -> usize {
        self.overlap_tokens
    }

    /// The size under which a heading doesn't end a chunk.
    #[must_use]
    pub fn min_tokens(&self) -> usize {
        self.min_tokens
    }
}

impl Default for ChunkConfig {
    /// [`DEFAULT_MAX_TOKENS`], [`DEFAULT_OVERLAP_TOKENS`], [`DEFAULT_MIN_TOKENS`].
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            overlap_tokens: DEFAULT_OVERLAP_TOKENS,
            min_tokens: DEFAULT_MIN_TOKENS,
        }
    }
}

/// An invalid [`ChunkConfig`] setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ChunkConfigError(#[from] ConfigProblem);

/// The kinds of [`ChunkConfigError`], private so messages can change freely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ConfigProblem {
    #[error("max_tokens must be at least 1")]
    ZeroMax,
    #[error("overlap of {overlap} tokens must be smaller than max_tokens ({max})")]
    OverlapTooLarge { overlap: usize, max: usize },
    #[error("min_tokens ({min}) must not exceed max_tokens ({max})")]
    MinTooLarge { min: usize, max: usize },
}

/// One piece of a document, ready to embed and store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chunk {
    /// Position in the document's chunk list, from 0.
    pub index: u32,
    /// The markdown of the chunk (see the module docs for the repeated fence
    /// and table-header lines a split block gets).
    pub text: String,
    /// Byte range in the original source (front matter and BOM included).
    pub byte_range: Range<usize>,
    /// 1-based line of the source where the chunk starts.
    pub start_line: usize,
    /// 1-based line of the source where the chunk ends (inclusive).
    pub end_line: usize,
    /// Texts of the enclosing headings, outermost first (`["Acme", "Projects"]`).
    pub heading_path: Vec<String>,
    /// [`estimate_tokens`] of [`Self::text`]; never above the configured budget.
    pub tokens: usize,
    /// Where `source[byte_range]` sits inside `text`.
    #[serde(skip)]
    source_in_text: Range<usize>,
}

impl Chunk {
    /// Exactly `source[byte_range]`: `text` without repeated fence or header lines.
    #[must_use]
    pub fn source_text(&self) -> &str {
        self.text.get(self.source_in_text.clone()).unwrap_or("")
    }

    /// The heading path joined with ` > ` (`Acme > Projects > Search`).
    #[must_use]
    pub fn heading_path_display(&self) -> String {
        self.heading_path.join(HEADING_PATH_SEPARATOR)
    }

    /// The text to embed: the heading path on its own line, a blank line,
    /// then [`Self::text`] (just `text` when there is no heading).
    #[must_use]
    pub fn embedding_text(&self) -> String {
        if self.heading_path.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n\n{}", self.heading_path_display(), self.text)
        }
    }
}

/// Chunks a markdown text whose first byte is line 1 (no front matter is
/// recognised: use [`chunk_document`] for stored documents).
///
/// Empty or whitespace-only text gives no chunks.
#[must_use]
pub fn chunk_markdown(markdown: &str, config: &ChunkConfig) -> Vec<Chunk> {
    chunk_body(markdown, 0, 1, config)
}

/// Chunks the body of a parsed document; ranges and lines point into the
/// whole stored source, front matter included.
#[must_use]
pub fn chunk_document(document: &ParsedDocument<'_>, config: &ChunkConfig) -> Vec<Chunk> {
    chunk_body(
        document.body,
        document.body_offset,
        document.body_line,
        config,
    )
}

/// Chunks `body`, which starts at byte `offset` and line `first_line` of its source.
fn chunk_body(body: &str, offset: usize, first_line: usize, config: &ChunkConfig) -> Vec<Chunk> {
    if body.trim().is_empty() {
        return Vec::new();
    }
    let outline = blocks::outline(body);
    let contexts = blocks::Contexts::new(body, &outline, config.max_tokens);
    let units = split::units(body, &outline, &contexts, config.max_tokens);
    pack::pack(
        &pack::Source {
            body,
            offset,
            first_line,
        },
        &units,
        &contexts,
        config,
    )
}

/// Chunk `index` of `source[range]` (relative to the body) with its context lines.
fn build_chunk(
    source: &pack::Source<'_>,
    contexts: &blocks::Contexts,
    index: u32,
    range: Range<usize>,
    heading_path: Vec<String>,
    lines: (usize, usize),
) -> Chunk {
    let (prefix, suffix) = contexts.wrap(source.body, range.clone());
    let slice = &source.body[range.clone()];
    let mut text = String::with_capacity(prefix.len() + slice.len() + suffix.len());
    text.push_str(prefix);
    text.push_str(slice);
    text.push_str(suffix);
    let tokens = estimate_tokens(&text);
    Chunk {
        index,
        byte_range: source.offset + range.start..source.offset + range.end,
        start_line: lines.0,
        end_line: lines.1,
        heading_path,
        tokens,
        source_in_text: prefix.len()..prefix.len() + slice.len(),
        text,
    }
}
