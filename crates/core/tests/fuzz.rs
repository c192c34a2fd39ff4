//! Stable-toolchain fuzzing of the parsers that take untrusted bytes: front
//! matter and document parsing, the markdown chunker, queue message / R2
//! event parsing and the FTS5 expression builder. Each target replays its
//! seed corpus (`fuzz/corpus/<target>/`), then runs a bounded number of
//! generated inputs: random bytes, token soups from a per-target dictionary,
//! and byte-level mutations of the seeds. No input may panic, take longer
//! than [`MAX_INPUT_TIME`], overflow a Worker-sized stack or break the
//! target's invariants: each target runs on a thread with the stack the
//! Worker gets in workerd (`fixtures/worker_stack.rs`), since native test
//! threads have MiBs more and would hide an overflow (issue 26: 50,000
//! nested quotes overflowed the Worker's stack, never a test thread's).
//!
//! `FUZZ_EXECUTIONS` (default 10,000) sets the generated inputs per target;
//! each target prints how many inputs it ran. cargo-fuzz would need a nightly
//! compiler (sanitizer flags) and a C++ toolchain for libFuzzer; this harness
//! runs with `cargo test` on the pinned stable toolchain.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness
// Timing a test input natively is fine: the clock ban is about wasm.
#![allow(clippy::disallowed_methods)]

use portfolio_core::document::keys::DocumentKey;
use portfolio_core::document::parse_document;
use portfolio_core::ingest::chunk::{chunk_document, ChunkConfig};
use portfolio_core::ingest::message::{parse_ingest_message, parse_queue_message, QueueMessage};
use portfolio_core::query::fts_expression;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "fixtures/worker_stack.rs"]
mod worker_stack;

/// Longest any one input may take (debug build, shared CI machine): a hang
/// or a quadratic blow-up on a few KB shows up far above this.
const MAX_INPUT_TIME: Duration = Duration::from_secs(2);

fn executions() -> u32 {
    std::env::var("FUZZ_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The seed files of one target, sorted by name.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "empty seed corpus {}", dir.display());
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One byte-level edit of a seed.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, &'static str),
    Delete(usize, usize),
    SetByte(usize, u8),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *m {
            Mutation::Insert(i, token) => {
                let i = at(i);
                bytes.splice(i..i, token.bytes());
            }
            Mutation::Delete(i, n) => {
                let i = at(i);
                let end = (i + n).min(len);
                bytes.drain(i..end);
            }
            Mutation::SetByte(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::SetByte(..) => bytes.push(0),
            Mutation::Duplicate(i, n) => {
                let i = at(i);
                let end = (i + n).min(len);
                let piece = bytes[i..end].to_vec();
                bytes.splice(i..i, piece);
            }
            Mutation::Truncate(i) => bytes.truncate(at(i)),
        }
        // Keep inputs small enough for a debug build to stay fast.
        bytes.truncate(64 * 1024);
    }
    bytes
}

/// Seeds as they are, random bytes, token soups and mutated seeds.
fn inputs(seeds: Vec<Vec<u8>>, dictionary: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    let token = prop::sample::select(dictionary);
    let mutation = prop_oneof![
        (any::<usize>(), token.clone()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<usize>(), 1usize..256).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    let seed_count = seeds.len();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..1024),
        2 => prop::collection::vec(token, 0..200).prop_map(|ts| ts.concat().into_bytes()),
        5 => (0..seed_count, prop::collection::vec(mutation, 1..12))
            .prop_map(move |(i, ms)| apply(seeds[i].clone(), &ms)),
    ]
    .boxed()
}

/// Runs the seeds, then `executions()` generated inputs through `check`,
/// timing each one, on a thread with the Worker's stack; prints the number
/// of executions.
fn fuzz(
    target: &'static str,
    dictionary: &'static [&'static str],
    check: fn(&[u8]) -> Result<(), TestCaseError>,
) {
    worker_stack::on_worker_stack(move || fuzz_here(target, dictionary, check));
}

fn fuzz_here(
    target: &str,
    dictionary: &'static [&'static str],
    check: fn(&[u8]) -> Result<(), TestCaseError>,
) {
    let seeds = corpus(target);
    let timed = |input: &[u8]| -> Result<(), TestCaseError> {
        let started = Instant::now();
        check(input)?;
        let took = started.elapsed();
        prop_assert!(
            took <= MAX_INPUT_TIME,
            "{target}: one input of {} bytes took {took:?}",
            input.len()
        );
        Ok(())
    };
    for (i, seed) in seeds.iter().enumerate() {
        timed(seed).unwrap_or_else(|e| panic!("{target}: seed {i}: {e}"));
    }
    let mut runner = TestRunner::new(Config {
        cases: executions(),
        failure_persistence: None,
        ..Config::default()
    });
    let ran = std::cell::Cell::new(0u64);
    let strategy = inputs(seeds.clone(), dictionary);
    let result = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        timed(&input)
    });
    let ran = ran.get();
    println!(
        "[fuzz] {target}: {} seeds + {ran} generated inputs (shrinking included)",
        seeds.len()
    );
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

const MARKDOWN_TOKENS: &[&str] = &[
    "---\n",
    "---",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "# ",
    "## ",
    "###### ",
    "####### ",
    "```",
    "```rust\n",
    "~~~",
    "    ",
    "> ",
    "- ",
    "* ",
    "1. ",
    "| a | b |\n",
    "|---|---|\n",
    "| ",
    "<!--",
    "-->",
    "<div>",
    "</div>",
    "[x](",
    ")",
    "![",
    "**",
    "_",
    "`",
    "\\",
    "&amp;",
    "title: ",
    "company: ",
    "tags: ",
    "tags: [",
    "]",
    "{",
    "}",
    ": ",
    "- a\n",
    "'",
    "\"",
    "&anchor ",
    "*anchor",
    "!!binary ",
    "!!str ",
    "? ",
    "null",
    "~",
    "é",
    "😀",
    "\u{feff}",
    "\u{200b}",
    "\u{0}",
    "word ",
    "Acme ",
    "robots. ",
    "=====\n",
    "-----\n",
    "$$",
    "<br>",
];

fn check_document(bytes: &[u8]) -> Result<(), TestCaseError> {
    let key = DocumentKey::parse("companies/acme/fuzz.md").unwrap();
    let Ok(doc) = parse_document(&key, bytes) else {
        return Ok(());
    };
    prop_assert!(doc.body_offset <= doc.source.len());
    prop_assert_eq!(doc.source.get(doc.body_offset..), Some(doc.body));
    prop_assert!(doc.body_line >= 1);
    let small = ChunkConfig::new(24)
        .and_then(|c| c.with_overlap(4))
        .and_then(|c| c.with_min_tokens(2))
        .unwrap();
    for config in [ChunkConfig::default(), small] {
        let chunks = chunk_document(&doc, &config);
        for (i, chunk) in chunks.iter().enumerate() {
            prop_assert_eq!(chunk.index as usize, i);
            prop_assert!(
                chunk.tokens <= config.max_tokens(),
                "chunk {} over budget",
                i
            );
            prop_assert!(chunk.start_line <= chunk.end_line);
            prop_assert_eq!(
                doc.source.get(chunk.byte_range.clone()),
                Some(chunk.source_text())
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_document_parsing_and_front_matter() {
    fuzz("document", MARKDOWN_TOKENS, check_document);
}

#[test]
fn fuzz_markdown_chunker() {
    // The chunker's corpus is bodies without front matter: the mutations go
    // to headings, fences, tables and lists rather than to YAML.
    fuzz("chunk", MARKDOWN_TOKENS, check_document);
}

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\"action\"",
    "\"PutObject\"",
    "\"DeleteObject\"",
    "\"CopyObject\"",
    "\"CompleteMultipartUpload\"",
    "\"LifecycleDeletion\"",
    "\"object\"",
    "\"key\"",
    "\"size\"",
    "\"eTag\"",
    "\"version\"",
    "\"bucket\"",
    "\"account\"",
    "\"eventTime\"",
    "\"copySource\"",
    "\"type\"",
    "\"reconcile\"",
    "\"process\"",
    "\"delete\"",
    "\"force\"",
    "\"run_id\"",
    "\"cursor\"",
    "\"companies/acme/a.md\"",
    "\"../x.md\"",
    "\"\"",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e308",
    "18446744073709551616",
    "1.5",
    "\"\\u0000\"",
    "\"\\ud800\"",
    " ",
];

fn check_queue_message(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    // What the service re-sends (its own serialised form) must parse back
    // to the same message.
    match parse_queue_message(&value) {
        Ok(QueueMessage::Document(command)) => {
            let again = parse_ingest_message(&serde_json::to_value(&command).unwrap());
            prop_assert_eq!(again.as_ref().ok(), Some(&command));
        }
        Ok(QueueMessage::Reconcile(page)) => match parse_queue_message(&page.to_message()) {
            Ok(QueueMessage::Reconcile(again)) => prop_assert_eq!(again, page),
            other => prop_assert!(false, "reconcile page re-parsed as {:?}", other),
        },
        Err(_) => {}
    }
    Ok(())
}

#[test]
fn fuzz_queue_messages_and_r2_events() {
    fuzz("queue_message", JSON_TOKENS, check_queue_message);
}

const FTS_TOKENS: &[&str] = &[
    "\"",
    "*",
    "^",
    "NEAR(",
    "NEAR",
    ")",
    "(",
    "AND",
    "OR",
    "NOT",
    ":",
    "col:",
    "text:",
    "-",
    "+",
    "{",
    "}",
    ",",
    " ",
    "\t",
    "\n",
    "\u{0}",
    "\u{3000}",
    "a",
    "robot",
    "ZX-4000",
    "é",
    "ß",
    "İ",
    "ﬁ",
    "😀",
    "日本語",
    "\u{202e}",
    "'",
    ";",
    "--",
    "%",
    "_",
    "\\",
];

fn check_fts(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let Some(expression) = fts_expression(&text) else {
        return Ok(());
    };
    // Only quoted phrases, OR'ed: inside an FTS5 string only `"` is special,
    // so no quote may survive inside a phrase. (Lower-casing may add
    // combining marks: `İ` becomes `i̇`; inside a string they are inert.)
    let phrases: Vec<&str> = expression.split(" OR ").collect();
    prop_assert!(phrases.len() <= portfolio_core::query::MAX_KEYWORD_TERMS);
    for phrase in phrases {
        let inner = phrase
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .ok_or_else(|| TestCaseError::fail(format!("unquoted phrase {phrase:?}")))?;
        prop_assert!(!inner.trim().is_empty(), "empty phrase in {:?}", expression);
        prop_assert!(!inner.contains('"'), "quote inside phrase {:?}", phrase);
        prop_assert!(
            !inner.chars().any(char::is_control),
            "control character in phrase {:?}",
            phrase
        );
    }
    Ok(())
}

#[test]
fn fuzz_fts_expression_builder() {
    fuzz("fts", FTS_TOKENS, check_fts);
}
