// A local stand-in for a Vectorize (V2) index, for tests and local runs: Vectorize has no
// local simulation. The Worker reaches it through a service binding named VECTORIZE and calls
// it exactly as it calls the real binding (JS RPC: `env.VECTORIZE.query(...)`).
//
// Behaviour reproduced from the Vectorize Workers API and its limits page:
// - `upsert(vectors)` inserts or replaces; `insert(vectors)` skips ids that already exist.
//   Both validate every vector first (id ≤ 64 bytes, values of exactly DIMENSIONS finite
//   numbers, metadata ≤ 10 KiB as JSON, ≤ 1000 vectors per call) and reject the whole call.
// - Mutations (upsert, insert, deleteByIds) return `{ mutationId }` and are applied
//   asynchronously. The lag is counted in calls, so it is deterministic: a mutation becomes
//   visible after MUTATION_LAG_CALLS further calls of any method (default 2). The first call
//   after an upsert still sees the old state; `describe().processedUpToMutation` tells a
//   client when its mutation has landed, as it does on Vectorize.
// - `query(vector, { topK = 5, filter, returnValues = false, returnMetadata = "none" })`:
//   cosine similarity, best first (ties by id); topK must be 1..=100, or 1..=50 when
//   returnValues is true or returnMetadata is "all"; the vector must have DIMENSIONS values.
//   `returnMetadata` "indexed" returns the metadata too (this stand-in indexes every field).
// - Metadata filters: implicit equality (`{ f: v }`), `$eq`, `$ne`, `$in`, `$nin`, `$lt`,
//   `$lte`, `$gt`, `$gte`; several fields are ANDed; a vector without the field matches only
//   `$ne`/`$nin`. A filter (or options object) that is a JS `Map` is rejected: the real
//   binding reads a Map as `{}` and silently ignores it, which would hide a broken caller.
// - `getByIds(ids)` returns the stored vectors ({ id, values: number[], metadata }) in
//   storage order; `deleteByIds(ids)` removes them (missing ids are fine).
// - `describe()` → `{ dimensions, vectorCount, processedUpToMutation, processedUpToDatetime }`.
// Errors carry Vectorize's message shape, `VECTOR_<OP>_ERROR (code = 40xxx): <text>`, with a
// 4xxxx code for invalid requests (the numbers are this stand-in's, not Vectorize's).
//
// Test-only methods: `recordedCalls()` (every call's method and sizes, in order),
// `flushMutations()` (apply everything pending now).
import { WorkerEntrypoint } from "cloudflare:workers";

const MAX_UPSERT = 1000;
const MAX_TOP_K = 100;
const MAX_TOP_K_WITH_METADATA = 50;
const MAX_ID_BYTES = 64;
const MAX_METADATA_BYTES = 10 * 1024;
const OPERATORS = new Set(["$eq", "$ne", "$in", "$nin", "$lt", "$lte", "$gt", "$gte"]);

// Module state lives as long as the stand-in's isolate: one index per test run.
const state = {
  vectors: new Map(), // id -> { id, values: Float64Array-like number[], metadata }
  pending: [], // { id, remaining, apply() }
  processedUpToMutation: null,
  processedUpToDatetime: null,
  nextMutation: 1,
  calls: [],
};

function fail(op, code, text) {
  return new Error(`VECTOR_${op}_ERROR (code = ${code}): ${text}`);
}

function dimensions(env) {
  return Number(env.DIMENSIONS ?? 1536);
}

/** Counts one call towards every pending mutation and applies those that are due, in order. */
function tick() {
  for (const m of state.pending) m.remaining -= 1;
  while (state.pending.length > 0 && state.pending[0].remaining <= 0) {
    const m = state.pending.shift();
    m.apply();
    state.processedUpToMutation = m.id;
    state.processedUpToDatetime = new Date().toISOString();
  }
}

function enqueue(env, apply) {
  const id = `mutation-${state.nextMutation++}`;
  const lag = Number(env.MUTATION_LAG_CALLS ?? 2);
  state.pending.push({ id, remaining: lag, apply });
  return { mutationId: id };
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
  if (vectors.length > MAX_UPSERT) {
    throw fail(op, 40005, `${vectors.length} vectors in one call; the limit is ${MAX_UPSERT}`);
  }
  return vectors.map((v) => {
    if (typeof v?.id !== "string" || v.id.length === 0) throw fail(op, 40006, "vector id must be a non-empty string");
    if (new TextEncoder().encode(v.id).length > MAX_ID_BYTES) throw fail(op, 40007, `vector id ${v.id} is longer than ${MAX_ID_BYTES} bytes`);
    if (v.metadata instanceof Map) throw fail(op, 40008, "metadata must be a plain object, got a Map");
    const metadata = v.metadata ?? {};
    if (new TextEncoder().encode(JSON.stringify(metadata)).length > MAX_METADATA_BYTES) {
      throw fail(op, 40009, `metadata of ${v.id} exceeds ${MAX_METADATA_BYTES} bytes`);
    }
    return { id: v.id, values: toNumbers(op, v.values, dimensions(env)), metadata: structuredClone(metadata) };
  });
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

function matchesCondition(value, condition) {
  const isOps =
    condition !== null && typeof condition === "object" && !Array.isArray(condition) && Object.keys(condition).length > 0;
  const ops = isOps ? condition : { $eq: condition };
  return Object.entries(ops).every(([op, want]) => {
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
  if (filter === undefined || filter === null) return {};
  if (filter instanceof Map) throw fail("QUERY", 40010, "filter must be a plain object, got a Map (the real binding would ignore it)");
  if (typeof filter !== "object" || Array.isArray(filter)) throw fail("QUERY", 40011, "filter must be an object");
  for (const [field, condition] of Object.entries(filter)) {
    if (condition !== null && typeof condition === "object" && !Array.isArray(condition)) {
      for (const [op, v] of Object.entries(condition)) {
        if (!OPERATORS.has(op)) throw fail("QUERY", 40012, `unsupported operator ${op} on ${field}`);
        if ((op === "$in" || op === "$nin") && !Array.isArray(v)) throw fail("QUERY", 40013, `${op} on ${field} needs an array`);
      }
    }
  }
  if (new TextEncoder().encode(JSON.stringify(filter)).length >= 2048) throw fail("QUERY", 40014, "filter exceeds 2048 bytes");
  return filter;
}

function record(call) {
  state.calls.push({ at: state.calls.length, ...call });
}

export class VectorizeStandin extends WorkerEntrypoint {
  async upsert(vectors) {
    tick();
    const checked = checkVectors("UPSERT", this.env, vectors);
    record({ method: "upsert", count: checked.length, ids: checked.map((v) => v.id) });
    return enqueue(this.env, () => {
      for (const v of checked) state.vectors.set(v.id, v);
    });
  }

  async insert(vectors) {
    tick();
    const checked = checkVectors("INSERT", this.env, vectors);
    record({ method: "insert", count: checked.length, ids: checked.map((v) => v.id) });
    return enqueue(this.env, () => {
      for (const v of checked) if (!state.vectors.has(v.id)) state.vectors.set(v.id, v);
    });
  }

  async deleteByIds(ids) {
    tick();
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string")) throw fail("DELETE", 40015, "ids must be an array of strings");
    record({ method: "deleteByIds", count: ids.length, ids: [...ids] });
    const copy = [...ids];
    return enqueue(this.env, () => {
      for (const id of copy) state.vectors.delete(id);
    });
  }

  async getByIds(ids) {
    tick();
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string")) throw fail("GET", 40016, "ids must be an array of strings");
    record({ method: "getByIds", count: ids.length, ids: [...ids] });
    return ids
      .filter((id) => state.vectors.has(id))
      .map((id) => {
        const v = state.vectors.get(id);
        return { id: v.id, values: [...v.values], metadata: structuredClone(v.metadata) };
      });
  }

  async query(vector, options = {}) {
    tick();
    if (options instanceof Map) throw fail("QUERY", 40017, "options must be a plain object, got a Map");
    const { topK = 5, returnValues = false, returnMetadata = "none" } = options;
    const filter = checkFilter(options.filter);
    record({ method: "query", topK, returnValues, returnMetadata, filter: structuredClone(filter) });
    const withMetadata = returnMetadata === true || returnMetadata === "all";
    const max = returnValues || withMetadata ? MAX_TOP_K_WITH_METADATA : MAX_TOP_K;
    if (!Number.isInteger(topK) || topK < 1 || topK > max) {
      throw fail("QUERY", 40018, `topK ${topK} out of range 1..${max}${max === MAX_TOP_K ? "" : " with returnValues or returnMetadata 'all'"}`);
    }
    const q = toNumbers("QUERY", vector, dimensions(this.env));
    const scored = [];
    for (const v of state.vectors.values()) {
      const passes = Object.entries(filter).every(([field, condition]) => matchesCondition(v.metadata[field], condition));
      if (passes) scored.push({ v, score: cosine(q, v.values) });
    }
    scored.sort((a, b) => b.score - a.score || (a.v.id < b.v.id ? -1 : a.v.id > b.v.id ? 1 : 0));
    const matches = scored.slice(0, topK).map(({ v, score }) => {
      const m = { id: v.id, score };
      if (returnValues) m.values = [...v.values];
      if (withMetadata || returnMetadata === "indexed") m.metadata = structuredClone(v.metadata);
      return m;
    });
    return { matches, count: matches.length };
  }

  async describe() {
    tick();
    record({ method: "describe" });
    return {
      dimensions: dimensions(this.env),
      vectorCount: state.vectors.size,
      processedUpToMutation: state.processedUpToMutation,
      processedUpToDatetime: state.processedUpToDatetime,
    };
  }

  // ---- test-only ----
  async recordedCalls() {
    return structuredClone(state.calls);
  }

  async flushMutations() {
    for (const m of state.pending) m.remaining = 0;
    tick();
    return { processedUpToMutation: state.processedUpToMutation };
  }
}

export default {
  fetch() {
    return new Response("Vectorize stand-in: call it through a service binding (JS RPC)", { status: 404 });
  },
};
