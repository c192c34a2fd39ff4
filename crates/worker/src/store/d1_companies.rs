//! D1 statements of the company import: upserting companies with their
//! real fields, the `legacy_id_map` rows of companies and documents, and the
//! listing a verification reads. Never decides what is valid
//! (`portfolio_core::admin::companies` does) and never touches documents' content.

use portfolio_core::admin::companies::ValidCompany;
use portfolio_core::document::keys::DocumentKey;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

fn text(value: &str) -> JsValue {
    JsValue::from_str(value)
}

fn opt_text(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_str)
}

fn opt_ms(value: Option<i64>) -> JsValue {
    value.map_or(JsValue::NULL, |v| JsValue::from_f64(v as f64))
}

fn changes(result: &D1Result) -> usize {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .unwrap_or(0)
}

/// What an import did to one company.
#[derive(Debug, Clone, Serialize)]
pub struct CompanyOutcome {
    pub slug: String,
    pub id: Option<i64>,
    /// The row was inserted or one of its fields changed.
    pub written: bool,
    /// The legacy id was recorded or moved.
    pub mapped: bool,
}

/// A company as `GET /admin/companies` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompanyListed {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub website: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub legacy_id: Option<String>,
    pub documents: i64,
}

#[derive(Deserialize)]
struct SlugId {
    id: i64,
    slug: String,
}

/// The D1 database, for company imports.
pub struct D1Companies {
    db: D1Database,
}

impl std::fmt::Debug for D1Companies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Companies")
    }
}

impl D1Companies {
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    fn upsert(&self, c: &ValidCompany, now_ms: u64) -> worker::Result<D1PreparedStatement> {
        // Only a real difference writes (so a repeated import changes
        // nothing); `updated_at` is not compared because ingestion bumps it.
        // A missing source timestamp keeps what is stored, or is the import time.
        self.db
            .prepare(
                "INSERT INTO companies (slug, name, description, website, metadata, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, coalesce(?6, ?8), coalesce(?7, ?6, ?8)) \
                 ON CONFLICT(slug) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 website = excluded.website, metadata = excluded.metadata, \
                 created_at = coalesce(?6, companies.created_at), updated_at = coalesce(?7, ?8) \
                 WHERE companies.name IS NOT excluded.name OR companies.description IS NOT excluded.description \
                 OR companies.website IS NOT excluded.website OR companies.metadata IS NOT excluded.metadata \
                 OR companies.created_at IS NOT coalesce(?6, companies.created_at)",
            )
            .bind(&[
                text(&c.slug),
                text(&c.name),
                opt_text(c.description.as_deref()),
                opt_text(c.website.as_deref()),
                text(&c.metadata_json),
                opt_ms(c.created_at_ms),
                opt_ms(c.updated_at_ms),
                JsValue::from_f64(now_ms as f64),
            ])
    }

    fn map_company(&self, legacy_id: &str, slug: &str) -> worker::Result<D1PreparedStatement> {
        self.db
            .prepare(
                "INSERT INTO legacy_id_map (entity, legacy_id, new_id) \
                 SELECT 'company', ?1, id FROM companies WHERE slug = ?2 \
                 ON CONFLICT(entity, legacy_id) DO UPDATE SET new_id = excluded.new_id \
                 WHERE legacy_id_map.new_id IS NOT excluded.new_id",
            )
            .bind(&[text(legacy_id), text(slug)])
    }

    /// Upserts the companies and their legacy ids in one D1 batch (one
    /// transaction), then reads their ids.
    pub async fn import(
        &self,
        companies: &[ValidCompany],
        now_ms: u64,
    ) -> worker::Result<Vec<CompanyOutcome>> {
        let mut statements = Vec::with_capacity(companies.len() * 2);
        for c in companies {
            statements.push(self.upsert(c, now_ms)?);
            if let Some(legacy_id) = &c.legacy_id {
                statements.push(self.map_company(legacy_id, &c.slug)?);
            }
        }
        let results = self.db.batch(statements).await?;
        let mut results = results.iter();
        let mut outcomes = Vec::with_capacity(companies.len());
        for c in companies {
            let written = results.next().is_some_and(|r| changes(r) > 0);
            let mapped = c.legacy_id.is_some() && results.next().is_some_and(|r| changes(r) > 0);
            outcomes.push(CompanyOutcome {
                slug: c.slug.clone(),
                id: None,
                written,
                mapped,
            });
        }
        // One bound parameter per company: within D1's 100 (the core caps a request at 50).
        let placeholders: Vec<String> = (1..=companies.len()).map(|i| format!("?{i}")).collect();
        let slugs: Vec<JsValue> = companies.iter().map(|c| text(&c.slug)).collect();
        let rows: Vec<SlugId> = self
            .db
            .prepare(format!(
                "SELECT id, slug FROM companies WHERE slug IN ({})",
                placeholders.join(", ")
            ))
            .bind(&slugs)?
            .all()
            .await?
            .results()?;
        for outcome in &mut outcomes {
            outcome.id = rows.iter().find(|r| r.slug == outcome.slug).map(|r| r.id);
        }
        Ok(outcomes)
    }

    /// Records the source ids of stored documents; returns, per item, whether
    /// a row was written and whether the document exists.
    pub async fn map_documents(
        &self,
        documents: &[(String, DocumentKey)],
    ) -> worker::Result<Vec<(bool, bool)>> {
        let mut statements = Vec::with_capacity(documents.len());
        for (legacy_id, key) in documents {
            statements.push(
                self.db
                    .prepare(
                        "INSERT INTO legacy_id_map (entity, legacy_id, new_id) \
                         SELECT 'document', ?1, id FROM documents WHERE key = ?2 \
                         ON CONFLICT(entity, legacy_id) DO UPDATE SET new_id = excluded.new_id \
                         WHERE legacy_id_map.new_id IS NOT excluded.new_id",
                    )
                    .bind(&[text(legacy_id), text(key.as_str())])?,
            );
        }
        let results = self.db.batch(statements).await?;
        let placeholders: Vec<String> = (1..=documents.len()).map(|i| format!("?{i}")).collect();
        let keys: Vec<JsValue> = documents.iter().map(|(_, k)| text(k.as_str())).collect();
        #[derive(Deserialize)]
        struct KeyRow {
            key: String,
        }
        let present: Vec<KeyRow> = self
            .db
            .prepare(format!(
                "SELECT key FROM documents WHERE key IN ({})",
                placeholders.join(", ")
            ))
            .bind(&keys)?
            .all()
            .await?
            .results()?;
        Ok(documents
            .iter()
            .zip(results.iter())
            .map(|((_, key), r)| {
                (
                    changes(r) > 0,
                    present.iter().any(|p| p.key == key.as_str()),
                )
            })
            .collect())
    }

    /// Companies after `after` (by id), with their legacy id and document count.
    pub async fn list(&self, after: i64, limit: u32) -> worker::Result<Vec<CompanyListed>> {
        self.db
            .prepare(
                "SELECT c.id, c.slug, c.name, c.description, c.website, c.metadata, c.created_at, c.updated_at, \
                 (SELECT m.legacy_id FROM legacy_id_map m WHERE m.entity = 'company' AND m.new_id = c.id \
                  ORDER BY m.legacy_id LIMIT 1) AS legacy_id, \
                 (SELECT count(*) FROM documents d WHERE d.company_id = c.id AND d.status != 'deleted') AS documents \
                 FROM companies c WHERE c.id > ?1 ORDER BY c.id LIMIT ?2",
            )
            .bind(&[
                JsValue::from_f64(after as f64),
                JsValue::from_f64(f64::from(limit)),
            ])?
            .all()
            .await?
            .results()
    }
}
