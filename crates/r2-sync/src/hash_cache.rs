//! The local state cache (`.r2-sync-cache.json`) and file hashing. The cache
//! maps a file's (size, mtime) to its SHA-256 so unchanged files are not
//! re-read, and, per target, a remote key's ETag to the SHA-256 we stored
//! with it so planning needs no HEAD per object. It is only ever an
//! optimisation: deleting it costs time, never correctness.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::walk::LocalFile;

/// Default file name of the state cache, inside the synced folder.
pub const DEFAULT_CACHE_FILE: &str = ".r2-sync-cache.json";
const CACHE_FORMAT_VERSION: u32 = 1;
const READ_BUFFER: usize = 256 * 1024;

/// What we knew about a local file the last time we hashed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: u64,
    pub sha256: String,
}

/// What we knew about a remote object: the ETag is only a validator for the
/// cached SHA-256, never a content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStamp {
    pub etag: String,
    pub sha256: String,
}

/// Remote key → stamp, for one target.
pub type RemoteStamps = BTreeMap<String, RemoteStamp>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCache {
    pub version: u32,
    /// Relative path → stamp.
    #[serde(default)]
    pub files: BTreeMap<String, FileStamp>,
    /// Target id → remote stamps.
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteStamps>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot write state cache {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
}

impl StateCache {
    /// Loads the cache; a missing, unreadable or foreign-format file yields an
    /// empty cache plus a warning (the run is then merely slower).
    pub fn load(path: &Path) -> (Self, Option<String>) {
        let empty = Self {
            version: CACHE_FORMAT_VERSION,
            ..Self::default()
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return (empty, None),
            Err(err) => {
                return (
                    empty,
                    Some(format!("ignoring state cache {}: {err}", path.display())),
                )
            }
        };
        match serde_json::from_slice::<Self>(&bytes) {
            Ok(cache) if cache.version == CACHE_FORMAT_VERSION => (cache, None),
            Ok(cache) => (
                empty,
                Some(format!(
                    "ignoring state cache {} of format version {}",
                    path.display(),
                    cache.version
                )),
            ),
            Err(err) => (
                empty,
                Some(format!(
                    "ignoring corrupt state cache {}: {err}",
                    path.display()
                )),
            ),
        }
    }

    /// Writes the cache atomically: a temporary file in the same directory,
    /// fsynced, then renamed over the old one. A crash leaves the old cache.
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        let err = |source| CacheError::Write {
            path: path.display().to_string(),
            source,
        };
        let bytes = serde_json::to_vec(self).map_err(|e| err(io::Error::other(e)))?;
        let tmp = temp_path_next_to(path);
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }

    pub fn remote_stamps(&self, target_id: &str) -> RemoteStamps {
        self.remotes.get(target_id).cloned().unwrap_or_default()
    }
}

fn temp_path_next_to(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| DEFAULT_CACHE_FILE.into());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Streams a file through SHA-256.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 of bytes in memory, lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A local file with its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedFile {
    pub file: LocalFile,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy)]
pub struct HashOptions {
    /// Re-hash every file, ignoring cached stamps (`--checksum`).
    pub force: bool,
    /// Hashing threads.
    pub workers: usize,
    /// Only stamps of files modified before this instant (ns since epoch) are
    /// trusted and recorded: a file written in the same mtime tick as it was
    /// hashed could change again without its mtime moving.
    pub trust_before_ns: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HashStats {
    pub hashed: usize,
    pub from_cache: usize,
}

#[derive(Debug)]
pub struct HashOutcome {
    /// In the order of the input.
    pub files: Vec<HashedFile>,
    pub issues: Vec<crate::walk::WalkIssue>,
    pub stats: HashStats,
    /// The new `files` part of the cache: exactly the files seen now.
    pub stamps: BTreeMap<String, FileStamp>,
}

/// A file's hash and whether it came from the cache, or why hashing failed.
type HashSlot = Result<(String, bool), String>;

/// Hashes `files`, reusing `cache` stamps whose size and mtime still match.
pub fn hash_files(
    files: Vec<LocalFile>,
    cache: &BTreeMap<String, FileStamp>,
    options: HashOptions,
) -> HashOutcome {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<HashSlot>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let workers = options.workers.clamp(1, 32).min(files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                let cached = (!options.force)
                    .then(|| cache.get(&file.rel_path))
                    .flatten()
                    .filter(|s| {
                        s.size == file.size && s.mtime_ns == file.mtime_ns && file.mtime_ns != 0
                    });
                let result = match cached {
                    Some(stamp) => Ok((stamp.sha256.clone(), true)),
                    None => sha256_file(&file.path)
                        .map(|h| (h, false))
                        .map_err(|e| e.to_string()),
                };
                if let Some(slot) = slots.get(i) {
                    if let Ok(mut slot) = slot.lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });

    let mut outcome = HashOutcome {
        files: Vec::with_capacity(files.len()),
        issues: Vec::new(),
        stats: HashStats::default(),
        stamps: BTreeMap::new(),
    };
    for (file, slot) in files.into_iter().zip(slots) {
        let result = slot.into_inner().ok().flatten();
        match result {
            Some(Ok((sha256, from_cache))) => {
                if from_cache {
                    outcome.stats.from_cache += 1;
                } else {
                    outcome.stats.hashed += 1;
                }
                if file.mtime_ns != 0 && file.mtime_ns < options.trust_before_ns {
                    outcome.stamps.insert(
                        file.rel_path.clone(),
                        FileStamp {
                            size: file.size,
                            mtime_ns: file.mtime_ns,
                            sha256: sha256.clone(),
                        },
                    );
                }
                outcome.files.push(HashedFile { file, sha256 });
            }
            Some(Err(message)) => outcome.issues.push(crate::walk::WalkIssue {
                path: file.path.display().to_string(),
                message: format!("cannot hash: {message}"),
            }),
            None => outcome.issues.push(crate::walk::WalkIssue {
                path: file.path.display().to_string(),
                message: "hashing thread failed".into(),
            }),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path, rel: &str, body: &str) -> LocalFile {
        let path = dir.join(rel);
        std::fs::write(&path, body).unwrap();
        LocalFile {
            rel_path: rel.into(),
            key: rel.into(),
            path,
            size: body.len() as u64,
            mtime_ns: 1_000,
        }
    }

    const OPTIONS: HashOptions = HashOptions {
        force: false,
        workers: 2,
        trust_before_ns: u64::MAX,
    };

    #[test]
    fn hashes_match_sha256_of_contents() {
        let dir = tempfile::tempdir().unwrap();
        let out = hash_files(
            vec![local(dir.path(), "a.md", "hello")],
            &BTreeMap::new(),
            OPTIONS,
        );
        assert_eq!(
            out.files[0].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            out.stats,
            HashStats {
                hashed: 1,
                from_cache: 0
            }
        );
        assert_eq!(out.stamps["a.md"].sha256, out.files[0].sha256);
    }

    #[test]
    fn matching_stamps_skip_rehash_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let file = local(dir.path(), "a.md", "hello");
        // A stamp with the same size and mtime but a different hash proves
        // the file was not read.
        let mut cache = BTreeMap::new();
        cache.insert(
            "a.md".to_string(),
            FileStamp {
                size: 5,
                mtime_ns: 1_000,
                sha256: "cached".into(),
            },
        );
        let out = hash_files(vec![file.clone()], &cache, OPTIONS);
        assert_eq!(out.files[0].sha256, "cached");
        assert_eq!(out.stats.from_cache, 1);

        let forced = hash_files(
            vec![file.clone()],
            &cache,
            HashOptions {
                force: true,
                ..OPTIONS
            },
        );
        assert_eq!(forced.files[0].sha256, sha256_bytes(b"hello"));

        let mut moved = file;
        moved.mtime_ns = 2_000;
        let out = hash_files(vec![moved], &cache, OPTIONS);
        assert_eq!(out.files[0].sha256, sha256_bytes(b"hello"));
    }

    #[test]
    fn recent_files_are_not_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let out = hash_files(
            vec![local(dir.path(), "a.md", "x")],
            &BTreeMap::new(),
            HashOptions {
                trust_before_ns: 500,
                ..OPTIONS
            },
        );
        assert!(out.stamps.is_empty());
    }

    #[test]
    fn unreadable_files_become_issues() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = local(dir.path(), "a.md", "x");
        file.path = dir.path().join("missing.md");
        let out = hash_files(vec![file], &BTreeMap::new(), OPTIONS);
        assert!(out.files.is_empty());
        assert_eq!(out.issues.len(), 1);
    }

    #[test]
    fn cache_round_trips_atomically_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let (mut cache, warning) = StateCache::load(&path);
        assert!(warning.is_none());
        cache.files.insert(
            "a".into(),
            FileStamp {
                size: 1,
                mtime_ns: 2,
                sha256: "h".into(),
            },
        );
        cache.save(&path).unwrap();
        assert_eq!(StateCache::load(&path).0, cache);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );

        std::fs::write(&path, "{not json").unwrap();
        let (loaded, warning) = StateCache::load(&path);
        assert!(loaded.files.is_empty());
        assert!(warning.is_some());
    }
}
