//! Topic tags for chunks: tolerant parsing of a model's JSON answer, normalisation, and a
//! deterministic keyword fallback for when no model is configured.
//!
//! Owns what a valid tag looks like. Must never call a model (that is `providers`).

use serde_json::Value;
use std::collections::HashMap;

use crate::document::text::{is_stop_word, words};

/// Longest tag kept, in characters; longer ones are dropped (a cut tag is a wrong tag).
pub const MAX_TAG_CHARS: usize = 40;

/// Most tags kept per chunk, in the order given.
pub const MAX_TAGS_PER_CHUNK: usize = 8;

/// Weight of a word in a heading relative to one occurrence in the body, for the fallback.
pub const HEADING_BOOST: usize = 3;

/// Shortest word the keyword fallback considers, in characters.
pub const MIN_KEYWORD_CHARS: usize = 3;

/// Why a model's tag output could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagParseError {
    /// No JSON array or object could be found in the output.
    #[error("no JSON array or object found in tag output: {excerpt:?}")]
    NoJson {
        /// Start of the output, for the log.
        excerpt: String,
    },
    /// JSON was found but had no usable tag in the expected shape.
    #[error("tag output has no usable tags ({reason}): {excerpt:?}")]
    NoUsableTags {
        /// What was wrong with the shape.
        reason: &'static str,
        /// Start of the output, for the log.
        excerpt: String,
    },
}

impl TagParseError {
    /// Whether asking the model again may help: a model can answer better on a second try.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        true
    }
}

const EXCERPT_CHARS: usize = 200;

fn excerpt(text: &str) -> String {
    text.chars().take(EXCERPT_CHARS).collect()
}

/// Normalises one tag: lowercase, trimmed, inner whitespace collapsed, surrounding punctuation
/// stripped; `None` when empty or longer than [`MAX_TAG_CHARS`].
#[must_use]
pub fn normalize_tag(raw: &str) -> Option<String> {
    let lowered = raw.to_lowercase();
    let collapsed = lowered.split_whitespace().collect::<Vec<_>>().join(" ");
    let stripped = collapsed.trim_matches(|c: char| !c.is_alphanumeric());
    if stripped.is_empty() || stripped.chars().count() > MAX_TAG_CHARS {
        return None;
    }
    Some(stripped.to_owned())
}

/// Normalises a list of tags, dropping unusable and duplicate ones (first wins), at most
/// [`MAX_TAGS_PER_CHUNK`].
#[must_use]
pub fn normalize_tags<I, S>(raw: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    for tag in raw.into_iter().filter_map(|t| normalize_tag(t.as_ref())) {
        if out.len() == MAX_TAGS_PER_CHUNK {
            break;
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// Finds the first JSON array or object in `text`, skipping code fences and surrounding prose.
fn first_json_value(text: &str) -> Option<Value> {
    for (start, ch) in text.char_indices() {
        if ch != '[' && ch != '{' {
            continue;
        }
        // A stream deserializer stops after one value, so trailing prose is ignored.
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(value)) = values.next() {
            return Some(value);
        }
    }
    None
}

/// Collects the string items of a JSON array of tags; non-strings are skipped.
fn tag_strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
        Value::String(single) => Some(vec![single.as_str()]),
        Value::Object(map) => map.get("tags").and_then(tag_strings),
        _ => None,
    }
}

/// Parses the tags of one chunk from a model's output: `["a","b"]` or `{"tags":[...]}`.
///
/// # Errors
/// [`TagParseError`] when no JSON is found or it holds no usable tag.
pub fn parse_tags(output: &str) -> Result<Vec<String>, TagParseError> {
    let value = first_json_value(output).ok_or_else(|| TagParseError::NoJson {
        excerpt: excerpt(output),
    })?;
    let tags = tag_strings(&value).map(normalize_tags).unwrap_or_default();
    if tags.is_empty() {
        return Err(TagParseError::NoUsableTags {
            reason: "expected an array of strings or {\"tags\": [...]}",
            excerpt: excerpt(output),
        });
    }
    Ok(tags)
}

/// Parses tags for a batch of `chunk_count` chunks: `[[...],[...]]`, `{"1":[...],"2":[...]}`
/// (1-based chunk numbers) or `{"chunks": ...}` / `{"tags": ...}` wrapping either.
///
/// Chunks the model skipped get an empty list; extra entries are ignored.
///
/// # Errors
/// [`TagParseError`] when no JSON is found or no chunk got a usable tag.
pub fn parse_batch_tags(
    output: &str,
    chunk_count: usize,
) -> Result<Vec<Vec<String>>, TagParseError> {
    let value = first_json_value(output).ok_or_else(|| TagParseError::NoJson {
        excerpt: excerpt(output),
    })?;
    let mut result = vec![Vec::new(); chunk_count];
    fill_batch(&value, &mut result);
    if result.iter().all(Vec::is_empty) {
        return Err(TagParseError::NoUsableTags {
            reason: "expected [[...], ...] or {\"1\": [...], ...} with one entry per chunk",
            excerpt: excerpt(output),
        });
    }
    Ok(result)
}

fn fill_batch(value: &Value, result: &mut [Vec<String>]) {
    match value {
        // A one-chunk batch may come back as a flat list of tags.
        Value::Array(items) if result.len() == 1 && items.iter().all(Value::is_string) => {
            result[0] = normalize_tags(items.iter().filter_map(Value::as_str));
        }
        Value::Array(items) => {
            for (slot, item) in result.iter_mut().zip(items) {
                *slot = tag_strings(item).map(normalize_tags).unwrap_or_default();
            }
        }
        Value::Object(map) => {
            if let Some(inner) = map.get("chunks").or_else(|| map.get("tags")) {
                fill_batch(inner, result);
                return;
            }
            for (key, item) in map {
                let number = key
                    .trim()
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse::<usize>();
                if let Ok(n @ 1..) = number {
                    if let Some(slot) = result.get_mut(n - 1) {
                        *slot = tag_strings(item).map(normalize_tags).unwrap_or_default();
                    }
                }
            }
        }
        _ => {}
    }
}

fn is_keyword(word: &str) -> bool {
    word.chars().count() >= MIN_KEYWORD_CHARS
        && !is_stop_word(word)
        && !word.chars().all(|c| c.is_ascii_digit())
}

/// Deterministic keyword tags when no model is configured: term frequency of non-stop words,
/// heading words boosted by [`HEADING_BOOST`], top `max_tags` (capped at [`MAX_TAGS_PER_CHUNK`]);
/// ties go to the word seen first, then alphabetical order.
#[must_use]
pub fn extract_keyword_tags(heading_path: &[String], text: &str, max_tags: usize) -> Vec<String> {
    // word -> (score, first position); headings come first in the position order.
    let mut scores: HashMap<String, (usize, usize)> = HashMap::new();
    let heading_words = heading_path
        .iter()
        .flat_map(|h| words(h))
        .map(|w| (w, HEADING_BOOST));
    let body_words = words(text).map(|w| (w, 1));
    for (position, (word, weight)) in heading_words.chain(body_words).enumerate() {
        if !is_keyword(&word) {
            continue;
        }
        let entry = scores.entry(word).or_insert((0, position));
        entry.0 += weight;
    }
    let mut ranked: Vec<(String, (usize, usize))> = scores.into_iter().collect();
    ranked.sort_by(|(wa, (sa, pa)), (wb, (sb, pb))| {
        sb.cmp(sa).then(pa.cmp(pb)).then_with(|| wa.cmp(wb))
    });
    normalize_tags(
        ranked
            .into_iter()
            .take(max_tags.min(MAX_TAGS_PER_CHUNK))
            .map(|(word, _)| word),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_tag_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("  Machine   Learning ", Some("machine learning")),
            ("\"Rust!\"", Some("rust")),
            ("#kubernetes.", Some("kubernetes")),
            ("c++", Some("c")),
            ("node.js", Some("node.js")),
            ("Éclair", Some("éclair")),
            ("...", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_tag(raw).as_deref(), *want, "input {raw:?}");
        }
        assert_eq!(
            normalize_tag(&"x".repeat(MAX_TAG_CHARS)).map(|t| t.len()),
            Some(MAX_TAG_CHARS)
        );
        assert_eq!(normalize_tag(&"x".repeat(MAX_TAG_CHARS + 1)), None);
    }

    #[test]
    fn normalize_tags_dedupes_in_order_and_caps_count() {
        let raw = [
            "Rust", "rust ", "Go", "", "RUST", "a", "b", "c", "d", "e", "f", "g", "h",
        ];
        let tags = normalize_tags(raw);
        assert_eq!(tags, ["rust", "go", "a", "b", "c", "d", "e", "f"]);
        assert_eq!(tags.len(), MAX_TAGS_PER_CHUNK);
    }

    #[test]
    fn parse_tags_accepts_common_shapes() {
        let cases: &[(&str, &[&str])] = &[
            (r#"["Rust", "WebAssembly"]"#, &["rust", "webassembly"]),
            ("```json\n[\"a b\", \"c\"]\n```", &["a b", "c"]),
            (
                r#"Sure! Here are the tags: {"tags": ["Cloud", "cloud", "Edge"]} Hope it helps."#,
                &["cloud", "edge"],
            ),
            (r#"tags [not json] then ["x"]"#, &["x"]),
            (r#"["ok", 3, null, "fine"]"#, &["ok", "fine"]),
        ];
        for (output, want) in cases {
            assert_eq!(parse_tags(output).unwrap(), *want, "output {output:?}");
        }
    }

    #[test]
    fn parse_tags_reports_typed_errors() {
        assert!(matches!(
            parse_tags("no json here"),
            Err(TagParseError::NoJson { .. })
        ));
        assert!(matches!(
            parse_tags("[1, 2]"),
            Err(TagParseError::NoUsableTags { .. })
        ));
        assert!(matches!(
            parse_tags(r#"{"labels": ["a"]}"#),
            Err(TagParseError::NoUsableTags { .. })
        ));
        assert!(matches!(
            parse_tags("[\"unterminated"),
            Err(TagParseError::NoJson { .. })
        ));
    }

    #[test]
    fn parse_batch_tags_accepts_arrays_and_numbered_objects() {
        let nested = parse_batch_tags(r#"[["A","b"],["C"],[]]"#, 3).unwrap();
        assert_eq!(nested, vec![vec!["a", "b"], vec!["c"], vec![]]);

        let numbered = parse_batch_tags(
            "```json\n{\"2\": [\"Beta\"], \"1\": {\"tags\": [\"Alpha\"]}, \"9\": [\"x\"]}\n```",
            2,
        )
        .unwrap();
        assert_eq!(numbered, vec![vec!["alpha"], vec!["beta"]]);

        let keyed =
            parse_batch_tags(r#"{"chunks": {"chunk 1": ["a"], "chunk 3": ["c"]}}"#, 3).unwrap();
        assert_eq!(keyed, vec![vec!["a"], vec![], vec!["c"]]);

        let flat_single = parse_batch_tags(r#"["solo", "tag"]"#, 1).unwrap();
        assert_eq!(flat_single, vec![vec!["solo", "tag"]]);
    }

    #[test]
    fn parse_batch_tags_errors_when_nothing_usable() {
        assert!(matches!(
            parse_batch_tags("{}", 2),
            Err(TagParseError::NoUsableTags { .. })
        ));
        assert!(matches!(
            parse_batch_tags(r#"{"0": ["a"]}"#, 2),
            Err(TagParseError::NoUsableTags { .. })
        ));
        assert!(matches!(
            parse_batch_tags("nothing", 2),
            Err(TagParseError::NoJson { .. })
        ));
    }

    #[test]
    fn keyword_tags_rank_by_frequency_with_heading_boost() {
        let headings = vec!["Payments Platform".to_owned()];
        let text = "We migrated billing to Rust. Billing runs on Kubernetes; billing is fast. \
                    Kubernetes clusters run Rust services. The the the and and.";
        let tags = extract_keyword_tags(&headings, text, 4);
        // payments/platform: 3 each from the heading; billing: 3; rust, kubernetes: 2.
        assert_eq!(tags, ["payments", "platform", "billing", "rust"]);
    }

    #[test]
    fn keyword_tags_are_deterministic_and_skip_noise() {
        let text = "zeta alpha beta 2024 of is";
        let a = extract_keyword_tags(&[], text, 8);
        assert_eq!(a, ["zeta", "alpha", "beta"], "ties keep first-seen order");
        assert_eq!(a, extract_keyword_tags(&[], text, 8));
        assert!(extract_keyword_tags(&[], "", 8).is_empty());
        assert_eq!(extract_keyword_tags(&[], text, 100).len(), 3);
    }
}
