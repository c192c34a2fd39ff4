//! The Supabase Postgres side: reading companies, documents and chunk
//! metadata in keyset-paged, streamed queries inside one read-only snapshot
//! (connecting, TLS included, is `postgres`'s). Owns every SQL statement run
//! against the source; never selects an `embedding` column and never writes.

use futures::{pin_mut, StreamExt};
use thiserror::Error;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::postgres::{pg_message, ConnectError, Database};
use crate::records::{ChunkRecord, CompanyRecord, DocumentRecord, Timestamp};

#[derive(Debug, Error)]
pub enum SourceError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    BadArgument(String),
    #[error("reading {table}: {message}")]
    Query {
        table: &'static str,
        message: String,
    },
    #[error("{table} row {id}: column {column}: {message}")]
    Column {
        table: &'static str,
        id: String,
        column: &'static str,
        message: String,
    },
}

impl SourceError {
    fn query(table: &'static str, e: &tokio_postgres::Error) -> Self {
        Self::Query {
            table,
            message: pg_message(e),
        }
    }
}

/// A connection to the source, with the TLS its URL asks for
/// ([`Database::connect`]).
pub struct Source {
    client: Client,
    name: String,
    in_snapshot: bool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("name", &self.name).finish()
    }
}

/// Row counts of the source tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceCounts {
    pub companies: u64,
    pub documents: u64,
    pub chunks: u64,
}

/// SQL rendering a `timestamptz` column as RFC 3339 (session zone UTC) and
/// as epoch milliseconds.
fn ts(column: &str) -> String {
    format!("to_json({column})#>>'{{}}', floor(extract(epoch from {column}) * 1000)::int8")
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    table: &'static str,
    column: &'static str,
    index: usize,
) -> Result<T, SourceError> {
    row.try_get(index).map_err(|e| SourceError::Column {
        table,
        id: row.try_get::<_, String>(0).unwrap_or_default(),
        column,
        message: e.to_string(),
    })
}

fn timestamp(
    row: &Row,
    table: &'static str,
    column: &'static str,
    index: usize,
) -> Result<Option<Timestamp>, SourceError> {
    let text: Option<String> = get(row, table, column, index)?;
    let ms: Option<i64> = get(row, table, column, index + 1)?;
    Ok(text.zip(ms).map(|(rfc3339, ms)| Timestamp { rfc3339, ms }))
}

fn json(
    row: &Row,
    table: &'static str,
    column: &'static str,
    index: usize,
) -> Result<serde_json::Value, SourceError> {
    let text: Option<String> = get(row, table, column, index)?;
    match text {
        None => Ok(serde_json::Value::Null),
        Some(text) => serde_json::from_str(&text).map_err(|e| SourceError::Column {
            table,
            id: row.try_get::<_, String>(0).unwrap_or_default(),
            column,
            message: e.to_string(),
        }),
    }
}

impl Source {
    pub async fn connect(database: &Database) -> Result<Self, SourceError> {
        let name = database.name()?;
        let client = database.connect().await?;
        Ok(Self {
            client,
            name,
            in_snapshot: false,
        })
    }

    /// `host:port/database`, for reports and logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the read-only, repeatable-read transaction every later read
    /// runs in, so pages taken minutes apart see one consistent state.
    /// Returns the snapshot's time (RFC 3339).
    pub async fn begin_snapshot(&mut self) -> Result<String, SourceError> {
        self.client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL TimeZone = 'UTC'",
            )
            .await
            .map_err(|e| SourceError::query("snapshot", &e))?;
        self.in_snapshot = true;
        let row = self
            .client
            .query_one("SELECT to_json(now())#>>'{}'", &[])
            .await
            .map_err(|e| SourceError::query("snapshot", &e))?;
        get(&row, "snapshot", "now", 0)
    }

    pub async fn end_snapshot(&mut self) -> Result<(), SourceError> {
        if self.in_snapshot {
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| SourceError::query("snapshot", &e))?;
            self.in_snapshot = false;
        }
        Ok(())
    }

    pub async fn counts(&self) -> Result<SourceCounts, SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM companies), (SELECT count(*) FROM documents), \
                 (SELECT count(*) FROM chunks)",
                &[],
            )
            .await
            .map_err(|e| SourceError::query("counts", &e))?;
        let n = |i: usize| -> Result<u64, SourceError> {
            let v: i64 = get(&row, "counts", "count", i)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(SourceCounts {
            companies: n(0)?,
            documents: n(1)?,
            chunks: n(2)?,
        })
    }

    /// Streams one page of rows through `each`, never holding the page.
    async fn stream_page<F>(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        mut each: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(Row) -> Result<(), SourceError>,
    {
        let stream = self
            .client
            .query_raw(sql, params.iter().copied())
            .await
            .map_err(|e| SourceError::query(table, &e))?;
        pin_mut!(stream);
        let mut n = 0;
        while let Some(row) = stream.next().await {
            each(row.map_err(|e| SourceError::query(table, &e))?)?;
            n += 1;
        }
        Ok(n)
    }

    /// The companies after `after` (by id), at most `limit`.
    pub async fn companies_page<F>(
        &self,
        after: Option<&str>,
        limit: i64,
        mut each: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(CompanyRecord) -> Result<(), SourceError>,
    {
        let sql = format!(
            "SELECT id::text, slug, name, description, website, metadata::text, {}, {} \
             FROM companies WHERE ($1::text IS NULL OR id > $1::text::uuid) ORDER BY id LIMIT $2",
            ts("created_at"),
            ts("updated_at")
        );
        const T: &str = "companies";
        self.stream_page(T, &sql, &[&after, &limit], |row| {
            each(CompanyRecord {
                id: get(&row, T, "id", 0)?,
                slug: get(&row, T, "slug", 1)?,
                name: get(&row, T, "name", 2)?,
                description: get(&row, T, "description", 3)?,
                website: get(&row, T, "website", 4)?,
                metadata: json(&row, T, "metadata", 5)?,
                created_at: timestamp(&row, T, "created_at", 6)?,
                updated_at: timestamp(&row, T, "updated_at", 8)?,
            })
        })
        .await
    }

    /// The documents after `after` (by id), at most `limit`, with content.
    pub async fn documents_page<F>(
        &self,
        after: Option<&str>,
        limit: i64,
        mut each: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(DocumentRecord) -> Result<(), SourceError>,
    {
        let sql = format!(
            "SELECT d.id::text, d.company_id::text, c.slug, d.path, d.title, d.content, \
             encode(sha256(convert_to(coalesce(d.content, ''), 'UTF8')), 'hex'), d.checksum, \
             array_remove(d.tags, NULL), d.metadata::text, {}, {} \
             FROM documents d LEFT JOIN companies c ON c.id = d.company_id \
             WHERE ($1::text IS NULL OR d.id > $1::text::uuid) ORDER BY d.id LIMIT $2",
            ts("d.created_at"),
            ts("d.updated_at")
        );
        const T: &str = "documents";
        self.stream_page(T, &sql, &[&after, &limit], |row| {
            let tags: Option<Vec<String>> = get(&row, T, "tags", 8)?;
            each(DocumentRecord {
                id: get(&row, T, "id", 0)?,
                company_id: get(&row, T, "company_id", 1)?,
                company_slug: get(&row, T, "company slug", 2)?,
                path: get(&row, T, "path", 3)?,
                title: get(&row, T, "title", 4)?,
                content: get(&row, T, "content", 5)?,
                content_sha256: get(&row, T, "content sha256", 6)?,
                checksum: get(&row, T, "checksum", 7)?,
                tags: tags.unwrap_or_default(),
                metadata: json(&row, T, "metadata", 9)?,
                created_at: timestamp(&row, T, "created_at", 10)?,
                updated_at: timestamp(&row, T, "updated_at", 12)?,
            })
        })
        .await
    }

    /// The chunk metadata of the given documents (never text or embedding).
    pub async fn chunks_of<F>(
        &self,
        document_ids: &[String],
        mut each: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(ChunkRecord) -> Result<(), SourceError>,
    {
        let sql = format!(
            "SELECT id::text, document_id::text, chunk_index, char_length(coalesce(content, ''))::int8, \
             encode(sha256(convert_to(content, 'UTF8')), 'hex'), array_remove(tags, NULL), {} \
             FROM chunks WHERE document_id = ANY($1::text[]::uuid[]) ORDER BY document_id, chunk_index, id",
            ts("created_at")
        );
        const T: &str = "chunks";
        self.stream_page(T, &sql, &[&document_ids], |row| {
            let tags: Option<Vec<String>> = get(&row, T, "tags", 5)?;
            each(ChunkRecord {
                id: get(&row, T, "id", 0)?,
                document_id: get(&row, T, "document_id", 1)?,
                chunk_index: get(&row, T, "chunk_index", 2)?,
                content_chars: get(&row, T, "content length", 3)?,
                content_sha256: get(&row, T, "content sha256", 4)?,
                tags: tags.unwrap_or_default(),
                created_at: timestamp(&row, T, "created_at", 6)?,
            })
        })
        .await
    }

    /// Paths of the documents the source's `hybrid_search` returns for a
    /// question, best first, at most `chunks` chunk hits. The query
    /// embedding comes from `embed_function(text)`, a SQL function the
    /// source provides (the one its application used, or a stand-in).
    pub async fn hybrid_search_paths(
        &self,
        question: &str,
        chunks: i32,
        company: Option<&str>,
        embed_function: &str,
    ) -> Result<Vec<String>, SourceError> {
        if embed_function.is_empty()
            || !embed_function
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(SourceError::BadArgument(format!(
                "embedding function {embed_function:?} is not a plain SQL name"
            )));
        }
        let sql = format!(
            "SELECT d.path FROM hybrid_search($1, {embed_function}($1), $2, $3) h \
             JOIN documents d ON d.id = h.document_id"
        );
        let rows = self
            .client
            .query(&sql, &[&question, &chunks, &company])
            .await
            .map_err(|e| SourceError::query("hybrid_search", &e))?;
        rows.iter()
            .map(|r| get(r, "hybrid_search", "path", 0))
            .collect()
    }
}
