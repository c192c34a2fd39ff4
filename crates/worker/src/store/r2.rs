//! The document bucket (R2) behind `portfolio_core::shared::storage::ObjectStore`.
//!
//! Translates calls only: the size limit, key rules and every decision about
//! what an object means stay in the core.

use portfolio_core::document::keys::SHA256_METADATA;
use portfolio_core::shared::storage::{
    ObjectHead, ObjectPage, ObjectRead, ObjectStore, StoreError,
};
use worker::{Bucket, Env, HttpMetadata, Include, Object};

/// The `DOCUMENTS` bucket.
pub struct R2Documents {
    bucket: Bucket,
}

impl std::fmt::Debug for R2Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("R2Documents")
    }
}

fn transient(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn head_of(object: &Object) -> ObjectHead {
    ObjectHead {
        key: object.key(),
        etag: object.etag(),
        size: object.size(),
        uploaded_ms: object.uploaded().as_millis(),
        sha256: object
            .custom_metadata()
            .ok()
            .and_then(|m| m.get(SHA256_METADATA).cloned()),
    }
}

impl R2Documents {
    /// The bucket bound as `DOCUMENTS`.
    ///
    /// # Errors
    /// When the binding is missing.
    pub fn from_env(env: &Env) -> Result<Self, StoreError> {
        let bucket = env
            .bucket(crate::bindings::DOCUMENTS)
            .map_err(|e| StoreError::permanent("R2 binding", e))?;
        Ok(Self { bucket })
    }

    /// Stores a markdown document with its `sha256` metadata; returns its etag.
    pub async fn put_markdown(
        &self,
        key: &str,
        bytes: Vec<u8>,
        sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        let object = self
            .bucket
            .put(key, bytes)
            .http_metadata(HttpMetadata {
                content_type: Some("text/markdown; charset=utf-8".into()),
                ..HttpMetadata::default()
            })
            .custom_metadata(std::collections::HashMap::from([(
                SHA256_METADATA.to_owned(),
                sha256.to_owned(),
            )]))
            .execute()
            .await
            .map_err(transient("R2 put"))?;
        Ok(object.map(|o| o.etag()))
    }

    /// Removes an object (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bucket
            .delete(key)
            .await
            .map_err(transient("R2 delete"))
    }
}

impl ObjectStore for R2Documents {
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let object = self.bucket.head(key).await.map_err(transient("R2 head"))?;
        Ok(object.as_ref().map(head_of))
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<ObjectRead, StoreError> {
        let Some(object) = self
            .bucket
            .get(key)
            .execute()
            .await
            .map_err(transient("R2 get"))?
        else {
            return Ok(ObjectRead::Missing);
        };
        let head = head_of(&object);
        // The size is known before the body is read: never pull an oversized object in.
        if head.size > max_bytes {
            return Ok(ObjectRead::TooLarge(head));
        }
        let bytes = match object.body() {
            Some(body) => body.bytes().await.map_err(transient("R2 read"))?,
            None => Vec::new(),
        };
        Ok(ObjectRead::Found { head, bytes })
    }

    async fn list(&self, start_after: &str, limit: u32) -> Result<ObjectPage, StoreError> {
        let mut list = self
            .bucket
            .list()
            .limit(limit)
            .include(vec![Include::CustomMetadata]);
        if !start_after.is_empty() {
            list = list.start_after(start_after);
        }
        let listing = list.execute().await.map_err(transient("R2 list"))?;
        Ok(ObjectPage {
            objects: listing.objects().iter().map(head_of).collect(),
            truncated: listing.truncated(),
        })
    }
}
