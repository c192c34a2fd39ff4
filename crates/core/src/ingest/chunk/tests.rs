//! Table-driven tests of the chunker, and the invariants every chunking must
//! keep (shared with the property tests).

use super::*;
use crate::document::keys::DocumentKey;
use crate::document::parse_document;

#[path = "../../../tests/fixtures/corpus.rs"]
mod corpus;

pub(super) use corpus::markdown_corpus;

#[path = "../../../tests/fixtures/worker_stack.rs"]
mod worker_stack;

fn config(max: usize, overlap: usize, min: usize) -> ChunkConfig {
    ChunkConfig::new(max)
        .and_then(|c| c.with_overlap(overlap))
        .and_then(|c| c.with_min_tokens(min))
        .unwrap()
}

/// Checks what every chunking of `source` (whose body starts at
/// `body_offset`) must satisfy, and returns the chunks for further checks.
pub(super) fn check_invariants(
    source: &str,
    body_offset: usize,
    chunks: &[Chunk],
    config: &ChunkConfig,
) {
    let body = &source[body_offset..];
    let newlines: Vec<usize> = source.match_indices('\n').map(|(i, _)| i).collect();
    let line_of = |pos: usize| 1 + newlines.partition_point(|&n| n < pos);
    let mut covered_to = body_offset;
    let mut previous: Option<&Chunk> = None;
    let mut covered: Vec<Range<usize>> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let Range { start, end } = chunk.byte_range.clone();
        assert_eq!(chunk.index as usize, i);
        assert!(start < end, "empty chunk {i}");
        assert!(
            start >= body_offset && end <= source.len(),
            "chunk {i} outside the body"
        );
        assert!(source.is_char_boundary(start) && source.is_char_boundary(end));
        assert_eq!(chunk.source_text(), &source[start..end], "chunk {i} text");
        assert!(chunk.text.contains(chunk.source_text()));
        assert!(!chunk.source_text().trim().is_empty(), "blank chunk {i}");
        assert_eq!(
            chunk.source_text().trim_end(),
            chunk.source_text(),
            "chunk {i} ends in whitespace"
        );
        assert_eq!(
            chunk.tokens,
            estimate_tokens(&chunk.text),
            "chunk {i} token count"
        );
        assert!(
            chunk.tokens <= config.max_tokens(),
            "chunk {i} has {} tokens, budget {}",
            chunk.tokens,
            config.max_tokens()
        );
        assert_eq!(chunk.start_line, line_of(start), "chunk {i} start line");
        assert_eq!(chunk.end_line, line_of(end - 1), "chunk {i} end line");
        if let Some(prev) = previous {
            assert!(
                start > prev.byte_range.start,
                "chunk {i} starts before its predecessor"
            );
            assert!(
                end > prev.byte_range.end,
                "chunk {i} ends before its predecessor"
            );
        }
        covered_to = covered_to.max(end);
        covered.push(start..end);
        previous = Some(chunk);
    }
    // Every non-whitespace character of the body is in some chunk.
    let mut ranges = covered.iter().peekable();
    let mut current: Option<&Range<usize>> = None;
    for (i, ch) in body.char_indices() {
        if ch.is_whitespace() {
            continue;
        }
        let pos = body_offset + i;
        while current.is_none_or(|r| r.end <= pos) {
            match ranges.peek() {
                Some(r) if r.start <= pos => current = ranges.next(),
                _ => break,
            }
        }
        assert!(
            current.is_some_and(|r| r.contains(&pos)),
            "byte {pos} ({ch:?}) is in no chunk"
        );
    }
    assert!(covered_to <= source.len());
}

#[test]
fn empty_documents_have_no_chunks() {
    let cfg = ChunkConfig::default();
    for text in ["", " ", "\n\n\n", " \t\r\n\u{3000}\n"] {
        assert!(chunk_markdown(text, &cfg).is_empty(), "{text:?}");
    }
    for text in [
        "---\ntitle: x\n---\n",
        "---\ntitle: x\n---\n\n  \n",
        "\u{feff}---\r\n---\r\n",
    ] {
        let key = DocumentKey::parse("a.md").unwrap();
        let doc = parse_document(&key, text.as_bytes()).unwrap();
        assert!(chunk_document(&doc, &cfg).is_empty(), "{text:?}");
    }
}

#[test]
fn config_builders_validate() {
    assert!(ChunkConfig::new(0).is_err());
    let c = ChunkConfig::new(10).unwrap();
    assert_eq!(
        (c.max_tokens(), c.overlap_tokens(), c.min_tokens()),
        (10, 0, 0)
    );
    assert_eq!(c.with_overlap(9).unwrap().overlap_tokens(), 9);
    let err = c.with_overlap(10).unwrap_err();
    assert_eq!(
        err.to_string(),
        "overlap of 10 tokens must be smaller than max_tokens (10)"
    );
    assert_eq!(c.with_min_tokens(10).unwrap().min_tokens(), 10);
    assert!(c.with_min_tokens(11).is_err());
    let d = ChunkConfig::default();
    assert_eq!(
        (d.max_tokens(), d.overlap_tokens(), d.min_tokens()),
        (
            DEFAULT_MAX_TOKENS,
            DEFAULT_OVERLAP_TOKENS,
            DEFAULT_MIN_TOKENS
        )
    );
}

#[test]
fn token_estimate_table() {
    let cases = [
        ("", 0),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("hello world!", 3),
        ("é", 1),
        ("日本語", 3),
        ("مرحبا", 5),
        ("👩‍💻", 3),
        ("ab日本", 3),
    ];
    for (text, want) in cases {
        assert_eq!(estimate_tokens(text), want, "{text:?}");
    }
}

#[test]
fn heading_paths_follow_the_outline() {
    let md =
        "# Acme\n\nIntro.\n\n## Projects\n\n### Search\n\nWe built search.\n\n## Team\n\nPeople.\n";
    let chunks = chunk_markdown(md, &config(1000, 0, 0));
    let got: Vec<(String, &str)> = chunks
        .iter()
        .map(|c| (c.heading_path_display(), c.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Acme".to_owned(), "# Acme\n\nIntro."),
            (
                "Acme > Projects > Search".to_owned(),
                "## Projects\n\n### Search\n\nWe built search."
            ),
            ("Acme > Team".to_owned(), "## Team\n\nPeople."),
        ]
    );
    assert_eq!(
        chunks[2].embedding_text(),
        "Acme > Team\n\n## Team\n\nPeople."
    );
    check_invariants(md, 0, &chunks, &config(1000, 0, 0));
}

#[test]
fn deep_and_skipped_heading_levels() {
    let md = "# 1\n## 2\n### 3\n#### 4\n##### 5\n###### 6\n####### seven is text\n\nbody\n\n### three again\n\nx\n\n# Top *styled* `code`\n\ny\n\nSetext\n===\n\nz\n";
    let chunks = chunk_markdown(md, &config(1000, 0, 0));
    let paths: Vec<Vec<String>> = chunks.iter().map(|c| c.heading_path.clone()).collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["1", "2", "3", "4", "5", "6"],
        vec!["1", "2", "three again"],
        vec!["Top styled code"],
        vec!["Setext"],
    ];
    assert_eq!(paths, want);
    assert!(chunks[0].text.contains("####### seven is text"));
    check_invariants(md, 0, &chunks, &config(1000, 0, 0));
}

#[test]
fn small_sections_merge_up_to_min_tokens() {
    let md = "# A\n\none\n\n## B\n\ntwo\n\n## C\n\nthree\n";
    let separate = chunk_markdown(md, &config(100, 0, 0));
    assert_eq!(separate.len(), 3);
    let merged = chunk_markdown(md, &config(100, 0, 50));
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].heading_path, ["A"]);
    check_invariants(md, 0, &merged, &config(100, 0, 50));
}

#[test]
fn overlap_repeats_the_previous_end_at_a_sentence_start() {
    let sentences: Vec<String> = (0..40)
        .map(|i| format!("Sentence number {i} is here."))
        .collect();
    let md = format!(
        "# Notes\n\n{}\n\n# Next\n\nfresh start\n",
        sentences.join(" ")
    );
    let cfg = config(40, 12, 0);
    let chunks = chunk_markdown(&md, &cfg);
    check_invariants(&md, 0, &chunks, &cfg);
    let notes: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| c.heading_path == ["Notes"])
        .collect();
    assert!(notes.len() > 3);
    for pair in notes.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.byte_range.start < a.byte_range.end,
            "no overlap: {a:?} {b:?}"
        );
        let overlap = &md[b.byte_range.start..a.byte_range.end];
        assert!(estimate_tokens(overlap) <= 12, "{overlap:?}");
        assert!(
            b.text.starts_with("Sentence"),
            "overlap not at a sentence start: {:?}",
            b.text
        );
    }
    // A section's first chunk never repeats the previous section.
    let next = chunks.iter().find(|c| c.heading_path == ["Next"]).unwrap();
    assert!(next.text.starts_with("# Next"));
}

#[test]
fn overlap_never_crosses_a_merged_heading() {
    // `## Two` joins the chunk of `# One` (under `min_tokens`); the next
    // chunk overlaps the end of that chunk but never reaches back into `# One`.
    let long: Vec<String> = (0..30).map(|i| format!("Point {i} holds well.")).collect();
    let md = format!(
        "# One\n\nAlpha one. Beta two. Gamma three. Delta.\n\n## Two\n\nTiny.\n\n{}\n",
        long.join(" ")
    );
    let cfg = config(30, 20, 29);
    let chunks = chunk_markdown(&md, &cfg);
    check_invariants(&md, 0, &chunks, &cfg);
    let two = md.find("## Two").unwrap();
    assert!(chunks[0].byte_range.end > two, "{chunks:#?}");
    for chunk in &chunks[1..] {
        assert!(chunk.byte_range.start >= two, "{chunk:#?}");
    }
}

#[test]
fn giant_code_block_pieces_stay_code() {
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("    let value_{i} = compute({i});"))
        .collect();
    let md = format!("# Code\n\n```rust\n{}\n```\n\nAfter.\n", lines.join("\n"));
    let cfg = config(200, 20, 0);
    let chunks = chunk_markdown(&md, &cfg);
    check_invariants(&md, 0, &chunks, &cfg);
    assert!(chunks.len() > 100);
    let code: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| c.text.contains("value_"))
        .collect();
    for chunk in &code {
        assert!(
            chunk.text.starts_with("```rust\n") || chunk.text.starts_with("# Code"),
            "{}",
            chunk.text
        );
        let fences = chunk.text.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences, 2, "unbalanced fences in {}", chunk.text);
        // Only whole lines of code: pieces are cut at line boundaries.
        assert!(chunk.text.lines().all(|l| l.starts_with("```")
            || l.starts_with("    let")
            || l == "# Code"
            || l.is_empty()
            || l == "After."));
    }
    assert!(chunks.last().unwrap().text.ends_with("After."));
}

#[test]
fn giant_table_pieces_repeat_the_header() {
    let rows: Vec<String> = (0..3000)
        .map(|i| format!("| row {i} | value {i} | note {i} |"))
        .collect();
    let md = format!(
        "Intro.\n\n| Name | Value | Note |\n|---|---|---|\n{}\n",
        rows.join("\n")
    );
    let cfg = config(150, 0, 0);
    let chunks = chunk_markdown(&md, &cfg);
    check_invariants(&md, 0, &chunks, &cfg);
    assert!(chunks.len() > 50);
    for chunk in chunks.iter().skip(1) {
        assert!(
            chunk
                .text
                .starts_with("| Name | Value | Note |\n|---|---|---|\n| row "),
            "{}",
            chunk.text
        );
    }
}

#[test]
fn quoted_code_keeps_its_markers() {
    let body: Vec<String> = (0..50).map(|i| format!("> line {i}")).collect();
    let md = format!("> ```sh\n{}\n> ```\n", body.join("\n"));
    let cfg = config(40, 0, 0);
    let chunks = chunk_markdown(&md, &cfg);
    check_invariants(&md, 0, &chunks, &cfg);
    for chunk in &chunks {
        assert!(chunk.text.starts_with("> ```sh\n"), "{}", chunk.text);
        assert!(chunk.text.ends_with("\n> ```"), "{}", chunk.text);
    }
}

#[test]
fn crlf_documents_chunk_like_lf_documents() {
    let lf = markdown_corpus(30_000, 7);
    let crlf = lf.replace('\n', "\r\n");
    // `\r` costs tokens too, so compare where sections alone decide the cuts…
    let roomy = config(8000, 0, 0);
    let a = chunk_markdown(&lf, &roomy);
    let b = chunk_markdown(&crlf, &roomy);
    check_invariants(&crlf, 0, &b, &roomy);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.heading_path, y.heading_path);
        assert_eq!((x.start_line, x.end_line), (y.start_line, y.end_line));
        assert_eq!(x.text, y.text.replace("\r\n", "\n"));
    }
    // …and check that tight budgets never cut between `\r` and `\n`.
    for max in [1, 5, 60] {
        let tight = config(max, max / 2, 0);
        let chunks = chunk_markdown(&crlf, &tight);
        check_invariants(&crlf, 0, &chunks, &tight);
        for chunk in &chunks {
            assert!(!chunk.source_text().starts_with('\n'), "{chunk:?}");
        }
    }
}

#[test]
fn non_latin_text_is_never_cut_inside_a_character() {
    let cases = [
        "検索エンジンは文書を小さな断片に分割します。".repeat(40),
        "يقوم الفريق ببناء محرك بحث سريع. ".repeat(40),
        "👩‍👩‍👧‍👦🚀✨".repeat(60),
        "naïve café façade ".repeat(60),
        format!("# 見出し\n\n{}", "中文没有空格".repeat(100)),
    ];
    for max in [1, 2, 3, 7, 50] {
        let cfg = config(max, max / 3, 0);
        for md in &cases {
            let chunks = chunk_markdown(md, &cfg);
            check_invariants(md, 0, &chunks, &cfg);
        }
    }
    let chunks = chunk_markdown(&cases[4], &config(10, 0, 0));
    assert!(chunks.iter().all(|c| c.heading_path == ["見出し"]));
}

#[test]
fn front_matter_offsets_are_absolute() {
    let text = "\u{feff}---\r\ntitle: T\r\ntags: [a]\r\n---\r\n# Acme\r\n\r\nFirst paragraph.\r\n\r\n## Search\r\n\r\nSecond.\r\n";
    let key = DocumentKey::parse("companies/acme/a.md").unwrap();
    let doc = parse_document(&key, text.as_bytes()).unwrap();
    let cfg = config(8, 0, 0);
    let chunks = chunk_document(&doc, &cfg);
    check_invariants(text, doc.body_offset, &chunks, &cfg);
    assert_eq!(chunks[0].start_line, 5);
    assert_eq!(
        &text[chunks[0].byte_range.clone()],
        "# Acme\r\n\r\nFirst paragraph."
    );
    assert_eq!(chunks.last().unwrap().heading_path, ["Acme", "Search"]);
    assert_eq!(chunks.last().unwrap().end_line, 11);
}

#[test]
fn invalid_utf8_never_reaches_the_chunker() {
    let key = DocumentKey::parse("a.md").unwrap();
    let mut bytes = markdown_corpus(2_000, 3).into_bytes();
    bytes[1500] = 0xFF;
    assert!(matches!(
        parse_document(&key, &bytes),
        Err(crate::document::DocumentError::InvalidUtf8 { offset: 1500 })
    ));
}

#[test]
fn odd_markdown_is_covered() {
    let cases = [
        "[ref]: https://example.com\n",
        "```\nunterminated fence\nmore",
        "~~~~\ncode\n~~~~\n",
        "<div>\n<p>html block</p>\n</div>\n",
        "- a\n  - b\n    - c\n      - d\n",
        "> > > nested quote\n",
        "Term\n\n---\n\n***\n",
        "| not | a table\n",
        "text[^1]\n\n[^1]: footnote text\n",
        "    indented code\n    more\n",
        "- [ ] task\n- [x] done\n",
        "#\n\n##\n\nbody\n",
        "a\rb\rc",
        // Found by the property tests: a blank first line before a heading.
        "\n# ",
    ];
    for md in cases {
        for max in [1, 3, 1000] {
            let cfg = config(max, 0, 0);
            let chunks = chunk_markdown(md, &cfg);
            check_invariants(md, 0, &chunks, &cfg);
            assert!(!chunks.is_empty(), "{md:?}");
        }
    }
}

#[test]
fn a_50000_deep_block_quote_is_chunked_on_a_worker_sized_stack() {
    // Issue 26: this 50 KB document overflowed the Worker's stack in workerd.
    let md = format!("{} deep quote\n", ">".repeat(50_000));
    let chunks = worker_stack::on_worker_stack(move || {
        let cfg = ChunkConfig::default();
        let chunks = chunk_markdown(&md, &cfg);
        check_invariants(&md, 0, &chunks, &cfg);
        chunks
    });
    // Below the depth bound the quote is cut as text: 50,012 ASCII bytes in
    // pieces of at most 512 tokens (2,048 bytes).
    assert!((25..=30).contains(&chunks.len()), "{} chunks", chunks.len());
    assert!(chunks.last().unwrap().text.ends_with("deep quote"));
}

#[test]
fn hostile_nesting_is_chunked_on_a_worker_sized_stack() {
    let indented_list: String = (0..500)
        .map(|i| format!("{}- item {i}\n", "  ".repeat(i)))
        .collect();
    let cases = [
        (
            "quotes, one per line",
            (1..400)
                .map(|i| format!("{} line {i}\n", ">".repeat(i)))
                .collect(),
        ),
        ("spaced quotes", format!("{}x\n", "> ".repeat(25_000))),
        ("lists on one line", format!("{}x\n", "- ".repeat(25_000))),
        (
            "ordered lists on one line",
            format!("{}x\n", "1. ".repeat(16_000)),
        ),
        ("quoted lists", format!("{}x\n", "> - ".repeat(12_000))),
        ("500-level list", indented_list),
        (
            "brackets",
            format!("{}x{}\n", "[".repeat(20_000), "]".repeat(20_000)),
        ),
        (
            "emphasis",
            format!("{}x{}\n", "*".repeat(25_000), "*".repeat(25_000)),
        ),
        (
            "fence in quotes",
            format!("{}```\ncode\n```\n", ">".repeat(50_000)),
        ),
    ];
    for (name, md) in cases {
        let count = worker_stack::on_worker_stack(move || {
            let mut count = 0;
            for cfg in [ChunkConfig::default(), config(24, 4, 2)] {
                let chunks = chunk_markdown(&md, &cfg);
                check_invariants(&md, 0, &chunks, &cfg);
                count += chunks.len();
            }
            count
        });
        assert!(count > 0, "{name}");
    }
}

#[test]
fn the_outline_keeps_nesting_up_to_its_bound() {
    let depth = |md: &str| {
        let outline = blocks::outline(md);
        let mut deepest = 0;
        let mut level: Vec<(usize, usize)> = outline.top.iter().map(|&id| (id, 1)).collect();
        while let Some((id, d)) = level.pop() {
            deepest = deepest.max(d);
            level.extend(outline.nodes[id].children.iter().map(|&c| (c, d + 1)));
        }
        deepest
    };
    // Each quote level is a node; the innermost paragraph one more.
    assert_eq!(depth("> > > text\n"), 4);
    assert_eq!(
        depth(&format!("{} text\n", ">".repeat(100))),
        blocks::MAX_OUTLINE_DEPTH
    );
    // A quote nested under the bound still splits between its children.
    let inner: Vec<String> = (0..40)
        .map(|i| format!("> > > para {i} with some words.\n> > >"))
        .collect();
    let md = inner.join("\n");
    let cfg = config(20, 0, 0);
    let chunks = chunk_markdown(&md, &cfg);
    check_invariants(&md, 0, &chunks, &cfg);
    assert!(
        chunks.iter().all(|c| c.text.starts_with("> > > para")),
        "{chunks:#?}"
    );
}

#[test]
fn a_one_megabyte_document() {
    let md = markdown_corpus(1 << 20, 42);
    assert!(md.len() >= 1 << 20);
    for cfg in [ChunkConfig::default(), config(128, 16, 32)] {
        let chunks = chunk_markdown(&md, &cfg);
        check_invariants(&md, 0, &chunks, &cfg);
        let mean = chunks.iter().map(|c| c.tokens).sum::<usize>() / chunks.len();
        assert!(
            mean * 2 >= cfg.max_tokens() / 2,
            "chunks are too small: mean {mean}"
        );
        // Only sibling top-level sections merged under `min_tokens` lose their path.
        let with_path = chunks.iter().filter(|c| !c.heading_path.is_empty()).count();
        assert!(
            with_path * 10 >= chunks.len() * 9,
            "{with_path} of {}",
            chunks.len()
        );
    }
}

#[test]
fn chunking_is_deterministic() {
    let md = markdown_corpus(50_000, 11);
    let cfg = config(100, 20, 10);
    assert_eq!(chunk_markdown(&md, &cfg), chunk_markdown(&md, &cfg));
}

/// Every invariant on a folder of real markdown (Debian's `docker-doc` has
/// 171 files): `CHUNK_BENCH_MARKDOWN_DIR=<dir> cargo test -p portfolio-core -- --ignored`.
#[test]
#[ignore = "needs CHUNK_BENCH_MARKDOWN_DIR pointing at real .md files"]
fn real_markdown_keeps_every_invariant() {
    let Some(dir) = std::env::var_os("CHUNK_BENCH_MARKDOWN_DIR") else {
        eprintln!("CHUNK_BENCH_MARKDOWN_DIR is not set: nothing to check");
        return;
    };
    let root = std::path::PathBuf::from(dir);
    let mut pending = vec![root.clone()];
    let (mut files, mut chunks_seen) = (0, 0);
    while let Some(dir) = pending.pop() {
        for path in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let doc = parse_document(&DocumentKey::parse(&name).unwrap(), &bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for cfg in [ChunkConfig::default(), config(64, 8, 0), config(3, 1, 0)] {
                let chunks = chunk_document(&doc, &cfg);
                check_invariants(doc.source, doc.body_offset, &chunks, &cfg);
                chunks_seen += chunks.len();
            }
            files += 1;
        }
    }
    eprintln!("{files} files, {chunks_seen} chunks checked");
    assert!(files > 0);
}

#[test]
fn heading_paths_split_back_into_headings() {
    assert_eq!(
        split_heading_path("Acme > Projects > Search"),
        ["Acme", "Projects", "Search"]
    );
    assert!(split_heading_path("").is_empty());
}
