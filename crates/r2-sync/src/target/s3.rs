//! The S3-compatible target (R2's S3 API) on top of `object_store`: signing,
//! per-request retries with backoff (5xx, 429, timeouts) and multipart come
//! from there. This module adds the `x-amz-meta-sha256` metadata, verifies
//! the bytes it sends, and aborts multipart uploads that fail, so nothing
//! half-written ever becomes visible. It never deletes outside its prefix.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{
    guard_delete, PutOutcome, PutRequest, RemoteObject, SyncTarget, TargetError, TargetErrorKind,
    TargetInfo, SHA256_METADATA,
};
use crate::retry::RetryPolicy;

/// S3 requires every part but the last to be at least 5 MiB.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Files above this size go up as multipart uploads.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// R2 wants all parts but the last to be the same size; we always use one size.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;
pub const DEFAULT_PART_CONCURRENCY: usize = 4;

/// Access key pair. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct S3Config {
    /// e.g. `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint: String,
    pub bucket: String,
    /// `auto` for R2.
    pub region: String,
    /// Normalised prefix (see [`crate::key::normalize_prefix`]).
    pub prefix: String,
    pub credentials: S3Credentials,
    pub multipart_threshold: u64,
    pub part_size: usize,
    pub part_concurrency: usize,
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Keep connections alive between requests (off only for fault-injection
    /// tests, where every request must open its own connection).
    pub reuse_connections: bool,
}

impl S3Config {
    pub fn new(
        endpoint: String,
        bucket: String,
        prefix: String,
        credentials: S3Credentials,
    ) -> Self {
        Self {
            endpoint,
            bucket,
            region: "auto".into(),
            prefix,
            credentials,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            part_concurrency: DEFAULT_PART_CONCURRENCY,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(120),
            reuse_connections: true,
        }
    }
}

#[derive(Debug)]
pub struct S3Target {
    store: AmazonS3,
    config: S3Config,
}

impl S3Target {
    pub fn new(config: S3Config) -> Result<Self, TargetError> {
        if config.part_size < MIN_PART_SIZE {
            return Err(TargetError::new(
                TargetErrorKind::Permanent,
                "configure",
                None,
                format!("part size must be at least {MIN_PART_SIZE} bytes"),
            ));
        }
        let mut client = ClientOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(Duration::from_secs(10))
            .with_allow_http(config.endpoint.starts_with("http://"));
        if !config.reuse_connections {
            client = client.with_pool_max_idle_per_host(0);
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: config.retry.initial_backoff,
                max_backoff: config.retry.max_backoff,
                base: 2.0,
            },
            max_retries: usize::try_from(config.retry.max_retries).unwrap_or(usize::MAX),
            retry_timeout: Duration::from_secs(180),
        };
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.credentials.access_key_id)
            .with_secret_access_key(&config.credentials.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(token) = &config.credentials.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(|e| {
            TargetError::new(TargetErrorKind::Permanent, "configure", None, e.to_string())
        })?;
        Ok(Self { store, config })
    }

    fn object_path(&self, op: &'static str, key: &str) -> Result<ObjectPath, TargetError> {
        ObjectPath::parse(key).map_err(|e| {
            TargetError::new(
                TargetErrorKind::Permanent,
                op,
                Some(key),
                format!("invalid key: {e}"),
            )
        })
    }

    fn attributes(&self, key: &str, sha256: &str) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_METADATA.into()),
            sha256.to_owned().into(),
        );
        if key.ends_with(".md") || key.ends_with(".markdown") {
            attributes.insert(
                Attribute::ContentType,
                "text/markdown; charset=utf-8".into(),
            );
        }
        attributes
    }

    async fn put_single(
        &self,
        path: &ObjectPath,
        request: PutRequest<'_>,
    ) -> Result<PutOutcome, TargetError> {
        let bytes = request.read_verified().await?;
        let len = bytes.len() as u64;
        let options = PutOptions {
            mode: PutMode::Overwrite,
            attributes: self.attributes(request.key, request.sha256),
            ..PutOptions::default()
        };
        let result = self
            .store
            .put_opts(path, PutPayload::from(Bytes::from(bytes)), options)
            .await
            .map_err(|e| map_error("put", request.key, e))?;
        Ok(PutOutcome {
            etag: result.e_tag,
            bytes: len,
            multipart: false,
        })
    }

    async fn put_multipart(
        &self,
        path: &ObjectPath,
        request: PutRequest<'_>,
    ) -> Result<PutOutcome, TargetError> {
        let options = PutMultipartOptions {
            attributes: self.attributes(request.key, request.sha256),
            ..PutMultipartOptions::default()
        };
        let mut upload = self
            .store
            .put_multipart_opts(path, options)
            .await
            .map_err(|e| map_error("put", request.key, e))?;
        // Until `complete` succeeds the object is not visible; on any failure
        // the upload is aborted so its parts do not linger.
        let sent = match self.send_parts(upload.as_mut(), request).await {
            Ok(sent) => sent,
            Err(err) => {
                let _ = upload.abort().await;
                return Err(err);
            }
        };
        match upload.complete().await {
            Ok(result) => Ok(PutOutcome {
                etag: result.e_tag,
                bytes: sent,
                multipart: true,
            }),
            Err(err) => {
                let _ = upload.abort().await;
                Err(map_error("put", request.key, err))
            }
        }
    }

    /// Streams the file in fixed-size parts (bounded in flight), hashing as it
    /// goes; fails with `ContentChanged` if the bytes no longer match.
    async fn send_parts(
        &self,
        upload: &mut dyn MultipartUpload,
        request: PutRequest<'_>,
    ) -> Result<u64, TargetError> {
        let io_err = |e: std::io::Error| {
            TargetError::new(
                TargetErrorKind::Permanent,
                "put",
                Some(request.key),
                e.to_string(),
            )
        };
        let mut file = tokio::fs::File::open(request.path).await.map_err(io_err)?;
        let mut hasher = Sha256::new();
        let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
        let mut sent = 0u64;
        loop {
            let mut part = Vec::with_capacity(self.config.part_size);
            let read = (&mut file)
                .take(self.config.part_size as u64)
                .read_to_end(&mut part)
                .await
                .map_err(io_err)?;
            if read == 0 {
                break;
            }
            hasher.update(&part);
            sent += read as u64;
            while in_flight.len() >= self.config.part_concurrency.max(1) {
                if let Some(result) = in_flight.next().await {
                    result.map_err(|e| map_error("put", request.key, e))?;
                }
            }
            in_flight.push(upload.put_part(PutPayload::from(Bytes::from(part))));
            if read < self.config.part_size {
                break;
            }
        }
        while let Some(result) = in_flight.next().await {
            result.map_err(|e| map_error("put", request.key, e))?;
        }
        request.verify_content(&hex::encode(hasher.finalize()))?;
        Ok(sent)
    }
}

/// `object_store` has already retried transient failures (with backoff) by
/// the time an error reaches us, so what is left is final for this run.
fn map_error(op: &'static str, key: &str, err: object_store::Error) -> TargetError {
    let kind = match &err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => TargetErrorKind::Auth,
        _ => TargetErrorKind::Permanent,
    };
    TargetError::new(kind, op, Some(key), err.to_string())
}

impl SyncTarget for S3Target {
    fn cache_id(&self) -> String {
        format!(
            "s3:{}/{}",
            self.config.endpoint.trim_end_matches('/'),
            self.config.bucket
        )
    }

    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: "s3",
            location: format!(
                "{}/{}",
                self.config.endpoint.trim_end_matches('/'),
                self.config.bucket
            ),
            prefix: self.config.prefix.clone(),
        }
    }

    async fn list(&self) -> Result<Vec<RemoteObject>, TargetError> {
        let prefix = if self.config.prefix.is_empty() {
            None
        } else {
            Some(self.object_path("list", &self.config.prefix)?)
        };
        let metas: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| map_error("list", &self.config.prefix, e))?;
        Ok(metas
            .into_iter()
            .map(|meta| RemoteObject {
                key: meta.location.as_ref().to_owned(),
                size: meta.size,
                etag: meta.e_tag,
                sha256: None,
            })
            .collect())
    }

    async fn head(&self, key: &str) -> Result<Option<RemoteObject>, TargetError> {
        let path = self.object_path("head", key)?;
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, options).await {
            Ok(result) => Ok(Some(RemoteObject {
                key: key.to_owned(),
                size: result.meta.size,
                etag: result.meta.e_tag,
                sha256: result
                    .attributes
                    .get(&Attribute::Metadata(SHA256_METADATA.into()))
                    .map(|v| v.as_ref().to_ascii_lowercase()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(map_error("head", key, err)),
        }
    }

    async fn put(&self, request: PutRequest<'_>) -> Result<PutOutcome, TargetError> {
        let path = self.object_path("put", request.key)?;
        if request.size > self.config.multipart_threshold {
            self.put_multipart(&path, request).await
        } else {
            self.put_single(&path, request).await
        }
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        guard_delete(&self.config.prefix, key)?;
        let path = self.object_path("delete", key)?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| map_error("delete", key, e))
    }
}
