//! Carries out a [`SyncPlan`] against a target with bounded concurrency:
//! puts first (so a renamed document is never missing), then deletes. Stops
//! starting new operations once cancelled; never retries by itself (targets
//! own their retries) and never touches keys the plan did not name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::hash_cache::{RemoteStamp, RemoteStamps};
use crate::plan::{ChangeKind, PlannedChange, SyncPlan};
use crate::target::{PutRequest, SyncTarget, TargetErrorKind};

pub const DEFAULT_CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    /// Operations in flight at once.
    pub concurrency: usize,
    /// Set (e.g. by Ctrl-C) to stop starting new operations.
    pub cancel: Arc<AtomicBool>,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    Ok,
    Failed,
    /// Not attempted (run interrupted).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpResult {
    pub key: String,
    pub action: ChangeKind,
    pub status: OpStatus,
    pub bytes: u64,
    pub multipart: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<TargetErrorKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Observes execution (progress bars, log lines).
pub trait ProgressSink: Send + Sync {
    fn execution_started(&self, _operations: usize, _bytes: u64) {}
    fn op_finished(&self, _result: &OpResult) {}
    fn execution_finished(&self) {}
}

/// Runs every change of `plan`. `paths` maps keys to local files; `stamps`
/// is updated with what each successful put or delete makes true.
pub async fn execute_plan<T: SyncTarget>(
    target: &T,
    plan: &SyncPlan,
    paths: &HashMap<String, PathBuf>,
    stamps: &mut RemoteStamps,
    options: &ExecuteOptions,
    progress: &dyn ProgressSink,
) -> Vec<OpResult> {
    progress.execution_started(plan.changes.len(), plan.upload_bytes());
    let (puts, deletes): (Vec<&PlannedChange>, Vec<&PlannedChange>) = plan
        .changes
        .iter()
        .partition(|c| c.kind != ChangeKind::Delete);
    let mut results = Vec::with_capacity(plan.changes.len());
    for batch in [puts, deletes] {
        let outcomes: Vec<(OpResult, Option<RemoteStamp>)> = stream::iter(batch)
            .map(|change| async move {
                let outcome = run_one(target, change, paths, &options.cancel).await;
                progress.op_finished(&outcome.0);
                outcome
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        for (result, stamp) in outcomes {
            if result.status == OpStatus::Ok {
                match stamp {
                    Some(stamp) => {
                        stamps.insert(result.key.clone(), stamp);
                    }
                    None => {
                        stamps.remove(&result.key);
                    }
                }
            }
            results.push(result);
        }
    }
    progress.execution_finished();
    results
}

async fn run_one<T: SyncTarget>(
    target: &T,
    change: &PlannedChange,
    paths: &HashMap<String, PathBuf>,
    cancel: &AtomicBool,
) -> (OpResult, Option<RemoteStamp>) {
    let mut result = OpResult {
        key: change.key.clone(),
        action: change.kind,
        status: OpStatus::Ok,
        bytes: 0,
        multipart: false,
        error_kind: None,
        error: None,
    };
    if cancel.load(Ordering::SeqCst) {
        result.status = OpStatus::Skipped;
        result.error = Some("interrupted before start".into());
        return (result, None);
    }
    let outcome = match change.kind {
        ChangeKind::Delete => target.delete(&change.key).await.map(|()| None),
        ChangeKind::Upload | ChangeKind::Update => {
            let (Some(path), Some(sha256)) =
                (paths.get(&change.key), change.local_sha256.as_deref())
            else {
                result.status = OpStatus::Failed;
                result.error = Some("no local file for planned upload".into());
                return (result, None);
            };
            let request = PutRequest {
                key: &change.key,
                path,
                sha256,
                size: change.size,
            };
            target.put(request).await.map(|put| {
                result.bytes = put.bytes;
                result.multipart = put.multipart;
                put.etag.map(|etag| RemoteStamp {
                    etag,
                    sha256: sha256.to_owned(),
                })
            })
        }
    };
    match outcome {
        Ok(stamp) => (result, stamp),
        Err(err) => {
            result.status = OpStatus::Failed;
            result.error_kind = Some(err.kind);
            result.error = Some(err.to_string());
            (result, None)
        }
    }
}
