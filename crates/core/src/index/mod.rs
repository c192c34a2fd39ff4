//! The vector index: the `VectorIndex` trait both implementations (Vectorize, D1-exact) obey,
//! its types, the platform limits, and every pure decision about vectors (validation, batching,
//! the f32 BLOB format, exact cosine top-k, metadata filters).
//!
//! Owns what may be sent to an index and how exact search ranks; must never perform I/O
//! (the adapters in `crates/worker/src/store/` do) and never read a clock.
//!
//! A vector's metadata is what filters need and nothing else: document, company, generation.
//! **Tags are not in it**: ingestion embeds (and writes vectors) before it tags, so they would
//! have to be written twice, and nothing reads them from the index: Vectorize filters only on
//! scalar metadata indexes (a tag list cannot be one), and tag matching is the tag retrieval's
//! job over D1 (`chunks.tags`, merged by `fusion`). Vectors written by older builds may still
//! carry an empty `tags` field; reading ignores it.

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
/// Vectorize: ids per `getByIds` / `deleteByIds` call. The limits page documents only the upsert
/// batch (1000 Workers / 5000 HTTP) and states no limit on ids; the Workers binding rejects the
/// whole call beyond 100, as field reports quote it (2026):
/// `VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is 100, got 173`.
/// 100 is the count the platform itself names. Assuming the upsert batch (1000) instead made
/// deleting or re-ingesting any document of more than 100 chunks fail. The Vectorize adapter
/// splits every `getByIds` and `deleteByIds` at this size, whatever its caller hands it: a
/// 20,000-chunk generation ([`crate::ingest::MAX_CHUNKS_PER_DOCUMENT`]) is 200 calls.
pub const VECTORIZE_MAX_IDS_PER_CALL: usize = 100;
/// Vectorize: "Maximum returned results (topK) without values and metadata: 100".
pub const VECTORIZE_MAX_TOP_K: usize = 100;
/// Vectorize: "Maximum returned results (topK) with values or metadata: 20" (limits page), and
/// the Workers API page: "for a query operation with `returnValues` set to `true` or
/// `returnMetadata` set to `all`, `topK` would be limited to a maximum value of `20`".
/// <https://developers.cloudflare.com/vectorize/reference/client-api/>
pub const VECTORIZE_MAX_TOP_K_WITH_METADATA: usize = 20;
/// Vectorize: "Maximum vector ID length: 64 bytes".
pub const VECTORIZE_MAX_ID_BYTES: usize = 64;
/// Vectorize: "Metadata per vector: 10KiB" (measured as compact JSON).
pub const VECTORIZE_MAX_METADATA_BYTES: usize = 10 * 1024;
/// Vectorize metadata filtering: "the filter object … must be less than 2048 bytes" (compact JSON).
/// https://developers.cloudflare.com/vectorize/reference/metadata-filtering/
pub const VECTORIZE_MAX_FILTER_BYTES: usize = 2048;
/// How long a Vectorize write may take to become visible before its absence counts as a fault.
/// Vectorize applies upserts and deletes asynchronously: the call answers with a `mutationId`
/// and "it typically takes a few seconds for upserted vectors to be available for querying"
/// (<https://developers.cloudflare.com/vectorize/reference/client-api/>). A commit waits up to
/// this long for its vectors; reconciliation does not count the vectors of a younger commit.
pub const VECTOR_SETTLE_MS: u64 = 10 * 60 * 1_000;
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
}

/// One vector with its id (`<document_id>:<version>:<chunk_index>`) and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// Vector id, at most [`VECTORIZE_MAX_ID_BYTES`] bytes.
    pub id: String,
    /// The embedding; exactly the index's dimensions.
    pub values: Vec<f32>,
    /// Document, company and generation of the chunk.
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
    /// Whether ranks and scores within the D1 index's quantization error are enough (a
    /// search's vector source: fusion reads ranks, and near-ties may swap): the D1 index then
    /// answers from its isolate cache alone, without reading the candidates' f32 rows.
    /// Vectorize ignores it. Only without `return_metadata`.
    #[serde(default)]
    pub approximate: bool,
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
    /// The stored vectors among `ids` (missing ids are skipped). Any number of ids: the
    /// implementation splits them into calls its backend accepts
    /// ([`VECTORIZE_MAX_IDS_PER_CALL`] for Vectorize).
    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError>;
    /// Deletes vectors by id (missing ids are not an error); any number of ids, split like
    /// [`VectorIndex::get_by_ids`].
    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError>;
    /// Dimensions and size of the index.
    async fn describe(&self) -> Result<IndexInfo, VectorIndexError>;

    /// Whether a write becomes visible to queries only some time after the call returns
    /// (Vectorize queues it as a mutation), so a writer that needs its vectors searchable must
    /// look them up before relying on them. `false`: the write is visible when it returns.
    fn writes_land_later(&self) -> bool {
        false
    }

    /// How many of `ids` are stored and visible now. The default reads the vectors; an
    /// implementation that can count without holding every vector at once should.
    async fn count_present(&self, ids: &[String]) -> Result<usize, VectorIndexError> {
        Ok(self.get_by_ids(ids).await?.len())
    }
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

pub mod cache;
pub mod d1_exact;
mod error;
mod exact;
mod filter_check;
mod kind;
mod stored;
#[cfg(test)]
mod testing;

pub use error::{classify_vectorize_failure, VectorIndexError};
pub use exact::{cosine_similarity, cosine_with_norm, exact_top_k, norm, TopK};
pub use filter_check::{
    check_metadata_filters, FilterCheck, FilterStatus, FilteredProperty, PropertyCheck, Verdict,
    FILTERED_PROPERTIES,
};
pub use kind::{IndexKind, MAX_DIMENSIONS};
pub use stored::{decode_f32_le, decode_f32_le_hex, encode_f32_le};

#[cfg(test)]
mod tests;
