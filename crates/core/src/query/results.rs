//! How fused hits become results: joined with the active generation's chunk
//! rows, filtered by tag, deduplicated by overlap, cut to `top_k`; and how
//! results become a chat answer's numbered sources and prompt passages.

use crate::ingest::chunk::split_heading_path;
use crate::providers::Passage;
use crate::query::fusion::{FusedHit, RetrievalSource};
use serde::{Deserialize, Serialize};

/// A chunk of the active generation, as the Worker reads it from D1.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ChunkRow {
    /// Vector id: the fusion key shared by every source.
    pub vector_id: String,
    /// Document row id.
    pub document_id: i64,
    /// R2 key of the document.
    pub key: String,
    /// Document title.
    pub title: Option<String>,
    /// Company slug.
    pub company: Option<String>,
    /// Chunk index.
    pub chunk_index: u32,
    /// `A > B > C`.
    pub heading_path: String,
    /// Chunk text.
    pub content: String,
    /// JSON array of tags.
    pub tags: String,
    /// Byte range start in the source.
    pub start_byte: u64,
    /// Byte range end in the source.
    pub end_byte: u64,
}

/// Per-source scores shown with a result (raw: cosine, BM25 relevance, tag hits).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceScores {
    /// Cosine similarity, if the vector search found it.
    pub vector: Option<f64>,
    /// BM25 relevance (higher is better), if the keyword search found it.
    pub keyword: Option<f64>,
    /// Matching tags, if the tag search found it.
    pub tag: Option<f64>,
    /// The reranker's score, if the search was reranked and this chunk was
    /// among the candidates it read (comparable within one answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank: Option<f64>,
}

/// One search result, as the site's chat client receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    /// R2 key of the document.
    pub key: String,
    /// Document title.
    pub title: String,
    /// Company slug.
    pub company: Option<String>,
    /// Heading path of the chunk.
    pub heading_path: String,
    /// Chunk tags.
    pub tags: Vec<String>,
    /// Chunk text.
    pub text: String,
    /// Chunk index within the document.
    pub chunk_index: u32,
    /// Per-source scores.
    pub scores: SourceScores,
    /// Fused score (weighted reciprocal rank fusion).
    pub score: f64,
}

/// Whether two chunks of one document cover mostly the same text (their byte
/// ranges overlap by more than half of the shorter one).
#[must_use]
pub fn overlaps(a: &ChunkRow, b: &ChunkRow) -> bool {
    if a.document_id != b.document_id {
        return false;
    }
    let start = a.start_byte.max(b.start_byte);
    let end = a.end_byte.min(b.end_byte);
    let shared = end.saturating_sub(start);
    let shorter =
        (a.end_byte - a.start_byte.min(a.end_byte)).min(b.end_byte - b.start_byte.min(b.end_byte));
    shorter > 0 && shared * 2 > shorter
}

/// Joins fused hits (best first) with their rows, drops hits whose row is
/// missing (superseded generation, deleted document) or that fail the tag
/// filter, removes chunks overlapping a better one, and keeps `top_k`.
#[must_use]
pub fn assemble_results(
    fused: &[FusedHit<String>],
    rows: &[ChunkRow],
    required_tags: &[String],
    top_k: usize,
) -> Vec<SearchResult> {
    let mut kept: Vec<(&ChunkRow, &FusedHit<String>, Vec<String>)> = Vec::new();
    for hit in fused {
        let Some(row) = rows.iter().find(|r| r.vector_id == hit.id) else {
            continue;
        };
        let tags: Vec<String> = serde_json::from_str(&row.tags).unwrap_or_default();
        if !required_tags.is_empty() && !tags.iter().any(|t| required_tags.contains(t)) {
            continue;
        }
        if kept.iter().any(|(k, _, _)| overlaps(k, row)) {
            continue;
        }
        kept.push((row, hit, tags));
        if kept.len() == top_k {
            break;
        }
    }
    kept.into_iter()
        .map(|(row, hit, tags)| SearchResult {
            key: row.key.clone(),
            title: row.title.clone().unwrap_or_else(|| row.key.clone()),
            company: row.company.clone(),
            heading_path: row.heading_path.clone(),
            tags,
            text: row.content.clone(),
            chunk_index: row.chunk_index,
            scores: SourceScores {
                vector: hit.source(RetrievalSource::Vector).map(|m| m.raw_score),
                keyword: hit.source(RetrievalSource::Keyword).map(|m| m.raw_score),
                tag: hit.source(RetrievalSource::Tag).map(|m| m.raw_score),
                rerank: None,
            },
            score: hit.score,
        })
        .collect()
}

/// One cited source of a chat answer, numbered as in the answer's `[n]` citations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// Citation number, 1-based, in retrieval order.
    pub number: usize,
    /// R2 key of the document.
    pub key: String,
    /// Document title.
    pub title: String,
    /// Company slug.
    pub company: Option<String>,
    /// Heading path of the chunk.
    pub heading_path: String,
    /// Chunk text.
    pub text: String,
    /// Fused score.
    pub score: f64,
}

/// The sources a chat answer shows and the passages its prompt quotes, numbered alike:
/// citation `[n]` in the answer is source `n`.
#[must_use]
pub fn cite(results: &[SearchResult]) -> (Vec<Source>, Vec<Passage>) {
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let source = Source {
                number: i + 1,
                key: r.key.clone(),
                title: r.title.clone(),
                company: r.company.clone(),
                heading_path: r.heading_path.clone(),
                text: r.text.clone(),
                score: r.score,
            };
            let passage = Passage {
                number: i + 1,
                title: r.title.clone(),
                heading_path: split_heading_path(&r.heading_path),
                text: r.text.clone(),
            };
            (source, passage)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::fusion::{fuse_rankings, FusionConfig, SourceRanking};

    #[test]
    fn sources_and_passages_are_numbered_alike() {
        let result = |key: &str, heading_path: &str| SearchResult {
            key: key.into(),
            title: format!("{key} title"),
            company: Some("acme".into()),
            heading_path: heading_path.into(),
            tags: vec![],
            text: format!("{key} text"),
            chunk_index: 0,
            scores: SourceScores {
                vector: Some(0.5),
                keyword: None,
                tag: None,
                rerank: None,
            },
            score: 0.03,
        };
        let results = [result("a.md", "Acme > Robots"), result("b.md", "")];
        let (sources, passages) = cite(&results);
        assert_eq!(
            sources
                .iter()
                .map(|s| (s.number, s.key.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a.md"), (2, "b.md")]
        );
        assert_eq!(
            passages
                .iter()
                .map(|p| (p.number, p.text.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a.md text"), (2, "b.md text")]
        );
        assert_eq!(passages[0].heading_path, ["Acme", "Robots"]);
        assert!(passages[1].heading_path.is_empty());
        assert_eq!(sources[0].heading_path, "Acme > Robots");
    }

    fn row(id: &str, doc: i64, range: (u64, u64), tags: &str) -> ChunkRow {
        ChunkRow {
            vector_id: id.into(),
            document_id: doc,
            key: format!("doc{doc}.md"),
            title: Some(format!("Doc {doc}")),
            company: None,
            chunk_index: 0,
            heading_path: String::new(),
            content: id.into(),
            tags: tags.into(),
            start_byte: range.0,
            end_byte: range.1,
        }
    }

    #[test]
    fn overlap_needs_the_same_document_and_more_than_half() {
        assert!(overlaps(
            &row("a", 1, (0, 100), "[]"),
            &row("b", 1, (40, 140), "[]")
        ));
        assert!(!overlaps(
            &row("a", 1, (0, 100), "[]"),
            &row("b", 1, (60, 160), "[]")
        ));
        assert!(!overlaps(
            &row("a", 1, (0, 100), "[]"),
            &row("b", 2, (0, 100), "[]")
        ));
    }

    #[test]
    fn results_skip_missing_rows_overlaps_and_tag_misses() {
        let rankings = vec![
            SourceRanking::new(
                RetrievalSource::Vector,
                [
                    ("a".to_owned(), 0.9),
                    ("gone".to_owned(), 0.8),
                    ("b".to_owned(), 0.7),
                    ("c".to_owned(), 0.6),
                ],
            ),
            SourceRanking::new(RetrievalSource::Keyword, [("c".to_owned(), 3.0)]),
        ];
        let fused = fuse_rankings(&FusionConfig::new(), &rankings);
        let rows = vec![
            row("a", 1, (0, 100), r#"["pumps"]"#),
            row("b", 1, (10, 110), r#"["pumps"]"#),
            row("c", 2, (0, 50), r#"["valves"]"#),
        ];
        let all = assemble_results(&fused, &rows, &[], 10);
        assert_eq!(
            all.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["c", "a"]
        );
        assert_eq!(all[0].scores.keyword, Some(3.0));
        assert_eq!(all[0].scores.vector, Some(0.6));
        let tagged = assemble_results(&fused, &rows, &["pumps".to_owned()], 10);
        assert_eq!(
            tagged.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(assemble_results(&fused, &rows, &[], 1).len(), 1);
    }
}
