//! Every way a vector index call can fail ([`VectorIndexError`]), and how a
//! Vectorize failure message is read into one ([`classify_vectorize_failure`]).

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
        /// [`super::VECTORIZE_MAX_METADATA_BYTES`].
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
    /// The backend refused a call for carrying too many ids (Vectorize: `too many ids in
    /// payload; max id count is 100, got 173`). Retryable: the ids are fine, the split was
    /// ours, so the work must stay queued for a build that splits at the right size rather
    /// than fail the document for good.
    #[error("{backend} refused {operation}: too many ids in one call{}: {message}", max.map(|m| format!(" (the limit is {m})")).unwrap_or_default())]
    BatchTooLarge {
        /// `vectorize`.
        backend: &'static str,
        /// The method called.
        operation: &'static str,
        /// The limit the platform named, when it did.
        max: Option<usize>,
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
    /// The D1-exact index holds more vectors than an isolate may cache: it refuses to query
    /// rather than scan D1 page by page (seconds per query).
    #[error(
        "the D1 vector index holds {vectors} vectors, more than the {budget} an isolate may \
         cache (D1_INDEX_MAX_VECTORS); vector search is off: use VECTOR_INDEX=vectorize"
    )]
    OverBudget {
        /// Vectors in the index.
        vectors: u64,
        /// The most it may hold.
        budget: u64,
    },
}

impl VectorIndexError {
    /// Whether the same call may succeed later (decides queue retry vs ack).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::BatchTooLarge { .. })
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
            Self::BatchTooLarge { .. } => "vector_index_batch_too_large",
            Self::MalformedResponse { .. } => "vector_index_malformed_response",
            Self::NotConfigured { .. } => "vector_index_not_configured",
            Self::OverBudget { .. } => "d1_index_over_budget",
        }
    }
}

/// Classifies a Vectorize failure. Vectorize errors read `VECTOR_<OP>_ERROR (code = 40xxx):
/// <text>`. A call with too many ids ("too many ids in payload; max id count is 100, got 173",
/// code 40007) is [`VectorIndexError::BatchTooLarge`], retryable: the batch size was ours, not
/// the data's. Any other `4xxxx` code means the request was invalid (permanent); anything else
/// (5xxxx, no code, a network failure) is treated as transient.
#[must_use]
pub fn classify_vectorize_failure(operation: &'static str, message: String) -> VectorIndexError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("too many ids") || lower.contains("max id count") {
        let max = lower
            .split_once("max id count is ")
            .and_then(|(_, rest)| leading_number(rest));
        return VectorIndexError::BatchTooLarge {
            backend: "vectorize",
            operation,
            max,
            message,
        };
    }
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

/// The decimal number `text` starts with, if any.
fn leading_number(text: &str) -> Option<usize> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
