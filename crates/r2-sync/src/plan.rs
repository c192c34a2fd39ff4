//! Pure planning: local entries + remote entries → [`SyncPlan`]. Decides by
//! SHA-256 only (never ETag, size or time) and never plans anything outside
//! the prefix. No I/O here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::key::is_within_prefix;

/// A local file as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// A remote object as planning sees it; `sha256` is `None` when the object
/// carries no `sha256` metadata (it then counts as changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub key: String,
    pub sha256: Option<String>,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Local only: new object.
    Upload,
    /// Both sides, different (or unknown) remote hash.
    Update,
    /// Remote only, and `--delete` was given.
    Delete,
}

/// One operation of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub key: String,
    pub kind: ChangeKind,
    /// Bytes to send (0 for deletes).
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions<'a> {
    /// Normalised prefix; remote keys outside it are never touched.
    pub prefix: &'a str,
    /// Delete remote-only objects.
    pub delete: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncPlan {
    /// Uploads, then updates, then deletes; each sorted by key.
    pub changes: Vec<PlannedChange>,
    /// Keys identical on both sides.
    pub unchanged: Vec<String>,
    /// Remote-only keys kept because `--delete` was not given.
    pub remote_only_kept: Vec<String>,
    /// Remote objects under the prefix (the base of the deletion guard).
    pub remote_count: usize,
    /// Remote keys outside the prefix that were listed anyway and ignored.
    pub ignored_outside_prefix: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("duplicate local key {key}")]
    DuplicateLocalKey { key: String },
    #[error(
        "refusing to delete {deletes} of {remote} remote objects (more than {max_percent}%); pass --force to allow"
    )]
    TooManyDeletes {
        deletes: usize,
        remote: usize,
        max_percent: u32,
    },
    #[error(
        "refusing to delete {deletes} remote object(s): {errors} local file(s) could not be read or hashed, so they may only look remote-only; fix the errors or pass --force"
    )]
    IncompleteLocalScan { deletes: usize, errors: usize },
}

/// Limits how much of the remote side one run may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteGuard {
    /// Largest share of remote objects (in percent) deletable without `force`.
    pub max_percent: u32,
    pub force: bool,
}

impl SyncPlan {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Bytes the plan would upload.
    pub fn upload_bytes(&self) -> u64 {
        self.changes.iter().map(|c| c.size).sum()
    }

    /// Refuses plans that delete anything while the folder walk or the
    /// hashing reported `local_errors` (an unreadable subfolder makes its
    /// remote objects look remote-only), unless forced.
    pub fn check_local_scan(&self, local_errors: usize, force: bool) -> Result<(), PlanError> {
        let deletes = self.count(ChangeKind::Delete);
        if force || deletes == 0 || local_errors == 0 {
            return Ok(());
        }
        Err(PlanError::IncompleteLocalScan {
            deletes,
            errors: local_errors,
        })
    }

    /// Refuses plans that delete more than `guard.max_percent` of the remote
    /// objects, unless forced.
    pub fn check_delete_guard(&self, guard: DeleteGuard) -> Result<(), PlanError> {
        let deletes = self.count(ChangeKind::Delete);
        if guard.force || deletes == 0 {
            return Ok(());
        }
        // deletes / remote > max_percent / 100, in integers.
        let over =
            (deletes as u128) * 100 > (self.remote_count as u128) * u128::from(guard.max_percent);
        if over {
            return Err(PlanError::TooManyDeletes {
                deletes,
                remote: self.remote_count,
                max_percent: guard.max_percent,
            });
        }
        Ok(())
    }
}

/// Computes what to upload, update, delete and leave alone.
pub fn plan_sync(
    local: &[LocalEntry],
    remote: &[RemoteEntry],
    options: PlanOptions<'_>,
) -> Result<SyncPlan, PlanError> {
    let mut local_by_key: BTreeMap<&str, &LocalEntry> = BTreeMap::new();
    for entry in local {
        if local_by_key.insert(entry.key.as_str(), entry).is_some() {
            return Err(PlanError::DuplicateLocalKey {
                key: entry.key.clone(),
            });
        }
    }
    let mut plan = SyncPlan::default();
    let mut remote_by_key: BTreeMap<&str, &RemoteEntry> = BTreeMap::new();
    for entry in remote {
        if is_within_prefix(options.prefix, &entry.key) {
            remote_by_key.insert(entry.key.as_str(), entry);
        } else {
            plan.ignored_outside_prefix += 1;
        }
    }
    plan.remote_count = remote_by_key.len();

    let mut uploads = Vec::new();
    let mut updates = Vec::new();
    let mut deletes = Vec::new();
    for (key, entry) in &local_by_key {
        match remote_by_key.get(key) {
            None => uploads.push(PlannedChange {
                key: entry.key.clone(),
                kind: ChangeKind::Upload,
                size: entry.size,
                local_sha256: Some(entry.sha256.clone()),
                remote_sha256: None,
            }),
            Some(remote) => {
                let same = remote
                    .sha256
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(&entry.sha256));
                if same {
                    plan.unchanged.push(entry.key.clone());
                } else {
                    updates.push(PlannedChange {
                        key: entry.key.clone(),
                        kind: ChangeKind::Update,
                        size: entry.size,
                        local_sha256: Some(entry.sha256.clone()),
                        remote_sha256: remote.sha256.clone(),
                    });
                }
            }
        }
    }
    for (key, remote) in &remote_by_key {
        if local_by_key.contains_key(key) {
            continue;
        }
        if options.delete {
            deletes.push(PlannedChange {
                key: remote.key.clone(),
                kind: ChangeKind::Delete,
                size: 0,
                local_sha256: None,
                remote_sha256: remote.sha256.clone(),
            });
        } else {
            plan.remote_only_kept.push(remote.key.clone());
        }
    }
    plan.changes = uploads.into_iter().chain(updates).chain(deletes).collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn local(key: &str, sha: &str) -> LocalEntry {
        LocalEntry {
            key: key.into(),
            sha256: sha.into(),
            size: 1,
        }
    }
    fn remote(key: &str, sha: Option<&str>) -> RemoteEntry {
        RemoteEntry {
            key: key.into(),
            sha256: sha.map(Into::into),
            size: 1,
        }
    }
    fn kinds(plan: &SyncPlan) -> Vec<(&str, ChangeKind)> {
        plan.changes
            .iter()
            .map(|c| (c.key.as_str(), c.kind))
            .collect()
    }

    #[test]
    fn table() {
        use ChangeKind::*;
        struct Case {
            name: &'static str,
            local: Vec<LocalEntry>,
            remote: Vec<RemoteEntry>,
            delete: bool,
            changes: Vec<(&'static str, ChangeKind)>,
            unchanged: Vec<&'static str>,
            kept: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "first push uploads everything",
                local: vec![local("p/a", "1"), local("p/b", "2")],
                remote: vec![],
                delete: false,
                changes: vec![("p/a", Upload), ("p/b", Upload)],
                unchanged: vec![],
                kept: vec![],
            },
            Case {
                name: "same hashes are unchanged (case-insensitive hex)",
                local: vec![local("p/a", "ab")],
                remote: vec![remote("p/a", Some("AB"))],
                delete: false,
                changes: vec![],
                unchanged: vec!["p/a"],
                kept: vec![],
            },
            Case {
                name: "different hash is an update",
                local: vec![local("p/a", "1")],
                remote: vec![remote("p/a", Some("2"))],
                delete: false,
                changes: vec![("p/a", Update)],
                unchanged: vec![],
                kept: vec![],
            },
            Case {
                name: "missing remote metadata counts as changed",
                local: vec![local("p/a", "1")],
                remote: vec![remote("p/a", None)],
                delete: false,
                changes: vec![("p/a", Update)],
                unchanged: vec![],
                kept: vec![],
            },
            Case {
                name: "remote only is kept without --delete",
                local: vec![],
                remote: vec![remote("p/gone", Some("1"))],
                delete: false,
                changes: vec![],
                unchanged: vec![],
                kept: vec!["p/gone"],
            },
            Case {
                name: "remote only is deleted with --delete",
                local: vec![local("p/a", "1")],
                remote: vec![remote("p/a", Some("1")), remote("p/gone", Some("1"))],
                delete: true,
                changes: vec![("p/gone", Delete)],
                unchanged: vec!["p/a"],
                kept: vec![],
            },
            Case {
                name: "keys outside the prefix are never touched",
                local: vec![],
                remote: vec![
                    remote("p-old/x", Some("1")),
                    remote("other/y", None),
                    remote("p/", None),
                ],
                delete: true,
                changes: vec![],
                unchanged: vec![],
                kept: vec![],
            },
            Case {
                name: "order: uploads, updates, deletes",
                local: vec![local("p/z", "1"), local("p/a", "2")],
                remote: vec![remote("p/z", Some("0")), remote("p/m", Some("0"))],
                delete: true,
                changes: vec![("p/a", Upload), ("p/z", Update), ("p/m", Delete)],
                unchanged: vec![],
                kept: vec![],
            },
        ];
        for case in cases {
            let plan = plan_sync(
                &case.local,
                &case.remote,
                PlanOptions {
                    prefix: "p/",
                    delete: case.delete,
                },
            )
            .unwrap();
            assert_eq!(kinds(&plan), case.changes, "{}", case.name);
            assert_eq!(plan.unchanged, case.unchanged, "{}", case.name);
            assert_eq!(plan.remote_only_kept, case.kept, "{}", case.name);
        }
    }

    #[test]
    fn duplicate_local_keys_are_an_error() {
        let err = plan_sync(
            &[local("a", "1"), local("a", "2")],
            &[],
            PlanOptions {
                prefix: "",
                delete: false,
            },
        );
        assert!(matches!(err, Err(PlanError::DuplicateLocalKey { .. })));
    }

    #[test]
    fn delete_guard() {
        let remote: Vec<_> = (0..10)
            .map(|i| remote(&format!("k{i}"), Some("1")))
            .collect();
        let keep = |n: usize| -> Vec<LocalEntry> {
            (0..n).map(|i| local(&format!("k{i}"), "1")).collect()
        };
        let guard = DeleteGuard {
            max_percent: 50,
            force: false,
        };
        let plan = |n| {
            plan_sync(
                &keep(n),
                &remote,
                PlanOptions {
                    prefix: "",
                    delete: true,
                },
            )
            .unwrap()
        };
        // 5 of 10 deleted = 50%: allowed. 6 of 10: refused unless forced.
        assert!(plan(5).check_delete_guard(guard).is_ok());
        assert_eq!(
            plan(4).check_delete_guard(guard),
            Err(PlanError::TooManyDeletes {
                deletes: 6,
                remote: 10,
                max_percent: 50
            })
        );
        assert!(plan(4)
            .check_delete_guard(DeleteGuard {
                force: true,
                ..guard
            })
            .is_ok());
        assert!(plan(0)
            .check_delete_guard(DeleteGuard {
                max_percent: 100,
                force: false
            })
            .is_ok());
    }

    proptest! {
        /// Every key under the prefix lands in exactly one bucket; nothing
        /// outside the prefix is ever planned; deletes only with `delete`.
        #[test]
        fn plan_partitions_keys(
            local_keys in proptest::collection::btree_map("[a-c]{1,2}", "[01]", 0..8),
            remote_keys in proptest::collection::btree_map("(p/|q/)[a-c]{1,2}", proptest::option::of("[01]"), 0..8),
            delete in any::<bool>(),
        ) {
            let local: Vec<_> = local_keys.iter().map(|(k, h)| local(&format!("p/{k}"), h)).collect();
            let remote: Vec<_> = remote_keys.iter().map(|(k, h)| remote(k, h.as_deref())).collect();
            let plan = plan_sync(&local, &remote, PlanOptions { prefix: "p/", delete }).unwrap();
            for change in &plan.changes {
                prop_assert!(change.key.starts_with("p/"));
                prop_assert!(delete || change.kind != ChangeKind::Delete);
            }
            let mut seen: Vec<&str> = plan.changes.iter().map(|c| c.key.as_str())
                .chain(plan.unchanged.iter().map(String::as_str))
                .chain(plan.remote_only_kept.iter().map(String::as_str))
                .collect();
            seen.sort_unstable();
            let mut expected: Vec<String> = local.iter().map(|l| l.key.clone())
                .chain(remote.iter().filter(|r| r.key.starts_with("p/")).map(|r| r.key.clone()))
                .collect();
            expected.sort_unstable();
            expected.dedup();
            prop_assert_eq!(seen, expected.iter().map(String::as_str).collect::<Vec<_>>());
            // A second plan against the state the first would produce is empty.
            let after: Vec<_> = local.iter().map(|l| RemoteEntry { key: l.key.clone(), sha256: Some(l.sha256.clone()), size: 1 }).collect();
            let second = plan_sync(&local, &after, PlanOptions { prefix: "p/", delete: true }).unwrap();
            prop_assert!(second.is_empty());
        }
    }
}
