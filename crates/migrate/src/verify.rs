//! `verify`: proves an import arrived. Compares the export (what the source
//! held) with the service: counts, company fields and legacy ids, foreign
//! keys, each document's SHA-256 and company, readiness, chunk and vector
//! counts, and answer parity — overlap@k of the documents the source's
//! `hybrid_search` and the service's `/api/search` return for the same
//! questions, with both sides' latency. Reads only; writes the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use portfolio_core::admin::companies::{validate_companies, CompanyImportBatch};
use portfolio_core::document::keys::DocumentKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::clock::{Clock, Stopwatch};
use crate::convert::{company_import, prepare_document};
use crate::manifest::{read_jsonl, Manifest, ManifestError, COMPANIES_FILE, DOCUMENTS_FILE};
use crate::postgres::Database;
use crate::records::{CompanyRecord, DocumentRecord};
use crate::source::{Source, SourceError};
use crate::target::{ServiceTarget, TargetError};

/// Chunk hits asked of each side per question; distinct documents are then
/// cut to k. The service's `top_k` is at most 50 (Vectorize's limit with metadata).
const MAX_CHUNK_HITS: u32 = 50;

#[derive(Debug, Clone)]
pub struct ParityOptions {
    pub database: Database,
    /// SQL function turning the question into the source's query embedding.
    pub embed_function: String,
    pub k: usize,
    pub threshold: f64,
    /// Questions file (JSON lines `{ "question", "company"? }` or plain lines).
    pub questions: Option<PathBuf>,
    pub max_questions: usize,
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub from: PathBuf,
    pub parity: Option<ParityOptions>,
    /// Where verify-report.{json,md} go.
    pub out: PathBuf,
}

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(transparent)]
    Export(#[from] ManifestError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{path}: {message}")]
    Questions { path: PathBuf, message: String },
    #[error("writing the report {path}: {message}")]
    Report { path: PathBuf, message: String },
}

impl VerifyError {
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Export(_) | Self::Questions { .. } => "read",
            Self::Target(_) => "target",
            Self::Source(SourceError::Connect(e)) if e.is_usage() => "config",
            Self::Source(_) => "source",
            Self::Report { .. } => "write",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub expected: Value,
    pub actual: Value,
    /// Up to a few offending items, to act on.
    pub examples: Vec<String>,
    pub meaning: &'static str,
}

fn check(
    name: &'static str,
    meaning: &'static str,
    expected: impl Serialize,
    actual: impl Serialize,
    problems: Vec<String>,
) -> Check {
    let expected = serde_json::to_value(expected).unwrap_or(Value::Null);
    let actual = serde_json::to_value(actual).unwrap_or(Value::Null);
    let status = if problems.is_empty() && expected == actual {
        Status::Pass
    } else {
        Status::Fail
    };
    Check {
        name,
        status,
        expected,
        actual,
        examples: problems.into_iter().take(5).collect(),
        meaning,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QuestionResult {
    pub question: String,
    pub company: Option<String>,
    pub overlap: f64,
    pub source_documents: Vec<String>,
    pub service_documents: Vec<String>,
    pub source_ms: f64,
    pub service_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parity {
    pub k: usize,
    pub threshold: f64,
    pub questions: usize,
    pub mean_overlap: f64,
    pub source_latency: Latency,
    pub service_latency: Latency,
    pub results: Vec<QuestionResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub command: &'static str,
    pub from: String,
    pub target: String,
    pub passed: bool,
    pub checks: Vec<Check>,
    pub parity: Option<Parity>,
    pub duration_ms: u64,
    pub exit_code: i32,
}

/// What the export says the service should hold for one document.
struct Expected {
    sha256: String,
    company: Option<String>,
    empty_body: bool,
}

fn latency(mut samples: Vec<f64>) -> Latency {
    if samples.is_empty() {
        return Latency {
            p50_ms: 0.0,
            p95_ms: 0.0,
            mean_ms: 0.0,
        };
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Latency {
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        mean_ms: samples.iter().sum::<f64>() / samples.len() as f64,
    }
}

/// The first `k` distinct items, in order.
fn distinct_top(items: Vec<String>, k: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .take(k)
        .collect()
}

/// |A ∩ B| / k: the share of the source's top-k documents the service also
/// returns in its top k (a side returning fewer than k counts as missing).
#[must_use]
pub fn overlap_at_k(source: &[String], service: &[String], k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let service: HashSet<&String> = service.iter().collect();
    let denominator = k.min(source.len().max(1));
    source.iter().filter(|s| service.contains(s)).count() as f64 / denominator as f64
}

#[derive(Debug, Deserialize)]
struct QuestionLine {
    question: String,
    #[serde(default)]
    company: Option<String>,
}

fn read_questions(path: &Path) -> Result<Vec<(String, Option<String>)>, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|e| VerifyError::Questions {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<QuestionLine>(l) {
            Ok(q) => (q.question, q.company),
            Err(_) => (l.trim().to_owned(), None),
        })
        .collect())
}

/// The first heading of a body, if any.
fn first_heading(content: &str) -> Option<String> {
    content
        .lines()
        .find_map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix("## ")))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Runs every check; the report is also written as JSON and Markdown.
pub async fn run_verify(
    options: &VerifyOptions,
    target: &ServiceTarget,
    clock: &dyn Clock,
) -> Result<VerifyReport, VerifyError> {
    let started = clock.elapsed_ms();
    let mut checks = Vec::new();
    let manifest = Manifest::load(&options.from)?;
    let files = manifest.check_files(&options.from);
    checks.push(check(
        "export_files",
        "the export's files are byte for byte what the manifest recorded",
        "intact",
        if files.is_ok() { "intact" } else { "changed" },
        files.err().map(|e| e.to_string()).into_iter().collect(),
    ));

    // Companies.
    let listed = target.companies().await?;
    let by_legacy: HashMap<String, &Value> = listed
        .iter()
        .filter_map(|c| c["legacy_id"].as_str().map(|id| (id.to_owned(), c)))
        .collect();
    let mut expected_companies = 0u64;
    let mut found_companies = 0u64;
    let mut field_problems = Vec::new();
    let mut missing_companies = Vec::new();
    for record in read_jsonl::<CompanyRecord>(&options.from.join(COMPANIES_FILE))? {
        let record = record?;
        let request = company_import(&record);
        let Ok(valid) = validate_companies(CompanyImportBatch {
            companies: vec![request],
        }) else {
            continue;
        };
        let Some(valid) = valid.into_iter().next() else {
            continue;
        };
        expected_companies += 1;
        let Some(stored) = by_legacy.get(&record.id) else {
            missing_companies.push(record.slug.clone());
            continue;
        };
        found_companies += 1;
        let differs = stored["slug"] != valid.slug.as_str()
            || stored["name"] != valid.name.as_str()
            || stored["description"].as_str() != valid.description.as_deref()
            || stored["website"].as_str() != valid.website.as_deref();
        if differs {
            field_problems.push(format!("{}: stored {}", record.slug, stored));
        }
    }
    checks.push(check(
        "companies_count",
        "every exported company (that the service accepts) is stored, found by its legacy id",
        expected_companies,
        found_companies,
        missing_companies,
    ));
    checks.push(check(
        "company_fields",
        "slug, name, description and website equal the source's",
        0,
        field_problems.len(),
        field_problems,
    ));

    // Documents.
    let stored = target.documents().await?;
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut sample_questions: Vec<(String, Option<String>)> = Vec::new();
    for record in read_jsonl::<DocumentRecord>(&options.from.join(DOCUMENTS_FILE))? {
        let record = record?;
        let Ok(doc) = prepare_document(&record) else {
            continue;
        };
        if let Some(h) = record.content.as_deref().and_then(first_heading) {
            sample_questions.push((h, record.company_slug.clone()));
        }
        let empty_body = record.content.as_deref().unwrap_or("").trim().is_empty();
        expected
            .entry(doc.key.as_str().to_owned())
            .or_insert(Expected {
                sha256: doc.sha256,
                company: doc.company,
                empty_body,
            });
    }
    let missing: Vec<String> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .cloned()
        .collect();
    checks.push(check(
        "documents_count",
        "every importable exported document is stored under its key",
        expected.len(),
        expected.len() - missing.len(),
        missing,
    ));
    let extra: Vec<String> = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .cloned()
        .collect();
    checks.push(check(
        "no_extra_documents",
        "the service holds no document the export does not (informative on a shared service)",
        0,
        extra.len(),
        extra,
    ));
    let mut sha_problems = Vec::new();
    let mut company_problems = Vec::new();
    let mut not_ready = Vec::new();
    let mut no_chunks = Vec::new();
    let mut chunk_total = 0i64;
    for (key, want) in &expected {
        let Some(have) = stored.get(key) else {
            continue;
        };
        if have.sha256.as_deref() != Some(want.sha256.as_str()) {
            sha_problems.push(format!("{key}: {:?} != {}", have.sha256, want.sha256));
        }
        if have.company != want.company {
            company_problems.push(format!("{key}: {:?} != {:?}", have.company, want.company));
        }
        if have.status != "ready" {
            not_ready.push(format!("{key}: {}", have.status));
        }
        if have.chunk_count == 0 && !want.empty_body {
            no_chunks.push(key.clone());
        }
        chunk_total += have.chunk_count;
    }
    checks.push(check(
        "document_checksums",
        "each stored object's SHA-256 equals that of the source content (with the front matter import adds)",
        0,
        sha_problems.len(),
        sha_problems,
    ));
    checks.push(check(
        "document_companies",
        "each document is filed under the company the source had it under",
        0,
        company_problems.len(),
        company_problems,
    ));
    checks.push(check(
        "documents_ready",
        "every document finished ingestion",
        0,
        not_ready.len(),
        not_ready,
    ));
    checks.push(check(
        "document_chunks",
        "every document with content has chunks",
        0,
        no_chunks.len(),
        no_chunks,
    ));
    // Foreign keys: every document's company exists, and the companies'
    // document counts add up to the documents that have one.
    let slugs: HashSet<&str> = listed.iter().filter_map(|c| c["slug"].as_str()).collect();
    let dangling: Vec<String> = stored
        .values()
        .filter(|d| d.company.as_deref().is_some_and(|c| !slugs.contains(c)))
        .map(|d| d.key.clone())
        .collect();
    let with_company = stored.values().filter(|d| d.company.is_some()).count() as i64;
    let counted: i64 = listed.iter().filter_map(|c| c["documents"].as_i64()).sum();
    checks.push(check(
        "foreign_keys",
        "every document's company exists; per-company document counts add up",
        with_company,
        counted,
        dangling,
    ));
    let index = target.index_info().await?;
    let vectors = index["vector_count"].as_i64().unwrap_or(-1);
    checks.push(check(
        "vector_count",
        "the vector index holds one vector per live chunk (Vectorize: as of its last applied mutation)",
        chunk_total,
        vectors,
        Vec::new(),
    ));

    let parity = match &options.parity {
        None => {
            checks.push(Check {
                name: "answer_parity",
                status: Status::Skip,
                expected: Value::Null,
                actual: Value::Null,
                examples: vec!["no --database-url: the source cannot be asked".into()],
                meaning: "overlap@k of the documents both backends return for the same questions",
            });
            None
        }
        Some(p) => {
            let questions = match &p.questions {
                Some(path) => read_questions(path)?,
                None => {
                    // Spread over the corpus: every n-th document's heading.
                    let step = (sample_questions.len() / p.max_questions.max(1)).max(1);
                    sample_questions.into_iter().step_by(step).collect()
                }
            };
            let questions: Vec<_> = questions.into_iter().take(p.max_questions).collect();
            let parity = answer_parity(p, &questions, target).await?;
            checks.push(Check {
                name: "answer_parity",
                status: if parity.mean_overlap >= p.threshold {
                    Status::Pass
                } else {
                    Status::Fail
                },
                expected: serde_json::json!({ "mean_overlap_at_least": p.threshold }),
                actual: serde_json::json!(parity.mean_overlap),
                examples: parity
                    .results
                    .iter()
                    .filter(|r| r.overlap < p.threshold)
                    .map(|r| format!("{:?}: overlap {:.2}", r.question, r.overlap))
                    .take(5)
                    .collect(),
                meaning: "overlap@k of the documents both backends return for the same questions",
            });
            Some(parity)
        }
    };

    let passed = checks
        .iter()
        .all(|c| c.status != Status::Fail || c.name == "no_extra_documents");
    let report = VerifyReport {
        command: "verify",
        from: options.from.display().to_string(),
        target: target.base().to_owned(),
        passed,
        checks,
        parity,
        duration_ms: clock.elapsed_ms().saturating_sub(started),
        exit_code: i32::from(!passed),
    };
    write_report(&report, &options.out)?;
    Ok(report)
}

async fn answer_parity(
    p: &ParityOptions,
    questions: &[(String, Option<String>)],
    target: &ServiceTarget,
) -> Result<Parity, VerifyError> {
    let source = Source::connect(&p.database).await?;
    let hits = u32::try_from(p.k * 4)
        .unwrap_or(MAX_CHUNK_HITS)
        .clamp(1, MAX_CHUNK_HITS);
    let mut results = Vec::new();
    for (question, company) in questions {
        let watch = Stopwatch::start();
        let paths = source
            .hybrid_search_paths(question, hits as i32, company.as_deref(), &p.embed_function)
            .await?;
        let source_ms = watch.ms();
        let watch = Stopwatch::start();
        let keys = target
            .search_keys(question, hits, company.as_deref())
            .await?;
        let service_ms = watch.ms();
        // Compare by document key: the source path normalised as import did.
        let source_keys: Vec<String> = paths
            .iter()
            .map(|p| DocumentKey::parse(p).map_or_else(|_| p.clone(), |k| k.as_str().to_owned()))
            .collect();
        let source_documents = distinct_top(source_keys, p.k);
        let service_documents = distinct_top(keys, p.k);
        results.push(QuestionResult {
            question: question.clone(),
            company: company.clone(),
            overlap: overlap_at_k(&source_documents, &service_documents, p.k),
            source_documents,
            service_documents,
            source_ms,
            service_ms,
        });
    }
    let n = results.len();
    Ok(Parity {
        k: p.k,
        threshold: p.threshold,
        questions: n,
        mean_overlap: if n == 0 {
            0.0
        } else {
            results.iter().map(|r| r.overlap).sum::<f64>() / n as f64
        },
        source_latency: latency(results.iter().map(|r| r.source_ms).collect()),
        service_latency: latency(results.iter().map(|r| r.service_ms).collect()),
        results,
    })
}

/// The report as Markdown: one line per check, then parity and latency.
#[must_use]
pub fn render_markdown(report: &VerifyReport) -> String {
    let mut out = format!(
        "# Migration verification: {}\n\nExport `{}` → service `{}` ({:.1} s)\n\n| check | status | expected | actual | meaning |\n|---|---|---|---|---|\n",
        if report.passed { "PASSED" } else { "FAILED" },
        report.from,
        report.target,
        report.duration_ms as f64 / 1000.0
    );
    for c in &report.checks {
        let status = match c.status {
            Status::Pass => "pass",
            Status::Fail => "**FAIL**",
            Status::Skip => "skip",
        };
        out.push_str(&format!(
            "| {} | {status} | {} | {} | {} |\n",
            c.name, c.expected, c.actual, c.meaning
        ));
    }
    for c in report.checks.iter().filter(|c| !c.examples.is_empty()) {
        out.push_str(&format!("\n`{}`:\n", c.name));
        for e in &c.examples {
            out.push_str(&format!("- {}\n", e.replace('|', "\\|")));
        }
    }
    if let Some(p) = &report.parity {
        out.push_str(&format!(
            "\n## Answer parity\n\n{} questions, overlap@{} = {:.3} (threshold {:.2})\n\n| side | p50 ms | p95 ms | mean ms |\n|---|---|---|---|\n| source `hybrid_search` | {:.1} | {:.1} | {:.1} |\n| service `/api/search` | {:.1} | {:.1} | {:.1} |\n",
            p.questions, p.k, p.mean_overlap, p.threshold,
            p.source_latency.p50_ms, p.source_latency.p95_ms, p.source_latency.mean_ms,
            p.service_latency.p50_ms, p.service_latency.p95_ms, p.service_latency.mean_ms,
        ));
    }
    out
}

fn write_report(report: &VerifyReport, dir: &Path) -> Result<(), VerifyError> {
    let err = |path: &Path, e: String| VerifyError::Report {
        path: path.to_owned(),
        message: e,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let json_path = dir.join("verify-report.json");
    let json = serde_json::to_string_pretty(report).map_err(|e| err(&json_path, e.to_string()))?;
    std::fs::write(&json_path, json + "\n").map_err(|e| err(&json_path, e.to_string()))?;
    let md_path = dir.join("verify-report.md");
    std::fs::write(&md_path, render_markdown(report)).map_err(|e| err(&md_path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn overlap_counts_shared_documents_of_the_source_top_k() {
        assert_eq!(overlap_at_k(&v(&["a", "b"]), &v(&["b", "a"]), 2), 1.0);
        assert_eq!(overlap_at_k(&v(&["a", "b"]), &v(&["a", "c"]), 2), 0.5);
        assert_eq!(overlap_at_k(&v(&["a", "b"]), &v(&[]), 2), 0.0);
        // The source found only one document: that one is the whole target.
        assert_eq!(overlap_at_k(&v(&["a"]), &v(&["a", "x"]), 5), 1.0);
        assert_eq!(distinct_top(v(&["a", "a", "b", "c"]), 2), v(&["a", "b"]));
    }

    #[test]
    fn latency_percentiles() {
        let l = latency(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(l.p50_ms, 3.0);
        assert_eq!(l.p95_ms, 10.0);
        assert_eq!(l.mean_ms, 4.0);
    }
}
