//! The vector index: the `VectorIndex` trait both implementations (Vectorize, D1-exact) obey,
//! its types, the platform limits, and every pure decision about vectors (validation, batching,
//! the f32 BLOB format, exact cosine top-k, metadata filters).
//!
//! Owns what may be sent to an index and how exact search ranks; must never perform I/O
//! (the adapters in `crates/worker/src/store/` do) and never read a clock.
//!
//! **Tags** are stored in every vector's metadata (so a match carries them) but are *not*
//! filterable here: Vectorize filters only scalar metadata (string, number, boolean) and caps a
//! metadata index at 64 bytes per vector, so a tag list cannot be an indexed field. Tag matching
//! is the tag retrieval's job (D1 `chunks.tags`, merged by `fusion`); callers that must restrict
//! vector matches to tags post-filter with [`retain_matches_with_any_tag`] and accept the lower
//! recall (fewer than `top_k` matches may remain).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Platform limits.
// Vectorize: https://developers.cloudflare.com/vectorize/platform/limits/
// D1:        https://developers.cloudflare.com/d1/platform/limits/
// ---------------------------------------------------------------------------------------------

/// Dimensions of our index (`wrangler vectorize create … --dimensions 1536 --metric cosine`);
/// also Vectorize's maximum dimensions per vector.
pub const INDEX_DIMENSIONS: usize = 1536;
/// Vectorize: "Maximum upsert batch size (per batch): 1000 (Workers) / 5000 (HTTP API)".
pub const VECTORIZE_MAX_UPSERT_BATCH: usize = 1000;
/// Vectorize: "Maximum returned results (topK) without values and metadata: 100".
pub const VECTORIZE_MAX_TOP_K: usize = 100;
/// Vectorize: maximum topK with `returnValues: true` or `returnMetadata: "all"`. The limits page
/// listed 20 for early V2 indexes; it was raised to 50, which is what our indexes get.
pub const VECTORIZE_MAX_TOP_K_WITH_METADATA: usize = 50;
/// Vectorize: "Maximum vector ID length: 64 bytes".
pub const VECTORIZE_MAX_ID_BYTES: usize = 64;
/// Vectorize: "Metadata per vector: 10KiB" (measured as compact JSON).
pub const VECTORIZE_MAX_METADATA_BYTES: usize = 10 * 1024;
/// Vectorize metadata filtering: "the filter object … must be less than 2048 bytes" (compact JSON).
/// https://developers.cloudflare.com/vectorize/reference/metadata-filtering/
pub const VECTORIZE_MAX_FILTER_BYTES: usize = 2048;
/// D1: "Maximum number of bound parameters per query: 100".
pub const D1_MAX_BOUND_PARAMS: usize = 100;
/// D1: "Maximum SQL statement length: 100,000 bytes (100 KB)". We count bound BLOB/TEXT bytes
/// too, so a statement stays under the bound however D1 measures it.
pub const D1_MAX_STATEMENT_BYTES: usize = 100_000;

// ---------------------------------------------------------------------------------------------
// Types.
// ---------------------------------------------------------------------------------------------

/// What every vector carries besides its values. Serialised as the Vectorize metadata object
/// (`company_id` omitted when unknown, so a company filter never matches it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorMetadata {
    /// `documents.id` of the chunk's document.
    pub document_id: i64,
    /// `companies.id`, when the document belongs to a company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    /// Generation of the chunk (`chunks.version`).
    pub version: u64,
    /// The chunk's tags; stored, returned, never filtered by the index (see the module docs).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One vector with its id (`<document_id>:<version>:<chunk_index>`) and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// Vector id, at most [`VECTORIZE_MAX_ID_BYTES`] bytes.
    pub id: String,
    /// The embedding; exactly the index's dimensions.
    pub values: Vec<f32>,
    /// Document, company, generation and tags of the chunk.
    pub metadata: VectorMetadata,
}

/// A nearest-neighbour query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorQuery {
    /// The query embedding.
    pub vector: Vec<f32>,
    /// How many matches to return, at most [`max_top_k`] for `return_metadata`.
    pub top_k: usize,
    /// Restricts matches by scalar metadata.
    #[serde(default)]
    pub filter: Option<MetadataFilter>,
    /// Whether matches carry their metadata (Vectorize `returnMetadata: "all"`).
    #[serde(default)]
    pub return_metadata: bool,
}

/// One match, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorMatch {
    /// Vector id.
    pub id: String,
    /// Cosine similarity in [-1, 1]; higher is closer.
    pub score: f32,
    /// The vector's metadata, when the query asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<VectorMetadata>,
}

/// What an index reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// `d1` or `vectorize`.
    pub implementation: String,
    /// Dimensions of every vector in the index.
    pub dimensions: usize,
    /// Vectors stored (for Vectorize: as of the last processed mutation).
    pub vector_count: u64,
    /// Vectorize: the last mutation applied; `None` for the synchronous D1 index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_up_to_mutation: Option<String>,
}

/// What a mutation did. Vectorize applies mutations asynchronously: a query right after an
/// upsert may not see it yet; `mutation_ids` (one per platform call) let an operator compare
/// with [`IndexInfo::processed_up_to_mutation`]. The D1 index is synchronous and returns none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationReceipt {
    /// Vectors (or ids) submitted.
    pub count: usize,
    /// One id per platform call, in call order.
    pub mutation_ids: Vec<String>,
}

/// Scalar metadata filter, the subset of Vectorize's filter language our metadata needs:
/// equality or `$in` on `company_id`, `document_id`, `version`. Several fields are ANDed.
/// Serialises to Vectorize's JSON (`{"company_id": {"$eq": 3}}`); also reads a bare number as
/// equality (`{"company_id": 3}`), as Vectorize does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataFilter {
    /// Restricts to vectors of these companies (vectors without a company never match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<FieldMatch>,
    /// Restricts to vectors of these documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<FieldMatch>,
    /// Restricts to these generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<FieldMatch>,
}

/// A condition on one integer metadata field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FieldMatchRepr", into = "FieldMatchRepr")]
pub enum FieldMatch {
    /// `{"$eq": n}`.
    Eq(i64),
    /// `{"$in": [n, …]}` (non-empty).
    In(Vec<i64>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum FieldMatchRepr {
    Bare(i64),
    Eq {
        #[serde(rename = "$eq")]
        eq: i64,
    },
    In {
        #[serde(rename = "$in")]
        values: Vec<i64>,
    },
}

impl TryFrom<FieldMatchRepr> for FieldMatch {
    type Error = String;
    fn try_from(repr: FieldMatchRepr) -> Result<Self, String> {
        match repr {
            FieldMatchRepr::Bare(v) | FieldMatchRepr::Eq { eq: v } => Ok(Self::Eq(v)),
            FieldMatchRepr::In { values } if values.is_empty() => {
                Err("$in needs at least one value".into())
            }
            FieldMatchRepr::In { values } => Ok(Self::In(values)),
        }
    }
}

impl From<FieldMatch> for FieldMatchRepr {
    fn from(m: FieldMatch) -> Self {
        match m {
            FieldMatch::Eq(eq) => Self::Eq { eq },
            FieldMatch::In(values) => Self::In { values },
        }
    }
}

impl FieldMatch {
    /// Whether `value` satisfies the condition (`None`, an absent field, never does).
    #[must_use]
    pub fn accepts(&self, value: Option<i64>) -> bool {
        match (self, value) {
            (_, None) => false,
            (Self::Eq(want), Some(v)) => *want == v,
            (Self::In(set), Some(v)) => set.contains(&v),
        }
    }
}

impl MetadataFilter {
    /// Filter on one company.
    #[must_use]
    pub fn company(company_id: i64) -> Self {
        Self {
            company_id: Some(FieldMatch::Eq(company_id)),
            ..Self::default()
        }
    }

    /// True when no field is constrained.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.company_id.is_none() && self.document_id.is_none() && self.version.is_none()
    }

    /// Evaluates the filter on `metadata` the way Vectorize does (fields ANDed).
    #[must_use]
    pub fn matches(&self, metadata: &VectorMetadata) -> bool {
        let version = i64::try_from(metadata.version).ok();
        self.company_id
            .as_ref()
            .is_none_or(|m| m.accepts(metadata.company_id))
            && self
                .document_id
                .as_ref()
                .is_none_or(|m| m.accepts(Some(metadata.document_id)))
            && self.version.as_ref().is_none_or(|m| m.accepts(version))
    }
}

/// Keeps the matches whose metadata carries at least one of `tags` (case-insensitive); a match
/// without metadata is dropped. Post-filtering: the result may hold fewer than `top_k` matches.
pub fn retain_matches_with_any_tag(matches: &mut Vec<VectorMatch>, tags: &[String]) {
    matches.retain(|m| {
        m.metadata.as_ref().is_some_and(|md| {
            md.tags
                .iter()
                .any(|t| tags.iter().any(|want| want.eq_ignore_ascii_case(t)))
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// Every way a vector index call can fail. Caller errors are caught before any I/O.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorIndexError {
    /// A vector's length differs from the index's dimensions.
    #[error("vector {} has {actual} dimensions; the index has {expected}", id.as_deref().unwrap_or("(query)"))]
    DimensionMismatch {
        /// The record's id (`None` for a query vector).
        id: Option<String>,
        /// The index's dimensions.
        expected: usize,
        /// The vector's length.
        actual: usize,
    },
    /// `top_k` is 0 or above the platform limit.
    #[error("top_k {top_k} is out of range: 1..={max}{}", if *with_metadata { " when metadata is returned" } else { "" })]
    TopKOutOfRange {
        /// Requested value.
        top_k: usize,
        /// Largest accepted value.
        max: usize,
        /// Whether the lower limit (metadata returned) applied.
        with_metadata: bool,
    },
    /// A vector id is empty or too long.
    #[error("invalid vector id {id:?}: {reason}")]
    InvalidId {
        /// The id (possibly truncated by the caller's display).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A vector has non-finite values or no length (cosine is undefined).
    #[error("invalid vector {}: {reason}", id.as_deref().unwrap_or("(query)"))]
    InvalidVector {
        /// The record's id (`None` for a query vector).
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A vector's metadata exceeds the platform limit.
    #[error("metadata of vector {id} is {bytes} bytes; the limit is {max}")]
    MetadataTooLarge {
        /// The record's id.
        id: String,
        /// Its metadata as compact JSON.
        bytes: usize,
        /// [`VECTORIZE_MAX_METADATA_BYTES`].
        max: usize,
    },
    /// A filter the index cannot evaluate.
    #[error("invalid filter: {reason}")]
    InvalidFilter {
        /// What is wrong.
        reason: String,
    },
    /// A stored vector is not `dimensions × 4` bytes of little-endian f32.
    #[error("stored vector {id} is {bytes} bytes; expected {expected_bytes}")]
    CorruptStoredVector {
        /// The vector's id.
        id: String,
        /// Bytes found.
        bytes: usize,
        /// Bytes expected.
        expected_bytes: usize,
    },
    /// The backend could not be reached or failed transiently; retrying may help.
    #[error("{backend} {operation} failed (retryable): {message}")]
    Unavailable {
        /// `vectorize` or `d1`.
        backend: &'static str,
        /// The method called.
        operation: &'static str,
        /// What the platform said.
        message: String,
    },
    /// The backend refused the request; retrying the same call cannot help.
    #[error("{backend} rejected {operation}: {message}")]
    Rejected {
        /// `vectorize` or `d1`.
        backend: &'static str,
        /// The method called.
        operation: &'static str,
        /// What the platform said.
        message: String,
    },
    /// The backend answered with a shape it does not document.
    #[error("{backend} {operation} returned a malformed response: {reason}")]
    MalformedResponse {
        /// `vectorize` or `d1`.
        backend: &'static str,
        /// The method called.
        operation: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The configured implementation or its binding is missing.
    #[error("vector index not configured: {reason}")]
    NotConfigured {
        /// What is missing.
        reason: String,
    },
}

impl VectorIndexError {
    /// Whether the same call may succeed later (decides queue retry vs ack).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Whether the caller's input was at fault (an HTTP 400), as opposed to the platform.
    #[must_use]
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Self::DimensionMismatch { .. }
                | Self::TopKOutOfRange { .. }
                | Self::InvalidId { .. }
                | Self::InvalidVector { .. }
                | Self::MetadataTooLarge { .. }
                | Self::InvalidFilter { .. }
        )
    }

    /// Stable snake_case code for the API's error envelope.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::DimensionMismatch { .. } => "dimension_mismatch",
            Self::TopKOutOfRange { .. } => "top_k_out_of_range",
            Self::InvalidId { .. } => "invalid_vector_id",
            Self::InvalidVector { .. } => "invalid_vector",
            Self::MetadataTooLarge { .. } => "metadata_too_large",
            Self::InvalidFilter { .. } => "invalid_filter",
            Self::CorruptStoredVector { .. } => "corrupt_stored_vector",
            Self::Unavailable { .. } => "vector_index_unavailable",
            Self::Rejected { .. } => "vector_index_rejected",
            Self::MalformedResponse { .. } => "vector_index_malformed_response",
            Self::NotConfigured { .. } => "vector_index_not_configured",
        }
    }
}

/// Classifies a Vectorize rejection by the code it carries. Vectorize errors read
/// `VECTOR_<OP>_ERROR (code = 40xxx): <text>`; a `4xxxx` code means the request was invalid
/// (permanent), anything else (5xxxx, no code, a network failure) is treated as transient.
#[must_use]
pub fn classify_vectorize_failure(operation: &'static str, message: String) -> VectorIndexError {
    let code = message
        .split_once("code = ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|digits| !digits.is_empty());
    match code {
        Some(c) if c.starts_with('4') => VectorIndexError::Rejected {
            backend: "vectorize",
            operation,
            message,
        },
        _ => VectorIndexError::Unavailable {
            backend: "vectorize",
            operation,
            message,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The trait.
// ---------------------------------------------------------------------------------------------

/// A nearest-neighbour index over chunk embeddings. No `Send` bound: wasm futures are `!Send`.
///
/// Implementations validate with [`validate_record`]/[`validate_query`] before any I/O, so the
/// same input fails the same way on both.
#[allow(async_fn_in_trait)]
pub trait VectorIndex {
    /// `d1` or `vectorize`.
    fn implementation(&self) -> &'static str;
    /// Inserts or replaces vectors by id.
    async fn upsert(&self, records: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError>;
    /// The `top_k` closest vectors by cosine similarity, best first (ties by id).
    async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError>;
    /// The stored vectors among `ids` (missing ids are skipped).
    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError>;
    /// Deletes vectors by id (missing ids are not an error).
    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError>;
    /// Dimensions and size of the index.
    async fn describe(&self) -> Result<IndexInfo, VectorIndexError>;
}

// ---------------------------------------------------------------------------------------------
// Validation and batching.
// ---------------------------------------------------------------------------------------------

/// Largest `top_k` the platform accepts for a query that does / does not return metadata.
#[must_use]
pub fn max_top_k(return_metadata: bool) -> usize {
    if return_metadata {
        VECTORIZE_MAX_TOP_K_WITH_METADATA
    } else {
        VECTORIZE_MAX_TOP_K
    }
}

fn validate_values(
    id: Option<&str>,
    values: &[f32],
    dimensions: usize,
) -> Result<(), VectorIndexError> {
    if values.len() != dimensions {
        return Err(VectorIndexError::DimensionMismatch {
            id: id.map(str::to_owned),
            expected: dimensions,
            actual: values.len(),
        });
    }
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(VectorIndexError::InvalidVector {
            id: id.map(str::to_owned),
            reason: format!("value {pos} is not a finite number"),
        });
    }
    if values.iter().all(|v| *v == 0.0) {
        return Err(VectorIndexError::InvalidVector {
            id: id.map(str::to_owned),
            reason: "all values are zero (cosine similarity is undefined)".into(),
        });
    }
    Ok(())
}

/// Checks a vector id against Vectorize's rules (also applied by the D1 index).
///
/// # Errors
/// `InvalidId` when empty or longer than [`VECTORIZE_MAX_ID_BYTES`] bytes.
pub fn validate_id(id: &str) -> Result<(), VectorIndexError> {
    if id.is_empty() {
        return Err(VectorIndexError::InvalidId {
            id: id.to_owned(),
            reason: "empty".into(),
        });
    }
    if id.len() > VECTORIZE_MAX_ID_BYTES {
        return Err(VectorIndexError::InvalidId {
            id: id.chars().take(80).collect(),
            reason: format!("{} bytes; the limit is {VECTORIZE_MAX_ID_BYTES}", id.len()),
        });
    }
    Ok(())
}

/// Checks one record: id, dimensions, finite non-zero values, metadata size.
///
/// # Errors
/// The first problem found, as a caller error.
pub fn validate_record(record: &VectorRecord, dimensions: usize) -> Result<(), VectorIndexError> {
    validate_id(&record.id)?;
    validate_values(Some(&record.id), &record.values, dimensions)?;
    let bytes = serde_json::to_vec(&record.metadata)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if bytes > VECTORIZE_MAX_METADATA_BYTES {
        return Err(VectorIndexError::MetadataTooLarge {
            id: record.id.clone(),
            bytes,
            max: VECTORIZE_MAX_METADATA_BYTES,
        });
    }
    Ok(())
}

/// Checks a query: dimensions, finite non-zero vector, `top_k` within the platform limit for
/// its `return_metadata`, and a filter Vectorize would accept.
///
/// # Errors
/// The first problem found, as a caller error.
pub fn validate_query(query: &VectorQuery, dimensions: usize) -> Result<(), VectorIndexError> {
    validate_values(None, &query.vector, dimensions)?;
    let max = max_top_k(query.return_metadata);
    if query.top_k == 0 || query.top_k > max {
        return Err(VectorIndexError::TopKOutOfRange {
            top_k: query.top_k,
            max,
            with_metadata: query.return_metadata,
        });
    }
    if let Some(filter) = &query.filter {
        let bytes = serde_json::to_vec(filter)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if bytes > VECTORIZE_MAX_FILTER_BYTES {
            return Err(VectorIndexError::InvalidFilter {
                reason: format!("{bytes} bytes as JSON; the limit is {VECTORIZE_MAX_FILTER_BYTES}"),
            });
        }
    }
    Ok(())
}

/// Splits `count` items into consecutive ranges of at most `max_per_batch` (≥ 1).
#[must_use]
pub fn plan_upsert_batches(count: usize, max_per_batch: usize) -> Vec<Range<usize>> {
    let size = max_per_batch.max(1);
    (0..count)
        .step_by(size)
        .map(|start| start..(start + size).min(count))
        .collect()
}

/// Groups rows into D1 statements: each statement binds at most [`D1_MAX_BOUND_PARAMS`]
/// parameters and carries at most [`D1_MAX_STATEMENT_BYTES`] (SQL text of `sql_bytes(rows)` plus
/// the rows' bound bytes). `row_bytes[i]` is row `i`'s bound size.
///
/// # Errors
/// `InvalidVector` when a single row cannot fit in one statement.
pub fn plan_d1_statements(
    row_bytes: &[usize],
    params_per_row: usize,
    sql_bytes: impl Fn(usize) -> usize,
) -> Result<Vec<Range<usize>>, VectorIndexError> {
    let max_rows = (D1_MAX_BOUND_PARAMS / params_per_row.max(1)).max(1);
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &row) in row_bytes.iter().enumerate() {
        let rows_if_added = i - start + 1;
        let fits = rows_if_added <= max_rows
            && bytes + row + sql_bytes(rows_if_added) <= D1_MAX_STATEMENT_BYTES;
        if !fits {
            if i == start {
                return Err(VectorIndexError::InvalidVector {
                    id: None,
                    reason: format!(
                        "row {i} needs {} bytes, more than one D1 statement may carry",
                        row + sql_bytes(1)
                    ),
                });
            }
            batches.push(start..i);
            start = i;
            bytes = 0;
            if row + sql_bytes(1) > D1_MAX_STATEMENT_BYTES {
                return Err(VectorIndexError::InvalidVector {
                    id: None,
                    reason: format!(
                        "row {i} needs {} bytes, more than one D1 statement may carry",
                        row + sql_bytes(1)
                    ),
                });
            }
        }
        bytes += row;
    }
    if start < row_bytes.len() {
        batches.push(start..row_bytes.len());
    }
    Ok(batches)
}

// ---------------------------------------------------------------------------------------------
// The stored format of the D1 index.
// ---------------------------------------------------------------------------------------------

/// Encodes a vector as little-endian f32 bytes (the `vector_index.embedding` BLOB).
#[must_use]
pub fn encode_f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes a `vector_index.embedding` BLOB of `dimensions` little-endian f32 values.
///
/// # Errors
/// `CorruptStoredVector` when the length is not `dimensions × 4`.
pub fn decode_f32_le(
    id: &str,
    bytes: &[u8],
    dimensions: usize,
) -> Result<Vec<f32>, VectorIndexError> {
    if bytes.len() != dimensions * 4 {
        return Err(VectorIndexError::CorruptStoredVector {
            id: id.to_owned(),
            bytes: bytes.len(),
            expected_bytes: dimensions * 4,
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Decodes the same BLOB read as SQLite `hex(embedding)` (uppercase or lowercase hex).
/// The D1 index reads vectors this way: a hex string crosses from D1 into the Worker far
/// faster than a BLOB, which D1 hands over as an array of numbers (one JS number per byte).
///
/// # Errors
/// `CorruptStoredVector` when the text is not `dimensions × 8` hex digits.
pub fn decode_f32_le_hex(
    id: &str,
    hex: &str,
    dimensions: usize,
) -> Result<Vec<f32>, VectorIndexError> {
    let corrupt = || VectorIndexError::CorruptStoredVector {
        id: id.to_owned(),
        bytes: hex.len() / 2,
        expected_bytes: dimensions * 4,
    };
    if hex.len() != dimensions * 8 {
        return Err(corrupt());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut values = Vec::with_capacity(dimensions);
    for word in hex.as_bytes().chunks_exact(8) {
        let mut bytes = [0u8; 4];
        for (byte, pair) in bytes.iter_mut().zip(word.chunks_exact(2)) {
            *byte = (nibble(pair[0]).ok_or_else(corrupt)? << 4)
                | nibble(pair[1]).ok_or_else(corrupt)?;
        }
        values.push(f32::from_le_bytes(bytes));
    }
    Ok(values)
}

// ---------------------------------------------------------------------------------------------
// Exact search.
// ---------------------------------------------------------------------------------------------

/// Euclidean norm.
#[must_use]
pub fn norm(values: &[f32]) -> f32 {
    values.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// Cosine similarity of `query` (with its precomputed norm) and `candidate`; 0 when either has
/// no length, so a degenerate stored vector ranks last rather than poisoning the order.
#[must_use]
pub fn cosine_with_norm(query: &[f32], query_norm: f32, candidate: &[f32]) -> f32 {
    let (mut dot, mut sq) = (0.0_f32, 0.0_f32);
    for (q, c) in query.iter().zip(candidate) {
        dot += q * c;
        sq += c * c;
    }
    let denom = query_norm * sq.sqrt();
    if denom > 0.0 && denom.is_finite() {
        dot / denom
    } else {
        0.0
    }
}

/// Cosine similarity of two vectors.
#[must_use]
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    cosine_with_norm(a, norm(a), b)
}

struct Ranked<T> {
    score: f32,
    id: String,
    item: T,
}

impl<T> Ranked<T> {
    /// `Less` when `self` ranks before `other`: higher score, then smaller id.
    fn rank_cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.id.cmp(&other.id))
    }
}
impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rank_cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank_cmp(other)
    }
}

/// Streaming exact top-k: keeps the `k` best `(id, score)` pairs seen, in O(k) memory, so the
/// D1 index can scan the table page by page. Order: score descending, then id ascending.
#[derive(Debug)]
pub struct TopK<T> {
    k: usize,
    // Max-heap by rank order: the top is the worst kept entry, evicted first.
    heap: BinaryHeap<Ranked<T>>,
}

impl<T> std::fmt::Debug for Ranked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.id, self.score)
    }
}

impl<T> TopK<T> {
    /// Keeps the best `k` entries.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1024)),
        }
    }

    /// Whether an entry with `score` and `id` would be kept (lets callers skip work).
    #[must_use]
    pub fn would_keep(&self, score: f32, id: &str) -> bool {
        if self.k == 0 || score.is_nan() {
            return false;
        }
        if self.heap.len() < self.k {
            return true;
        }
        self.heap.peek().is_none_or(|worst| {
            score > worst.score || (score == worst.score && id < worst.id.as_str())
        })
    }

    /// Offers an entry; NaN scores are ignored.
    pub fn push(&mut self, id: String, score: f32, item: T) {
        if !self.would_keep(score, &id) {
            return;
        }
        self.heap.push(Ranked { score, id, item });
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// The kept entries, best first.
    #[must_use]
    pub fn into_sorted(self) -> Vec<(String, f32, T)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| (r.id, r.score, r.item))
            .collect()
    }
}

/// Exact cosine top-k over in-memory records, filtered by metadata: the D1 index's ranking and
/// the reference the tests compare Vectorize's answers against.
#[must_use]
pub fn exact_top_k<'a>(
    query: &VectorQuery,
    records: impl IntoIterator<Item = &'a VectorRecord>,
) -> Vec<VectorMatch> {
    let query_norm = norm(&query.vector);
    let mut top = TopK::new(query.top_k);
    for record in records {
        if query
            .filter
            .as_ref()
            .is_some_and(|f| !f.matches(&record.metadata))
        {
            continue;
        }
        let score = cosine_with_norm(&query.vector, query_norm, &record.values);
        if top.would_keep(score, &record.id) {
            top.push(record.id.clone(), score, &record.metadata);
        }
    }
    top.into_sorted()
        .into_iter()
        .map(|(id, score, metadata)| VectorMatch {
            id,
            score,
            metadata: query.return_metadata.then(|| metadata.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(document_id: i64, company_id: Option<i64>) -> VectorMetadata {
        VectorMetadata {
            document_id,
            company_id,
            version: 1,
            tags: vec!["search".into()],
        }
    }

    fn record(id: &str, values: Vec<f32>, company: Option<i64>) -> VectorRecord {
        VectorRecord {
            id: id.into(),
            values,
            metadata: meta(1, company),
        }
    }

    fn query(vector: Vec<f32>, top_k: usize) -> VectorQuery {
        VectorQuery {
            vector,
            top_k,
            filter: None,
            return_metadata: false,
        }
    }

    #[test]
    fn blob_round_trips_and_rejects_bad_lengths() {
        let values = vec![1.5_f32, -0.25, 0.0, f32::MIN_POSITIVE];
        let bytes = encode_f32_le(&values);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..4], &1.5_f32.to_le_bytes());
        assert_eq!(decode_f32_le("a", &bytes, 4).unwrap(), values);
        let err = decode_f32_le("a", &bytes[..15], 4).unwrap_err();
        assert_eq!(
            err,
            VectorIndexError::CorruptStoredVector {
                id: "a".into(),
                bytes: 15,
                expected_bytes: 16
            }
        );
        assert!(decode_f32_le("a", &bytes, 3).is_err());
        assert!(!err.is_retryable() && !err.is_caller_error());
    }

    #[test]
    fn hex_decoding_matches_the_blob_and_rejects_bad_text() {
        let values = vec![1.5_f32, -0.25, 3.0e-7];
        let hex: String = encode_f32_le(&values)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(decode_f32_le_hex("a", &hex, 3).unwrap(), values);
        assert_eq!(
            decode_f32_le_hex("a", &hex.to_lowercase(), 3).unwrap(),
            values
        );
        assert!(decode_f32_le_hex("a", &hex[..hex.len() - 2], 3).is_err());
        let mut bad = hex.clone();
        bad.replace_range(0..1, "G");
        assert_eq!(
            decode_f32_le_hex("a", &bad, 3).unwrap_err().code(),
            "corrupt_stored_vector"
        );
    }

    #[test]
    fn cosine_is_scale_free_and_zero_for_degenerate_vectors() {
        let a = [1.0, 2.0, 3.0];
        let b = [2.0, 4.0, 6.0];
        assert!((cosine_similarity(&a, &b) - 1.0).abs() < 1e-6);
        assert!((cosine_similarity(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-6);
        assert!((cosine_similarity(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
    }

    #[test]
    fn top_k_orders_by_score_then_id() {
        let records = vec![
            record("c", vec![1.0, 0.0], None),
            record("a", vec![1.0, 0.0], None),
            record("b", vec![0.0, 1.0], None),
            record("d", vec![1.0, 1.0], None),
        ];
        let got = exact_top_k(&query(vec![1.0, 0.0], 3), &records);
        let ids: Vec<_> = got.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"]);
        assert!(got.iter().all(|m| m.metadata.is_none()));
        assert!(exact_top_k(&query(vec![1.0, 0.0], 0), &records).is_empty());
    }

    #[test]
    fn filters_restrict_matches_and_metadata_is_returned_on_request() {
        let records = vec![
            record("x", vec![1.0, 0.0], Some(7)),
            record("y", vec![1.0, 0.1], Some(8)),
            record("z", vec![1.0, 0.2], None),
        ];
        let mut q = query(vec![1.0, 0.0], 10);
        q.filter = Some(MetadataFilter::company(8));
        q.return_metadata = true;
        let got = exact_top_k(&q, &records);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "y");
        assert_eq!(got[0].metadata.as_ref().unwrap().company_id, Some(8));

        q.filter = Some(MetadataFilter {
            company_id: Some(FieldMatch::In(vec![7, 8])),
            ..MetadataFilter::default()
        });
        let ids: Vec<_> = exact_top_k(&q, &records)
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["x", "y"]);
    }

    #[test]
    fn filter_evaluation_table() {
        let m = VectorMetadata {
            document_id: 5,
            company_id: Some(2),
            version: 3,
            tags: vec![],
        };
        let cases: [(MetadataFilter, bool); 7] = [
            (MetadataFilter::default(), true),
            (MetadataFilter::company(2), true),
            (MetadataFilter::company(3), false),
            (
                MetadataFilter {
                    document_id: Some(FieldMatch::In(vec![4, 5])),
                    version: Some(FieldMatch::Eq(3)),
                    ..MetadataFilter::default()
                },
                true,
            ),
            (
                MetadataFilter {
                    document_id: Some(FieldMatch::Eq(5)),
                    version: Some(FieldMatch::Eq(4)),
                    ..MetadataFilter::default()
                },
                false,
            ),
            (
                MetadataFilter {
                    version: Some(FieldMatch::In(vec![1, 2])),
                    ..MetadataFilter::default()
                },
                false,
            ),
            (
                MetadataFilter {
                    company_id: Some(FieldMatch::Eq(2)),
                    document_id: Some(FieldMatch::Eq(5)),
                    version: Some(FieldMatch::Eq(3)),
                },
                true,
            ),
        ];
        for (filter, want) in cases {
            assert_eq!(filter.matches(&m), want, "{filter:?}");
        }
        let no_company = VectorMetadata {
            company_id: None,
            ..m
        };
        assert!(!MetadataFilter::company(2).matches(&no_company));
    }

    #[test]
    fn filter_json_is_vectorize_shaped_and_bare_numbers_mean_equality() {
        let f = MetadataFilter {
            company_id: Some(FieldMatch::Eq(3)),
            document_id: Some(FieldMatch::In(vec![1, 2])),
            version: None,
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"company_id": {"$eq": 3}, "document_id": {"$in": [1, 2]}})
        );
        let bare: MetadataFilter = serde_json::from_str(r#"{"company_id": 3}"#).unwrap();
        assert_eq!(bare, MetadataFilter::company(3));
        let back: MetadataFilter =
            serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        assert!(serde_json::from_str::<MetadataFilter>(r#"{"company_id": {"$in": []}}"#).is_err());
        assert!(serde_json::from_str::<MetadataFilter>(r#"{"tags": "x"}"#).is_err());
        assert!(serde_json::from_str::<MetadataFilter>(r#"{"company_id": {"$gt": 1}}"#).is_err());
    }

    #[test]
    fn metadata_json_omits_unknown_company() {
        let json = serde_json::to_value(meta(4, None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"document_id": 4, "version": 1, "tags": ["search"]})
        );
    }

    #[test]
    fn query_validation_enforces_platform_limits() {
        let mut q = query(vec![1.0; 4], 100);
        assert!(validate_query(&q, 4).is_ok());
        q.return_metadata = true;
        assert_eq!(
            validate_query(&q, 4).unwrap_err(),
            VectorIndexError::TopKOutOfRange {
                top_k: 100,
                max: 50,
                with_metadata: true
            }
        );
        q.top_k = 50;
        assert!(validate_query(&q, 4).is_ok());
        q.top_k = 0;
        assert!(validate_query(&q, 4).is_err());
        q.return_metadata = false;
        q.top_k = 101;
        assert!(validate_query(&q, 4).unwrap_err().is_caller_error());

        let err = validate_query(&query(vec![1.0; 3], 1), 4).unwrap_err();
        assert_eq!(err.code(), "dimension_mismatch");
        assert!(err.to_string().contains("3 dimensions; the index has 4"));
        assert_eq!(
            validate_query(&query(vec![0.0; 4], 1), 4)
                .unwrap_err()
                .code(),
            "invalid_vector"
        );
        assert_eq!(
            validate_query(&query(vec![1.0, f32::NAN, 0.0, 0.0], 1), 4)
                .unwrap_err()
                .code(),
            "invalid_vector"
        );
        let mut big = query(vec![1.0; 4], 1);
        big.filter = Some(MetadataFilter {
            document_id: Some(FieldMatch::In((0..1000).collect())),
            ..MetadataFilter::default()
        });
        assert_eq!(
            validate_query(&big, 4).unwrap_err().code(),
            "invalid_filter"
        );
    }

    #[test]
    fn record_validation_checks_id_dimensions_and_metadata_size() {
        let ok = record("1:1:0", vec![0.5; 4], Some(1));
        assert!(validate_record(&ok, 4).is_ok());
        let long_id = record(&"x".repeat(65), vec![0.5; 4], None);
        assert_eq!(
            validate_record(&long_id, 4).unwrap_err().code(),
            "invalid_vector_id"
        );
        assert!(validate_record(&record(&"x".repeat(64), vec![0.5; 4], None), 4).is_ok());
        assert_eq!(
            validate_record(&record("", vec![0.5; 4], None), 4)
                .unwrap_err()
                .code(),
            "invalid_vector_id"
        );
        assert_eq!(
            validate_record(&ok, 5).unwrap_err(),
            VectorIndexError::DimensionMismatch {
                id: Some("1:1:0".into()),
                expected: 5,
                actual: 4
            }
        );
        let mut fat = ok.clone();
        fat.metadata.tags = vec!["t".repeat(100); 110];
        assert_eq!(
            validate_record(&fat, 4).unwrap_err().code(),
            "metadata_too_large"
        );
    }

    #[test]
    fn upsert_batches_respect_the_limit() {
        assert!(plan_upsert_batches(0, 1000).is_empty());
        assert_eq!(plan_upsert_batches(1000, 1000), vec![0..1000]);
        assert_eq!(plan_upsert_batches(1001, 1000), vec![0..1000, 1000..1001]);
        assert_eq!(plan_upsert_batches(2500, 1000).len(), 3);
        assert_eq!(plan_upsert_batches(3, 0), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn d1_statements_respect_params_and_bytes() {
        // 1536-dim vectors: 6 KiB each, 7 parameters per row → bytes bind first (14 rows fit 100 params).
        let rows = vec![6144 + 200; 40];
        let plan = plan_d1_statements(&rows, 7, |n| 120 + 20 * n).unwrap();
        assert!(plan.iter().all(|r| r.len() * 7 <= D1_MAX_BOUND_PARAMS));
        assert!(plan
            .iter()
            .all(|r| r.len() * (6144 + 200) + 120 + 20 * r.len() <= D1_MAX_STATEMENT_BYTES));
        assert_eq!(plan.iter().map(ExactSizeIterator::len).sum::<usize>(), 40);
        assert_eq!(plan[0], 0..14);
        // Small rows: the parameter bound decides.
        let plan = plan_d1_statements(&[10; 250], 1, |_| 50).unwrap();
        assert_eq!(plan, vec![0..100, 100..200, 200..250]);
        // A row that can never fit is an error, not an endless loop.
        assert!(plan_d1_statements(&[10, 200_000], 1, |_| 50).is_err());
        assert!(plan_d1_statements(&[200_000], 1, |_| 50).is_err());
    }

    #[test]
    fn vectorize_failures_are_classified_by_code() {
        let permanent = classify_vectorize_failure(
            "query",
            "VECTOR_QUERY_ERROR (code = 40006): invalid topK".into(),
        );
        assert!(!permanent.is_retryable());
        assert_eq!(permanent.code(), "vector_index_rejected");
        let transient = classify_vectorize_failure(
            "upsert",
            "VECTOR_UPSERT_ERROR (code = 50001): internal".into(),
        );
        assert!(transient.is_retryable());
        assert!(classify_vectorize_failure("describe", "network lost".into()).is_retryable());
    }

    #[test]
    fn tag_post_filter_keeps_matches_with_any_tag() {
        let mut matches = vec![
            VectorMatch {
                id: "a".into(),
                score: 0.9,
                metadata: Some(meta(1, None)),
            },
            VectorMatch {
                id: "b".into(),
                score: 0.8,
                metadata: None,
            },
        ];
        retain_matches_with_any_tag(&mut matches, &["Search".into()]);
        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].id, "a");
    }

    proptest! {
        #[test]
        fn top_k_is_the_brute_force_best_sorted(
            vectors in prop::collection::vec(prop::collection::vec(-4i8..=4, 3), 0..60),
            q in prop::collection::vec(-4i8..=4, 3),
            k in 0usize..20,
        ) {
            // Small integer coordinates make exact score ties frequent, exercising the tie-break.
            let records: Vec<VectorRecord> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| record(&format!("v{i:03}"), v.iter().map(|x| f32::from(*x)).collect(), None))
                .collect();
            let qv: Vec<f32> = q.iter().map(|x| f32::from(*x)).collect();
            let got = exact_top_k(&query(qv.clone(), k), &records);

            let mut all: Vec<(String, f32)> = records
                .iter()
                .map(|r| (r.id.clone(), cosine_similarity(&qv, &r.values)))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.truncate(k);
            let got_pairs: Vec<(String, f32)> = got.into_iter().map(|m| (m.id, m.score)).collect();
            prop_assert_eq!(got_pairs, all);
        }
    }
}
