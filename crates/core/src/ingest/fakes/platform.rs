//! Fakes of the storage traits ingest uses but does not own: the bucket
//! (`ObjectStore`, R2) and the vector index (`VectorIndex`), with the same
//! injectable faults as the rest of `fakes`.

use super::Faults;
use crate::document::keys::sha256_hex;
use crate::index::{
    exact_top_k, IndexInfo, MutationReceipt, VectorIndex, VectorIndexError, VectorMatch,
    VectorQuery, VectorRecord,
};
use crate::shared::storage::{ObjectHead, ObjectPage, ObjectRead, ObjectStore, StoreError};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

// ---- R2 ------------------------------------------------------------------

#[derive(Debug, Default)]
pub struct FakeBucket<'f> {
    pub objects: RefCell<BTreeMap<String, (ObjectHead, Vec<u8>)>>,
    /// Bytes handed out by `get` (an oversized object must never count here).
    pub bytes_read: Cell<u64>,
    pub faults: Option<&'f Faults>,
}

impl<'f> FakeBucket<'f> {
    pub fn with_faults(faults: &'f Faults) -> Self {
        Self {
            faults: Some(faults),
            ..Self::default()
        }
    }

    /// Stores `content` like R2 does: the etag depends on the content only
    /// (a re-upload of the same bytes gets the same one).
    pub fn put(&self, key: &str, content: &[u8], now_ms: u64) -> ObjectHead {
        let sha256 = sha256_hex(content);
        let head = ObjectHead {
            key: key.to_owned(),
            etag: sha256[..32].to_owned(),
            size: content.len() as u64,
            uploaded_ms: now_ms,
            sha256: Some(sha256),
        };
        self.objects
            .borrow_mut()
            .insert(key.to_owned(), (head.clone(), content.to_vec()));
        head
    }

    pub fn delete(&self, key: &str) {
        self.objects.borrow_mut().remove(key);
    }

    fn guard<T>(&self, operation: &'static str, work: impl FnOnce() -> T) -> Result<T, StoreError> {
        match self.faults {
            Some(faults) => faults.run(operation, work),
            None => Ok(work()),
        }
    }
}

impl ObjectStore for FakeBucket<'_> {
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        self.guard("R2 head", || {
            self.objects.borrow().get(key).map(|(h, _)| h.clone())
        })
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<ObjectRead, StoreError> {
        self.guard("R2 get", || match self.objects.borrow().get(key) {
            None => ObjectRead::Missing,
            Some((head, _)) if head.size > max_bytes => ObjectRead::TooLarge(head.clone()),
            Some((head, bytes)) => {
                self.bytes_read
                    .set(self.bytes_read.get() + bytes.len() as u64);
                ObjectRead::Found {
                    head: head.clone(),
                    bytes: bytes.clone(),
                }
            }
        })
    }

    async fn list(&self, start_after: &str, limit: u32) -> Result<ObjectPage, StoreError> {
        self.guard("R2 list", || {
            let objects = self.objects.borrow();
            let mut after = objects
                .range::<str, _>((
                    std::ops::Bound::Excluded(start_after),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, (h, _))| h.clone());
            let page: Vec<ObjectHead> = after.by_ref().take(limit as usize).collect();
            ObjectPage {
                objects: page,
                truncated: after.next().is_some(),
            }
        })
    }
}

// ---- vector index --------------------------------------------------------

#[derive(Debug, Default)]
pub struct FakeIndex<'f> {
    pub vectors: RefCell<BTreeMap<String, VectorRecord>>,
    pub faults: Option<&'f Faults>,
    /// Like Vectorize: upserts wait in `pending` (invisible) until [`FakeIndex::land`].
    pub lagging: Cell<bool>,
    pub pending: RefCell<Vec<VectorRecord>>,
}

impl<'f> FakeIndex<'f> {
    pub fn with_faults(faults: &'f Faults) -> Self {
        Self {
            faults: Some(faults),
            ..Self::default()
        }
    }

    fn guard<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce() -> T,
    ) -> Result<T, VectorIndexError> {
        let outcome = match self.faults {
            Some(faults) => faults.run(operation, work),
            None => Ok(work()),
        };
        outcome.map_err(|e| VectorIndexError::Unavailable {
            backend: "d1",
            operation,
            message: e.message,
        })
    }

    /// Makes every pending upsert visible, in order.
    pub fn land(&self) {
        let mut vectors = self.vectors.borrow_mut();
        for record in self.pending.borrow_mut().drain(..) {
            vectors.insert(record.id.clone(), record);
        }
    }

    /// Ids of one document's vectors, by version.
    pub fn versions(&self, document_id: i64) -> BTreeMap<u64, u32> {
        let mut out = BTreeMap::new();
        for record in self.vectors.borrow().values() {
            if record.metadata.document_id == document_id {
                *out.entry(record.metadata.version).or_insert(0) += 1;
            }
        }
        out
    }
}

impl VectorIndex for FakeIndex<'_> {
    fn implementation(&self) -> &'static str {
        "d1"
    }

    async fn upsert(&self, records: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
        self.guard("upsert", || {
            if self.lagging.get() {
                self.pending.borrow_mut().extend_from_slice(records);
            } else {
                let mut vectors = self.vectors.borrow_mut();
                for record in records {
                    vectors.insert(record.id.clone(), record.clone());
                }
            }
            MutationReceipt {
                count: records.len(),
                mutation_ids: Vec::new(),
            }
        })
    }

    async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        self.guard("query", || {
            exact_top_k(query, self.vectors.borrow().values())
        })
    }

    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
        self.guard("getByIds", || {
            let vectors = self.vectors.borrow();
            ids.iter()
                .filter_map(|id| vectors.get(id).cloned())
                .collect()
        })
    }

    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError> {
        self.guard("deleteByIds", || {
            let mut vectors = self.vectors.borrow_mut();
            for id in ids {
                vectors.remove(id);
            }
            MutationReceipt {
                count: ids.len(),
                mutation_ids: Vec::new(),
            }
        })
    }

    async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
        self.guard("describe", || IndexInfo {
            implementation: "d1".into(),
            dimensions: 0,
            vector_count: self.vectors.borrow().len() as u64,
            processed_up_to_mutation: None,
        })
    }

    fn writes_land_later(&self) -> bool {
        self.lagging.get()
    }
}
