//! Reranking the fused candidates: which chunks a reranker reads, the text it
//! reads for each, and how its scores reorder the fused list.
//!
//! Pure decisions; the call itself goes through [`crate::providers::Reranker`]
//! in [`super::retrieve()`].

use super::fusion::FusedHit;
use super::results::ChunkRow;
use super::SearchResult;
use std::collections::HashMap;

/// Fused candidates a reranked search sends to the reranker by default.
pub const DEFAULT_RERANK_CANDIDATES: u32 = 20;
/// Fewest and most candidates `RERANK_CANDIDATES` may name.
pub const RERANK_CANDIDATES_RANGE: (u32, u32) = (2, 50);
/// Characters of a chunk the reranker reads (bge-reranker-base reads 512
/// tokens of query and passage together; about 4 characters a token).
pub const MAX_RERANK_PASSAGE_CHARS: usize = 1_800;

/// When and how much a search reranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RerankPolicy {
    /// Fused candidates the reranker reorders (the rest keep their fused order after them).
    pub candidates: u32,
    /// Whether a search that names no `mode` is reranked (`SEARCH_MODE=fused_reranked`).
    pub by_default: bool,
}

impl Default for RerankPolicy {
    fn default() -> Self {
        Self {
            candidates: DEFAULT_RERANK_CANDIDATES,
            by_default: false,
        }
    }
}

/// What the reranker reads for a chunk: its title and heading path (they
/// often carry the words a question uses), then its text, cut to
/// [`MAX_RERANK_PASSAGE_CHARS`] characters.
#[must_use]
pub fn rerank_passage(row: &ChunkRow) -> String {
    let mut text = String::new();
    if let Some(title) = row.title.as_deref().filter(|t| !t.is_empty()) {
        text.push_str(title);
        text.push('\n');
    }
    if !row.heading_path.is_empty() {
        text.push_str(&row.heading_path);
        text.push('\n');
    }
    text.push_str(&row.content);
    match text.char_indices().nth(MAX_RERANK_PASSAGE_CHARS) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

/// The first `candidates` fused hits that still have a row (a hit whose row
/// is gone would be dropped from the results anyway), with those rows.
#[must_use]
pub fn rerank_window<'a>(
    fused: &[FusedHit<String>],
    rows: &'a [ChunkRow],
    candidates: u32,
) -> Vec<&'a ChunkRow> {
    fused
        .iter()
        .filter_map(|hit| rows.iter().find(|r| r.vector_id == hit.id))
        .take(candidates as usize)
        .collect()
}

/// Reorders `fused`: the chunks of `window` by `scores` (same order as
/// `window`; higher first, ties keep their fused order), then every other hit
/// in its fused order.
#[must_use]
pub fn apply_rerank(
    fused: Vec<FusedHit<String>>,
    window: &[&ChunkRow],
    scores: &[f64],
) -> Vec<FusedHit<String>> {
    let score_of: HashMap<&str, f64> = window
        .iter()
        .zip(scores)
        .map(|(row, s)| (row.vector_id.as_str(), *s))
        .collect();
    let (mut reranked, rest): (Vec<_>, Vec<_>) = fused
        .into_iter()
        .enumerate()
        .partition(|(_, hit)| score_of.contains_key(hit.id.as_str()));
    // Stable sort: equal scores keep the fused order.
    reranked.sort_by(|(_, a), (_, b)| score_of[b.id.as_str()].total_cmp(&score_of[a.id.as_str()]));
    reranked
        .into_iter()
        .chain(rest)
        .map(|(_, hit)| hit)
        .collect()
}

/// Sets each result's `scores.rerank` from the reranker's score of its chunk.
pub fn annotate_rerank_scores(results: &mut [SearchResult], window: &[&ChunkRow], scores: &[f64]) {
    for result in results {
        result.scores.rerank = window
            .iter()
            .zip(scores)
            .find(|(row, _)| row.key == result.key && row.chunk_index == result.chunk_index)
            .map(|(_, s)| *s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::fusion::{fuse_rankings, FusionConfig, RetrievalSource, SourceRanking};

    fn row(id: &str, index: u32, content: &str) -> ChunkRow {
        ChunkRow {
            vector_id: id.into(),
            document_id: 1,
            key: "docs/a.md".into(),
            title: Some("Title".into()),
            company: None,
            chunk_index: index,
            heading_path: "A > B".into(),
            content: content.into(),
            tags: "[]".into(),
            start_byte: u64::from(index) * 100,
            end_byte: u64::from(index) * 100 + 100,
        }
    }

    fn fused(ids: &[&str]) -> Vec<FusedHit<String>> {
        let ranking = SourceRanking::new(
            RetrievalSource::Keyword,
            ids.iter().enumerate().map(|(i, id)| {
                #[allow(clippy::cast_precision_loss)]
                let score = 10.0 - i as f64;
                ((*id).to_owned(), score)
            }),
        );
        fuse_rankings(&FusionConfig::new(), &[ranking])
    }

    fn ids(hits: &[FusedHit<String>]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn the_window_skips_hits_without_rows_and_stops_at_candidates() {
        let rows = vec![row("a", 0, "x"), row("c", 2, "x"), row("d", 3, "x")];
        let hits = fused(&["a", "b", "c", "d"]);
        let window = rerank_window(&hits, &rows, 2);
        let window: Vec<&str> = window.iter().map(|r| r.vector_id.as_str()).collect();
        assert_eq!(window, ["a", "c"]);
    }

    #[test]
    fn reranked_chunks_lead_in_score_order_and_the_rest_follow_in_fused_order() {
        let rows = vec![row("a", 0, "x"), row("b", 1, "x"), row("c", 2, "x")];
        let hits = fused(&["a", "b", "c", "d", "e"]);
        let window = rerank_window(&hits, &rows, 3);
        let out = apply_rerank(hits, &window, &[0.1, 0.1, 0.9]);
        // c wins; a and b tie and keep their fused order; d and e follow.
        assert_eq!(ids(&out), ["c", "a", "b", "d", "e"]);
    }

    #[test]
    fn the_passage_carries_title_and_headings_and_is_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_RERANK_PASSAGE_CHARS * 2);
        let passage = rerank_passage(&row("a", 0, &long));
        assert!(passage.starts_with("Title\nA > B\néé"));
        assert_eq!(passage.chars().count(), MAX_RERANK_PASSAGE_CHARS);
        let mut untitled = row("a", 0, "text");
        untitled.title = None;
        untitled.heading_path = String::new();
        assert_eq!(rerank_passage(&untitled), "text");
    }
}
