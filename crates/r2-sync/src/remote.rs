//! Learns the SHA-256 of remote objects without a HEAD per object: S3
//! listings carry no user metadata, so the state cache maps key → (ETag,
//! SHA-256) recorded when we uploaded or HEADed it. A listed ETag equal to the
//! cached one means the cached hash is the remote's; otherwise one HEAD
//! (bounded concurrency) reads `x-amz-meta-sha256`. The ETag is only ever a
//! cache validator, never the change detector.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::hash_cache::{RemoteStamp, RemoteStamps};
use crate::plan::RemoteEntry;
use crate::target::{RemoteObject, SyncTarget, TargetError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RemoteStats {
    /// Objects listed under the prefix.
    pub listed: usize,
    /// Hashes that came with the listing (ingest API).
    pub from_listing: usize,
    /// Hashes taken from the state cache (ETag matched).
    pub from_cache: usize,
    /// Objects HEADed.
    pub headed: usize,
    /// Objects compared locally whose hash is unknown (no metadata): they
    /// count as changed.
    pub unknown: usize,
}

#[derive(Debug, Default)]
pub struct ResolvedRemote {
    pub entries: Vec<RemoteEntry>,
    /// The new remote part of the cache: only keys that exist now.
    pub stamps: RemoteStamps,
    pub stats: RemoteStats,
    pub errors: Vec<TargetError>,
}

/// Resolves hashes for listed objects. Only objects that also exist locally
/// need a hash (remote-only objects are deleted or kept whatever they hold).
pub async fn resolve_remote<T: SyncTarget>(
    target: &T,
    listed: Vec<RemoteObject>,
    cached: &RemoteStamps,
    local_keys: &HashSet<&str>,
    head_concurrency: usize,
) -> ResolvedRemote {
    let mut out = ResolvedRemote {
        stats: RemoteStats {
            listed: listed.len(),
            ..RemoteStats::default()
        },
        ..ResolvedRemote::default()
    };
    let mut to_head = Vec::new();
    for object in listed {
        if let Some(sha256) = &object.sha256 {
            out.stats.from_listing += 1;
            if let Some(etag) = &object.etag {
                out.stamps.insert(object.key.clone(), stamp(etag, sha256));
            }
            out.entries.push(entry(&object, object.sha256.clone()));
            continue;
        }
        let cached_hash = object
            .etag
            .as_ref()
            .and_then(|etag| cached.get(&object.key).filter(|s| &s.etag == etag));
        if let Some(hit) = cached_hash {
            out.stats.from_cache += 1;
            out.stamps.insert(object.key.clone(), hit.clone());
            out.entries.push(entry(&object, Some(hit.sha256.clone())));
        } else if local_keys.contains(object.key.as_str()) {
            to_head.push(object);
        } else {
            out.entries.push(entry(&object, None));
        }
    }

    let heads: Vec<_> = stream::iter(to_head)
        .map(|object| async move {
            let result = target.head(&object.key).await;
            (object, result)
        })
        .buffer_unordered(head_concurrency.max(1))
        .collect()
        .await;
    for (object, result) in heads {
        out.stats.headed += 1;
        match result {
            Ok(Some(headed)) => {
                if let (Some(etag), Some(sha256)) = (&headed.etag, &headed.sha256) {
                    out.stamps.insert(headed.key.clone(), stamp(etag, sha256));
                }
                if headed.sha256.is_none() {
                    out.stats.unknown += 1;
                }
                out.entries.push(entry(&headed, headed.sha256.clone()));
            }
            // Deleted between listing and HEAD: it no longer exists.
            Ok(None) => {}
            Err(err) => {
                // Unknown hash: planned as an update, which is safe.
                out.stats.unknown += 1;
                out.errors.push(err);
                out.entries.push(entry(&object, None));
            }
        }
    }
    out.entries.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn stamp(etag: &str, sha256: &str) -> RemoteStamp {
    RemoteStamp {
        etag: etag.to_owned(),
        sha256: sha256.to_owned(),
    }
}

fn entry(object: &RemoteObject, sha256: Option<String>) -> RemoteEntry {
    RemoteEntry {
        key: object.key.clone(),
        sha256,
        size: object.size,
    }
}
