//! Which vector index the service uses (`VECTOR_INDEX`) and the largest
//! dimensions it accepts (`EMBEDDING_DIMENSIONS`). `crate::config` reads the
//! vars into them.
//!
//! Never touches an index and never reads a var.

/// Largest embedding dimension accepted (Vectorize's own maximum is 1536;
/// the D1-exact index takes more, up to this).
pub const MAX_DIMENSIONS: u32 = 4_096;

/// Which vector index the service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Exact cosine over the `vector_index` table in D1.
    D1,
    /// The `VECTORIZE` binding.
    Vectorize,
}

impl IndexKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::D1 => "d1",
            Self::Vectorize => "vectorize",
        }
    }
}
