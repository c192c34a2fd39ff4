//! How the DocumentProcessor slices one document's work: batch sizes, batch
//! ranges, D1 statement sizing, and turning queue commands into pipeline events.
//!
//! Owns the numbers (and why they are what they are); never performs a step.

use crate::ingest::chunk::ChunkConfig;
use crate::ingest::pipeline::{BatchCounts, RunReason};
use std::ops::Range;

/// D1 accepts at most 100 bound parameters per statement.
/// Source: Cloudflare D1 limits, "Maximum bound parameters per query".
pub const D1_MAX_BOUND_PARAMS: usize = 100;

/// D1 accepts at most 100 KB of SQL per statement (text + bound values).
/// Source: Cloudflare D1 limits, "Maximum SQL statement length".
pub const D1_MAX_STATEMENT_BYTES: usize = 100_000;

/// Chunks embedded per alarm. The original system used 10. 64 keeps one
/// request per alarm within every provider we support — OpenAI allows 2,048
/// inputs and 300k tokens per request (64 × ~400 tokens ≈ 26k), Workers AI's
/// bge models 100 inputs — while a 1,000-chunk document needs 16 alarms, not 100.
pub const DEFAULT_EMBED_BATCH: u32 = 64;

/// Chunks tagged per LLM call. The original system used 5. The limit is the
/// answer's length: 8 tags × ~4 tokens + JSON per chunk ≈ 50 tokens, so 20
/// chunks stay well inside the 1,500-token tag completion budget.
pub const DEFAULT_TAG_BATCH: u32 = 20;

/// Chunk budget in approximate tokens: under the 512-token input limit of
/// Workers AI's bge embedding models, with room for the heading-path prefix.
pub const DEFAULT_CHUNK_TOKENS: usize = 400;

/// Overlap between consecutive chunks, in approximate tokens.
pub const DEFAULT_CHUNK_OVERLAP: usize = 40;

/// Delay before a dead letter is delivered again when D1, where it is recorded, cannot be
/// bound. A missing binding is an operator's to fix, not a blip the hand-off backoff is for: a
/// minute keeps the dead-letter queue from spinning and still records the letter soon after.
pub const DEFAULT_DEAD_LETTER_RETRY_SECONDS: u32 = 60;

/// Delay before every message of a batch is delivered again when the vars are invalid (an
/// operator fixes them). Needed before any configuration could be read, hence a constant.
pub const MISCONFIGURED_RETRY_SECONDS: u32 = 300;

/// Settings of the ingestion pipeline, with the defaults above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    /// Chunks per embedding request.
    pub embed_batch: u32,
    /// Chunks per tagging request.
    pub tag_batch: u32,
    /// How documents are cut into chunks.
    pub chunking: ChunkConfig,
    /// Delay before a dead letter that could not be recorded is delivered again.
    pub dead_letter_retry_seconds: u32,
}

impl Default for IngestSettings {
    fn default() -> Self {
        let chunking = ChunkConfig::new(DEFAULT_CHUNK_TOKENS)
            .and_then(|c| c.with_overlap(DEFAULT_CHUNK_OVERLAP))
            .unwrap_or_default();
        Self {
            embed_batch: DEFAULT_EMBED_BATCH,
            tag_batch: DEFAULT_TAG_BATCH,
            chunking,
            dead_letter_retry_seconds: DEFAULT_DEAD_LETTER_RETRY_SECONDS,
        }
    }
}

impl IngestSettings {
    /// Sets the embedding batch size (at least 1).
    #[must_use]
    pub fn with_embed_batch(mut self, size: u32) -> Self {
        self.embed_batch = size.max(1);
        self
    }

    /// Sets the tagging batch size (at least 1).
    #[must_use]
    pub fn with_tag_batch(mut self, size: u32) -> Self {
        self.tag_batch = size.max(1);
        self
    }

    /// How many embedding and tagging batches `chunk_count` chunks need.
    #[must_use]
    pub fn batch_counts(&self, chunk_count: u32) -> BatchCounts {
        BatchCounts {
            embed: chunk_count.div_ceil(self.embed_batch.max(1)),
            tag: chunk_count.div_ceil(self.tag_batch.max(1)),
        }
    }

    /// Chunk indexes of embedding batch `index`.
    #[must_use]
    pub fn embed_range(&self, index: u32, chunk_count: u32) -> Range<u32> {
        batch_range(index, self.embed_batch, chunk_count)
    }

    /// Chunk indexes of tagging batch `index`.
    #[must_use]
    pub fn tag_range(&self, index: u32, chunk_count: u32) -> Range<u32> {
        batch_range(index, self.tag_batch, chunk_count)
    }
}

/// Indexes `[index × size, (index + 1) × size)` clipped to `total` (empty past the end).
#[must_use]
pub fn batch_range(index: u32, size: u32, total: u32) -> Range<u32> {
    let size = size.max(1);
    let start = index.saturating_mul(size).min(total);
    let end = start.saturating_add(size).min(total);
    start..end
}

/// How many rows of `columns` bound values fit in one D1 statement, given
/// that the rows' bound values take about `row_bytes` each.
#[must_use]
pub fn rows_per_statement(columns: usize, row_bytes: usize) -> usize {
    let by_params = D1_MAX_BOUND_PARAMS / columns.max(1);
    // Leave a quarter of the statement for the SQL text itself.
    let by_bytes = (D1_MAX_STATEMENT_BYTES * 3 / 4) / row_bytes.max(1);
    by_params.min(by_bytes).max(1)
}

/// Why a run was requested, from the command's reason string.
#[must_use]
pub fn run_reason(reason: &str) -> RunReason {
    if reason.starts_with("r2:") {
        RunReason::ObjectEvent
    } else if reason.starts_with("reconcile") {
        RunReason::Reconciliation
    } else {
        RunReason::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_counts_round_up() {
        let settings = IngestSettings::default();
        assert_eq!(settings.batch_counts(0), BatchCounts { embed: 0, tag: 0 });
        assert_eq!(settings.batch_counts(1), BatchCounts { embed: 1, tag: 1 });
        assert_eq!(settings.batch_counts(64), BatchCounts { embed: 1, tag: 4 });
        assert_eq!(
            settings.batch_counts(1_250),
            BatchCounts { embed: 20, tag: 63 }
        );
    }

    #[test]
    fn batch_ranges_tile_the_chunks_exactly() {
        let settings = IngestSettings::default().with_embed_batch(7);
        let total = 50;
        let counts = settings.batch_counts(total);
        let mut next = 0;
        for i in 0..counts.embed {
            let range = settings.embed_range(i, total);
            assert_eq!(range.start, next);
            assert!(range.end > range.start && range.end - range.start <= 7);
            next = range.end;
        }
        assert_eq!(next, total);
        assert!(settings.embed_range(counts.embed, total).is_empty());
        assert_eq!(batch_range(u32::MAX, u32::MAX, 10), 10..10);
    }

    #[test]
    fn statements_respect_both_d1_limits() {
        assert_eq!(rows_per_statement(12, 100), 8);
        assert_eq!(rows_per_statement(4, 30_000), 2);
        assert_eq!(rows_per_statement(4, 1_000_000), 1);
        assert_eq!(rows_per_statement(0, 0), 100);
    }

    #[test]
    fn reasons_map_to_run_reasons() {
        assert_eq!(run_reason("r2:PutObject"), RunReason::ObjectEvent);
        assert_eq!(run_reason("reconcile:missing"), RunReason::Reconciliation);
        assert_eq!(run_reason("admin"), RunReason::Admin);
    }
}
