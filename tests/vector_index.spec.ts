// The vector index through the operator endpoints of the built Worker, for both
// implementations: the `d1` project runs it against the D1-exact index, the
// `vectorize` project against the Vectorize binding glue talking to the local
// stand-in (tests/standins/vectorize.js). Same test body, same expectations.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cosine, DIMS, record, scope as uniqueScope, vec } from "./vectors";

const IMPL: "d1" | "vectorize" = (env as any).VECTOR_INDEX === "vectorize" ? "vectorize" : "d1";
const TOKEN = "test-admin-token-not-a-secret-0001";
const standin: any = (env as any).VECTORIZE;

/** Ids and company ids no other test uses (the stand-in's index lives for the whole run). */
const scope = () => uniqueScope(IMPL[0]);

async function admin(path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await SELF.fetch(`https://svc.test${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  expect(res.headers.get("content-type")).toContain("application/json");
  return { status: res.status, json: await res.json() };
}

/**
 * Waits until the index has applied the receipt's last mutation, as a client
 * of Vectorize must (its writes are asynchronous). D1 writes are synchronous:
 * no mutation ids, nothing to wait for.
 */
async function settled(receipt: { mutation_ids: string[] }) {
  const last = receipt.mutation_ids.at(-1);
  if (last === undefined) return;
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const { json } = await admin("/admin/index");
    if (json.processed_up_to_mutation === last) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`mutation ${last} was never applied`);
}

async function upsert(vectors: unknown[]) {
  const res = await admin("/admin/index/upsert", { vectors });
  expect(res.status, JSON.stringify(res.json).slice(0, 300)).toBe(200);
  await settled(res.json);
  return res.json;
}

async function query(body: Record<string, unknown>) {
  const res = await admin("/admin/index/query", body);
  expect(res.status, JSON.stringify(res.json)).toBe(200);
  expect(res.json.implementation).toBe(IMPL);
  return res.json.matches as { id: string; score: number; metadata?: any }[];
}

async function vectorCount(): Promise<number> {
  const { status, json } = await admin("/admin/index");
  expect(status).toBe(200);
  return json.vector_count;
}

/** The error a call to the stand-in rejects with (awaited here, so no rejection goes unhandled). */
async function rejection(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
  } catch (e) {
    return String((e as Error).message);
  }
  throw new Error("expected the call to be rejected");
}

async function recordedCalls(): Promise<any[]> {
  return standin.recordedCalls();
}

describe(`vector index (${IMPL})`, () => {
  it("answers admin routes only with the bearer token", async () => {
    for (const [path, body] of [
      ["/admin/index", undefined],
      ["/admin/index/query", { vector: vec({ 0: 1 }), top_k: 1 }],
      ["/admin/index/upsert", { vectors: [] }],
      ["/admin/nope", undefined],
    ] as const) {
      for (const token of [null, "wrong-token", `${TOKEN}x`]) {
        const res = await admin(path, body, token);
        expect(res.status, `${path} with ${token}`).toBe(401);
        expect(res.json.error.code).toBe("unauthorized");
        expect(typeof res.json.error.message).toBe("string");
      }
    }
    expect((await admin("/admin/nope")).status).toBe(404);
  });

  it("describes the configured implementation and counts vectors", async () => {
    const { status, json } = await admin("/admin/index");
    expect(status).toBe(200);
    expect(json.implementation).toBe(IMPL);
    expect(json.dimensions).toBe(DIMS);

    const s = scope();
    const before = await vectorCount();
    await upsert([1, 2, 3].map((i) => record(s.id(`c${i}`), vec({ [i]: 1 }), s.company)));
    expect(await vectorCount()).toBe(before + 3);
    // Re-upserting the same ids replaces, never duplicates.
    await upsert([1, 2].map((i) => record(s.id(`c${i}`), vec({ [i]: 2 }), s.company)));
    expect(await vectorCount()).toBe(before + 3);
    const del = await admin("/admin/index/delete", { ids: [s.id("c1")] });
    expect(del.status).toBe(200);
    expect(del.json.count).toBe(1);
    await settled(del.json);
    expect(await vectorCount()).toBe(before + 2);
  });

  it("returns the nearest vectors by cosine, best first, with scores and metadata", async () => {
    const s = scope();
    const q = vec({ 0: 1 });
    const vectors = [
      record(s.id("far"), vec({ 0: -1, 2: 0.2 }), s.company, 4),
      record(s.id("near"), vec({ 0: 1, 1: 0.1 }), s.company, 1),
      record(s.id("orthogonal"), vec({ 1: 1 }), s.company, 3),
      record(s.id("mid"), vec({ 0: 1, 1: 0.5 }), s.company, 2),
    ];
    const receipt = await upsert(vectors);
    expect(receipt.count).toBe(4);
    if (IMPL === "vectorize") expect(receipt.mutation_ids).toHaveLength(1);
    else expect(receipt.mutation_ids).toEqual([]);

    const matches = await query({ vector: q, top_k: 3, filter: { company_id: s.company } });
    expect(matches.map((m) => m.id)).toEqual([s.id("near"), s.id("mid"), s.id("orthogonal")]);
    for (const m of matches) {
      const v = vectors.find((r) => r.id === m.id)!;
      expect(m.score).toBeCloseTo(cosine(q, v.values), 5);
    }
    expect(matches[0].metadata).toEqual({ document_id: 1, company_id: s.company, version: 1 });

    const bare = await query({ vector: q, top_k: 4, filter: { company_id: s.company }, return_metadata: false });
    expect(bare.map((m) => m.id)).toEqual([s.id("near"), s.id("mid"), s.id("orthogonal"), s.id("far")]);
    expect(bare.every((m) => m.metadata === undefined)).toBe(true);
  });

  it("restricts results with the company filter (an ignored filter would let the nearer vector through)", async () => {
    const a = scope();
    const b = scope();
    const q = vec({ 10: 1 });
    await upsert([
      record(a.id("a1"), vec({ 10: 1, 11: 0.6 }), a.company),
      record(a.id("a2"), vec({ 10: 1, 11: 0.9 }), a.company),
      // Company b's vector is the nearest of all.
      record(b.id("b1"), vec({ 10: 1 }), b.company),
      record(b.id("none"), vec({ 10: 1, 11: 0.01 }), null),
    ]);

    const onlyA = await query({ vector: q, top_k: 10, filter: { company_id: a.company } });
    expect(onlyA.map((m) => m.id)).toEqual([a.id("a1"), a.id("a2")]);
    expect(onlyA.every((m) => m.metadata.company_id === a.company)).toBe(true);

    const both = await query({ vector: q, top_k: 10, filter: { company_id: { $in: [a.company, b.company] } } });
    expect(both.map((m) => m.id)).toEqual([b.id("b1"), a.id("a1"), a.id("a2")]);

    const byDoc = await query({ vector: q, top_k: 10, filter: { company_id: { $eq: a.company }, document_id: { $in: [2] } } });
    expect(byDoc).toEqual([]);

    if (IMPL === "vectorize") {
      // What reached Vectorize was a plain object in its filter language, not `{}` or a Map.
      const queries = (await recordedCalls()).filter((c) => c.method === "query");
      expect(queries.at(-3).filter).toEqual({ company_id: { $eq: a.company } });
      expect(queries.at(-2).filter).toEqual({ company_id: { $in: [a.company, b.company] } });
      expect(queries.at(-1)).toMatchObject({ topK: 10, returnMetadata: "all", returnValues: false });
    }
  });

  it("rejects filters it cannot evaluate with a 400", async () => {
    for (const filter of [{ tags: "rust" }, { company_id: { $gt: 1 } }, { company_id: { $in: [] } }]) {
      const res = await admin("/admin/index/query", { vector: vec({ 0: 1 }), top_k: 1, filter });
      expect(res.status, JSON.stringify(filter)).toBe(400);
      expect(res.json.error.code).toBe("invalid_request");
    }
  });

  it("gets and deletes vectors by id", async () => {
    const s = scope();
    const v1 = record(s.id("g1"), vec({ 20: 0.5, 21: -0.25 }), s.company, 7);
    const v2 = record(s.id("g2"), vec({ 22: 1.5 }), null, 8);
    await upsert([v1, v2]);

    const got = await admin("/admin/index/get", { ids: [s.id("g1"), s.id("missing"), s.id("g2")] });
    expect(got.status).toBe(200);
    const byId = Object.fromEntries(got.json.vectors.map((v: any) => [v.id, v]));
    expect(Object.keys(byId).sort()).toEqual([s.id("g1"), s.id("g2")]);
    expect(byId[s.id("g1")]).toEqual(v1);
    expect(byId[s.id("g2")]).toEqual(v2);

    const del = await admin("/admin/index/delete", { ids: [s.id("g1"), s.id("missing")] });
    expect(del.status).toBe(200);
    await settled(del.json);
    const after = await admin("/admin/index/get", { ids: [s.id("g1"), s.id("g2")] });
    expect(after.json.vectors.map((v: any) => v.id)).toEqual([s.id("g2")]);
    const matches = await query({ vector: vec({ 20: 1 }), top_k: 5, filter: { company_id: s.company } });
    expect(matches).toEqual([]);
  });

  it("splits an upsert of more than 1000 vectors into platform-sized calls", async () => {
    const s = scope();
    const before = await vectorCount();
    const vectors = Array.from({ length: 1001 }, (_, i) => record(s.id(`n${i}`), vec({ [i % DIMS]: 1, 1535: 0.5 }), s.company));
    const res = await admin("/admin/index/upsert", { vectors });
    expect(res.status, JSON.stringify(res.json).slice(0, 300)).toBe(200);
    expect(res.json.count).toBe(1001);
    await settled(res.json);
    expect(await vectorCount()).toBe(before + 1001);
    const sample = await admin("/admin/index/get", { ids: [s.id("n0"), s.id("n999"), s.id("n1000")] });
    expect(sample.json.vectors).toHaveLength(3);

    if (IMPL === "vectorize") {
      expect(res.json.mutation_ids).toHaveLength(2);
      const upserts = (await recordedCalls()).filter((c) => c.method === "upsert" && c.ids[0].startsWith(s.id("")));
      expect(upserts.map((c) => c.count)).toEqual([1000, 1]);
      expect(upserts[1].ids).toEqual([s.id("n1000")]);
    }
  });

  it("rejects vectors of the wrong dimension with a clear 400 before storing anything", async () => {
    const s = scope();
    const before = await vectorCount();
    const bad = await admin("/admin/index/upsert", {
      vectors: [record(s.id("ok"), vec({ 0: 1 }), s.company), record(s.id("short"), new Array(DIMS - 1).fill(0.1), s.company)],
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe("dimension_mismatch");
    expect(bad.json.error.message).toContain(`${DIMS - 1} dimensions; the index has ${DIMS}`);
    expect(await vectorCount()).toBe(before);

    const q = await admin("/admin/index/query", { vector: [1, 2, 3], top_k: 1 });
    expect(q.status).toBe(400);
    expect(q.json.error.code).toBe("dimension_mismatch");

    const zero = await admin("/admin/index/query", { vector: vec({}), top_k: 1 });
    expect(zero.status).toBe(400);
    expect(zero.json.error.code).toBe("invalid_vector");

    const longId = await admin("/admin/index/upsert", { vectors: [record("x".repeat(65), vec({ 0: 1 }), s.company)] });
    expect(longId.status).toBe(400);
    expect(longId.json.error.code).toBe("invalid_vector_id");

    if (IMPL === "vectorize") {
      const calls = await recordedCalls();
      expect(calls.some((c) => c.method === "upsert" && c.ids.some((id: string) => id.startsWith(s.id(""))))).toBe(false);
    }
  });

  it("rejects topK over the platform limit before reaching the index", async () => {
    const callsBefore = IMPL === "vectorize" ? (await recordedCalls()).length : 0;
    for (const [top_k, return_metadata] of [[21, true], [101, false], [0, false]] as const) {
      const res = await admin("/admin/index/query", { vector: vec({ 0: 1 }), top_k, return_metadata });
      expect(res.status, `top_k ${top_k}`).toBe(400);
      expect(res.json.error.code).toBe("top_k_out_of_range");
    }
    if (IMPL === "vectorize") {
      expect((await recordedCalls()).length).toBe(callsBefore);
    }
    // The limits themselves are accepted.
    await query({ vector: vec({ 0: 1 }), top_k: 20, return_metadata: true });
    await query({ vector: vec({ 0: 1 }), top_k: 100, return_metadata: false });
  });

  it("answers malformed requests with a JSON 400", async () => {
    const cases = [
      "{not json",
      { top_k: 1 },
      { vector: vec({ 0: 1 }), text: "both", top_k: 1 },
      { vector: vec({ 0: 1 }), top_k: -1 },
    ];
    for (const body of cases) {
      const res = await admin("/admin/index/query", body);
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe("invalid_request");
    }
  });

  it("embeds a text query with the offline embedder", async () => {
    const matches = await query({ text: "search engine in rust", top_k: 3, filter: { company_id: 1 } });
    expect(Array.isArray(matches)).toBe(true);
  });
});

describe.runIf(IMPL === "vectorize")("Vectorize specifics (stand-in)", () => {
  it("applies mutations asynchronously: an upsert is not visible until its mutation is processed", async () => {
    const s = scope();
    // A window as long as Vectorize's "few seconds", held open until flushed.
    const { mutationDelayMs } = await standin.configure({ mutationDelayMs: 60_000 });
    try {
      const res = await admin("/admin/index/upsert", { vectors: [record(s.id("late"), vec({ 30: 1 }), s.company)] });
      expect(res.status).toBe(200);
      const [mutation] = res.json.mutation_ids;
      expect(mutation).toMatch(/^[0-9a-f-]{36}$/);
      expect(await query({ vector: vec({ 30: 1 }), top_k: 1, filter: { company_id: s.company } })).toEqual([]);
      expect((await admin("/admin/index/get", { ids: [s.id("late")] })).json.vectors).toEqual([]);
      expect((await admin("/admin/index")).json.processed_up_to_mutation).not.toBe(mutation);
      await standin.flushMutations();
      await settled(res.json);
      const matches = await query({ vector: vec({ 30: 1 }), top_k: 1, filter: { company_id: s.company } });
      expect(matches.map((m) => m.id)).toEqual([s.id("late")]);
    } finally {
      await standin.configure({ mutationDelayMs });
    }
  });

  it("stand-in: rejects Map filters and options, enforces limits and dimensions, supports every operator", async () => {
    const s = scope();
    const q = new Float32Array(DIMS);
    q[40] = 1;
    expect(await rejection(() => standin.query(q, { topK: 1, filter: new Map([["company_id", 1]]) }))).toMatch(/Map/);
    expect(await rejection(() => standin.query(q, new Map([["topK", 1]])))).toMatch(/Map/);
    expect(await rejection(() => standin.query(q, { topK: 21, returnMetadata: "all" }))).toMatch(/topK 21/);
    expect(await rejection(() => standin.query(q, { topK: 21, returnValues: true }))).toMatch(/topK 21/);
    expect(await rejection(() => standin.query(q, { topK: 1, returnMetadata: "everything" }))).toMatch(/returnMetadata/);
    expect(await rejection(() => standin.query(q, { topK: 1, filter: {} }))).toMatch(/non-empty/);
    expect(await rejection(() => standin.query(q, { topK: 1, filter: { $bad: 1 } }))).toMatch(/invalid filter key/);
    expect(await rejection(() => standin.getByIds(Array.from({ length: 101 }, (_, i) => `x${i}`)))).toMatch(
      /VECTOR_GET_ERROR \(code = 40007\): too many ids in payload; max id count is 100, got 101/,
    );
    expect(await rejection(() => standin.deleteByIds(Array.from({ length: 173 }, (_, i) => `x${i}`)))).toMatch(
      /VECTOR_DELETE_ERROR \(code = 40007\): too many ids in payload; max id count is 100, got 173/,
    );
    expect(await rejection(() => standin.upsert([{ id: "é".repeat(33), values: q }]))).toMatch(/longer than 64 bytes/);
    expect(await rejection(() => standin.upsert([{ id: s.id("fat"), values: q, metadata: { blob: "x".repeat(10 * 1024) } }]))).toMatch(
      /exceeds 10240 bytes/,
    );
    expect(await rejection(() => standin.query(q, { topK: 101 }))).toMatch(/topK 101/);
    expect(await rejection(() => standin.query(new Float32Array(3), { topK: 1 }))).toMatch(/3 dimensions/);
    expect(await rejection(() => standin.upsert([{ id: s.id("bad"), values: new Float32Array(2) }]))).toMatch(/2 dimensions/);

    const mk = (name: string, version: number, x: number) => ({
      id: s.id(name),
      values: vec({ 40: 1, 41: x }),
      metadata: { company_id: s.company, document_id: 1, version },
    });
    await standin.upsert([mk("v1", 1, 0.1), mk("v2", 2, 0.2), mk("v3", 3, 0.3)]);
    // insert never overwrites an existing id.
    await standin.insert([{ ...mk("v1", 9, 0.9) }, mk("v4", 4, 0.4)]);
    await standin.flushMutations();
    const ids = async (filter: object) =>
      (await standin.query(q, { topK: 10, returnMetadata: "all", filter: { company_id: s.company, ...filter } })).matches.map(
        (m: any) => m.id.split(":")[1],
      );
    expect(await ids({})).toEqual(["v1", "v2", "v3", "v4"]);
    expect(await ids({ version: { $ne: 2 } })).toEqual(["v1", "v3", "v4"]);
    expect(await ids({ version: { $nin: [1, 4] } })).toEqual(["v2", "v3"]);
    expect(await ids({ version: { $lt: 3 } })).toEqual(["v1", "v2"]);
    expect(await ids({ version: { $lte: 3, $gt: 1 } })).toEqual(["v2", "v3"]);
    expect(await ids({ version: { $gte: 4 } })).toEqual(["v4"]);
    expect(await ids({ version: { $eq: 9 } })).toEqual([]);
    const [v1] = await standin.getByIds([s.id("v1")]);
    expect(v1.metadata.version).toBe(1);
    // "indexed" returns only what the metadata indexes hold.
    const [indexed] = (await standin.query(q, { topK: 1, returnMetadata: "indexed", filter: { company_id: s.company } })).matches;
    expect(Object.keys(indexed.metadata).sort()).toEqual(["company_id", "document_id", "version"]);
  });

  it("stand-in: metadata indexes like wrangler's create-/list-/delete-metadata-index, over RPC and HTTP", async () => {
    const http = async (method: string, path: string, body?: unknown) => {
      const res = await standin.fetch(`http://standin${path}`, {
        method,
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: await res.json() };
    };
    const names = async () => (await http("GET", "/metadata-index/list")).json.map((i: any) => `${i.propertyName}:${i.indexType}`);
    // The project's setup created the service's three, before any vector.
    expect(await names()).toEqual(["company_id:number", "document_id:number", "version:number"]);
    const created = await http("POST", "/metadata-index/create", { propertyName: "title", indexType: "String" });
    expect(created.json.mutationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await rejection(() => standin.createMetadataIndex("title", "string"))).toMatch(/already exists/);
    expect(await rejection(() => standin.createMetadataIndex("x", "date"))).toMatch(/string, number or boolean/);
    for (let i = 0; i < 6; i++) await standin.createMetadataIndex(`p${i}`, "boolean");
    // [limits] at most 10 per index.
    expect(await rejection(() => standin.createMetadataIndex("p6", "boolean"))).toMatch(/at most 10/);
    await standin.drainMutations();
    expect(await names()).toContain("title:string");
    await http("POST", "/metadata-index/delete", { propertyName: "title" });
    for (let i = 0; i < 6; i++) await standin.deleteMetadataIndex(`p${i}`);
    await standin.drainMutations();
    expect(await names()).toEqual(["company_id:number", "document_id:number", "version:number"]);

    // A filter on a property without a metadata index matches nothing, and says so.
    const s = scope();
    await standin.upsert([{ id: s.id("t"), values: vec({ 50: 1 }), metadata: { company_id: s.company, document_id: 1, version: 1, title: "x" } }]);
    await standin.drainMutations();
    const q = new Float32Array(DIMS);
    q[50] = 1;
    expect((await standin.query(q, { topK: 5, filter: { title: "x" } })).matches).toEqual([]);
    expect((await standin.query(q, { topK: 5, filter: { company_id: s.company } })).matches.map((m: any) => m.id)).toEqual([s.id("t")]);
    const log = (await http("GET", "/log")).json;
    expect(log.at(-1)).toMatchObject({ kind: "no_metadata_index", property: "title" });
    expect(log.at(-1).message).toContain("create-metadata-index <index> --property-name=title");
  });
});
