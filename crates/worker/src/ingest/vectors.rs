//! Writes a generation's vectors to the index and removes them again.
//!
//! Vectors are written at embedding time under deterministic ids
//! (`<document_id>:<version>:<chunk_index>`): invisible to queries until the
//! generation is activated, and overwritten in place when a step is retried.

use portfolio_core::ingestion::rows_per_statement;
use wasm_bindgen::JsValue;
use worker::D1Database;

/// Bound values of one `vector_index` row (`tags` is a literal).
const VECTOR_COLUMNS: usize = 6;

/// One vector with the metadata queries filter on.
#[derive(Debug, Clone)]
pub struct VectorRow {
    /// Deterministic vector id.
    pub id: String,
    /// Document row id.
    pub document_id: i64,
    /// Company row id, if the document has a company.
    pub company_id: Option<i64>,
    /// Generation.
    pub version: u64,
    /// The embedding.
    pub values: Vec<f32>,
}

fn f32_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Upserts vectors into the D1-exact index.
pub async fn upsert(db: &D1Database, rows: &[VectorRow]) -> worker::Result<()> {
    let row_bytes = rows.first().map_or(64, |r| r.values.len() * 4 + 64);
    let per_statement = rows_per_statement(VECTOR_COLUMNS, row_bytes);
    let mut statements = Vec::new();
    for group in rows.chunks(per_statement) {
        let placeholders: Vec<String> = (0..group.len())
            .map(|r| {
                let b = r * VECTOR_COLUMNS;
                format!(
                    "(?{}, ?{}, ?{}, ?{}, '[]', ?{}, ?{})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO vector_index (id, document_id, company_id, version, tags, dimensions, embedding) VALUES {} \
             ON CONFLICT(id) DO UPDATE SET document_id = excluded.document_id, company_id = excluded.company_id, \
             version = excluded.version, dimensions = excluded.dimensions, embedding = excluded.embedding",
            placeholders.join(", ")
        );
        let mut values = Vec::with_capacity(group.len() * VECTOR_COLUMNS);
        for row in group {
            values.extend([
                JsValue::from_str(&row.id),
                JsValue::from_f64(row.document_id as f64),
                row.company_id
                    .map_or(JsValue::NULL, |c| JsValue::from_f64(c as f64)),
                JsValue::from_f64(row.version as f64),
                JsValue::from_f64(row.values.len() as f64),
                js_sys::Uint8Array::from(f32_le_bytes(&row.values).as_slice()).into(),
            ]);
        }
        statements.push(db.prepare(sql).bind(&values)?);
    }
    if !statements.is_empty() {
        db.batch(statements).await?;
    }
    Ok(())
}

/// Removes every vector of one generation of a document.
pub async fn delete_generation(
    db: &D1Database,
    document_id: i64,
    version: u64,
) -> worker::Result<()> {
    db.prepare("DELETE FROM vector_index WHERE document_id = ?1 AND version = ?2")
        .bind(&[
            JsValue::from_f64(document_id as f64),
            JsValue::from_f64(version as f64),
        ])?
        .run()
        .await?;
    Ok(())
}

/// Removes every vector of a document.
pub async fn delete_document(db: &D1Database, document_id: i64) -> worker::Result<()> {
    db.prepare("DELETE FROM vector_index WHERE document_id = ?1")
        .bind(&[JsValue::from_f64(document_id as f64)])?
        .run()
        .await?;
    Ok(())
}
