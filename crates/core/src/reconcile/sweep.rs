//! Which generations of a page's documents are garbage: every version below
//! the active one, and every version of a deleted document. A generation a
//! processor is writing right now is newer than the active one (and than a
//! tombstone's latest), and its rows are fresh: it is never a target.
//!
//! Pure; the driver asks the stores for the leftovers and deletes them.

use super::{DocumentRow, DocumentStatus, PageEnd, SweepTarget};

/// Chunk rows younger than this are never swept, whatever their version: a
/// superseded processor may still be between its writes, and a dropped
/// generation the processor is about to delete itself needs no help.
pub const SWEEP_GRACE_MS: u64 = 60 * 60 * 1_000;

/// Most vector ids one page deletes while sweeping: bounds the index calls of
/// a page (the Vectorize adapter sends
/// [`crate::index::VECTORIZE_MAX_IDS_PER_CALL`] ids per call, so 50 calls);
/// the rest waits for the next run (their chunk rows stay until their
/// vectors are gone, so they are found again).
pub const MAX_SWEPT_VECTOR_IDS_PER_PAGE: usize = 5_000;

/// The documents of the page whose older generations may be swept.
#[must_use]
pub fn sweep_targets(documents: &[DocumentRow], end: &PageEnd) -> Vec<SweepTarget> {
    documents
        .iter()
        .filter(|d| end.covers(&d.key))
        .filter_map(|d| {
            let below_version = match (d.status, d.active_version) {
                (DocumentStatus::Deleted, _) => d.latest_version.checked_add(1)?,
                (_, Some(active)) => active,
                // Never committed: whatever exists may be the first generation in the making.
                (_, None) => return None,
            };
            (below_version > 0).then_some(SweepTarget {
                document_id: d.id,
                below_version,
            })
        })
        .collect()
}
