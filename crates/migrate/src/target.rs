//! The service as an import target: its admin API over HTTP (documents PUT
//! and listing, company import and listing, document legacy ids). Every call
//! carries the admin bearer token, which is never logged. Owns retries of
//! transient failures; never decides what to import.

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use portfolio_core::admin::companies::{CompanyImport, DocumentLegacyId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

/// Header carrying the hex SHA-256 of a document body (the admin API checks it).
pub const CONTENT_SHA256_HEADER: &str = "x-content-sha256";
/// Page size asked of listings (the API's maximum).
const LIST_PAGE: u32 = 1000;
/// Attempts of one request on 5xx, 429 and connection failures.
const ATTEMPTS: u32 = 5;

const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

fn encode_key_path(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// Bearer token of the admin API (`Debug` never prints it).
pub use portfolio_core::admin::AdminToken;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("{op} {what}: the service answered {status}: {body}")]
    Status {
        op: &'static str,
        what: String,
        status: u16,
        body: String,
    },
    #[error("{op} {what}: {message}")]
    Transport {
        op: &'static str,
        what: String,
        message: String,
    },
    #[error("{op} {what}: malformed answer: {message}")]
    Malformed {
        op: &'static str,
        what: String,
        message: String,
    },
}

impl TargetError {
    /// Worth another attempt: 408, 429, 5xx, or no answer at all.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::Transport { .. } => true,
            Self::Malformed { .. } => false,
        }
    }
}

/// A document as the service lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedDocument {
    pub key: String,
    pub status: String,
    pub sha256: Option<String>,
    pub company: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub chunk_count: i64,
    pub id: i64,
    /// The source's id of a migrated document.
    #[serde(default)]
    pub legacy_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DocumentPage {
    documents: Vec<ListedDocument>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CompanyPage {
    companies: Vec<Value>,
    cursor: Option<String>,
}

#[derive(Debug)]
pub struct ServiceTarget {
    client: reqwest::Client,
    base: String,
    token: AdminToken,
}

impl ServiceTarget {
    pub fn new(base: &str, token: AdminToken) -> Result<Self, TargetError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TargetError::Transport {
                op: "configure",
                what: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send_once(
        &self,
        op: &'static str,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, TargetError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, self.token.authorization())
            .send()
            .await
            .map_err(|e| TargetError::Transport {
                op,
                what: what.to_owned(),
                message: e.to_string(),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| TargetError::Transport {
            op,
            what: what.to_owned(),
            message: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(TargetError::Status {
                op,
                what: what.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        Ok(body.to_vec())
    }

    /// Sends with retries and exponential backoff; `build` makes a fresh request each time.
    async fn send<T: DeserializeOwned>(
        &self,
        op: &'static str,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, TargetError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.send_once(op, what, build()).await {
                Ok(body) => {
                    return serde_json::from_slice(&body).map_err(|e| TargetError::Malformed {
                        op,
                        what: what.to_owned(),
                        message: e.to_string(),
                    })
                }
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stores a document in R2 through the admin API (which enqueues its ingestion).
    pub async fn put_document(
        &self,
        key: &str,
        body: &str,
        sha256: &str,
    ) -> Result<(), TargetError> {
        let url = format!("{}/admin/documents/{}", self.base, encode_key_path(key));
        let answer: Value = self
            .send("put", key, || {
                self.client
                    .put(&url)
                    .header(CONTENT_SHA256_HEADER, sha256)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "text/markdown; charset=utf-8",
                    )
                    .body(body.to_owned())
            })
            .await?;
        if answer["sha256"].as_str() != Some(sha256) {
            return Err(TargetError::Malformed {
                op: "put",
                what: key.to_owned(),
                message: format!("stored sha256 {}, expected {sha256}", answer["sha256"]),
            });
        }
        Ok(())
    }

    /// Every listed document (not deleted ones), by key.
    pub async fn documents(&self) -> Result<HashMap<String, ListedDocument>, TargetError> {
        let mut out = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/admin/documents?limit={LIST_PAGE}", self.base);
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(&encode(c));
            }
            let page: DocumentPage = self
                .send("list", "documents", || self.client.get(&url))
                .await?;
            out.extend(page.documents.into_iter().map(|d| (d.key.clone(), d)));
            match page.cursor {
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => return Ok(out),
            }
        }
    }

    fn post_json(&self, url: &str, body: &str) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
    }

    /// Imports up to `portfolio_core::admin::companies::MAX_IMPORT_ITEMS` companies.
    pub async fn import_companies(
        &self,
        companies: &[CompanyImport],
    ) -> Result<Value, TargetError> {
        let url = format!("{}/admin/companies", self.base);
        let body = json!({ "companies": companies }).to_string();
        self.send("import", "companies", || self.post_json(&url, &body))
            .await
    }

    /// Records source ids of stored documents.
    pub async fn map_documents(
        &self,
        documents: &[DocumentLegacyId],
    ) -> Result<Value, TargetError> {
        let url = format!("{}/admin/legacy-ids/documents", self.base);
        let body = json!({ "documents": documents }).to_string();
        self.send("map", "documents", || self.post_json(&url, &body))
            .await
    }

    /// Keys of the documents `/api/search` returns, best first (one per chunk hit).
    pub async fn search_keys(
        &self,
        question: &str,
        top_k: u32,
        company: Option<&str>,
    ) -> Result<Vec<String>, TargetError> {
        let url = format!("{}/api/search", self.base);
        let mut body = json!({ "query": question, "top_k": top_k });
        if let Some(company) = company {
            body["company"] = json!(company);
        }
        let body = body.to_string();
        let answer: Value = self
            .send("search", question, || self.post_json(&url, &body))
            .await?;
        Ok(answer["results"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .filter_map(|r| r["key"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A stored document's bytes, checked against the SHA-256 the service sends.
    pub async fn object(&self, key: &str) -> Result<Vec<u8>, TargetError> {
        let url = format!("{}/admin/objects/{}", self.base, encode_key_path(key));
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let result = async {
                let response = self
                    .client
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, self.token.authorization())
                    .send()
                    .await
                    .map_err(|e| TargetError::Transport {
                        op: "read",
                        what: key.to_owned(),
                        message: e.to_string(),
                    })?;
                let status = response.status();
                let claimed = response
                    .headers()
                    .get(CONTENT_SHA256_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response.bytes().await.map_err(|e| TargetError::Transport {
                    op: "read",
                    what: key.to_owned(),
                    message: e.to_string(),
                })?;
                if !status.is_success() {
                    return Err(TargetError::Status {
                        op: "read",
                        what: key.to_owned(),
                        status: status.as_u16(),
                        body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                    });
                }
                let actual = portfolio_core::document::keys::sha256_hex(&body);
                if claimed.as_deref() != Some(actual.as_str()) {
                    return Err(TargetError::Malformed {
                        op: "read",
                        what: key.to_owned(),
                        message: format!("body hashes to {actual}, the service said {claimed:?}"),
                    });
                }
                Ok(body.to_vec())
            }
            .await;
            match result {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The vector index's description (`/admin/index`).
    pub async fn index_info(&self) -> Result<Value, TargetError> {
        let url = format!("{}/admin/index", self.base);
        self.send("describe", "index", || self.client.get(&url))
            .await
    }

    /// Every company with its fields, legacy id and document count.
    pub async fn companies(&self) -> Result<Vec<Value>, TargetError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/admin/companies?limit={LIST_PAGE}", self.base);
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(&encode(c));
            }
            let page: CompanyPage = self
                .send("list", "companies", || self.client.get(&url))
                .await?;
            out.extend(page.companies);
            match page.cursor {
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => return Ok(out),
            }
        }
    }
}
