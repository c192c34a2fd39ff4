//! The export format: one JSON object per line for each source table, as the
//! `export` command writes them and `import`/`verify` read them back.
//! Owns the field names and their meaning; never talks to a database.

use serde::{Deserialize, Serialize};

/// Version of the export format, recorded in the manifest.
pub const FORMAT_VERSION: u32 = 1;

/// A source timestamp: as Postgres rendered it (RFC 3339 in UTC) and as
/// milliseconds since the Unix epoch, which is the D1 format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub rfc3339: String,
    pub ms: i64,
}

/// One row of `companies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanyRecord {
    /// The source UUID.
    pub id: String,
    pub slug: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub website: Option<String>,
    /// The `jsonb` column, parsed (`null` when the column was NULL).
    pub metadata: serde_json::Value,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// One row of `documents`, with its full content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub id: String,
    /// The source UUID of the company, if any.
    pub company_id: Option<String>,
    /// That company's slug (joined at export time), if any.
    pub company_slug: Option<String>,
    pub path: String,
    pub title: Option<String>,
    /// `None` when the column was NULL (distinct from empty content).
    pub content: Option<String>,
    /// Lower-case hex SHA-256 of `content`'s UTF-8 bytes (of "" when NULL).
    pub content_sha256: String,
    /// The source's own `checksum` column, kept verbatim.
    pub checksum: Option<String>,
    /// The `text[]` column, verbatim (NULL elements dropped).
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// One row of `chunks`: metadata only. Neither the text nor the embedding is
/// exported; the service re-chunks and re-embeds from the document content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub id: String,
    pub document_id: String,
    pub chunk_index: i32,
    /// Characters of the chunk's text.
    pub content_chars: i64,
    /// Hex SHA-256 of the chunk's text, computed by Postgres.
    pub content_sha256: Option<String>,
    pub tags: Vec<String>,
    pub created_at: Option<Timestamp>,
}
