//! Walks the local folder: include/exclude globs, a `.gitignore`-style ignore
//! file, regular files only, symlinks never followed. Reads metadata, never
//! file contents (hashing is `hash_cache`'s job).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::WalkBuilder;

use crate::key;

/// Default name of the per-folder ignore file (gitignore syntax).
pub const DEFAULT_IGNORE_FILE: &str = ".r2syncignore";

/// What to walk and what to leave out.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Globs a file's relative path must match (any of them); empty = all.
    pub include: Vec<String>,
    /// Globs that exclude a file even if it is included.
    pub exclude: Vec<String>,
    /// Name of the gitignore-style file honoured in every directory.
    pub ignore_file: Option<String>,
    /// Also walk dot-files and dot-directories (`.git` is always skipped).
    pub include_hidden: bool,
    /// Absolute paths never to upload (the state cache, when inside the folder).
    pub never_upload: Vec<PathBuf>,
}

/// A regular file found by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Relative path with `/` separators (also the state-cache key).
    pub rel_path: String,
    /// Object key: prefix + `rel_path`.
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (0 if unknown).
    pub mtime_ns: u64,
}

/// A path the walk could not turn into a [`LocalFile`]; reported, not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkIssue {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct WalkOutcome {
    /// Sorted by key.
    pub files: Vec<LocalFile>,
    pub issues: Vec<WalkIssue>,
    /// Symlinks and other non-regular entries left out on purpose.
    pub skipped_special: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("invalid glob {glob:?}: {message}")]
    InvalidGlob { glob: String, message: String },
}

/// Compiles gitignore-flavoured globs: a pattern without `/` matches the file
/// name at any depth; one with `/` is anchored at the folder root.
fn compile_globs(patterns: &[String]) -> Result<Option<GlobSet>, WalkError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let anchored = pattern.trim_start_matches('/');
        let full = if pattern.contains('/') {
            anchored.to_owned()
        } else {
            format!("**/{anchored}")
        };
        let glob = GlobBuilder::new(&full)
            .literal_separator(true)
            .build()
            .map_err(|e| WalkError::InvalidGlob {
                glob: pattern.clone(),
                message: e.to_string(),
            })?;
        builder.add(glob);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| WalkError::InvalidGlob {
            glob: patterns.join(", "),
            message: e.to_string(),
        })
}

/// Walks `root` and returns every regular file to consider, keyed under
/// `prefix` (already normalised).
pub fn walk_folder(
    root: &Path,
    prefix: &str,
    options: &WalkOptions,
) -> Result<WalkOutcome, WalkError> {
    if !root.is_dir() {
        return Err(WalkError::NotADirectory {
            path: root.display().to_string(),
        });
    }
    let include = compile_globs(&options.include)?;
    let exclude = compile_globs(&options.exclude)?;

    let mut builder = WalkBuilder::new(root);
    builder
        .standard_filters(false)
        .hidden(!options.include_hidden)
        .follow_links(false)
        .parents(false)
        .filter_entry(|entry| entry.file_name() != ".git");
    if let Some(name) = &options.ignore_file {
        builder.add_custom_ignore_filename(name);
    }

    let mut outcome = WalkOutcome::default();
    for entry in builder.build() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                outcome.issues.push(WalkIssue {
                    path: root.display().to_string(),
                    message: err.to_string(),
                });
                continue;
            }
        };
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            continue;
        }
        // `file_type` comes from lstat: a symlink is reported as a symlink,
        // never as what it points to.
        if !file_type.is_file() {
            outcome.skipped_special += 1;
            continue;
        }
        let path = entry.path();
        if options.never_upload.iter().any(|p| p == path) {
            continue;
        }
        if options
            .ignore_file
            .as_deref()
            .is_some_and(|name| entry.file_name() == name)
        {
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel_path = match key::relative_key_path(rel) {
            Ok(rel_path) => rel_path,
            Err(err) => {
                outcome.issues.push(WalkIssue {
                    path: path.display().to_string(),
                    message: err.to_string(),
                });
                continue;
            }
        };
        if include.as_ref().is_some_and(|set| !set.is_match(&rel_path)) {
            continue;
        }
        if exclude.as_ref().is_some_and(|set| set.is_match(&rel_path)) {
            continue;
        }
        let key = match key::checked_key(format!("{prefix}{rel_path}")) {
            Ok(key) => key,
            Err(err) => {
                outcome.issues.push(WalkIssue {
                    path: path.display().to_string(),
                    message: err.to_string(),
                });
                continue;
            }
        };
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(err) => {
                outcome.issues.push(WalkIssue {
                    path: path.display().to_string(),
                    message: err.to_string(),
                });
                continue;
            }
        };
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        outcome.files.push(LocalFile {
            key,
            rel_path,
            path: path.to_path_buf(),
            size: metadata.len(),
            mtime_ns,
        });
    }
    outcome.files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, rel: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, rel).unwrap();
    }

    fn keys(outcome: &WalkOutcome) -> Vec<&str> {
        outcome.files.iter().map(|f| f.key.as_str()).collect()
    }

    #[test]
    fn include_exclude_and_ignore_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "a.md",
            "b.txt",
            "sub/c.md",
            "sub/draft/d.md",
            "sub/e.md",
            ".hidden.md",
            ".git/config",
        ] {
            touch(root, rel);
        }
        fs::write(root.join(".r2syncignore"), "draft/\n").unwrap();
        let options = WalkOptions {
            include: vec!["*.md".into()],
            exclude: vec!["sub/e.md".into()],
            ignore_file: Some(DEFAULT_IGNORE_FILE.into()),
            ..WalkOptions::default()
        };
        let outcome = walk_folder(root, "p/", &options).unwrap();
        assert_eq!(keys(&outcome), ["p/a.md", "p/sub/c.md"]);
        assert_eq!(outcome.files[0].size, 4);
        assert!(outcome.issues.is_empty());
    }

    #[test]
    fn hidden_files_only_on_request_and_git_never() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), ".hidden.md");
        touch(dir.path(), ".git/HEAD");
        let options = WalkOptions {
            include_hidden: true,
            ..WalkOptions::default()
        };
        assert_eq!(
            keys(&walk_folder(dir.path(), "", &options).unwrap()),
            [".hidden.md"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "secret.md");
        touch(dir.path(), "real.md");
        std::os::unix::fs::symlink(outside.path().join("secret.md"), dir.path().join("link.md"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
        let outcome = walk_folder(dir.path(), "", &WalkOptions::default()).unwrap();
        assert_eq!(keys(&outcome), ["real.md"]);
        assert_eq!(outcome.skipped_special, 2);
    }

    #[cfg(unix)]
    #[test]
    fn invalid_names_are_reported_not_uploaded() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "ok.md");
        fs::write(dir.path().join(OsStr::from_bytes(b"bad\xff.md")), "x").unwrap();
        fs::write(dir.path().join("tab\there.md"), "x").unwrap();
        let outcome = walk_folder(dir.path(), "", &WalkOptions::default()).unwrap();
        assert_eq!(keys(&outcome), ["ok.md"]);
        assert_eq!(outcome.issues.len(), 2);
    }

    #[test]
    fn never_upload_paths_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "a.md");
        touch(dir.path(), "cache.json");
        let options = WalkOptions {
            never_upload: vec![dir.path().join("cache.json")],
            ..WalkOptions::default()
        };
        assert_eq!(
            keys(&walk_folder(dir.path(), "", &options).unwrap()),
            ["a.md"]
        );
    }
}
