//! The service's ingest API as a target, for local development where R2
//! emits no event notifications: `PUT`/`DELETE {base}/admin/documents/{key}`
//! and a paginated `GET {base}/admin/documents` listing with hashes. Every
//! call carries the admin bearer token; the token is never logged.

use std::time::Duration;

use serde::Deserialize;

use super::{
    guard_delete, PutOutcome, PutRequest, RemoteObject, SyncTarget, TargetError, TargetErrorKind,
    TargetInfo,
};
use crate::key::{encode_key_path, encode_query_value};
use crate::retry::{with_retries, RetryPolicy};

/// Page size asked of the listing endpoint.
pub const LIST_PAGE_LIMIT: usize = 1000;
/// Header carrying the hex SHA-256 of the body.
pub use portfolio_core::document::keys::CONTENT_SHA256_HEADER;

/// Bearer token of the admin API (`Debug` never prints it).
pub use portfolio_core::admin::AdminToken;

#[derive(Debug, Clone)]
pub struct IngestApiConfig {
    /// e.g. `http://localhost:8787`.
    pub base_url: String,
    pub token: AdminToken,
    /// Normalised prefix.
    pub prefix: String,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
}

impl IngestApiConfig {
    pub fn new(base_url: String, token: AdminToken, prefix: String) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            prefix,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
pub struct IngestApiTarget {
    client: reqwest::Client,
    config: IngestApiConfig,
}

#[derive(Debug, Deserialize)]
struct ListPage {
    documents: Vec<ListedDocument>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListedDocument {
    key: String,
    sha256: Option<String>,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize)]
struct PutAnswer {
    key: String,
    sha256: String,
}

fn status_error(
    op: &'static str,
    key: Option<&str>,
    status: reqwest::StatusCode,
    body: &str,
) -> TargetError {
    let kind = match status.as_u16() {
        401 | 403 => TargetErrorKind::Auth,
        408 | 429 | 500..=599 => TargetErrorKind::Transient,
        _ => TargetErrorKind::Permanent,
    };
    let snippet: String = body.chars().take(200).collect();
    TargetError::new(
        kind,
        op,
        key,
        format!("server answered {status}: {snippet}"),
    )
    .with_status(status.as_u16())
}

fn transport_error(op: &'static str, key: Option<&str>, err: &reqwest::Error) -> TargetError {
    // Connection failures, resets and timeouts are worth another attempt;
    // PUT and DELETE of a whole document are idempotent.
    let kind = if err.is_timeout() || err.is_connect() || err.is_request() || err.is_body() {
        TargetErrorKind::Transient
    } else {
        TargetErrorKind::Permanent
    };
    TargetError::new(kind, op, key, err.to_string())
}

impl IngestApiTarget {
    pub fn new(config: IngestApiConfig) -> Result<Self, TargetError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                TargetError::new(TargetErrorKind::Permanent, "configure", None, e.to_string())
            })?;
        Ok(Self { client, config })
    }

    fn document_url(&self, key: &str) -> String {
        format!(
            "{}/admin/documents/{}",
            self.config.base_url,
            encode_key_path(key)
        )
    }

    fn bearer(&self) -> String {
        self.config.token.authorization()
    }

    async fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, TargetError> {
        let mut url = format!(
            "{}/admin/documents?prefix={}&limit={LIST_PAGE_LIMIT}",
            self.config.base_url,
            encode_query_value(&self.config.prefix)
        );
        if let Some(cursor) = cursor {
            url.push_str("&cursor=");
            url.push_str(&encode_query_value(cursor));
        }
        let response = self
            .client
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .send()
            .await
            .map_err(|e| transport_error("list", None, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("list", None, &e))?;
        if !status.is_success() {
            return Err(status_error(
                "list",
                None,
                status,
                &String::from_utf8_lossy(&body),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            TargetError::new(
                TargetErrorKind::Permanent,
                "list",
                None,
                format!("malformed listing: {e}"),
            )
        })
    }

    async fn put_once(&self, request: PutRequest<'_>, body: &[u8]) -> Result<(), TargetError> {
        let key = Some(request.key);
        let response = self
            .client
            .put(self.document_url(request.key))
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .header(CONTENT_SHA256_HEADER, request.sha256)
            .header(
                reqwest::header::CONTENT_TYPE,
                "text/markdown; charset=utf-8",
            )
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| transport_error("put", key, &e))?;
        let status = response.status();
        let answer = response
            .bytes()
            .await
            .map_err(|e| transport_error("put", key, &e))?;
        if !status.is_success() {
            return Err(status_error(
                "put",
                key,
                status,
                &String::from_utf8_lossy(&answer),
            ));
        }
        let answer: PutAnswer = serde_json::from_slice(&answer).map_err(|e| {
            TargetError::new(
                TargetErrorKind::Permanent,
                "put",
                key,
                format!("malformed answer: {e}"),
            )
        })?;
        if answer.key != request.key || !answer.sha256.eq_ignore_ascii_case(request.sha256) {
            return Err(TargetError::new(
                TargetErrorKind::Permanent,
                "put",
                key,
                format!(
                    "server stored {} with sha256 {}, expected {}",
                    answer.key, answer.sha256, request.sha256
                ),
            ));
        }
        Ok(())
    }

    async fn delete_once(&self, key: &str) -> Result<(), TargetError> {
        let response = self
            .client
            .delete(self.document_url(key))
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .send()
            .await
            .map_err(|e| transport_error("delete", Some(key), &e))?;
        let status = response.status();
        // Already gone is what we wanted (e.g. a resumed run).
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(status_error("delete", Some(key), status, &body))
    }
}

impl SyncTarget for IngestApiTarget {
    fn cache_id(&self) -> String {
        format!("ingest-api:{}", self.config.base_url)
    }

    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: "ingest-api",
            location: self.config.base_url.clone(),
            prefix: self.config.prefix.clone(),
        }
    }

    async fn list(&self) -> Result<Vec<RemoteObject>, TargetError> {
        let mut objects = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (page, _) =
                with_retries(self.config.retry, || self.list_page(cursor.as_deref())).await;
            let page = page?;
            objects.extend(page.documents.into_iter().map(|d| RemoteObject {
                key: d.key,
                size: d.size,
                etag: None,
                sha256: d.sha256.map(|s| s.to_ascii_lowercase()),
            }));
            match page.cursor {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next.as_str()) => {
                    cursor = Some(next)
                }
                _ => break,
            }
        }
        Ok(objects)
    }

    async fn head(&self, key: &str) -> Result<Option<RemoteObject>, TargetError> {
        // The listing already carries hashes; a single-key lookup is a listing
        // narrowed to the key.
        Ok(self.list().await?.into_iter().find(|o| o.key == key))
    }

    async fn put(&self, request: PutRequest<'_>) -> Result<PutOutcome, TargetError> {
        let body = request.read_verified().await?;
        let (result, _) = with_retries(self.config.retry, || self.put_once(request, &body)).await;
        result?;
        Ok(PutOutcome {
            etag: None,
            bytes: body.len() as u64,
            multipart: false,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        guard_delete(&self.config.prefix, key)?;
        let (result, _) = with_retries(self.config.retry, || self.delete_once(key)).await;
        result
    }
}
