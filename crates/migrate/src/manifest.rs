//! The export manifest: what each JSONL file holds (rows, bytes, SHA-256),
//! written last so its presence means the export is complete. Owns reading
//! an export back and checking it against its manifest; never changes a file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The manifest's file name inside an export directory.
pub const MANIFEST_FILE: &str = "manifest.json";
pub const COMPANIES_FILE: &str = "companies.jsonl";
pub const DOCUMENTS_FILE: &str = "documents.jsonl";
pub const CHUNKS_FILE: &str = "chunks.jsonl";

/// What one exported file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The source, without credentials (`host:port/database`).
    pub source: String,
    /// When the export's snapshot was taken (RFC 3339, from the source's clock).
    pub snapshot_at: String,
    /// `--limit` if one was given: the export is then partial by request.
    pub limit: Option<u64>,
    /// File name → what it holds.
    pub files: BTreeMap<String, FileEntry>,
    /// Rows in the source tables at snapshot time (whatever `--limit` said).
    pub source_counts: BTreeMap<String, u64>,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a manifest: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: line {line}: {message}")]
    BadRow {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{file}: the manifest says {expected}, the file has {actual}")]
    Mismatch {
        file: String,
        expected: String,
        actual: String,
    },
}

impl ManifestError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ManifestError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| ManifestError::Malformed { path, source })
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let text =
            serde_json::to_string_pretty(self).map_err(|source| ManifestError::Malformed {
                path: path.clone(),
                source,
            })?;
        std::fs::write(&tmp, text + "\n").map_err(|e| ManifestError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ManifestError::io(&path, e))
    }

    /// Re-hashes every listed file and compares rows, bytes and SHA-256.
    pub fn check_files(&self, dir: &Path) -> Result<(), ManifestError> {
        for (name, entry) in &self.files {
            let path = dir.join(name);
            let file = File::open(&path).map_err(|e| ManifestError::io(&path, e))?;
            let mut reader = BufReader::new(file);
            let mut hasher = Sha256::new();
            let (mut bytes, mut rows) = (0u64, 0u64);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| ManifestError::io(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf);
                bytes += n as u64;
                rows += 1;
            }
            let actual = FileEntry {
                rows,
                bytes,
                sha256: hex::encode(hasher.finalize()),
            };
            if &actual != entry {
                return Err(ManifestError::Mismatch {
                    file: name.clone(),
                    expected: format!(
                        "{} rows, {} bytes, sha256 {}",
                        entry.rows, entry.bytes, entry.sha256
                    ),
                    actual: format!(
                        "{} rows, {} bytes, sha256 {}",
                        actual.rows, actual.bytes, actual.sha256
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Writes JSONL rows to a temporary file while counting and hashing them;
/// [`JsonlWriter::finish`] renames it into place.
#[derive(Debug)]
pub struct JsonlWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    hasher: Sha256,
    rows: u64,
    bytes: u64,
}

impl JsonlWriter {
    pub fn create(dir: &Path, name: &str) -> Result<Self, ManifestError> {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.partial"));
        let file = File::create(&tmp).map_err(|e| ManifestError::io(&tmp, e))?;
        Ok(Self {
            out: BufWriter::new(file),
            tmp,
            path,
            hasher: Sha256::new(),
            rows: 0,
            bytes: 0,
        })
    }

    pub fn write<T: Serialize>(&mut self, row: &T) -> Result<(), ManifestError> {
        let mut line = serde_json::to_vec(row).map_err(|source| ManifestError::Malformed {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| ManifestError::io(&self.tmp, e))?;
        self.hasher.update(&line);
        self.rows += 1;
        self.bytes += line.len() as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(mut self) -> Result<FileEntry, ManifestError> {
        self.out
            .flush()
            .map_err(|e| ManifestError::io(&self.tmp, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| ManifestError::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| ManifestError::io(&self.path, e))?;
        Ok(FileEntry {
            rows: self.rows,
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// Reads a JSONL file row by row, never the whole file at once.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<impl Iterator<Item = Result<T, ManifestError>>, ManifestError> {
    let file = File::open(path).map_err(|e| ManifestError::io(path, e))?;
    let path = path.to_owned();
    let mut reader = BufReader::new(file);
    let mut line_no = 0u64;
    Ok(std::iter::from_fn(move || {
        let mut line = String::new();
        match reader.by_ref().read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                line_no += 1;
                Some(
                    serde_json::from_str(&line).map_err(|e| ManifestError::BadRow {
                        path: path.clone(),
                        line: line_no,
                        message: e.to_string(),
                    }),
                )
            }
            Err(e) => Some(Err(ManifestError::io(&path, e))),
        }
    }))
}
