//! Document parsing: the bytes of a stored markdown object become validated
//! text, front-matter fields, a title, a company and the body to chunk.
//!
//! Owns the front-matter format and the title and company rules. Never chunks
//! (that is [`crate::ingest::chunk`]) and never reads storage: it is given bytes.

pub mod keys;
pub(crate) mod markdown;
pub mod text;

use serde_json::{Map, Value};

use crate::document::keys::DocumentKey;

/// The UTF-8 byte order mark, stripped before front matter is looked for.
const BOM: char = '\u{feff}';

/// Delimiter line opening (and closing) the front matter.
const FRONT_MATTER_FENCE: &str = "---";

/// Alternative closing line (YAML's document end marker, accepted by Jekyll/Hugo).
const FRONT_MATTER_END: &str = "...";

/// A markdown document split into what its front matter says and its body.
///
/// Offsets and lines are relative to the stored bytes (a BOM and the front
/// matter included), so chunk ranges computed from the body point into the
/// original object.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument<'a> {
    /// Front matter `title`, else the first top-level heading's text, else the file stem.
    pub title: String,
    /// Company the document belongs to (see [`parse_document`] for the rule).
    pub company: Option<String>,
    /// Front matter `tags`, trimmed, without empties or repeats, in order.
    pub tags: Vec<String>,
    /// Every other front-matter field, converted to JSON.
    pub metadata: Map<String, Value>,
    /// The whole validated text, including a BOM and the front matter.
    pub source: &'a str,
    /// The markdown after the front matter (and after a BOM).
    pub body: &'a str,
    /// Byte offset of [`Self::body`] in [`Self::source`].
    pub body_offset: usize,
    /// 1-based line of [`Self::source`] on which the body starts.
    pub body_line: usize,
}

/// Why a stored object can't be read as a markdown document. Every variant is
/// permanent: retrying the same bytes gives the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// A NUL byte: the object is binary, not text.
    #[error("document is binary: NUL byte at byte offset {offset}")]
    Binary {
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// Not valid UTF-8.
    #[error("document is not valid UTF-8: invalid byte sequence at byte offset {offset}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A `---` front-matter opener with no closing `---` (or `...`) line.
    #[error("front matter opened on line {line} is never closed by a '---' line")]
    UnclosedFrontMatter {
        /// Line of the opening `---`.
        line: usize,
    },
    /// The front matter is not valid YAML.
    #[error("front matter is not valid YAML at line {line}: {message}")]
    FrontMatterSyntax {
        /// Line of the document where the YAML parser gave up.
        line: usize,
        /// The parser's description.
        message: String,
    },
    /// The front matter is YAML but not a mapping of fields.
    #[error("front matter on line {line} must be a mapping of fields, found {found}")]
    FrontMatterNotMapping {
        /// Line of the opening `---`.
        line: usize,
        /// What it was instead (`a sequence`, `a string`…).
        found: &'static str,
    },
    /// A known field has the wrong type.
    #[error("front matter field `{field}` on line {line} must be {expected}")]
    FrontMatterField {
        /// The field name.
        field: &'static str,
        /// Line of the document where the field is (best effort).
        line: usize,
        /// What it must be.
        expected: &'static str,
    },
}

/// Parses a stored markdown object.
///
/// Steps: reject NUL bytes and invalid UTF-8 (with the byte offset); strip a
/// UTF-8 BOM; read optional YAML front matter between a first line `---` and
/// the next line `---` (or `...`), CRLF or LF; take `title`, `company` and
/// `tags` (a list, or one comma-separated string) from it and keep every other
/// field in [`ParsedDocument::metadata`].
///
/// **Company rule**, first that applies:
/// 1. front matter `company` (trimmed); present but empty or null
///    (`company:`, `company: null`, `company: ""`) means *no company*, and
///    the key is not consulted — how a document says it belongs to none
///    (the migration writes it for source rows without a company);
/// 2. a key `companies/<slug>/<more>` gives `<slug>`;
/// 3. a key of two or more segments gives its first segment, except
///    `companies/<file>`, which names no company;
/// 4. otherwise none.
///
/// **Title rule**: front matter `title`, else the text of the first top-level heading
/// of the body, else the file name without its extension.
pub fn parse_document<'a>(
    key: &DocumentKey,
    bytes: &'a [u8],
) -> Result<ParsedDocument<'a>, DocumentError> {
    let source = validate_text(bytes)?;
    let bom_len = if source.starts_with(BOM) {
        BOM.len_utf8()
    } else {
        0
    };
    let (front, body_offset, body_line) = match split_front_matter(source, bom_len)? {
        Some(split) => (
            parse_front_matter(split.yaml, split.yaml_line)?,
            split.body_offset,
            split.body_line,
        ),
        None => (FrontMatter::default(), bom_len, 1),
    };
    let body = &source[body_offset..];
    let title = front
        .title
        .or_else(|| markdown::first_heading_text(body))
        .unwrap_or_else(|| key.file_stem().to_owned());
    let company = match front.company {
        Some(given) => given,
        None => company_from_key(key),
    };
    Ok(ParsedDocument {
        title,
        company,
        tags: front.tags,
        metadata: front.metadata,
        source,
        body,
        body_offset,
        body_line,
    })
}

/// Rejects binary and non-UTF-8 input with the byte offset of the problem.
fn validate_text(bytes: &[u8]) -> Result<&str, DocumentError> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(DocumentError::Binary { offset });
    }
    std::str::from_utf8(bytes).map_err(|e| DocumentError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Rules 2–4 of the company rule in [`parse_document`].
fn company_from_key(key: &DocumentKey) -> Option<String> {
    let segments: Vec<&str> = key.segments().collect();
    match segments.as_slice() {
        ["companies", slug, _, ..] => Some((*slug).to_owned()),
        ["companies", _] | [_] => None,
        [first, _, ..] => Some((*first).to_owned()),
        [] => None,
    }
}

/// Where the front matter's YAML and the body are in the source.
struct FrontMatterSplit<'a> {
    yaml: &'a str,
    /// 1-based line of the first YAML line.
    yaml_line: usize,
    body_offset: usize,
    body_line: usize,
}

/// Finds front matter starting at `start` (just after a BOM), if any.
fn split_front_matter(
    source: &str,
    start: usize,
) -> Result<Option<FrontMatterSplit<'_>>, DocumentError> {
    let text = &source[start..];
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    if first.trim_end() != FRONT_MATTER_FENCE {
        return Ok(None);
    }
    let yaml_start = start + first.len();
    let mut offset = yaml_start;
    for (index, line) in lines.enumerate() {
        let trimmed = line.trim_end();
        if trimmed == FRONT_MATTER_FENCE || trimmed == FRONT_MATTER_END {
            // Line 1 is the opener, the YAML starts on line 2.
            let closing_line = index + 2;
            return Ok(Some(FrontMatterSplit {
                yaml: &source[yaml_start..offset],
                yaml_line: 2,
                body_offset: offset + line.len(),
                body_line: closing_line + 1,
            }));
        }
        offset += line.len();
    }
    Err(DocumentError::UnclosedFrontMatter { line: 1 })
}

/// The fields the service understands, and the rest.
#[derive(Debug, Default)]
struct FrontMatter {
    title: Option<String>,
    /// `None` without a `company` field; `Some(None)` for an empty one.
    company: Option<Option<String>>,
    tags: Vec<String>,
    metadata: Map<String, Value>,
}

/// Parses the YAML between the delimiters; `first_line` is its line in the document.
fn parse_front_matter(yaml: &str, first_line: usize) -> Result<FrontMatter, DocumentError> {
    if yaml.trim().is_empty() {
        return Ok(FrontMatter::default());
    }
    let value: serde_norway::Value =
        serde_norway::from_str(yaml).map_err(|e| syntax_error(&e, first_line))?;
    let mapping = match value {
        serde_norway::Value::Mapping(mapping) => mapping,
        serde_norway::Value::Null => return Ok(FrontMatter::default()),
        other => {
            return Err(DocumentError::FrontMatterNotMapping {
                line: first_line - 1,
                found: yaml_kind(&other),
            })
        }
    };
    let mut front = FrontMatter::default();
    for (name, value) in mapping {
        let name = yaml_key(&name);
        let field_error =
            |field: &'static str, expected: &'static str| DocumentError::FrontMatterField {
                field,
                line: field_line(yaml, field, first_line),
                expected,
            };
        match name.as_str() {
            "title" => {
                front.title = scalar_text(&value)
                    .ok_or_else(|| field_error("title", "text"))?
                    .filter(|t| !t.is_empty());
            }
            "company" => {
                front.company = Some(
                    scalar_text(&value)
                        .ok_or_else(|| field_error("company", "text"))?
                        .filter(|c| !c.is_empty()),
                );
            }
            "tags" => {
                front.tags = tag_list(&value).ok_or_else(|| {
                    field_error("tags", "a list of words or a comma-separated string")
                })?;
            }
            _ => {
                front.metadata.insert(name, yaml_to_json(value));
            }
        }
    }
    Ok(front)
}

/// A YAML syntax error, with its lines (in `line` and in the parser's
/// message) made document lines instead of front-matter lines.
fn syntax_error(error: &serde_norway::Error, first_line: usize) -> DocumentError {
    let relative = error.location().map_or(1, |l| l.line());
    DocumentError::FrontMatterSyntax {
        line: first_line + relative - 1,
        message: shift_line_numbers(&error.to_string(), first_line - 1),
    }
}

/// Adds `by` to every number following `line ` in `message`.
fn shift_line_numbers(message: &str, by: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (head, tail) = rest.split_at(at + "line ".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        match tail[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// The document line of `field:` in the YAML (best effort: the opener's line otherwise).
fn field_line(yaml: &str, field: &str, first_line: usize) -> usize {
    yaml.lines()
        .position(|line| {
            line.strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(first_line - 1, |index| first_line + index)
}

/// Text of a scalar (`Some(None)` for null); `None` for sequences and mappings.
fn scalar_text(value: &serde_norway::Value) -> Option<Option<String>> {
    match value {
        serde_norway::Value::Null => Some(None),
        serde_norway::Value::String(s) => Some(Some(s.trim().to_owned())),
        serde_norway::Value::Number(n) => Some(Some(n.to_string())),
        serde_norway::Value::Bool(b) => Some(Some(b.to_string())),
        serde_norway::Value::Tagged(tagged) => scalar_text(&tagged.value),
        serde_norway::Value::Sequence(_) | serde_norway::Value::Mapping(_) => None,
    }
}

/// Tags from a list of scalars or a comma-separated string.
fn tag_list(value: &serde_norway::Value) -> Option<Vec<String>> {
    let raw: Vec<String> = match value {
        serde_norway::Value::Sequence(items) => items
            .iter()
            .map(|item| scalar_text(item).map(Option::unwrap_or_default))
            .collect::<Option<_>>()?,
        other => scalar_text(other)?
            .map(|text| text.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let mut tags: Vec<String> = Vec::with_capacity(raw.len());
    for tag in raw {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    Some(tags)
}

/// A mapping key as text (`1: x` keeps `"1"`).
fn yaml_key(key: &serde_norway::Value) -> String {
    match key {
        serde_norway::Value::String(s) => s.clone(),
        other => match yaml_to_json(other.clone()) {
            Value::String(s) => s,
            json => json.to_string(),
        },
    }
}

/// Converts YAML to JSON: keys become text, tags are dropped, non-finite
/// floats become text (`.inf`), since JSON has no such numbers.
fn yaml_to_json(value: serde_norway::Value) -> Value {
    match value {
        serde_norway::Value::Null => Value::Null,
        serde_norway::Value::Bool(b) => Value::Bool(b),
        serde_norway::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        serde_norway::Value::String(s) => Value::String(s),
        serde_norway::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect())
        }
        serde_norway::Value::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(k, v)| (yaml_key(&k), yaml_to_json(v)))
                .collect(),
        ),
        serde_norway::Value::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

/// What a YAML value is, for error messages.
fn yaml_kind(value: &serde_norway::Value) -> &'static str {
    match value {
        serde_norway::Value::Null => "nothing",
        serde_norway::Value::Bool(_) => "a boolean",
        serde_norway::Value::Number(_) => "a number",
        serde_norway::Value::String(_) => "a string",
        serde_norway::Value::Sequence(_) => "a sequence",
        serde_norway::Value::Mapping(_) => "a mapping",
        serde_norway::Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests;
