//! How a question becomes what the keyword and tag sources search for: a
//! safe FTS5 expression and tag terms. Pure text handling.

use super::plan::{MAX_FILTER_TAGS, MAX_KEYWORD_TERMS};
use crate::ingest::tags::normalize_tag;

/// An FTS5 `MATCH` expression for free text: every whitespace-separated term
/// becomes a quoted phrase of its word pieces (so `ZX-4000` matches the
/// adjacent tokens `zx 4000`), OR'ed together. Quoting makes any FTS5 syntax
/// in the input inert. Stop words (`how`, `do`, `the` …) are left out unless
/// the text has nothing else: they match almost every chunk, so they cost
/// the most to rank and tell the least. `None` when the text has no word at all.
#[must_use]
pub fn fts_expression(text: &str) -> Option<String> {
    let mut phrases: Vec<String> = Vec::new();
    let mut stop_phrases: Vec<String> = Vec::new();
    for term in text.split_whitespace() {
        let pieces: Vec<String> = term
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| !p.is_empty())
            .map(str::to_lowercase)
            .collect();
        if pieces.is_empty() {
            continue;
        }
        let phrase = format!("\"{}\"", pieces.join(" "));
        let stop = pieces
            .iter()
            .all(|p| crate::document::text::is_stop_word(p));
        let list = if stop {
            &mut stop_phrases
        } else {
            &mut phrases
        };
        if !list.contains(&phrase) && list.len() < MAX_KEYWORD_TERMS {
            list.push(phrase);
        }
    }
    if phrases.is_empty() {
        phrases = stop_phrases;
    }
    (!phrases.is_empty()).then(|| phrases.join(" OR "))
}

/// Terms of the query used for tag matching when the request names no tags.
#[must_use]
pub fn query_tag_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for term in crate::document::text::words(text) {
        if term.chars().count() < 3 || crate::document::text::is_stop_word(&term) {
            continue;
        }
        if let Some(tag) = normalize_tag(&term) {
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
        if out.len() == MAX_FILTER_TAGS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_expressions_quote_terms_and_neutralise_syntax() {
        assert_eq!(
            fts_expression("ZX-4000 pump").as_deref(),
            Some(r#""zx 4000" OR "pump""#)
        );
        assert_eq!(
            fts_expression(r#"x" OR NEAR(y z) *"#).as_deref(),
            Some(r#""x" OR "near y" OR "z""#)
        );
        assert_eq!(fts_expression("  -- ** "), None);
        assert_eq!(fts_expression("pump pump").as_deref(), Some(r#""pump""#));
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(
            fts_expression(&many).unwrap().matches(" OR ").count(),
            MAX_KEYWORD_TERMS - 1
        );
    }

    #[test]
    fn fts_expressions_leave_out_stop_words_unless_nothing_else_is_left() {
        assert_eq!(
            fts_expression("How do I list the directory contents?").as_deref(),
            Some(r#""list" OR "directory" OR "contents""#)
        );
        // A term is left out only when all its pieces are stop words.
        assert_eq!(
            fts_expression("how to do-it with a t-shirt").as_deref(),
            Some(r#""t shirt""#)
        );
        assert_eq!(
            fts_expression("Who are they?").as_deref(),
            Some(r#""who" OR "are" OR "they""#)
        );
    }

    #[test]
    fn tag_terms_skip_stop_words_and_short_words() {
        assert_eq!(
            query_tag_terms("What are the robotics projects of Acme?"),
            vec!["robotics", "projects", "acme"]
        );
    }
}
