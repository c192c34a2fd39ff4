//! Where our chunker and the `text-splitter` baseline (its markdown
//! splitter, sized with the same token estimate) differ in ways that matter
//! to the service: heading paths, split code blocks and tables that still
//! render as such, source ranges and lines. Both keep the budget.

use text_splitter::{ChunkConfig as BaselineConfig, ChunkSizer, MarkdownSplitter};

use super::tests::check_invariants;
use super::*;
use crate::document::keys::DocumentKey;
use crate::document::parse_document;

/// Sizes baseline chunks with our estimate, so both work to one budget.
struct EstimatedTokens;

impl ChunkSizer for EstimatedTokens {
    fn size(&self, chunk: &str) -> usize {
        estimate_tokens(chunk)
    }
}

fn baseline(max_tokens: usize) -> MarkdownSplitter<EstimatedTokens> {
    MarkdownSplitter::new(BaselineConfig::new(max_tokens).with_sizer(EstimatedTokens))
}

fn ours(max_tokens: usize) -> ChunkConfig {
    ChunkConfig::new(max_tokens).unwrap()
}

const DOC: &str = "# Acme\n\nAcme sells anvils.\n\n## Projects\n\nSeveral projects.\n\n### Search\n\nWe built search on a vector index. It answers in 40 ms at the 99th percentile.\n";

#[test]
fn the_baseline_has_no_heading_path() {
    let base: Vec<(usize, &str)> = baseline(20).chunk_indices(DOC).collect();
    let search = base
        .iter()
        .find(|(_, c)| c.contains("vector index"))
        .unwrap();
    // The baseline's chunk says nothing of the company or project it is about…
    assert!(
        !search.1.contains("Acme") && !search.1.contains("Projects"),
        "{search:?}"
    );
    // …ours carries the path, and the embedding text leads with it.
    let chunks = chunk_markdown(DOC, &ours(20));
    let ours_search = chunks
        .iter()
        .find(|c| c.text.contains("vector index"))
        .unwrap();
    assert_eq!(ours_search.heading_path, ["Acme", "Projects", "Search"]);
    assert!(ours_search
        .embedding_text()
        .starts_with("Acme > Projects > Search\n\n"));
}

#[test]
fn baseline_code_pieces_stop_rendering_as_code() {
    let lines: Vec<String> = (0..60)
        .map(|i| format!("let value_{i} = compute({i});"))
        .collect();
    let md = format!("# Build\n\n```rust\n{}\n```\n", lines.join("\n"));
    let base: Vec<&str> = baseline(60).chunks(&md).collect();
    let bare = base
        .iter()
        .filter(|c| c.contains("value_") && !c.starts_with("```"))
        .count();
    assert!(
        bare > 0,
        "expected baseline pieces without a fence: {base:?}"
    );
    let chunks = chunk_markdown(&md, &ours(60));
    check_invariants(&md, 0, &chunks, &ours(60));
    for chunk in chunks.iter().filter(|c| c.text.contains("value_")) {
        let fences = chunk.text.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences, 2, "{}", chunk.text);
    }
}

#[test]
fn baseline_table_pieces_lose_their_header() {
    let rows: Vec<String> = (0..40)
        .map(|i| format!("| row {i} | value {i} |"))
        .collect();
    let md = format!("| Name | Value |\n|---|---|\n{}\n", rows.join("\n"));
    let base: Vec<&str> = baseline(40).chunks(&md).collect();
    assert!(
        base.iter().skip(1).all(|c| !c.starts_with("| Name")),
        "{base:?}"
    );
    let chunks = chunk_markdown(&md, &ours(40));
    check_invariants(&md, 0, &chunks, &ours(40));
    assert!(chunks.len() > 1);
    for chunk in &chunks {
        assert!(
            chunk.text.starts_with("| Name | Value |\n|---|---|\n| row"),
            "{}",
            chunk.text
        );
    }
}

#[test]
fn both_keep_the_budget_but_only_ours_counts_repeated_lines() {
    // With the same sizer the baseline also never exceeds its budget (it
    // falls back below graphemes to characters); ours keeps it *including*
    // the fence and header lines it repeats so pieces still render.
    let md = super::tests::markdown_corpus(30_000, 5);
    let mut repeated_lines = false;
    for max in [8, 64, 300] {
        assert!(baseline(max).chunks(&md).all(|c| estimate_tokens(c) <= max));
        let chunks = chunk_markdown(&md, &ours(max));
        check_invariants(&md, 0, &chunks, &ours(max));
        repeated_lines |= chunks.iter().any(|c| c.text.len() > c.source_text().len());
    }
    assert!(repeated_lines);
}

#[test]
fn ranges_and_lines_point_into_the_stored_document() {
    let source = "---\ntitle: Acme\ntags: [a]\n---\n# Acme\n\nFirst.\n\n## Search\n\nSecond.\n";
    let key = DocumentKey::parse("companies/acme/a.md").unwrap();
    let doc = parse_document(&key, source.as_bytes()).unwrap();
    // Given the stored text, the baseline chunks the front matter as prose…
    let base: Vec<(usize, &str)> = baseline(8).chunk_indices(source).collect();
    assert!(
        base.iter().any(|(_, c)| c.contains("title: Acme")),
        "{base:?}"
    );
    // …ours chunks the body, with offsets and 1-based lines of the stored text.
    let chunks = chunk_document(&doc, &ours(8));
    check_invariants(source, doc.body_offset, &chunks, &ours(8));
    let lines: Vec<(usize, usize)> = chunks.iter().map(|c| (c.start_line, c.end_line)).collect();
    assert_eq!(lines, [(5, 7), (9, 11)]);
    assert!(chunks.iter().all(|c| !c.text.contains("title:")));
}
