//! Content hashes, deterministic vector ids and document (R2 object) keys.
//!
//! Owns what a valid document key and a vector id look like; never touches
//! storage. A key that passes [`DocumentKey::parse`] is safe to use as an R2
//! key and as a D1 value.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Longest object key R2 accepts, in bytes (Cloudflare R2 docs, "Limits":
/// "Object key length: 1,024 bytes").
pub const R2_MAX_KEY_BYTES: usize = 1024;

/// R2 custom metadata name carrying an object's content SHA-256 (hex), as the admin API and
/// r2-sync (`x-amz-meta-sha256` over the S3 API) write it.
pub const SHA256_METADATA: &str = "sha256";

/// Request header with which an uploader (r2-sync, the migration) asks the
/// admin API to verify a document's SHA-256 before storing it.
pub const CONTENT_SHA256_HEADER: &str = "x-content-sha256";

/// Lower-case hexadecimal SHA-256 of `bytes` (64 characters).
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic vector id `<document_id>:<version>:<chunk_index>`.
#[must_use]
pub fn vector_id(document_id: i64, version: i64, chunk_index: u32) -> String {
    VectorId {
        document_id,
        version,
        chunk_index,
    }
    .to_string()
}

/// The parts of a vector id: which chunk of which generation of which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VectorId {
    /// D1 `documents.id`.
    pub document_id: i64,
    /// Generation (`chunks.version`) the vector belongs to.
    pub version: i64,
    /// Position of the chunk in its generation, from 0.
    pub chunk_index: u32,
}

impl VectorId {
    /// Parses `<document_id>:<version>:<chunk_index>`; only the canonical form
    /// that [`vector_id`] writes is accepted, so parse and print round-trip.
    pub fn parse(text: &str) -> Result<Self, VectorIdError> {
        let parts: Vec<&str> = text.split(':').collect();
        let [document_id, version, chunk_index] = parts[..] else {
            return Err(VectorIdError::WrongPartCount {
                id: text.to_owned(),
                found: parts.len(),
            });
        };
        let id = Self {
            document_id: canonical_number(text, "document_id", document_id)?,
            version: canonical_number(text, "version", version)?,
            chunk_index: canonical_number(text, "chunk_index", chunk_index)?,
        };
        Ok(id)
    }
}

/// Parses one decimal part, rejecting forms `to_string` would not write back
/// (`+1`, `01`, `-0`), so two spellings never name the same vector.
fn canonical_number<T: FromStr + ToString>(
    id: &str,
    part: &'static str,
    text: &str,
) -> Result<T, VectorIdError> {
    let invalid = || VectorIdError::InvalidPart {
        id: id.to_owned(),
        part,
        value: text.to_owned(),
    };
    let value: T = text.parse().map_err(|_| invalid())?;
    if value.to_string() == text {
        Ok(value)
    } else {
        Err(invalid())
    }
}

impl fmt::Display for VectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.document_id, self.version, self.chunk_index
        )
    }
}

impl FromStr for VectorId {
    type Err = VectorIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Why a string is not a vector id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VectorIdError {
    /// Not three `:`-separated parts.
    #[error("vector id {id:?} has {found} ':'-separated parts, expected 3 (document_id:version:chunk_index)")]
    WrongPartCount {
        /// The text that was parsed.
        id: String,
        /// How many parts it had.
        found: usize,
    },
    /// A part is not a canonical decimal number of its type.
    #[error("vector id {id:?}: {part} {value:?} is not a canonical decimal number")]
    InvalidPart {
        /// The text that was parsed.
        id: String,
        /// Which part (`document_id`, `version` or `chunk_index`).
        part: &'static str,
        /// The offending text.
        value: String,
    },
}

/// A validated, normalised document key: the R2 object key of a markdown
/// document, relative (`companies/acme/overview.md`), `/`-separated.
///
/// Normalisation only removes what cannot change meaning: a leading `./` and
/// repeated `/`. Everything ambiguous or unsafe is rejected rather than
/// guessed (see [`KeyError`]). The normal form is the document's identity:
/// upload under [`DocumentKey::as_str`] so the R2 key and the D1 row agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DocumentKey(String);

impl DocumentKey {
    /// Validates and normalises `raw` (see the type's documentation).
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        if let Some((offset, ch)) = raw.char_indices().find(|&(_, c)| c.is_control()) {
            return Err(KeyError::ControlCharacter {
                offset,
                code_point: u32::from(ch),
            });
        }
        if let Some(offset) = raw.find('\\') {
            return Err(KeyError::Backslash { offset });
        }
        if raw.starts_with('/') {
            return Err(KeyError::Absolute);
        }
        let mut rest = raw;
        while let Some(tail) = rest.strip_prefix("./") {
            rest = tail.trim_start_matches('/');
        }
        let mut normal = String::with_capacity(rest.len());
        for (index, segment) in rest.split('/').filter(|s| !s.is_empty()).enumerate() {
            match segment {
                "." => return Err(KeyError::DotSegment { segment: index }),
                ".." => return Err(KeyError::ParentSegment { segment: index }),
                _ => {}
            }
            if index > 0 {
                normal.push('/');
            }
            normal.push_str(segment);
        }
        if normal.is_empty() {
            return Err(KeyError::Empty);
        }
        if rest.ends_with('/') {
            return Err(KeyError::TrailingSlash);
        }
        if normal.len() > R2_MAX_KEY_BYTES {
            return Err(KeyError::TooLong {
                bytes: normal.len(),
            });
        }
        Ok(Self(normal))
    }

    /// The normalised key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments; the last is the file name.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment (`overview.md`).
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The file name without its extension (`overview`); a leading dot
    /// (`.profile`) is part of the stem, not an extension.
    #[must_use]
    pub fn file_stem(&self) -> &str {
        let name = self.file_name();
        match name.rfind('.') {
            Some(dot) if dot > 0 => &name[..dot],
            _ => name,
        }
    }

    /// The extension without its dot (`md`), if the file name has one.
    #[must_use]
    pub fn extension(&self) -> Option<&str> {
        let name = self.file_name();
        match name.rfind('.') {
            Some(dot) if dot > 0 => Some(&name[dot + 1..]),
            _ => None,
        }
    }

    /// Whether the key names a markdown file (`.md` or `.markdown`, any case).
    ///
    /// Keys are not rejected for other extensions: the caller decides whether
    /// to skip them (the sync CLI and the queue consumer do).
    #[must_use]
    pub fn is_markdown(&self) -> bool {
        self.extension().is_some_and(|ext| {
            ext.eq_ignore_ascii_case("md") || ext.eq_ignore_ascii_case("markdown")
        })
    }
}

impl fmt::Display for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DocumentKey {
    type Err = KeyError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

impl AsRef<str> for DocumentKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for DocumentKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A document's key from its place in the corpus: the one mapping every
/// uploader uses, so a document has the same key whichever tool wrote it.
///
/// **The key is the document's path relative to the corpus root**,
/// normalised as [`DocumentKey::parse`] does, with nothing in front
/// (`companies/acme/overview.md`):
///
/// - `migrate import`: a Supabase row's `documents.path` (already relative
///   to the corpus the old ingestion scripts read);
/// - `r2-sync push <folder>`: a file's path under `<folder>` when `<folder>`
///   is the corpus root (the repository's `corpus/`, no `--prefix`); a
///   sub-folder is pushed with its place in the corpus as `--prefix`
///   (`corpus/companies` with `--prefix companies/`).
///
/// Nothing is prepended because the key's first segments are what the
/// company rule reads ([`crate::document::parse_document`]): under a prefix
/// such as `docs/`, every document without a front-matter `company:` would
/// get the company `docs`, and a migrated corpus would be uploaded a second
/// time under other keys.
pub fn document_key(corpus_path: &str) -> Result<DocumentKey, KeyError> {
    DocumentKey::parse(corpus_path)
}

/// Why a string is not a usable document key. Offsets are byte offsets in
/// the text given to [`DocumentKey::parse`]; segment numbers count from 0
/// after normalisation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Nothing left once `./` and `/` are removed.
    #[error("document key is empty")]
    Empty,
    /// Starts with `/`; keys are relative to the bucket.
    #[error("document key must be relative, not start with '/'")]
    Absolute,
    /// Contains `\`; keys use `/` only, so a Windows path is not silently reinterpreted.
    #[error("document key contains a backslash at byte {offset}; use '/' as the separator")]
    Backslash {
        /// Byte offset of the first backslash.
        offset: usize,
    },
    /// Contains a control character (`U+0000`–`U+001F`, `U+007F`–`U+009F`).
    #[error("document key contains control character U+{code_point:04X} at byte {offset}")]
    ControlCharacter {
        /// Byte offset of the first control character.
        offset: usize,
        /// Its code point.
        code_point: u32,
    },
    /// Has a `.` segment (`a/./b`).
    #[error("document key has a '.' segment (segment {segment})")]
    DotSegment {
        /// Index of the segment.
        segment: usize,
    },
    /// Has a `..` segment, which could escape its folder.
    #[error("document key has a '..' segment (segment {segment})")]
    ParentSegment {
        /// Index of the segment.
        segment: usize,
    },
    /// Ends with `/`: names a folder, not a document.
    #[error("document key ends with '/': it names a folder, not a document")]
    TrailingSlash,
    /// Longer than R2 accepts.
    #[error("document key is {bytes} bytes long; R2 accepts at most {R2_MAX_KEY_BYTES}")]
    TooLong {
        /// Length of the normalised key in bytes.
        bytes: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_known_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(sha256_hex(input), *want);
        }
    }

    #[test]
    fn vector_ids_round_trip() {
        let cases = [
            (1, 1, 0, "1:1:0"),
            (42, 7, 1234, "42:7:1234"),
            (-3, 0, u32::MAX, "-3:0:4294967295"),
            (
                i64::MAX,
                i64::MIN,
                9,
                "9223372036854775807:-9223372036854775808:9",
            ),
        ];
        for (document_id, version, chunk_index, want) in cases {
            let text = vector_id(document_id, version, chunk_index);
            assert_eq!(text, want);
            let parsed: VectorId = text.parse().unwrap();
            assert_eq!(
                parsed,
                VectorId {
                    document_id,
                    version,
                    chunk_index
                }
            );
        }
    }

    #[test]
    fn vector_id_parser_rejects_non_canonical_text() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("1:2", None),
            ("1:2:3:4", None),
            ("a:2:3", Some("document_id")),
            ("01:2:3", Some("document_id")),
            ("+1:2:3", Some("document_id")),
            ("1: 2:3", Some("version")),
            ("1:-0:3", Some("version")),
            ("1:2:-3", Some("chunk_index")),
            ("1:2:4294967296", Some("chunk_index")),
            ("1:2:", Some("chunk_index")),
        ];
        for (text, bad_part) in cases {
            let err = VectorId::parse(text).unwrap_err();
            match (err, bad_part) {
                (VectorIdError::WrongPartCount { .. }, None) => {}
                (VectorIdError::InvalidPart { part, .. }, Some(want)) => {
                    assert_eq!(part, *want, "{text:?}");
                }
                (err, _) => panic!("{text:?}: unexpected {err:?}"),
            }
        }
    }

    #[test]
    fn a_source_path_and_a_corpus_file_give_one_key() {
        // (Supabase documents.path, path under the pushed corpus folder)
        let cases = [
            ("companies/acme/overview.md", "companies/acme/overview.md"),
            ("./companies//acme/a b ü.md", "companies/acme/a b ü.md"),
            ("notes/note-25.md", "notes/note-25.md"),
            ("readme.md", "readme.md"),
        ];
        for (source_path, file_path) in cases {
            let migrated = document_key(source_path).unwrap();
            let synced = document_key(file_path).unwrap();
            assert_eq!(migrated, synced, "{source_path:?}");
            assert_eq!(synced.as_str(), file_path);
        }
        assert!(document_key("companies/acme/../x.md").is_err());
    }

    #[test]
    fn keys_are_normalised() {
        let cases = [
            ("companies/acme/overview.md", "companies/acme/overview.md"),
            ("./companies/acme.md", "companies/acme.md"),
            ("././a.md", "a.md"),
            (".//a//b///c.md", "a/b/c.md"),
            ("docs/ünïcode 文档.md", "docs/ünïcode 文档.md"),
            (".hidden.md", ".hidden.md"),
            ("a/.../b.md", "a/.../b.md"),
            ("a/..b/c.md", "a/..b/c.md"),
        ];
        for (raw, want) in cases {
            assert_eq!(DocumentKey::parse(raw).unwrap().as_str(), want, "{raw:?}");
        }
    }

    #[test]
    fn bad_keys_are_rejected_with_the_reason() {
        let too_long = format!("{}.md", "a".repeat(R2_MAX_KEY_BYTES - 2));
        let cases: Vec<(&str, KeyError)> = vec![
            ("", KeyError::Empty),
            ("./", KeyError::Empty),
            ("//", KeyError::Absolute),
            ("/etc/passwd", KeyError::Absolute),
            ("a/../b.md", KeyError::ParentSegment { segment: 1 }),
            ("../b.md", KeyError::ParentSegment { segment: 0 }),
            ("a/./b.md", KeyError::DotSegment { segment: 1 }),
            (".", KeyError::DotSegment { segment: 0 }),
            ("a\\b.md", KeyError::Backslash { offset: 1 }),
            (
                "a\u{0}b.md",
                KeyError::ControlCharacter {
                    offset: 1,
                    code_point: 0,
                },
            ),
            (
                "ab\n.md",
                KeyError::ControlCharacter {
                    offset: 2,
                    code_point: 10,
                },
            ),
            (
                "é\u{85}.md",
                KeyError::ControlCharacter {
                    offset: 2,
                    code_point: 0x85,
                },
            ),
            ("companies/acme/", KeyError::TrailingSlash),
            (&too_long, KeyError::TooLong { bytes: 1025 }),
        ];
        for (raw, want) in cases {
            assert_eq!(DocumentKey::parse(raw), Err(want), "{raw:?}");
        }
        let stem = "a".repeat(R2_MAX_KEY_BYTES - "dir/".len() - ".md".len());
        let longest = format!("dir/{stem}.md");
        assert_eq!(
            DocumentKey::parse(&longest).unwrap().as_str().len(),
            R2_MAX_KEY_BYTES
        );
        // The limit applies to the normal form: redundant slashes don't count.
        let padded = format!(".//dir///{stem}.md");
        assert_eq!(DocumentKey::parse(&padded).unwrap().as_str(), longest);
    }

    #[test]
    fn key_parts_and_markdown_detection() {
        let cases = [
            (
                "companies/acme/overview.md",
                "overview.md",
                "overview",
                Some("md"),
                true,
            ),
            (
                "notes.MARKDOWN",
                "notes.MARKDOWN",
                "notes",
                Some("MARKDOWN"),
                true,
            ),
            ("a/b/readme.txt", "readme.txt", "readme", Some("txt"), false),
            ("a/Makefile", "Makefile", "Makefile", None, false),
            ("a/.md", ".md", ".md", None, false),
            (
                "archive.tar.md",
                "archive.tar.md",
                "archive.tar",
                Some("md"),
                true,
            ),
        ];
        for (raw, name, stem, ext, markdown) in cases {
            let key = DocumentKey::parse(raw).unwrap();
            assert_eq!(key.file_name(), name, "{raw:?}");
            assert_eq!(key.file_stem(), stem, "{raw:?}");
            assert_eq!(key.extension(), ext, "{raw:?}");
            assert_eq!(key.is_markdown(), markdown, "{raw:?}");
        }
        let key = DocumentKey::parse("companies/acme/overview.md").unwrap();
        assert_eq!(
            key.segments().collect::<Vec<_>>(),
            ["companies", "acme", "overview.md"]
        );
    }

    #[test]
    fn keys_deserialize_through_the_parser() {
        let key: DocumentKey = serde_json::from_str("\"./a//b.md\"").unwrap();
        assert_eq!(key.as_str(), "a/b.md");
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"a/b.md\"");
        assert!(serde_json::from_str::<DocumentKey>("\"../x.md\"").is_err());
    }
}
