//! Chunking throughput: our chunker against the `text-splitter` baseline
//! (its markdown splitter, sized with the same token estimate) on the same
//! generated ~1 MB markdown corpus, measured in the same run.
//!
//! `cargo bench -p portfolio-core --bench chunking` prints a summary (MB/s,
//! the ratio ours/baseline, chunk count, mean and max chunk tokens), then
//! divan's statistics. Set `CHUNK_BENCH_MARKDOWN_DIR` to a folder of real
//! `.md` files (for example Debian's `docker-doc`) to add a line for them.
//! Under `cargo test --benches` everything runs once on a small corpus.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portfolio_core::document::keys::DocumentKey;
use portfolio_core::document::parse_document;
use portfolio_core::ingest::chunk::{
    chunk_document, chunk_markdown, estimate_tokens, ChunkConfig, DEFAULT_MIN_TOKENS,
};
use text_splitter::{ChunkConfig as BaselineConfig, ChunkSizer, MarkdownSplitter};

#[path = "../tests/fixtures/corpus.rs"]
mod corpus;

/// Token budget both chunkers work to.
const MAX_TOKENS: usize = 512;

/// Size of the generated corpus under `cargo bench`.
const CORPUS_BYTES: usize = 1 << 20;

/// Size of the generated corpus under `cargo test --benches` (a smoke run).
const SMOKE_BYTES: usize = 64 << 10;

/// Sizes baseline chunks with our estimate, so both work to one budget.
struct EstimatedTokens;

impl ChunkSizer for EstimatedTokens {
    fn size(&self, chunk: &str) -> usize {
        estimate_tokens(chunk)
    }
}

fn baseline() -> MarkdownSplitter<EstimatedTokens> {
    MarkdownSplitter::new(BaselineConfig::new(MAX_TOKENS).with_sizer(EstimatedTokens))
}

fn ours() -> ChunkConfig {
    ChunkConfig::new(MAX_TOKENS).unwrap_or_default()
}

fn bench_mode() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn corpus_text() -> String {
    let bytes = if bench_mode() {
        CORPUS_BYTES
    } else {
        SMOKE_BYTES
    };
    corpus::markdown_corpus(bytes, 42)
}

/// Median wall time of `runs` calls of `work`.
#[allow(clippy::disallowed_methods)] // Native benchmark: the clock ban protects wasm code.
fn median_time(runs: usize, mut work: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = std::time::Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Throughput, chunk count, mean and max tokens of one chunker.
struct Figures {
    mb_per_s: f64,
    chunks: usize,
    mean_tokens: f64,
    max_tokens: usize,
}

impl Figures {
    fn new(bytes: usize, time: Duration, tokens: &[usize]) -> Self {
        Self {
            mb_per_s: bytes as f64 / 1e6 / time.as_secs_f64(),
            chunks: tokens.len(),
            mean_tokens: tokens.iter().sum::<usize>() as f64 / tokens.len().max(1) as f64,
            max_tokens: tokens.iter().copied().max().unwrap_or(0),
        }
    }

    fn print(&self, name: &str) {
        println!(
            "  {name:<22} {:>9.1} {:>8} {:>12.1} {:>11}",
            self.mb_per_s, self.chunks, self.mean_tokens, self.max_tokens
        );
    }
}

fn print_comparison(title: &str, bodies: &[&str]) {
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let runs = if bench_mode() { 9 } else { 1 };
    let splitter = baseline();
    let base_time = median_time(runs, || {
        for body in bodies {
            black_box(splitter.chunks(black_box(body)).count());
        }
    });
    let base_tokens: Vec<usize> = bodies
        .iter()
        .flat_map(|body| {
            splitter
                .chunks(body)
                .map(estimate_tokens)
                .collect::<Vec<_>>()
        })
        .collect();
    let base_figures = Figures::new(bytes, base_time, &base_tokens);
    println!("{title}: {bytes} bytes, budget {MAX_TOKENS} tokens, median of {runs} run(s)");
    println!(
        "  {:<22} {:>9} {:>8} {:>12} {:>11}",
        "", "MB/s", "chunks", "mean tokens", "max tokens"
    );
    let merged = ours()
        .with_min_tokens(DEFAULT_MIN_TOKENS)
        .unwrap_or_default();
    let mut ratios = Vec::new();
    for (name, config) in [("ours", ours()), ("ours, min_tokens 64", merged)] {
        let time = median_time(runs, || {
            for body in bodies {
                black_box(chunk_markdown(black_box(body), &config));
            }
        });
        let tokens: Vec<usize> = bodies
            .iter()
            .flat_map(|body| chunk_markdown(body, &config))
            .map(|chunk| chunk.tokens)
            .collect();
        let figures = Figures::new(bytes, time, &tokens);
        figures.print(name);
        ratios.push((name, figures.mb_per_s / base_figures.mb_per_s));
    }
    base_figures.print("text-splitter");
    for (name, ratio) in ratios {
        println!("  ratio {name}/baseline throughput: {ratio:.2}");
    }
    println!();
}

/// Every `.md` file under `dir`, sorted so runs are comparable.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Parses and chunks every markdown file of `dir` and compares on their bodies.
fn real_corpus(dir: &Path) {
    let files = markdown_files(dir);
    let sources: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter_map(|path| {
            let name = path.strip_prefix(dir).ok()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(path).ok()?))
        })
        .collect();
    let mut bodies = Vec::new();
    let mut failures = Vec::new();
    let mut with_front_matter = 0;
    let mut over_budget = 0;
    for (name, bytes) in &sources {
        let Ok(key) = DocumentKey::parse(name) else {
            failures.push(format!("{name}: bad key"));
            continue;
        };
        match parse_document(&key, bytes) {
            Ok(doc) => {
                with_front_matter += usize::from(doc.body_offset > 0);
                over_budget += chunk_document(&doc, &ours())
                    .iter()
                    .filter(|c| c.tokens > MAX_TOKENS)
                    .count();
                bodies.push(doc.body);
            }
            Err(err) => failures.push(format!("{name}: {err}")),
        }
    }
    println!(
        "{} .md files under CHUNK_BENCH_MARKDOWN_DIR: {} parsed ({with_front_matter} with front matter), {} rejected, {over_budget} chunks over budget",
        sources.len(),
        bodies.len(),
        failures.len()
    );
    for failure in failures.iter().take(5) {
        println!("  rejected {failure}");
    }
    print_comparison("real markdown bodies", &bodies);
}

#[divan::bench(sample_count = 20)]
fn ours_1mb(bencher: divan::Bencher) {
    let text = corpus_text();
    let config = ours();
    bencher
        .counter(divan::counter::BytesCount::of_str(&text))
        .bench(|| chunk_markdown(black_box(&text), &config));
}

#[divan::bench(sample_count = 20)]
fn text_splitter_1mb(bencher: divan::Bencher) {
    let text = corpus_text();
    let splitter = baseline();
    bencher
        .counter(divan::counter::BytesCount::of_str(&text))
        .bench(|| splitter.chunks(black_box(&text)).count());
}

fn main() {
    let text = corpus_text();
    print_comparison("generated corpus", &[text.as_str()]);
    if let Some(dir) = std::env::var_os("CHUNK_BENCH_MARKDOWN_DIR") {
        real_corpus(Path::new(&dir));
    }
    divan::main();
}
