//! `VectorizeIndex`: the `VectorIndex` trait over the Vectorize binding (`env.VECTORIZE`),
//! through a typed wasm-bindgen binding (workers-rs 0.8 has none).
//!
//! Owns the JS shapes exchanged with Vectorize: vectors go as `Float32Array`, option and
//! metadata objects are built with the JSON-compatible serializer (the default one turns any
//! map-typed value — a `serde_json::Value` object, a `HashMap` — into a JS `Map`, which
//! Vectorize reads as `{}` and silently ignores; the test stand-in rejects it). Must never
//! decide anything the core can: validation, batching and limits come from
//! `portfolio_core::index`.

use js_sys::{Array, Float32Array, Object, Promise, Reflect};
use portfolio_core::index::{
    classify_vectorize_failure, plan_upsert_batches, validate_id, validate_query, validate_record,
    IndexInfo, MutationReceipt, VectorIndex, VectorIndexError, VectorMatch, VectorMetadata,
    VectorQuery, VectorRecord, VECTORIZE_MAX_IDS_PER_CALL, VECTORIZE_MAX_UPSERT_BATCH,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

const BACKEND: &str = "vectorize";

#[wasm_bindgen]
extern "C" {
    /// The Vectorize (V2) index binding: every method returns a Promise.
    #[wasm_bindgen(extends = Object)]
    #[derive(Debug, Clone)]
    pub type VectorizeBinding;

    #[wasm_bindgen(method, catch)]
    fn query(
        this: &VectorizeBinding,
        vector: &Float32Array,
        options: &JsValue,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn insert(this: &VectorizeBinding, vectors: &Array) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn upsert(this: &VectorizeBinding, vectors: &Array) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = getByIds)]
    fn get_by_ids(this: &VectorizeBinding, ids: &Array) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = deleteByIds)]
    fn delete_by_ids(this: &VectorizeBinding, ids: &Array) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn describe(this: &VectorizeBinding) -> Result<Promise, JsValue>;
}

/// The Vectorize implementation of [`VectorIndex`].
#[derive(Debug, Clone)]
pub struct VectorizeIndex {
    binding: VectorizeBinding,
    dimensions: usize,
}

/// Vectorize `query` options (`returnMetadata: "all" | "none"`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryOptions<'a> {
    top_k: usize,
    return_values: bool,
    return_metadata: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a portfolio_core::index::MetadataFilter>,
}

#[derive(Deserialize)]
struct QueryResponse {
    matches: Vec<RawMatch>,
}

#[derive(Deserialize)]
struct RawMatch {
    id: String,
    score: f32,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MutationResponse {
    #[serde(default)]
    mutation_id: Option<String>,
}

/// `describe()`: V2 shape (`dimensions`, `vectorCount`, `processedUpToMutation`), with the
/// V1 fields (`config.dimensions`, `vectorsCount`) accepted as a fallback.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeResponse {
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    vector_count: Option<u64>,
    #[serde(default)]
    vectors_count: Option<u64>,
    #[serde(default)]
    processed_up_to_mutation: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<DescribeConfig>,
}

#[derive(Deserialize)]
struct DescribeConfig {
    dimensions: usize,
}

impl VectorizeIndex {
    /// Reads the `VECTORIZE` binding from the raw environment object. `Env::get_binding` is
    /// not used: it checks the JS constructor name, which differs between the real binding
    /// and a stand-in (a service binding to a test worker).
    ///
    /// # Errors
    /// `NotConfigured` when the binding is absent.
    pub fn from_env(env: &Env, binding: &str, dimensions: usize) -> Result<Self, VectorIndexError> {
        let raw = Reflect::get(env.as_ref(), &JsValue::from_str(binding)).map_err(|e| {
            VectorIndexError::NotConfigured {
                reason: format!("reading binding {binding}: {}", js_message(&e)),
            }
        })?;
        if raw.is_undefined() || raw.is_null() {
            return Err(VectorIndexError::NotConfigured {
                reason: format!("binding {binding} is missing (VECTOR_INDEX=vectorize needs it)"),
            });
        }
        Ok(Self {
            binding: raw.unchecked_into(),
            dimensions,
        })
    }

    /// Inserts vectors whose ids are new; Vectorize leaves existing ids untouched (unlike
    /// [`VectorIndex::upsert`]). Split at the per-call limit like `upsert`.
    ///
    /// # Errors
    /// Validation errors before any call; the platform's otherwise.
    #[allow(dead_code)] // Part of the binding's surface; ingestion uses `upsert`.
    pub async fn insert(
        &self,
        records: &[VectorRecord],
    ) -> Result<MutationReceipt, VectorIndexError> {
        self.write("insert", records).await
    }

    /// One `getByIds` call (at most [`VECTORIZE_MAX_IDS_PER_CALL`] ids: beyond it the binding
    /// rejects the whole call) → the JS array it returns.
    async fn get_batch(&self, ids: &[String]) -> Result<Array, VectorIndexError> {
        let js_ids: Array = ids.iter().map(|id| JsValue::from_str(id)).collect();
        let value = await_promise("getByIds", self.binding.get_by_ids(&js_ids)).await?;
        value
            .dyn_into()
            .map_err(|_| malformed("getByIds", "not an array"))
    }

    async fn write(
        &self,
        operation: &'static str,
        records: &[VectorRecord],
    ) -> Result<MutationReceipt, VectorIndexError> {
        for record in records {
            validate_record(record, self.dimensions)?;
        }
        let mut receipt = MutationReceipt {
            count: records.len(),
            mutation_ids: Vec::new(),
        };
        for batch in plan_upsert_batches(records.len(), VECTORIZE_MAX_UPSERT_BATCH) {
            let vectors = Array::new();
            for record in &records[batch] {
                vectors.push(&record_to_js(record)?);
            }
            let promise = match operation {
                "insert" => self.binding.insert(&vectors),
                _ => self.binding.upsert(&vectors),
            };
            let response: MutationResponse = call(operation, promise).await?;
            receipt.mutation_ids.extend(response.mutation_id);
        }
        Ok(receipt)
    }
}

impl VectorIndex for VectorizeIndex {
    fn implementation(&self) -> &'static str {
        BACKEND
    }

    async fn upsert(&self, records: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
        self.write("upsert", records).await
    }

    async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        validate_query(query, self.dimensions)?;
        let options = to_plain_js(&QueryOptions {
            top_k: query.top_k,
            return_values: false,
            return_metadata: if query.return_metadata { "all" } else { "none" },
            filter: query.filter.as_ref().filter(|f| !f.is_empty()),
        })?;
        let vector = Float32Array::from(query.vector.as_slice());
        let response: QueryResponse = call("query", self.binding.query(&vector, &options)).await?;
        response
            .matches
            .into_iter()
            .map(|m| {
                let metadata = match m.metadata.filter(|_| query.return_metadata) {
                    Some(value) => Some(parse_metadata("query", &m.id, value)?),
                    None => None,
                };
                Ok(VectorMatch {
                    id: m.id,
                    score: m.score,
                    metadata,
                })
            })
            .collect()
    }

    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
        for id in ids {
            validate_id(id)?;
        }
        let mut records = Vec::with_capacity(ids.len());
        for batch in plan_upsert_batches(ids.len(), VECTORIZE_MAX_IDS_PER_CALL) {
            for vector in self.get_batch(&ids[batch]).await?.iter() {
                records.push(record_from_js(&vector)?);
            }
        }
        Ok(records)
    }

    /// Counts what `getByIds` returns, one call at a time, without converting or keeping the
    /// vectors (a generation of 20,000 chunks would be 120 MB of f32 values).
    async fn count_present(&self, ids: &[String]) -> Result<usize, VectorIndexError> {
        for id in ids {
            validate_id(id)?;
        }
        let mut count = 0;
        for batch in plan_upsert_batches(ids.len(), VECTORIZE_MAX_IDS_PER_CALL) {
            count += self.get_batch(&ids[batch]).await?.length() as usize;
        }
        Ok(count)
    }

    /// Vectorize queues every mutation: "it typically takes a few seconds for upserted vectors
    /// to be available for querying" (<https://developers.cloudflare.com/vectorize/reference/client-api/>).
    fn writes_land_later(&self) -> bool {
        true
    }

    /// One `deleteByIds` call per [`VECTORIZE_MAX_IDS_PER_CALL`] ids, in order; stops at the
    /// first failure (deleting is idempotent, so the caller retries the whole list).
    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError> {
        for id in ids {
            validate_id(id)?;
        }
        let mut receipt = MutationReceipt {
            count: ids.len(),
            mutation_ids: Vec::new(),
        };
        for batch in plan_upsert_batches(ids.len(), VECTORIZE_MAX_IDS_PER_CALL) {
            let js_ids: Array = ids[batch].iter().map(|id| JsValue::from_str(id)).collect();
            let response: MutationResponse =
                call("deleteByIds", self.binding.delete_by_ids(&js_ids)).await?;
            receipt.mutation_ids.extend(response.mutation_id);
        }
        Ok(receipt)
    }

    async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
        let info: DescribeResponse = call("describe", self.binding.describe()).await?;
        let dimensions = info
            .dimensions
            .or(info.config.map(|c| c.dimensions))
            .ok_or_else(|| malformed("describe", "no dimensions"))?;
        Ok(IndexInfo {
            implementation: BACKEND.into(),
            dimensions,
            vector_count: info.vector_count.or(info.vectors_count).unwrap_or(0),
            processed_up_to_mutation: info.processed_up_to_mutation.and_then(|m| match m {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }),
        })
    }
}

/// Serialises `value` as plain JS objects and arrays (never `Map`s): see the module docs.
fn to_plain_js<T: Serialize>(value: &T) -> Result<JsValue, VectorIndexError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| VectorIndexError::InvalidVector {
            id: None,
            reason: format!("cannot build the Vectorize request: {e}"),
        })
}

fn record_to_js(record: &VectorRecord) -> Result<JsValue, VectorIndexError> {
    let object = Object::new();
    let set = |key: &str, value: &JsValue| {
        Reflect::set(&object, &JsValue::from_str(key), value)
            .map(|_| ())
            .map_err(|e| VectorIndexError::InvalidVector {
                id: Some(record.id.clone()),
                reason: format!("cannot build the JS vector: {}", js_message(&e)),
            })
    };
    set("id", &JsValue::from_str(&record.id))?;
    set(
        "values",
        &Float32Array::from(record.values.as_slice()).into(),
    )?;
    set("metadata", &to_plain_js(&record.metadata)?)?;
    Ok(object.into())
}

fn record_from_js(value: &JsValue) -> Result<VectorRecord, VectorIndexError> {
    let field =
        |key: &str| Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    let id = field("id")
        .as_string()
        .ok_or_else(|| malformed("getByIds", "a vector without a string id"))?;
    let values = field("values");
    if !(Array::is_array(&values) || values.is_instance_of::<Float32Array>()) {
        return Err(malformed("getByIds", "a vector without values"));
    }
    // `Float32Array::new` copies from an array of numbers or any typed array.
    let values = Float32Array::new(&values).to_vec();
    let metadata: serde_json::Value = serde_wasm_bindgen::from_value(field("metadata"))
        .map_err(|e| malformed("getByIds", &format!("metadata of {id}: {e}")))?;
    let metadata = parse_metadata("getByIds", &id, metadata)?;
    Ok(VectorRecord {
        id,
        values,
        metadata,
    })
}

fn parse_metadata(
    operation: &'static str,
    id: &str,
    value: serde_json::Value,
) -> Result<VectorMetadata, VectorIndexError> {
    serde_json::from_value(value)
        .map_err(|e| malformed(operation, &format!("metadata of {id} is not ours: {e}")))
}

async fn await_promise(
    operation: &'static str,
    promise: Result<Promise, JsValue>,
) -> Result<JsValue, VectorIndexError> {
    let promise = promise.map_err(|e| classify_vectorize_failure(operation, js_message(&e)))?;
    JsFuture::from(promise)
        .await
        .map_err(|e| classify_vectorize_failure(operation, js_message(&e)))
}

async fn call<T: for<'de> Deserialize<'de>>(
    operation: &'static str,
    promise: Result<Promise, JsValue>,
) -> Result<T, VectorIndexError> {
    let value = await_promise(operation, promise).await?;
    serde_wasm_bindgen::from_value(value).map_err(|e| malformed(operation, &e.to_string()))
}

fn malformed(operation: &'static str, reason: &str) -> VectorIndexError {
    VectorIndexError::MalformedResponse {
        backend: BACKEND,
        operation,
        reason: reason.to_owned(),
    }
}

/// The message of a thrown JS value (an `Error`'s `message`, a string, or its debug form).
pub(crate) fn js_message(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
