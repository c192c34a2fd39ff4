// A local stand-in for a Vectorize (V2) index, for tests and local runs: Vectorize has no
// local simulation. The Worker reaches it through a service binding named VECTORIZE and calls
// it exactly as it calls the real binding (JS RPC: `env.VECTORIZE.query(...)`).
//
// It reproduces the behaviour that decides whether the service works on Vectorize, from these
// pages (read 2026-11):
//   [limits]  https://developers.cloudflare.com/vectorize/platform/limits/
//   [api]     https://developers.cloudflare.com/vectorize/reference/client-api/
//   [filter]  https://developers.cloudflare.com/vectorize/reference/metadata-filtering/
//   [intro]   https://developers.cloudflare.com/vectorize/get-started/intro/#4-optional-create-metadata-indexes
//   [query]   https://developers.cloudflare.com/vectorize/best-practices/query-vectors/
//
// - Metadata indexes [filter][intro]: a filter only sees properties that have a metadata index
//   (`wrangler vectorize create-metadata-index <index> --property-name=P --type=string|number|boolean`),
//   and only for vectors written AFTER that index existed: "Vectors upserted before a metadata
//   index was created won't have their metadata contained in that index." A vector's value is
//   indexed only when its type is the index's type; strings are indexed on their first 64 bytes.
//   A filter on a property without a metadata index matches nothing; the stand-in says so with
//   `console.warn` and records it in a log the tests read (`filterLog()`, `GET /log`), as it
//   does for filters on indexed properties that some vectors carry but were never indexed for.
//   At most 10 metadata indexes per index [limits].
// - Asynchronous writes [api]: upsert, insert and deleteByIds return `{ mutationId }` (a UUID)
//   and become visible MUTATION_DELAY_MS later (default 20; per test with `configure()`), in
//   call order. Until then query, getByIds and describe see the old state;
//   `describe().processedUpToMutation` names the last mutation applied. Creating or deleting a
//   metadata index is a mutation in the same queue ("enqueued metadata index creation request").
// - Limits [limits][api], checked before anything is queued, failing the whole call:
//   ≤ 1000 vectors per upsert/insert (Workers binding); ids non-empty, ≤ 64 bytes; values of
//   exactly DIMENSIONS finite numbers; metadata ≤ 10 KiB as JSON; topK 1..100, and 1..20 with
//   `returnValues: true` or `returnMetadata: "all"`; `returnMetadata` is "none" | "indexed" |
//   "all"; filters [filter] are non-empty objects under 2048 bytes of compact JSON, keys
//   non-empty, ≤ 512 characters, without `"`, not starting with `$`.
//   getByIds/deleteByIds: ≤ 100 ids per call. [limits] states no id limit (only the upsert
//   batch); the real binding rejects the whole call beyond 100, as field reports quote it
//   (2026): `VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is 100,
//   got 173`. The stand-in answers deleteByIds with that text and getByIds with the same text
//   as `VECTOR_GET_ERROR` (assumed: no report quotes getByIds), and records the rejected call
//   (`rejected` in `recordedCalls()`), so a caller that sends more is caught here rather than
//   in production.
// - `query(vector, { topK = 5, filter, returnValues = false, returnMetadata = "none" })`:
//   cosine similarity, best first (ties by id). "indexed" returns only the indexed properties
//   (strings cut to 64 bytes), "all" the whole metadata. Operators [filter]: implicit `$eq`,
//   `$eq`, `$ne`, `$in`, `$nin`, `$lt`, `$lte`, `$gt`, `$gte`; fields are ANDed; a vector not in
//   a property's metadata index matches only `$ne`/`$nin` on it (our assumption; the docs are
//   silent). A `Map` as filter or options is rejected: the real binding reads a Map as `{}` and
//   silently ignores it, which would hide a broken caller.
// - `insert` skips ids that exist when it is applied; `upsert` replaces whole vectors.
// - `describe()` → `{ dimensions, vectorCount, processedUpToMutation, processedUpToDatetime }`.
// Errors read like the binding's, `VECTOR_<OP>_ERROR (code = 40xxx): <text>` (4xxxx: invalid
// request; the numbers are this stand-in's, not Vectorize's, except 40007 for too many ids).
//
// Control surface (tests and local runs; the real binding has none of it): JS RPC methods
// `createMetadataIndex`, `deleteMetadataIndex`, `listMetadataIndexes` (mirroring wrangler's
// create-/delete-/list-metadata-index), `configure({ mutationDelayMs })`, `flushMutations()`,
// `drainMutations()`, `listIds(prefix)`, `filterLog()`, `recordedCalls()`; and the same over
// HTTP: `POST /metadata-index/create {propertyName, indexType}`, `POST /metadata-index/delete
// {propertyName}`, `GET /metadata-index/list`, `GET /log`, `POST /configure`.
import { WorkerEntrypoint } from "cloudflare:workers";

/** [limits] "Maximum upsert batch size (per batch): 1000 (Workers)". */
const MAX_UPSERT_BATCH = 1000;
/** Not on [limits]; the real binding's "max id count is 100" (see above). */
const MAX_IDS_PER_CALL = 100;
/** [limits] "Maximum returned results (topK) without values and metadata: 100". */
const MAX_TOP_K = 100;
/** [limits][api] "Maximum returned results (topK) with values or metadata: 20". */
const MAX_TOP_K_WITH_VALUES_OR_METADATA = 20;
/** [limits] "Maximum vector ID length: 64 bytes". */
const MAX_ID_BYTES = 64;
/** [limits] "Metadata per vector: 10KiB". */
const MAX_METADATA_BYTES = 10 * 1024;
/** [limits] "Maximum metadata indexes per Vectorize index: 10". */
const MAX_METADATA_INDEXES = 10;
/** [limits][filter] "Maximum indexed data per metadata index per vector: 64 bytes" (strings). */
const MAX_INDEXED_STRING_BYTES = 64;
/** [filter] "compact JSON representation must be less than 2048 bytes". */
const MAX_FILTER_BYTES = 2048;
/** [filter] keys may not be "longer than 512 characters". */
const MAX_FILTER_KEY_CHARS = 512;
const DEFAULT_MUTATION_DELAY_MS = 20;
const OPERATORS = new Set(["$eq", "$ne", "$in", "$nin", "$lt", "$lte", "$gt", "$gte"]);
const INDEX_TYPES = new Set(["string", "number", "boolean"]);
const RETURN_METADATA = new Set(["none", "indexed", "all"]);

// Module state lives as long as the stand-in's isolate. Under the vitest plugin every test
// file gets its own runtime, hence its own empty index.
const state = {
  vectors: new Map(), // id -> { id, values: number[], metadata, indexed: { property: value } }
  metadataIndexes: new Map(), // property -> "string" | "number" | "boolean" (applied ones)
  pending: [], // { id, dueAt, apply() }, in call order
  processedUpToMutation: null,
  processedUpToDatetime: null,
  mutationDelayMs: null, // null: the MUTATION_DELAY_MS binding
  calls: [],
  filterLog: [],
};

const encoder = new TextEncoder();
const bytes = (text) => encoder.encode(text).length;

function fail(op, code, text) {
  return new Error(`VECTOR_${op}_ERROR (code = ${code}): ${text}`);
}

function dimensions(env) {
  return Number(env.DIMENSIONS ?? 1536);
}

function mutationDelay(env) {
  return state.mutationDelayMs ?? Number(env.MUTATION_DELAY_MS ?? DEFAULT_MUTATION_DELAY_MS);
}

/** Applies the pending mutations that are due, in call order (a later one never overtakes). */
function applyDue(now = Date.now()) {
  while (state.pending.length > 0 && state.pending[0].dueAt <= now) {
    const m = state.pending.shift();
    m.apply();
    state.processedUpToMutation = m.id;
    state.processedUpToDatetime = new Date().toISOString();
  }
}

function enqueue(env, apply) {
  const id = crypto.randomUUID();
  const last = state.pending.at(-1)?.dueAt ?? 0;
  state.pending.push({ id, dueAt: Math.max(Date.now() + mutationDelay(env), last), apply });
  return { mutationId: id };
}

/** A string cut to at most `max` UTF-8 bytes on a character boundary (how strings are indexed). */
function truncateUtf8(text, max) {
  if (bytes(text) <= max) return text;
  let out = "";
  for (const ch of text) {
    if (bytes(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/** The value a metadata index of `type` holds for `value`, or undefined when it does not index it. */
function indexable(type, value) {
  if (type === "string" && typeof value === "string") return truncateUtf8(value, MAX_INDEXED_STRING_BYTES);
  if (type === "number" && typeof value === "number" && Number.isFinite(value)) return value;
  if (type === "boolean" && typeof value === "boolean") return value;
  return undefined;
}

/** `metadata` at a dotted path ([filter]: "Keys define nesting with `.`"). */
function lookup(metadata, path) {
  let value = metadata;
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = value[part];
  }
  return value;
}

/** What the metadata indexes that exist now hold for `metadata`: applied when a write lands. */
function indexedValues(metadata) {
  const indexed = {};
  for (const [property, type] of state.metadataIndexes) {
    const value = indexable(type, lookup(metadata, property));
    if (value !== undefined) indexed[property] = value;
  }
  return indexed;
}

function toNumbers(op, values, dims) {
  const isArray = Array.isArray(values);
  const isTyped = ArrayBuffer.isView(values) && !(values instanceof DataView);
  if (!isArray && !isTyped) throw fail(op, 40001, "vector values must be an array or typed array");
  const numbers = Array.from(values, Number);
  if (numbers.length !== dims) {
    throw fail(op, 40002, `vector has ${numbers.length} dimensions, the index has ${dims}`);
  }
  if (!numbers.every(Number.isFinite)) throw fail(op, 40003, "vector values must be finite numbers");
  return numbers;
}

function checkVectors(op, env, vectors) {
  if (!Array.isArray(vectors)) throw fail(op, 40004, "expected an array of vectors");
  if (vectors.length > MAX_UPSERT_BATCH) {
    throw fail(op, 40005, `${vectors.length} vectors in one call; the limit is ${MAX_UPSERT_BATCH}`);
  }
  return vectors.map((v) => {
    if (typeof v?.id !== "string" || v.id.length === 0) throw fail(op, 40006, "vector id must be a non-empty string");
    if (bytes(v.id) > MAX_ID_BYTES) throw fail(op, 40026, `vector id ${v.id} is longer than ${MAX_ID_BYTES} bytes`);
    if (v.metadata instanceof Map) throw fail(op, 40008, "metadata must be a plain object, got a Map");
    const metadata = v.metadata ?? {};
    if (bytes(JSON.stringify(metadata)) > MAX_METADATA_BYTES) {
      throw fail(op, 40009, `metadata of ${v.id} exceeds ${MAX_METADATA_BYTES} bytes`);
    }
    return { id: v.id, values: toNumbers(op, v.values, dimensions(env)), metadata: structuredClone(metadata) };
  });
}

function checkIds(method, op, ids) {
  if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string")) throw fail(op, 40015, "ids must be an array of strings");
  if (ids.length > MAX_IDS_PER_CALL) {
    // The real binding's text and code (see above); the whole call is refused.
    const error = fail(op, 40007, `too many ids in payload; max id count is ${MAX_IDS_PER_CALL}, got ${ids.length}`);
    // Recorded, so a test sees the oversized call even if the caller swallows the error.
    record({ method, count: ids.length, rejected: error.message });
    throw error;
  }
  return [...ids];
}

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const denom = Math.sqrt(na) * Math.sqrt(nb);
  return denom > 0 ? dot / denom : 0;
}

function comparable(value) {
  return typeof value === "string" ? truncateUtf8(value, MAX_INDEXED_STRING_BYTES) : value;
}

function matchesCondition(value, condition) {
  const isOps =
    condition !== null && typeof condition === "object" && !Array.isArray(condition) && Object.keys(condition).length > 0;
  const ops = isOps ? condition : { $eq: condition };
  return Object.entries(ops).every(([op, raw]) => {
    const want = Array.isArray(raw) ? raw.map(comparable) : comparable(raw);
    switch (op) {
      case "$eq":
        return value !== undefined && value === want;
      case "$ne":
        return value !== want;
      case "$in":
        return value !== undefined && want.includes(value);
      case "$nin":
        return !want.includes(value);
      case "$lt":
        return value !== undefined && value < want;
      case "$lte":
        return value !== undefined && value <= want;
      case "$gt":
        return value !== undefined && value > want;
      case "$gte":
        return value !== undefined && value >= want;
      default:
        return false;
    }
  });
}

function checkFilter(filter) {
  if (filter === undefined || filter === null) return null;
  if (filter instanceof Map) throw fail("QUERY", 40010, "filter must be a plain object, got a Map (the real binding would ignore it)");
  if (typeof filter !== "object" || Array.isArray(filter)) throw fail("QUERY", 40011, "filter must be an object");
  if (Object.keys(filter).length === 0) throw fail("QUERY", 40019, "filter must be a non-empty object");
  for (const [field, condition] of Object.entries(filter)) {
    if (field.length === 0 || field.length > MAX_FILTER_KEY_CHARS || field.includes('"') || field.startsWith("$")) {
      throw fail("QUERY", 40020, `invalid filter key ${JSON.stringify(field)}`);
    }
    if (condition !== null && typeof condition === "object" && !Array.isArray(condition)) {
      for (const [op, v] of Object.entries(condition)) {
        if (!OPERATORS.has(op)) throw fail("QUERY", 40012, `unsupported operator ${op} on ${field}`);
        if ((op === "$in" || op === "$nin") && !Array.isArray(v)) throw fail("QUERY", 40013, `${op} on ${field} needs an array`);
      }
    }
  }
  if (bytes(JSON.stringify(filter)) >= MAX_FILTER_BYTES) throw fail("QUERY", 40014, `filter exceeds ${MAX_FILTER_BYTES} bytes`);
  return filter;
}

/**
 * Logs (console.warn + the filter log) what makes a filter silently miss vectors: a property
 * without a metadata index, or vectors that carry the property but were written before its index.
 */
function reportFilter(filter) {
  for (const field of Object.keys(filter)) {
    let entry;
    if (!state.metadataIndexes.has(field)) {
      entry = {
        kind: "no_metadata_index",
        property: field,
        message: `filter on "${field}" matches nothing: the index has no metadata index on "${field}" ` +
          `(wrangler vectorize create-metadata-index <index> --property-name=${field} --type=<string|number|boolean>, ` +
          `then re-upsert the vectors)`,
      };
    } else {
      let notIndexed = 0;
      for (const v of state.vectors.values()) {
        if (lookup(v.metadata, field) !== undefined && !(field in v.indexed)) notIndexed += 1;
      }
      if (notIndexed === 0) continue;
      entry = {
        kind: "vectors_not_indexed",
        property: field,
        vectors: notIndexed,
        message: `filter on "${field}" cannot see ${notIndexed} vector(s) that carry "${field}": ` +
          `they were written before its metadata index (or hold another type); re-upsert them`,
      };
    }
    state.filterLog.push({ at: new Date().toISOString(), filter: structuredClone(filter), ...entry });
    console.warn(`[vectorize-standin] ${entry.message}`);
  }
}

function record(call) {
  state.calls.push({ at: state.calls.length, ...call });
}

function createMetadataIndex(env, propertyName, indexType) {
  applyDue();
  const type = typeof indexType === "string" ? indexType.toLowerCase() : indexType;
  if (typeof propertyName !== "string" || propertyName.length === 0 || propertyName.length > MAX_FILTER_KEY_CHARS) {
    throw fail("CREATE_METADATA_INDEX", 40021, "propertyName must be a non-empty string");
  }
  if (!INDEX_TYPES.has(type)) throw fail("CREATE_METADATA_INDEX", 40022, `indexType must be string, number or boolean, got ${indexType}`);
  // Count what will exist once the queue is applied, so the limit holds however fast calls come.
  const planned = new Set(state.metadataIndexes.keys());
  for (const m of state.pending) m.metadataIndex?.(planned);
  if (planned.has(propertyName)) throw fail("CREATE_METADATA_INDEX", 40023, `a metadata index on ${propertyName} already exists`);
  if (planned.size >= MAX_METADATA_INDEXES) {
    throw fail("CREATE_METADATA_INDEX", 40024, `an index holds at most ${MAX_METADATA_INDEXES} metadata indexes`);
  }
  record({ method: "createMetadataIndex", propertyName, indexType: type });
  const receipt = enqueue(env, () => state.metadataIndexes.set(propertyName, type));
  state.pending.at(-1).metadataIndex = (names) => names.add(propertyName);
  return receipt;
}

function deleteMetadataIndex(env, propertyName) {
  applyDue();
  record({ method: "deleteMetadataIndex", propertyName });
  const receipt = enqueue(env, () => {
    state.metadataIndexes.delete(propertyName);
    for (const v of state.vectors.values()) delete v.indexed[propertyName];
  });
  state.pending.at(-1).metadataIndex = (names) => names.delete(propertyName);
  return receipt;
}

function listMetadataIndexes() {
  applyDue();
  return [...state.metadataIndexes].map(([propertyName, indexType]) => ({ propertyName, indexType }));
}

export class VectorizeStandin extends WorkerEntrypoint {
  async upsert(vectors) {
    applyDue();
    const checked = checkVectors("UPSERT", this.env, vectors);
    record({ method: "upsert", count: checked.length, ids: checked.map((v) => v.id) });
    return enqueue(this.env, () => {
      for (const v of checked) state.vectors.set(v.id, { ...v, indexed: indexedValues(v.metadata) });
    });
  }

  async insert(vectors) {
    applyDue();
    const checked = checkVectors("INSERT", this.env, vectors);
    record({ method: "insert", count: checked.length, ids: checked.map((v) => v.id) });
    return enqueue(this.env, () => {
      for (const v of checked) {
        if (!state.vectors.has(v.id)) state.vectors.set(v.id, { ...v, indexed: indexedValues(v.metadata) });
      }
    });
  }

  async deleteByIds(ids) {
    applyDue();
    const copy = checkIds("deleteByIds", "DELETE", ids);
    record({ method: "deleteByIds", count: copy.length, ids: copy });
    return enqueue(this.env, () => {
      for (const id of copy) state.vectors.delete(id);
    });
  }

  async getByIds(ids) {
    applyDue();
    const copy = checkIds("getByIds", "GET", ids);
    record({ method: "getByIds", count: copy.length, ids: copy });
    return copy
      .filter((id) => state.vectors.has(id))
      .map((id) => {
        const v = state.vectors.get(id);
        return { id: v.id, values: [...v.values], metadata: structuredClone(v.metadata) };
      });
  }

  async query(vector, options = {}) {
    applyDue();
    if (options instanceof Map) throw fail("QUERY", 40017, "options must be a plain object, got a Map");
    const { topK = 5, returnValues = false } = options;
    // `true`/`false` are the V1 spellings of "all"/"none".
    const returnMetadata = options.returnMetadata === true ? "all" : options.returnMetadata === false ? "none" : (options.returnMetadata ?? "none");
    if (!RETURN_METADATA.has(returnMetadata)) throw fail("QUERY", 40025, `returnMetadata must be "none", "indexed" or "all"`);
    const filter = checkFilter(options.filter);
    record({ method: "query", topK, returnValues, returnMetadata, filter: filter && structuredClone(filter) });
    const heavy = returnValues === true || returnMetadata === "all";
    const max = heavy ? MAX_TOP_K_WITH_VALUES_OR_METADATA : MAX_TOP_K;
    if (!Number.isInteger(topK) || topK < 1 || topK > max) {
      throw fail("QUERY", 40018, `topK ${topK} out of range 1..${max}${heavy ? " with returnValues or returnMetadata 'all'" : ""}`);
    }
    const q = toNumbers("QUERY", vector, dimensions(this.env));
    if (filter) reportFilter(filter);
    const scored = [];
    for (const v of state.vectors.values()) {
      // Only metadata indexes can answer a filter: an unindexed property matches nothing.
      const passes =
        !filter ||
        Object.entries(filter).every(
          ([field, condition]) => state.metadataIndexes.has(field) && matchesCondition(v.indexed[field], condition),
        );
      if (passes) scored.push({ v, score: cosine(q, v.values) });
    }
    scored.sort((a, b) => b.score - a.score || (a.v.id < b.v.id ? -1 : a.v.id > b.v.id ? 1 : 0));
    const matches = scored.slice(0, topK).map(({ v, score }) => {
      const m = { id: v.id, score };
      if (returnValues) m.values = [...v.values];
      if (returnMetadata === "all") m.metadata = structuredClone(v.metadata);
      if (returnMetadata === "indexed") m.metadata = structuredClone(v.indexed);
      return m;
    });
    return { matches, count: matches.length };
  }

  async describe() {
    applyDue();
    record({ method: "describe" });
    return {
      dimensions: dimensions(this.env),
      vectorCount: state.vectors.size,
      processedUpToMutation: state.processedUpToMutation,
      processedUpToDatetime: state.processedUpToDatetime,
    };
  }

  // ---- control surface (not on the real binding) ----

  /** `wrangler vectorize create-metadata-index <index> --property-name=P --type=T`. */
  async createMetadataIndex(propertyName, indexType) {
    return createMetadataIndex(this.env, propertyName, indexType);
  }

  /** `wrangler vectorize delete-metadata-index <index> --property-name=P`. */
  async deleteMetadataIndex(propertyName) {
    return deleteMetadataIndex(this.env, propertyName);
  }

  /** `wrangler vectorize list-metadata-index <index>`: the metadata indexes in effect. */
  async listMetadataIndexes() {
    return listMetadataIndexes();
  }

  /** Sets the write delay (ms) for mutations queued from now on; returns the previous one. */
  async configure({ mutationDelayMs } = {}) {
    const previous = mutationDelay(this.env);
    if (mutationDelayMs !== undefined) {
      if (!Number.isFinite(mutationDelayMs) || mutationDelayMs < 0) throw new Error("mutationDelayMs must be ≥ 0");
      state.mutationDelayMs = mutationDelayMs;
    }
    return { mutationDelayMs: previous };
  }

  /** Applies everything queued now, whatever its delay. */
  async flushMutations() {
    applyDue(Number.POSITIVE_INFINITY);
    return { processedUpToMutation: state.processedUpToMutation };
  }

  /** Waits until everything queued so far has been applied on its own schedule. */
  async drainMutations() {
    while (state.pending.length > 0) {
      const wait = state.pending.at(-1).dueAt - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      applyDue();
    }
    return { processedUpToMutation: state.processedUpToMutation };
  }

  /** Ids of the applied vectors starting with `prefix`, sorted (the real index cannot list by prefix). */
  async listIds(prefix = "") {
    applyDue();
    return [...state.vectors.keys()].filter((id) => id.startsWith(prefix)).sort();
  }

  /** Filters that missed vectors because of metadata indexes (see `reportFilter`). */
  async filterLog() {
    return structuredClone(state.filterLog);
  }

  /** Every call's method and sizes, in order. */
  async recordedCalls() {
    return structuredClone(state.calls);
  }

  /** The control surface over HTTP, for local runs (`wrangler dev`) and curl. */
  async fetch(request) {
    const url = new URL(request.url);
    const body = request.method === "POST" ? await request.json().catch(() => ({})) : {};
    try {
      switch (`${request.method} ${url.pathname}`) {
        case "POST /metadata-index/create":
          return Response.json(createMetadataIndex(this.env, body.propertyName, body.indexType));
        case "POST /metadata-index/delete":
          return Response.json(deleteMetadataIndex(this.env, body.propertyName));
        case "GET /metadata-index/list":
          return Response.json(listMetadataIndexes());
        case "GET /log":
          return Response.json(state.filterLog);
        case "POST /configure":
          return Response.json(await this.configure(body));
        default:
          return Response.json({ error: "not found" }, { status: 404 });
      }
    } catch (e) {
      return Response.json({ error: String(e.message) }, { status: 400 });
    }
  }
}

export default {
  fetch() {
    return new Response("Vectorize stand-in: call it through a service binding to its VectorizeStandin entrypoint", { status: 404 });
  },
};
