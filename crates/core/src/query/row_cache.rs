//! The isolate's cache of served chunk rows: what to keep, what a search may take from it, and
//! when all of it is dropped.
//!
//! Entries are valid for one [`ServedGeneration`], the change marker D1 moves whenever a served
//! row can change (migration 0014's triggers). A search names the marker it read in its first
//! pass; it never gets rows stored under another marker. Holds no I/O: the Worker keeps one
//! cache per isolate and the retrieval driver consults it.

use super::ChunkRow;
use std::collections::{HashMap, VecDeque};

/// D1's `served_state.generation`: moves (by one, but only equality matters) whenever a served
/// chunk row can change: a generation flipped live, a document deleted or renamed, a company's
/// slug changed, a live chunk written or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServedGeneration(pub u64);

/// Bytes the cache may hold by default: an isolate has 128 MB for the JS heap and wasm memory
/// together (https://developers.cloudflare.com/workers/platform/limits/#memory), and the
/// D1-exact vector index may take 40 MiB of it ([`crate::index::cache::CACHE_MAX_BYTES`]);
/// 16 MiB is every row of ~10,000 chunks of 1.5 KB.
pub const ROW_CACHE_MAX_BYTES: usize = 16 << 20;

/// Entries the cache may hold by default (rows and ids known to have no served row).
pub const ROW_CACHE_MAX_ENTRIES: usize = 20_000;

/// What a cache entry costs beyond its strings: the map's and queue's slots, the row's numbers.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// Served chunk rows by vector id, for one [`ServedGeneration`], bounded in bytes and entries
/// (the oldest entries go first). An id asked for without a served row (another generation, a
/// deleted document) is remembered as absent: under the same marker it cannot appear.
#[derive(Debug, Clone)]
pub struct ChunkRowCache {
    generation: Option<ServedGeneration>,
    rows: HashMap<String, Option<ChunkRow>>,
    order: VecDeque<String>,
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
}

impl Default for ChunkRowCache {
    fn default() -> Self {
        Self::new(ROW_CACHE_MAX_BYTES, ROW_CACHE_MAX_ENTRIES)
    }
}

/// What the cache answered for a list of ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CachedRows {
    /// Rows the cache holds, in the order asked.
    pub rows: Vec<ChunkRow>,
    /// Ids the cache knows nothing about under the marker: read them from D1.
    pub missing: Vec<String>,
}

fn entry_bytes(id: &str, row: Option<&ChunkRow>) -> usize {
    let row_bytes = row.map_or(0, |r| {
        r.vector_id.len()
            + r.key.len()
            + r.title.as_ref().map_or(0, String::len)
            + r.company.as_ref().map_or(0, String::len)
            + r.heading_path.len()
            + r.content.len()
            + r.tags.len()
    });
    id.len() + row_bytes + ENTRY_OVERHEAD_BYTES
}

impl ChunkRowCache {
    /// An empty cache of at most `max_bytes` and `max_entries`.
    #[must_use]
    pub fn new(max_bytes: usize, max_entries: usize) -> Self {
        Self {
            generation: None,
            rows: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_entries,
        }
    }

    /// The marker the entries are valid for (`None` while empty from the start).
    #[must_use]
    pub fn generation(&self) -> Option<ServedGeneration> {
        self.generation
    }

    /// Entries held (rows and known-absent ids).
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes held, as the budget counts them.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The rows of `ids` held under `generation`, and the ids to read. Under another marker
    /// every id is missing: nothing stored for another generation is ever handed out.
    #[must_use]
    pub fn lookup(&self, generation: ServedGeneration, ids: &[String]) -> CachedRows {
        if self.generation != Some(generation) {
            return CachedRows {
                rows: Vec::new(),
                missing: ids.to_vec(),
            };
        }
        let mut found = CachedRows::default();
        for id in ids {
            match self.rows.get(id) {
                Some(Some(row)) => found.rows.push(row.clone()),
                Some(None) => {}
                None => found.missing.push(id.clone()),
            }
        }
        found
    }

    /// Keeps what a search read from D1 for `asked` after reading `generation` (`rows` are the
    /// served ones among them; the others are remembered as absent). Rows read under another
    /// marker than the cache's replace the whole cache: a search that read the newer marker
    /// never takes the older rows, and one that read an older marker only ever gets rows read
    /// after it (as new as what D1 would answer it).
    pub fn store(&mut self, generation: ServedGeneration, asked: &[String], rows: &[ChunkRow]) {
        if self.generation != Some(generation) {
            self.clear();
            self.generation = Some(generation);
        }
        let mut served: HashMap<&str, &ChunkRow> =
            rows.iter().map(|r| (r.vector_id.as_str(), r)).collect();
        for id in asked {
            let row = served.remove(id.as_str());
            self.insert(id, row.cloned());
        }
        // Rows for ids that were not asked (a store should not answer them): keep them too.
        for row in served.into_values() {
            self.insert(&row.vector_id, Some(row.clone()));
        }
    }

    /// Drops every entry and the marker.
    pub fn clear(&mut self) {
        self.generation = None;
        self.rows.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn insert(&mut self, id: &str, row: Option<ChunkRow>) {
        let bytes = entry_bytes(id, row.as_ref());
        if bytes > self.max_bytes || self.max_entries == 0 || self.rows.contains_key(id) {
            return;
        }
        while self.bytes + bytes > self.max_bytes || self.rows.len() >= self.max_entries {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.rows.remove(&oldest) {
                self.bytes -= entry_bytes(&oldest, old.as_ref());
            }
        }
        self.bytes += bytes;
        self.order.push_back(id.to_owned());
        self.rows.insert(id.to_owned(), row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, content: &str) -> ChunkRow {
        ChunkRow {
            vector_id: id.into(),
            document_id: 1,
            key: "a.md".into(),
            title: None,
            company: None,
            chunk_index: 0,
            heading_path: String::new(),
            content: content.into(),
            tags: "[]".into(),
            start_byte: 0,
            end_byte: content.len() as u64,
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    const G1: ServedGeneration = ServedGeneration(1);
    const G2: ServedGeneration = ServedGeneration(2);

    #[test]
    fn rows_stored_under_a_marker_are_served_under_it_and_absent_ids_are_not_asked_again() {
        let mut cache = ChunkRowCache::default();
        assert_eq!(cache.lookup(G1, &ids(&["1:1:0"])).missing, ids(&["1:1:0"]));
        cache.store(G1, &ids(&["1:1:0", "1:2:0"]), &[row("1:1:0", "old text")]);
        let got = cache.lookup(G1, &ids(&["1:2:0", "1:1:0", "2:1:0"]));
        assert_eq!(got.rows, [row("1:1:0", "old text")]);
        assert_eq!(got.missing, ids(&["2:1:0"]), "1:2:0 is known to be absent");
        assert_eq!(cache.generation(), Some(G1));
    }

    #[test]
    fn nothing_stored_under_another_marker_is_handed_out() {
        let mut cache = ChunkRowCache::default();
        cache.store(G1, &ids(&["1:1:0", "1:2:0"]), &[row("1:1:0", "old text")]);
        // The marker moved (generation 2 of document 1 went live): everything is asked again.
        let got = cache.lookup(G2, &ids(&["1:1:0", "1:2:0"]));
        assert!(got.rows.is_empty());
        assert_eq!(got.missing, ids(&["1:1:0", "1:2:0"]));
        cache.store(G2, &ids(&["1:1:0", "1:2:0"]), &[row("1:2:0", "new text")]);
        assert_eq!(cache.generation(), Some(G2));
        let got = cache.lookup(G2, &ids(&["1:1:0", "1:2:0"]));
        assert_eq!(got.rows, [row("1:2:0", "new text")]);
        assert!(got.missing.is_empty());
    }

    #[test]
    fn a_late_search_of_the_old_marker_never_hands_its_rows_to_the_new_one() {
        // Search A read G1 and its rows before the flip; search B read G2 after it and stored
        // first. A stores last: the cache starts over under G1, and B's marker misses.
        let mut cache = ChunkRowCache::default();
        cache.store(G2, &ids(&["1:1:0", "1:2:0"]), &[row("1:2:0", "new text")]);
        cache.store(G1, &ids(&["1:1:0", "1:2:0"]), &[row("1:1:0", "old text")]);
        let got = cache.lookup(G2, &ids(&["1:1:0", "1:2:0"]));
        assert!(got.rows.is_empty());
        assert_eq!(got.missing.len(), 2);
    }

    #[test]
    fn the_oldest_entries_go_first_past_the_byte_or_entry_budget() {
        let one = entry_bytes("a", Some(&row("a", "xxxxxxxxxx")));
        let mut cache = ChunkRowCache::new(one * 2, 100);
        for id in ["a", "b", "c"] {
            cache.store(G1, &ids(&[id]), &[row(id, "xxxxxxxxxx")]);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.bytes() <= one * 2);
        assert_eq!(
            cache.lookup(G1, &ids(&["a", "b", "c"])).missing,
            ids(&["a"])
        );

        let mut cache = ChunkRowCache::new(usize::MAX, 2);
        cache.store(G1, &ids(&["a", "b", "c"]), &[]);
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.lookup(G1, &ids(&["a", "b", "c"])).missing,
            ids(&["a"])
        );
    }

    #[test]
    fn a_row_larger_than_the_budget_is_not_kept() {
        let mut cache = ChunkRowCache::new(200, 100);
        cache.store(G1, &ids(&["a"]), &[row("a", &"x".repeat(500))]);
        assert!(cache.is_empty());
        assert_eq!(cache.lookup(G1, &ids(&["a"])).missing, ids(&["a"]));
    }

    #[test]
    fn storing_an_id_twice_counts_it_once() {
        let mut cache = ChunkRowCache::default();
        cache.store(G1, &ids(&["a"]), &[row("a", "text")]);
        let bytes = cache.bytes();
        cache.store(G1, &ids(&["a"]), &[row("a", "text")]);
        assert_eq!((cache.len(), cache.bytes()), (1, bytes));
        cache.clear();
        assert_eq!(
            (cache.len(), cache.bytes(), cache.generation()),
            (0, 0, None)
        );
    }
}
