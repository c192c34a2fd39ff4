//! The retrieval driver on in-memory fakes: a document store with companies,
//! documents, generations of chunks and an active generation per document;
//! the offline hashing embedder; an exact index holding every generation's
//! vectors (as the real index does between a write and a flip); a clock that
//! moves only when a fake says its call took time.

use super::*;
use crate::index::{
    exact_top_k, IndexInfo, MutationReceipt, VectorIndexError, VectorMatch, VectorMetadata,
    VectorRecord,
};
use crate::providers::{HashingEmbedder, ProviderError};
use crate::query::SearchMode;
use crate::query::{ChunkRowCache, ServedGeneration};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

const DIMENSIONS: usize = 256;

/// Every I/O call a fake can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    /// The first pass's statements: its round trip records each it holds.
    CompanyId,
    KeywordHits,
    TagHits,
    Served,
    ChunkRows,
    Embed,
    Query,
    Rerank,
}

/// Shared by the fakes: the call journal, injected failures, per-call cost and the clock.
#[derive(Debug, Default)]
struct Io {
    now: Cell<u64>,
    calls: RefCell<Vec<Call>>,
    failing: RefCell<Vec<Call>>,
    cost_ms: RefCell<HashMap<Call, u64>>,
    limits: RefCell<Vec<(Call, u32)>>,
    asked_tags: RefCell<Vec<Vec<String>>>,
    vector_filters: RefCell<Vec<Option<MetadataFilter>>>,
    /// Whether each vector query accepted the index's estimates.
    approximate: RefCell<Vec<bool>>,
    /// How many ids each chunk-rows read asked for.
    rows_asked: RefCell<Vec<usize>>,
}

impl Io {
    /// Records `call`, lets its cost pass on the clock, and fails it when asked to.
    fn enter(&self, call: Call) -> Result<(), String> {
        self.calls.borrow_mut().push(call);
        let cost = self.cost_ms.borrow().get(&call).copied().unwrap_or(0);
        self.now.set(self.now.get() + cost);
        if self.failing.borrow().contains(&call) {
            return Err(format!("{call:?} is down"));
        }
        Ok(())
    }

    fn fail(&self, call: Call) {
        self.failing.borrow_mut().push(call);
    }

    fn called(&self, call: Call) -> bool {
        self.calls.borrow().contains(&call)
    }
}

impl Clock for Io {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
}

#[derive(Debug, Clone)]
struct Document {
    id: i64,
    key: String,
    company_id: Option<i64>,
    active_version: Option<u64>,
}

#[derive(Debug, Clone)]
struct Chunk {
    document_id: i64,
    version: u64,
    index: u32,
    content: String,
    tags: Vec<String>,
    bytes: (u64, u64),
}

impl Chunk {
    fn vector_id(&self) -> String {
        format!("{}:{}:{}", self.document_id, self.version, self.index)
    }
}

/// D1 as retrieval sees it, with the isolate's row cache.
#[derive(Debug)]
struct FakeStore {
    io: Rc<Io>,
    companies: Vec<(i64, String)>,
    documents: RefCell<Vec<Document>>,
    chunks: Vec<Chunk>,
    /// `served_state.generation`: moved by every flip, as migration 0014's triggers do.
    served: Cell<u64>,
    /// A flip to apply when the next chunk-rows read arrives (after that search's first pass).
    flip_before_rows: Cell<Option<(i64, u64)>>,
    row_cache: RefCell<ChunkRowCache>,
}

/// Lowercase words joined by single spaces, padded: how the fake FTS5 tokenises.
fn fts_tokens(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
}

impl FakeStore {
    fn document(&self, id: i64) -> Option<Document> {
        self.documents.borrow().iter().find(|d| d.id == id).cloned()
    }

    /// Chunks of active generations, of `company_id` when given.
    fn served(&self, company_id: Option<i64>) -> Vec<(&Chunk, Document)> {
        self.chunks
            .iter()
            .filter_map(|c| {
                let document = self.document(c.document_id)?;
                let active = document.active_version == Some(c.version);
                let in_company = company_id.is_none() || document.company_id == company_id;
                (active && in_company).then_some((c, document))
            })
            .collect()
    }

    fn activate(&self, document_id: i64, version: u64) {
        for d in self.documents.borrow_mut().iter_mut() {
            if d.id == document_id {
                d.active_version = Some(version);
            }
        }
        self.served.set(self.served.get() + 1);
    }

    /// Deletes the document: no generation of it is served any more.
    fn delete(&self, document_id: i64) {
        for d in self.documents.borrow_mut().iter_mut() {
            if d.id == document_id {
                d.active_version = None;
            }
        }
        self.served.set(self.served.get() + 1);
    }

    fn store_error(&self, call: Call) -> Result<(), StoreError> {
        self.io
            .enter(call)
            .map_err(|m| StoreError::transient(format!("fake {call:?}"), m))
    }
}

impl FakeStore {
    fn company_id(&self, slug: &str) -> Result<Option<i64>, StoreError> {
        self.store_error(Call::CompanyId)?;
        Ok(self
            .companies
            .iter()
            .find(|(_, s)| s == slug)
            .map(|(id, _)| *id))
    }

    fn keyword_hits(
        &self,
        expression: &str,
        company_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<KeywordHit>, StoreError> {
        self.store_error(Call::KeywordHits)?;
        self.io.limits.borrow_mut().push((Call::KeywordHits, limit));
        // `"a b" OR "c"`: a chunk scores -1 per phrase it contains (FTS5's sign).
        let phrases: Vec<String> = expression
            .split(" OR ")
            .map(|p| format!(" {} ", p.trim_matches('"')))
            .collect();
        let mut hits: Vec<KeywordHit> = self
            .served(company_id)
            .into_iter()
            .filter_map(|(c, _)| {
                let tokens = fts_tokens(&c.content);
                let found = phrases.iter().filter(|p| tokens.contains(*p)).count();
                (found > 0).then(|| KeywordHit {
                    vector_id: c.vector_id(),
                    bm25: -(found as f64),
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            a.bm25
                .total_cmp(&b.bm25)
                .then_with(|| a.vector_id.cmp(&b.vector_id))
        });
        hits.truncate(limit as usize);
        Ok(hits)
    }

    fn tag_hits(
        &self,
        tags: &[String],
        company_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TagHit>, StoreError> {
        self.store_error(Call::TagHits)?;
        self.io.limits.borrow_mut().push((Call::TagHits, limit));
        self.io.asked_tags.borrow_mut().push(tags.to_vec());
        let mut hits: Vec<TagHit> = self
            .served(company_id)
            .into_iter()
            .filter_map(|(c, _)| {
                let matched = c.tags.iter().filter(|t| tags.contains(t)).count() as u32;
                (matched > 0).then(|| TagHit {
                    vector_id: c.vector_id(),
                    matched_tags: matched,
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.matched_tags
                .cmp(&a.matched_tags)
                .then_with(|| a.vector_id.cmp(&b.vector_id))
        });
        hits.truncate(limit as usize);
        Ok(hits)
    }
}

impl SearchStore for FakeStore {
    async fn first_pass(&self, request: &FirstPassRequest) -> Result<FirstPass, StoreError> {
        // One round trip: every statement's cost passes, and an unknown company matches nothing.
        let company = match &request.company {
            None => CompanyMatch::Any,
            Some(slug) => self
                .company_id(slug)?
                .map_or(CompanyMatch::Unknown, CompanyMatch::Id),
        };
        let company_id = match company {
            CompanyMatch::Id(id) => Some(id),
            _ => None,
        };
        let unknown = company == CompanyMatch::Unknown;
        let keyword = match &request.keyword {
            None => Ok(Vec::new()),
            Some(k) => self
                .keyword_hits(&k.expression, company_id, k.limit)
                .map(|hits| if unknown { Vec::new() } else { hits }),
        };
        let tag = match &request.tag {
            None => Ok(Vec::new()),
            Some(t) => self.tag_hits(&t.tags, company_id, t.limit).map(|hits| {
                if unknown {
                    Vec::new()
                } else {
                    hits
                }
            }),
        };
        let served = self
            .store_error(Call::Served)
            .ok()
            .map(|()| ServedGeneration(self.served.get()));
        Ok(FirstPass {
            company,
            keyword,
            tag,
            served,
        })
    }

    fn with_row_cache<R>(&self, f: impl FnOnce(&mut ChunkRowCache) -> R) -> R {
        f(&mut self.row_cache.borrow_mut())
    }

    async fn chunk_rows(&self, vector_ids: &[String]) -> Result<Vec<ChunkRow>, StoreError> {
        self.store_error(Call::ChunkRows)?;
        if let Some((document_id, version)) = self.flip_before_rows.take() {
            self.activate(document_id, version);
        }
        self.io.rows_asked.borrow_mut().push(vector_ids.len());
        Ok(self
            .served(None)
            .into_iter()
            .filter(|(c, _)| vector_ids.contains(&c.vector_id()))
            .map(|(c, d)| ChunkRow {
                vector_id: c.vector_id(),
                document_id: d.id,
                key: d.key.clone(),
                title: Some(format!("Title of {}", d.key)),
                company: self
                    .companies
                    .iter()
                    .find(|(id, _)| Some(*id) == d.company_id)
                    .map(|(_, slug)| slug.clone()),
                chunk_index: c.index,
                heading_path: String::new(),
                content: c.content.clone(),
                tags: serde_json::to_string(&c.tags).unwrap(),
                start_byte: c.bytes.0,
                end_byte: c.bytes.1,
            })
            .collect())
    }
}

#[derive(Debug)]
struct FakeEmbedder {
    io: Rc<Io>,
    inner: HashingEmbedder,
}

impl Embedder for FakeEmbedder {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        self.io
            .enter(Call::Embed)
            .map_err(|m| ProviderError::Status {
                provider: "fake",
                status: 503,
                body_excerpt: m,
                retry_after: None,
            })?;
        self.inner.embed(texts).await
    }
}

#[derive(Debug)]
struct FakeIndex {
    io: Rc<Io>,
    records: Vec<VectorRecord>,
}

impl VectorIndex for FakeIndex {
    fn implementation(&self) -> &'static str {
        "memory"
    }

    async fn upsert(&self, _: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
        unreachable!("retrieval never writes")
    }

    async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        self.io
            .enter(Call::Query)
            .map_err(|message| VectorIndexError::Unavailable {
                backend: "memory",
                operation: "query",
                message,
            })?;
        self.io
            .limits
            .borrow_mut()
            .push((Call::Query, query.top_k as u32));
        self.io
            .vector_filters
            .borrow_mut()
            .push(query.filter.clone());
        self.io.approximate.borrow_mut().push(query.approximate);
        Ok(exact_top_k(query, &self.records))
    }

    async fn get_by_ids(&self, _: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
        unreachable!("retrieval never reads vectors back")
    }

    async fn delete_by_ids(&self, _: &[String]) -> Result<MutationReceipt, VectorIndexError> {
        unreachable!("retrieval never deletes")
    }

    async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
        unreachable!("retrieval never describes")
    }
}

/// The three fakes over one journal and clock.
#[derive(Debug)]
struct World {
    io: Rc<Io>,
    store: FakeStore,
    embedder: FakeEmbedder,
    index: FakeIndex,
}

fn chunk(document_id: i64, version: u64, index: u32, content: &str, tags: &[&str]) -> Chunk {
    let start = u64::from(index) * 100;
    Chunk {
        document_id,
        version,
        index,
        content: content.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        bytes: (start, start + content.len() as u64),
    }
}

/// Acme (robots, with a half-written generation 2 and a never-committed
/// document) and Globex (pumps).
fn world() -> World {
    let io = Rc::new(Io::default());
    let documents = vec![
        Document {
            id: 1,
            key: "acme/robots.md".into(),
            company_id: Some(1),
            active_version: Some(1),
        },
        Document {
            id: 2,
            key: "globex/pumps.md".into(),
            company_id: Some(2),
            active_version: Some(1),
        },
        Document {
            id: 3,
            key: "acme/draft.md".into(),
            company_id: Some(1),
            active_version: None,
        },
    ];
    let chunks = vec![
        chunk(
            1,
            1,
            0,
            "Acme builds warehouse robots that lift pallets.",
            &["robotics", "warehouse"],
        ),
        chunk(
            1,
            1,
            1,
            "Acme forklifts run on hydrogen fuel cells.",
            &["hydrogen"],
        ),
        // Generation 2 of the same document: written, not yet flipped.
        chunk(
            1,
            2,
            0,
            "Acme now builds submarines with sonar.",
            &["robotics"],
        ),
        chunk(2, 1, 0, "Globex pumps move water for farms.", &["pumps"]),
        chunk(
            2,
            1,
            1,
            "Globex valves and pumps for irrigation of farms.",
            &["pumps", "irrigation"],
        ),
        chunk(
            3,
            1,
            0,
            "Draft notes about robots and submarines.",
            &["robotics"],
        ),
    ];
    let inner = HashingEmbedder::new(DIMENSIONS).unwrap();
    let company_of = |document_id: i64| {
        documents
            .iter()
            .find(|d| d.id == document_id)
            .and_then(|d| d.company_id)
    };
    let records = chunks
        .iter()
        .map(|c| VectorRecord {
            id: c.vector_id(),
            values: inner.embed_text(&c.content),
            metadata: VectorMetadata {
                document_id: c.document_id,
                company_id: company_of(c.document_id),
                version: c.version,
            },
        })
        .collect();
    World {
        store: FakeStore {
            io: Rc::clone(&io),
            companies: vec![(1, "acme".into()), (2, "globex".into())],
            documents: RefCell::new(documents),
            chunks,
            served: Cell::new(1),
            flip_before_rows: Cell::new(None),
            row_cache: RefCell::new(ChunkRowCache::default()),
        },
        embedder: FakeEmbedder {
            io: Rc::clone(&io),
            inner,
        },
        index: FakeIndex {
            io: Rc::clone(&io),
            records,
        },
        io,
    }
}

fn plan(query: &str) -> SearchPlan {
    SearchPlan::new(query, 8)
}

/// Scores a passage by how many times it names `favourite` (so a test can
/// make the reranker disagree with fusion), recording what it read.
#[derive(Debug)]
struct FakeReranker {
    io: Rc<Io>,
    favourite: &'static str,
    read: RefCell<Vec<(String, Vec<String>)>>,
    short_by: usize,
}

impl Reranker for FakeReranker {
    fn model(&self) -> &str {
        "fake-rerank"
    }

    async fn rerank(&self, query: &str, passages: &[String]) -> Result<Vec<f64>, ProviderError> {
        self.io
            .enter(Call::Rerank)
            .map_err(|reason| ProviderError::InvalidRequest {
                provider: "fake",
                reason,
            })?;
        self.read
            .borrow_mut()
            .push((query.to_owned(), passages.to_vec()));
        let n = passages.len().saturating_sub(self.short_by);
        #[allow(clippy::cast_precision_loss)]
        Ok(passages[..n]
            .iter()
            .map(|p| p.to_lowercase().matches(self.favourite).count() as f64)
            .collect())
    }
}

impl World {
    /// Empties the row cache, so a test can count the chunk-row reads of one search.
    fn forget_rows(&self) {
        self.store.row_cache.borrow_mut().clear();
    }

    fn reranker(&self, favourite: &'static str) -> FakeReranker {
        FakeReranker {
            io: Rc::clone(&self.io),
            favourite,
            read: RefCell::new(Vec::new()),
            short_by: 0,
        }
    }

    fn retrieve(&self, plan: &SearchPlan) -> Result<Retrieval, RetrievalError> {
        pollster::block_on(retrieve(
            &self.store,
            Ok(&self.embedder),
            Ok(&self.index),
            Rerank::<FakeReranker>::none(),
            &*self.io,
            &FusionConfig::new(),
            plan,
        ))
    }

    fn retrieve_reranked(
        &self,
        reranker: Result<&FakeReranker, String>,
        policy: RerankPolicy,
        plan: &SearchPlan,
    ) -> Retrieval {
        pollster::block_on(retrieve(
            &self.store,
            Ok(&self.embedder),
            Ok(&self.index),
            Rerank { reranker, policy },
            &*self.io,
            &FusionConfig::new(),
            plan,
        ))
        .unwrap()
    }
}

fn texts(retrieval: &Retrieval) -> Vec<&str> {
    retrieval.results.iter().map(|r| r.text.as_str()).collect()
}

const ROBOTS: &str = "Acme builds warehouse robots that lift pallets.";
const FORKLIFTS: &str = "Acme forklifts run on hydrogen fuel cells.";

#[test]
fn the_three_sources_are_fused_into_one_ranking() {
    let world = world();
    let got = world.retrieve(&plan("warehouse robotics")).unwrap();
    assert!(got.degraded.is_empty());
    let best = &got.results[0];
    assert_eq!(best.text, ROBOTS);
    assert_eq!(best.key, "acme/robots.md");
    assert_eq!(best.company.as_deref(), Some("acme"));
    // First in every source: 3 × 1/(60 + 1).
    assert!((best.score - 3.0 / 61.0).abs() < 1e-12, "{}", best.score);
    assert!(best.scores.vector.is_some_and(|s| s > 0.0));
    assert_eq!(best.scores.keyword, Some(1.0));
    assert_eq!(best.scores.tag, Some(2.0));
    // The others were found by the vector source alone, ranked after it.
    assert!(got.results.len() > 1);
    assert!(got.results[1..]
        .iter()
        .all(|r| r.scores.keyword.is_none() && r.scores.tag.is_none() && r.score < best.score));
    assert!(got.results.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn each_failing_source_degrades_the_answer_without_failing_it() {
    let cases = [
        (Call::Embed, RetrievalSource::Vector),
        (Call::Query, RetrievalSource::Vector),
        (Call::KeywordHits, RetrievalSource::Keyword),
        (Call::TagHits, RetrievalSource::Tag),
    ];
    for (call, source) in cases {
        let world = world();
        world.io.fail(call);
        let got = world.retrieve(&plan("warehouse robotics")).unwrap();
        assert_eq!(got.results[0].text, ROBOTS, "{call:?}");
        assert_eq!(got.degraded.len(), 1, "{call:?}");
        assert_eq!(got.degraded[0].source, source);
        assert!(
            got.degraded[0]
                .message
                .contains(&format!("{call:?} is down")),
            "{}",
            got.degraded[0]
        );
        assert!(got.degraded[0]
            .to_string()
            .starts_with(&format!("{}: ", source.as_str())));
        let scored_by_failed = |r: &SearchResult| match source {
            RetrievalSource::Vector => r.scores.vector.is_some(),
            RetrievalSource::Keyword => r.scores.keyword.is_some(),
            RetrievalSource::Tag => r.scores.tag.is_some(),
        };
        assert!(!got.results.iter().any(scored_by_failed), "{call:?}");
    }
}

#[test]
fn an_embedder_or_index_that_could_not_be_built_degrades_only_the_vector_source() {
    let world = world();
    let no_embedder = pollster::block_on(retrieve(
        &world.store,
        Err::<&FakeEmbedder, _>("unknown embedding provider `nope`".to_owned()),
        Ok(&world.index),
        Rerank::<FakeReranker>::none(),
        &*world.io,
        &FusionConfig::new(),
        &plan("warehouse robotics"),
    ))
    .unwrap();
    assert_eq!(
        no_embedder.degraded,
        [SourceFailure {
            source: RetrievalSource::Vector,
            message: "unknown embedding provider `nope`".into()
        }]
    );
    assert_eq!(texts(&no_embedder), [ROBOTS]);

    let no_index = pollster::block_on(retrieve(
        &world.store,
        Ok(&world.embedder),
        Err::<&FakeIndex, _>("VECTOR_INDEX=\"faiss\"".to_owned()),
        Rerank::<FakeReranker>::none(),
        &*world.io,
        &FusionConfig::new(),
        &plan("warehouse robotics"),
    ))
    .unwrap();
    assert_eq!(no_index.degraded[0].message, "VECTOR_INDEX=\"faiss\"");
    assert_eq!(texts(&no_index), [ROBOTS]);
    // Neither asked the provider for an embedding it could not use.
    assert!(!world.io.called(Call::Embed) && !world.io.called(Call::Query));
}

#[test]
fn all_sources_failing_is_an_error_naming_each_failure() {
    let world = world();
    for call in [Call::Embed, Call::KeywordHits, Call::TagHits] {
        world.io.fail(call);
    }
    let err = world.retrieve(&plan("warehouse robotics")).unwrap_err();
    let RetrievalError::AllSourcesFailed { failures } = &err else {
        panic!("{err:?}");
    };
    let sources: Vec<_> = failures.iter().map(|f| f.source).collect();
    assert_eq!(sources, RetrievalSource::ALL);
    let message = err.to_string();
    assert!(
        message.starts_with("every retrieval source failed: vector: fake returned HTTP 503"),
        "{message}"
    );
    assert!(message.contains("; keyword: fake KeywordHits: KeywordHits is down; tag: "));
    assert!(err.is_retryable());
    assert!(!world.io.called(Call::ChunkRows));
}

#[test]
fn an_unknown_company_has_no_results_and_no_source_is_asked() {
    let world = world();
    let mut unknown = plan("warehouse robotics");
    unknown.company = Some("initech".into());
    let got = world.retrieve(&unknown).unwrap();
    assert_eq!(got, Retrieval::default());
    // The keyword and tag statements ride in the company lookup's round trip (and match
    // nothing); the vector source and the chunk rows are never asked.
    assert_eq!(
        *world.io.calls.borrow(),
        [
            Call::CompanyId,
            Call::KeywordHits,
            Call::TagHits,
            Call::Served
        ]
    );
}

#[test]
fn the_company_filter_reaches_every_source() {
    let world = world();
    let everywhere = world.retrieve(&plan("pumps robots")).unwrap();
    let companies = |r: &Retrieval| -> Vec<Option<String>> {
        r.results.iter().map(|r| r.company.clone()).collect()
    };
    assert!(companies(&everywhere).contains(&Some("acme".into())));

    let mut globex = plan("pumps robots");
    globex.company = Some("globex".into());
    let got = world.retrieve(&globex).unwrap();
    assert!(!got.results.is_empty());
    assert!(companies(&got)
        .iter()
        .all(|c| c.as_deref() == Some("globex")));
    assert_eq!(
        world.io.vector_filters.borrow().last(),
        Some(&Some(MetadataFilter::company(2)))
    );
}

#[test]
fn a_search_takes_the_index_estimates_unless_it_asks_for_exact_vectors() {
    let world = world();
    world.retrieve(&plan("pumps robots")).unwrap();
    let mut exact = plan("pumps robots");
    exact.exact_vectors = true;
    world.retrieve(&exact).unwrap();
    assert_eq!(*world.io.approximate.borrow(), [true, false]);
}

#[test]
fn only_the_active_generation_is_served() {
    let world = world();
    // Generation 2 and the uncommitted draft are in the chunk table and in the
    // index, where they are the nearest vectors; none of it may be served.
    let nearest = exact_top_k(
        &VectorQuery {
            vector: world.embedder.inner.embed_text("submarines sonar"),
            top_k: 2,
            filter: None,
            return_metadata: false,
            approximate: false,
        },
        &world.index.records,
    );
    let nearest: Vec<&str> = nearest.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(nearest, ["1:2:0", "3:1:0"]);
    let got = world.retrieve(&plan("submarines sonar")).unwrap();
    assert!(!got.results.is_empty());
    assert!(
        got.results.iter().all(|r| !r.text.contains("submarines")),
        "{:?}",
        texts(&got)
    );
    let robots = world.retrieve(&plan("robots")).unwrap();
    assert!(robots.results.iter().all(|r| r.key != "acme/draft.md"));

    // Once generation 2 is flipped live, it is what the document serves.
    world.store.activate(1, 2);
    let got = world.retrieve(&plan("submarines sonar")).unwrap();
    assert_eq!(
        got.results[0].text,
        "Acme now builds submarines with sonar."
    );
    assert!(got.results.iter().all(|r| r.text != ROBOTS));
}

#[test]
fn the_tag_filter_keeps_only_chunks_with_an_asked_tag() {
    let world = world();
    let mut hydrogen = plan("acme robots");
    hydrogen.tags = vec!["hydrogen".into()];
    let got = world.retrieve(&hydrogen).unwrap();
    assert_eq!(texts(&got), [FORKLIFTS]);
    // Asked tags replace the tags taken from the query's words.
    assert_eq!(*world.io.asked_tags.borrow(), [vec!["hydrogen".to_owned()]]);

    world.retrieve(&plan("acme robots")).unwrap();
    assert_eq!(
        world.io.asked_tags.borrow().last(),
        Some(&vec!["acme".to_owned(), "robots".to_owned()])
    );
}

#[test]
fn top_k_cuts_the_fused_results_and_sizes_each_source() {
    let world = world();
    let query = "acme globex pumps robots hydrogen farms";
    let all = world.retrieve(&plan(query)).unwrap();
    assert!(all.results.len() >= 4, "{:?}", texts(&all));
    let mut one = plan(query);
    one.top_k = 1;
    let got = world.retrieve(&one).unwrap();
    assert_eq!(got.results, all.results[..1]);
    // Each source is asked for `candidates()`: 4 per result, at least 10.
    let limits = world.io.limits.borrow();
    assert_eq!(
        limits[limits.len() - 3..],
        [
            (Call::KeywordHits, 10),
            (Call::TagHits, 10),
            (Call::Query, 10),
        ]
    );
    assert!(limits[..3].iter().all(|(_, limit)| *limit == 32));
}

#[test]
fn chunk_rows_are_read_for_twice_top_k_fused_hits_then_for_the_rest_if_short() {
    let world = world();
    let query = "acme globex pumps robots hydrogen farms";
    let all = world.retrieve(&plan(query)).unwrap();
    let fused_hits = world.io.rows_asked.borrow()[0];
    assert!(fused_hits > 2, "{fused_hits} fused hits");
    let mut one = plan(query);
    one.top_k = 1;
    world.io.rows_asked.borrow_mut().clear();
    world.forget_rows();
    let got = world.retrieve(&one).unwrap();
    assert_eq!(got.results, all.results[..1]);
    assert_eq!(
        *world.io.rows_asked.borrow(),
        [2],
        "one result reads two rows"
    );

    // Ranked by the vectors alone, the two best chunks belong to generations that are not
    // served (a newer one not flipped yet, a draft): the first read finds no row for them, so
    // the rest is read, and the answer is the one a single read of everything gives.
    let mut superseded = plan("submarines with sonar");
    superseded.top_k = 1;
    superseded.fusion = Some("keyword=0,tag=0".into());
    world.io.rows_asked.borrow_mut().clear();
    world.forget_rows();
    let got = world.retrieve(&superseded).unwrap();
    let asked = world.io.rows_asked.borrow().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0], 2);
    let mut everything = superseded.clone();
    everything.top_k = 8;
    let all = world.retrieve(&everything).unwrap();
    assert_eq!(got.results, all.results[..1]);
    assert!(!texts(&got)[0].contains("submarines"));
}

#[test]
fn timings_are_measured_with_the_clock() {
    let world = world();
    world.io.cost_ms.borrow_mut().extend([
        (Call::CompanyId, 1),
        (Call::Embed, 7),
        (Call::Query, 4),
        (Call::KeywordHits, 3),
        (Call::TagHits, 2),
        (Call::ChunkRows, 5),
    ]);
    let mut acme = plan("warehouse robotics");
    acme.company = Some("acme".into());
    let got = world.retrieve(&acme).unwrap();
    // The company, keyword and tag statements are one round trip (6 ms here): the keyword
    // and tag sources are each charged all of it.
    assert_eq!(
        got.timings,
        RetrievalTimings {
            vector_ms: 11,
            keyword_ms: 6,
            tag_ms: 6,
            rerank_ms: 0,
            total_ms: 6 + 11 + 5,
        }
    );
    assert_eq!(
        serde_json::to_value(&got).unwrap()["timings"],
        serde_json::json!({
            "vector_ms": 11, "keyword_ms": 6, "tag_ms": 6, "rerank_ms": 0, "total_ms": 22
        })
    );
}

#[test]
fn the_response_shape_is_results_timings_and_whether_it_was_reranked() {
    let world = world();
    world.io.fail(Call::TagHits);
    let got = world.retrieve(&plan("warehouse")).unwrap();
    assert_eq!(got.degraded.len(), 1);
    let json = serde_json::to_value(&got).unwrap();
    let mut fields: Vec<&String> = json.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["reranked", "results", "timings"]);
}

#[test]
fn store_failures_outside_the_sources_are_errors() {
    let world = world();
    world.io.fail(Call::CompanyId);
    let mut acme = plan("robots");
    acme.company = Some("acme".into());
    let err = world.retrieve(&acme).unwrap_err();
    assert!(matches!(&err, RetrievalError::Store(e) if e.operation == "fake CompanyId"));
    assert!(err.is_retryable());
    assert!(!world.io.called(Call::Embed));

    let world = world_with_failing(Call::ChunkRows);
    let err = world.retrieve(&plan("robots")).unwrap_err();
    assert!(matches!(&err, RetrievalError::Store(e) if e.operation == "fake ChunkRows"));
}

fn world_with_failing(call: Call) -> World {
    let world = world();
    world.io.fail(call);
    world
}

#[test]
fn a_query_without_words_asks_no_keyword_or_tag_search() {
    let world = world();
    let got = world.retrieve(&plan("?! --")).unwrap();
    assert!(got.degraded.is_empty());
    assert!(!world.io.called(Call::KeywordHits));
    assert!(!world.io.called(Call::TagHits));
    assert!(world.io.called(Call::Embed));
}

#[test]
fn nothing_fused_reads_no_chunk_rows() {
    let world = world();
    world.io.fail(Call::Embed);
    let got = world.retrieve(&plan("zeppelin")).unwrap();
    assert!(got.results.is_empty());
    assert!(!world.io.called(Call::ChunkRows));
}

#[test]
fn a_single_source_mode_asks_only_that_source_and_keeps_its_order() {
    for (source, asked) in [
        (RetrievalSource::Vector, [Call::Embed, Call::Query]),
        (
            RetrievalSource::Keyword,
            [Call::KeywordHits, Call::KeywordHits],
        ),
        (RetrievalSource::Tag, [Call::TagHits, Call::TagHits]),
    ] {
        let world = world();
        let mut alone = plan("warehouse robotics hydrogen");
        alone.mode = Some(SearchMode::Only(source));
        let got = world.retrieve(&alone).unwrap();
        let calls = world.io.calls.borrow().clone();
        for call in [Call::Embed, Call::Query, Call::KeywordHits, Call::TagHits] {
            assert_eq!(
                calls.contains(&call),
                asked.contains(&call),
                "{source:?}: {calls:?}"
            );
        }
        // Every result was ranked by that source alone, in its own order.
        let scored: Vec<f64> = got
            .results
            .iter()
            .map(|r| {
                let (mine, others) = match source {
                    RetrievalSource::Vector => (r.scores.vector, [r.scores.keyword, r.scores.tag]),
                    RetrievalSource::Keyword => (r.scores.keyword, [r.scores.vector, r.scores.tag]),
                    RetrievalSource::Tag => (r.scores.tag, [r.scores.vector, r.scores.keyword]),
                };
                assert_eq!(others, [None, None], "{source:?}");
                mine.expect("scored by the mode's source")
            })
            .collect();
        assert!(!scored.is_empty(), "{source:?}");
        assert!(
            scored.windows(2).all(|w| w[0] >= w[1]),
            "{source:?}: {scored:?}"
        );
        let timings = &got.timings;
        let skipped = match source {
            RetrievalSource::Vector => timings.keyword_ms + timings.tag_ms,
            RetrievalSource::Keyword => timings.vector_ms + timings.tag_ms,
            RetrievalSource::Tag => timings.vector_ms + timings.keyword_ms,
        };
        assert_eq!(skipped, 0, "{source:?}");
    }
}

#[test]
fn a_source_weighted_zero_is_not_asked_and_a_failing_one_alone_is_an_error() {
    let world = world();
    let service = FusionConfig::new().with_spec("tag=0").unwrap();
    let got = pollster::block_on(retrieve(
        &world.store,
        Ok(&world.embedder),
        Ok(&world.index),
        Rerank::<FakeReranker>::none(),
        &*world.io,
        &service,
        &plan("warehouse robotics"),
    ))
    .unwrap();
    assert!(!world.io.called(Call::TagHits));
    assert!(got.results.iter().all(|r| r.scores.tag.is_none()));
    assert!(!got.results.is_empty());

    // The request's spec applies over the service's: tag back on, vector off.
    let world = world_with_failing(Call::Embed);
    let mut request = plan("warehouse robotics");
    request.fusion = Some("vector=0,tag=1".into());
    let got = pollster::block_on(retrieve(
        &world.store,
        Ok(&world.embedder),
        Ok(&world.index),
        Rerank::<FakeReranker>::none(),
        &*world.io,
        &service,
        &request,
    ))
    .unwrap();
    assert!(got.degraded.is_empty(), "the vector source was not asked");
    assert!(world.io.called(Call::TagHits) && !world.io.called(Call::Embed));

    let mut vector_alone = plan("warehouse robotics");
    vector_alone.mode = Some(SearchMode::Only(RetrievalSource::Vector));
    let err = world.retrieve(&vector_alone).unwrap_err();
    let RetrievalError::AllSourcesFailed { failures } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].source, RetrievalSource::Vector);
}

#[test]
fn weights_change_the_order_and_candidates_reach_every_source() {
    let world = world();
    let query = "warehouse robots hydrogen fuel";
    let mut keyword_heavy = plan(query);
    keyword_heavy.fusion = Some("vector=0.01,keyword=1,tag=0".into());
    keyword_heavy.candidates = Some(13);
    let got = world.retrieve(&keyword_heavy).unwrap();
    let keyword_order: Vec<f64> = got
        .results
        .iter()
        .filter_map(|r| r.scores.keyword)
        .collect();
    assert!(
        keyword_order.windows(2).all(|w| w[0] >= w[1]),
        "{keyword_order:?}"
    );
    let limits = world.io.limits.borrow();
    assert!(limits.iter().all(|(_, limit)| *limit == 13), "{limits:?}");
}

/// A reranked search over Acme's two served chunks.
fn reranked(query: &str) -> SearchPlan {
    let mut plan = acme(query);
    plan.mode = Some(SearchMode::FusedReranked);
    plan
}

fn acme(query: &str) -> SearchPlan {
    let mut plan = plan(query);
    plan.company = Some("acme".into());
    plan
}

#[test]
fn a_reranked_search_reorders_the_fused_candidates_by_the_rerankers_scores() {
    let world = world();
    let fused = world.retrieve(&acme("acme robots forklifts")).unwrap();
    assert_eq!(texts(&fused), [ROBOTS, FORKLIFTS]);
    let reranker = world.reranker("hydrogen");
    let got = world.retrieve_reranked(
        Ok(&reranker),
        RerankPolicy::default(),
        &reranked("acme robots forklifts"),
    );
    assert!(got.reranked && got.rerank_failure.is_none());
    assert_eq!(texts(&got), [FORKLIFTS, ROBOTS]);
    assert_eq!(got.results[0].scores.rerank, Some(1.0));
    assert_eq!(got.results[1].scores.rerank, Some(0.0));
    // The reranker read the query and each candidate's title, headings and text.
    let read = reranker.read.borrow();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, "acme robots forklifts");
    assert!(read[0].1.iter().any(|p| p.ends_with(FORKLIFTS)));
}

#[test]
fn reranking_reads_only_the_candidates_the_policy_allows() {
    let world = world();
    let reranker = world.reranker("hydrogen");
    let policy = RerankPolicy {
        candidates: 1,
        by_default: false,
    };
    let got = world.retrieve_reranked(Ok(&reranker), policy, &reranked("acme robots forklifts"));
    assert_eq!(reranker.read.borrow()[0].1.len(), 1);
    // The one candidate read stays first; the rest follow in fused order.
    assert_eq!(texts(&got), [ROBOTS, FORKLIFTS]);
    assert_eq!(got.results[1].scores.rerank, None);
}

#[test]
fn the_default_mode_decides_when_a_search_names_none() {
    let world = world();
    let reranker = world.reranker("hydrogen");
    let by_default = RerankPolicy {
        candidates: 20,
        by_default: true,
    };
    let got = world.retrieve_reranked(Ok(&reranker), by_default, &acme("acme robots forklifts"));
    assert!(got.reranked);
    let mut fused = acme("acme robots forklifts");
    fused.mode = Some(SearchMode::Fused);
    let got = world.retrieve_reranked(Ok(&reranker), by_default, &fused);
    assert!(!got.reranked);
    assert_eq!(
        reranker.read.borrow().len(),
        1,
        "an explicit fused search is not reranked"
    );
    let got = world.retrieve_reranked(
        Ok(&reranker),
        RerankPolicy::default(),
        &acme("acme robots forklifts"),
    );
    assert!(!got.reranked && got.timings.rerank_ms == 0);
}

#[test]
fn a_failing_or_missing_reranker_leaves_the_fused_order_and_says_why() {
    let world = world();
    world.io.cost_ms.borrow_mut().insert(Call::Rerank, 6);
    world.io.fail(Call::Rerank);
    let reranker = world.reranker("hydrogen");
    let query = reranked("acme robots forklifts");
    let got = world.retrieve_reranked(Ok(&reranker), RerankPolicy::default(), &query);
    assert!(!got.reranked);
    assert_eq!(texts(&got), [ROBOTS, FORKLIFTS]);
    assert!(got
        .rerank_failure
        .as_deref()
        .unwrap()
        .contains("Rerank is down"));
    assert_eq!(
        got.timings.rerank_ms, 6,
        "the failed call's time is still shown"
    );
    assert!(got.results.iter().all(|r| r.scores.rerank.is_none()));

    let missing = world.retrieve_reranked(
        Err("no reranker is configured (RERANKER)".into()),
        RerankPolicy::default(),
        &query,
    );
    assert!(!missing.reranked);
    assert_eq!(texts(&missing), [ROBOTS, FORKLIFTS]);
    assert_eq!(
        missing.rerank_failure.as_deref(),
        Some("no reranker is configured (RERANKER)")
    );

    let world = self::world();
    let mut short = world.reranker("hydrogen");
    short.short_by = 1;
    let got = world.retrieve_reranked(Ok(&short), RerankPolicy::default(), &query);
    assert!(!got.reranked);
    assert!(got
        .rerank_failure
        .unwrap()
        .contains("1 scores for 2 passages"));
}

#[test]
fn a_reranked_search_with_nothing_fused_asks_no_reranker() {
    let world = world();
    let reranker = world.reranker("hydrogen");
    let mut nothing = reranked("zzzz qqqq");
    nothing.fusion = Some("vector=0".into());
    let got = world.retrieve_reranked(Ok(&reranker), RerankPolicy::default(), &nothing);
    assert!(got.results.is_empty());
    assert!(!world.io.called(Call::Rerank));
}

fn count(world: &World, call: Call) -> usize {
    world
        .io
        .calls
        .borrow()
        .iter()
        .filter(|c| **c == call)
        .count()
}

#[test]
fn the_keyword_tag_and_company_statements_are_one_first_pass() {
    let world = world();
    let mut acme = plan("warehouse robotics");
    acme.company = Some("acme".into());
    world.retrieve(&acme).unwrap();
    let calls = world.io.calls.borrow();
    // The first pass's statements come first, then the vector source (it needed the company).
    assert_eq!(
        calls[..4],
        [
            Call::CompanyId,
            Call::KeywordHits,
            Call::TagHits,
            Call::Served
        ]
    );
    assert_eq!(calls[4..6], [Call::Embed, Call::Query]);
}

#[test]
fn a_repeated_search_takes_its_chunk_rows_from_the_cache() {
    let world = world();
    let first = world.retrieve(&plan("warehouse robotics")).unwrap();
    assert_eq!(count(&world, Call::ChunkRows), 1);
    let again = world.retrieve(&plan("warehouse robotics")).unwrap();
    assert_eq!(again.results, first.results);
    assert_eq!(count(&world, Call::ChunkRows), 1, "no second read");
    // Ids read once without a served row (generation 2, the draft) are not asked again either.
    let superseded = world.retrieve(&plan("submarines with sonar")).unwrap();
    let reads = count(&world, Call::ChunkRows);
    assert_eq!(
        world.retrieve(&plan("submarines with sonar")).unwrap(),
        superseded
    );
    assert_eq!(count(&world, Call::ChunkRows), reads);
}

#[test]
fn once_the_marker_moves_the_next_search_serves_the_new_generation() {
    let world = world();
    let before = world.retrieve(&plan("acme builds")).unwrap();
    assert!(texts(&before).contains(&ROBOTS));
    world.store.activate(1, 2);
    let after = world.retrieve(&plan("acme builds")).unwrap();
    assert!(texts(&after).contains(&"Acme now builds submarines with sonar."));
    assert!(
        after
            .results
            .iter()
            .all(|r| r.text != ROBOTS && r.text != FORKLIFTS),
        "{:?}",
        texts(&after)
    );

    world.store.delete(1);
    let gone = world.retrieve(&plan("acme builds")).unwrap();
    assert!(
        gone.results.iter().all(|r| r.key != "acme/robots.md"),
        "{:?}",
        texts(&gone)
    );
}

#[test]
fn a_flip_between_the_first_pass_and_the_rows_never_serves_the_superseded_rows_later() {
    let world = world();
    // The search reads marker 1 and the old generation's hits; the flip lands before its row
    // read, which sees generation 2 (old ids no longer served).
    world.store.flip_before_rows.set(Some((1, 2)));
    let racing = world.retrieve(&plan("acme robots pallets")).unwrap();
    assert!(racing.results.iter().all(|r| r.text != ROBOTS));
    // What it kept (under marker 1) is never handed to a search that read marker 2.
    let next = world.retrieve(&plan("acme robots pallets")).unwrap();
    assert!(
        next.results.iter().all(|r| r.text != ROBOTS),
        "{:?}",
        texts(&next)
    );
    assert_eq!(
        world.store.row_cache.borrow().generation(),
        Some(ServedGeneration(2))
    );
}

#[test]
fn a_search_whose_marker_read_failed_reads_every_row_and_keeps_none() {
    let world = world_with_failing(Call::Served);
    let first = world.retrieve(&plan("warehouse robotics")).unwrap();
    assert!(first.degraded.is_empty());
    world.retrieve(&plan("warehouse robotics")).unwrap();
    assert_eq!(count(&world, Call::ChunkRows), 2);
    assert!(world.store.row_cache.borrow().is_empty());
}
