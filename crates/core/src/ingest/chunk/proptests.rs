//! Property tests: on any input (weird markdown, arbitrary Unicode, bytes
//! through the document parser) and any valid config, chunking never
//! panics, never exceeds the budget, covers the body in order, and is
//! deterministic.

use proptest::prelude::*;

use super::tests::{check_invariants, markdown_corpus};
use super::*;
use crate::document::keys::DocumentKey;
use crate::document::parse_document;

/// Fragments that stress the parser: block openers, fences, table pipes,
/// line endings, sentence ends and non-Latin characters.
const PIECES: &[&str] = &[
    "# ",
    "## ",
    "###### ",
    "####### ",
    "\n",
    "\r\n",
    "\n\n",
    "\r",
    " ",
    "\t",
    "    ",
    "```",
    "~~~",
    "```rust\n",
    "| a | b |\n|---|---|\n",
    "| 1 | 2 |\n",
    "|",
    "- ",
    "* ",
    "1. ",
    "> ",
    "> > ",
    "[x]: http://e.com\n",
    "<div>",
    "</div>\n",
    "<!--",
    "-->",
    "---",
    "===",
    "*em*",
    "`code`",
    "[^1]",
    "[^1]: ",
    "- [ ] ",
    "word",
    "Sentence. ",
    "Why? ",
    "Wow!\" ",
    "。",
    "検索エンジン",
    "مرحبا",
    "👩‍💻",
    "é",
    "e\u{301}",
    "\u{3000}",
    "\\",
    "\u{feff}",
];

fn markdownish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => prop::sample::select(PIECES).prop_map(str::to_owned),
        2 => "[a-z]{1,12}",
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..300).prop_map(|pieces| pieces.concat())
}

fn any_config() -> impl Strategy<Value = ChunkConfig> {
    (1usize..300)
        .prop_flat_map(|max| (Just(max), 0..max, 0..=max))
        .prop_map(|(max, overlap, min)| {
            ChunkConfig::new(max)
                .and_then(|c| c.with_overlap(overlap))
                .and_then(|c| c.with_min_tokens(min))
                .unwrap()
        })
}

proptest! {
    // Failures are turned into unit tests by hand rather than persisted files.
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn weird_markdown_keeps_every_invariant(md in markdownish(), config in any_config()) {
        let chunks = chunk_markdown(&md, &config);
        check_invariants(&md, 0, &chunks, &config);
        prop_assert_eq!(chunks, chunk_markdown(&md, &config));
    }

    #[test]
    fn arbitrary_text_keeps_every_invariant(text in any::<String>(), config in any_config()) {
        let chunks = chunk_markdown(&text, &config);
        check_invariants(&text, 0, &chunks, &config);
    }

    #[test]
    fn arbitrary_bytes_through_the_document_parser(
        front in prop::collection::vec(any::<u8>(), 0..64),
        body in markdownish(),
        config in any_config(),
    ) {
        let mut bytes = b"---\n".to_vec();
        bytes.extend_from_slice(&front);
        bytes.extend_from_slice(b"\n---\n");
        bytes.extend_from_slice(body.as_bytes());
        let key = DocumentKey::parse("companies/acme/a.md").unwrap();
        if let Ok(doc) = parse_document(&key, &bytes) {
            let chunks = chunk_document(&doc, &config);
            check_invariants(doc.source, doc.body_offset, &chunks, &config);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn realistic_documents_keep_every_invariant(seed in any::<u64>(), size in 1_000usize..60_000, config in any_config()) {
        let md = markdown_corpus(size, seed);
        let chunks = chunk_markdown(&md, &config);
        check_invariants(&md, 0, &chunks, &config);
    }
}
