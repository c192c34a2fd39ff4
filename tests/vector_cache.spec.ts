// The D1-exact index's isolate cache (portfolio_core::index::cache,
// crates/worker/src/store/vector_cache.rs) across writes: every request below
// runs in the same isolate, so after the first query the cache is warm and
// each later query must see exactly what the table holds — through the index
// API, through plain SQL, and after the change log was pruned.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cosine, DIMS, record, scope, vec } from "./vectors";

const TOKEN = "test-admin-token-not-a-secret-0001";

async function admin(path: string, body?: unknown): Promise<any> {
  const res = await SELF.fetch(`https://svc.test${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  expect(res.status, JSON.stringify(json).slice(0, 300)).toBe(200);
  return json;
}

async function query(vector: number[], company: number, top_k = 10) {
  const { matches } = await admin("/admin/index/query", { vector, top_k, filter: { company_id: company } });
  return matches as { id: string; score: number; metadata: any }[];
}

async function state() {
  return (await env.DB.prepare("SELECT * FROM vector_index_state WHERE id = 1").first<any>())!;
}

/** Deterministic pseudo-random vectors (mulberry32). */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("D1-exact index cache", () => {
  it("sees upserts, updates and deletes made after it was loaded; deleted vectors never come back", async () => {
    const s = scope();
    const q = vec({ 0: 1 });
    await admin("/admin/index/upsert", {
      vectors: [record(s.id("a"), vec({ 0: 1, 1: 0.2 }), s.company), record(s.id("b"), vec({ 0: 1, 1: 1 }), s.company)],
    });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("a"), s.id("b")]);

    // Insert into the warm cache.
    await admin("/admin/index/upsert", { vectors: [record(s.id("c"), vec({ 0: 1, 1: 0.5 }), s.company)] });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("a"), s.id("c"), s.id("b")]);

    // Update: same id, new values and metadata.
    const moved = record(s.id("a"), vec({ 1: 1, 2: 0.1 }), s.company, 9);
    await admin("/admin/index/upsert", { vectors: [moved] });
    const afterUpdate = await query(q, s.company);
    expect(afterUpdate.map((m) => m.id)).toEqual([s.id("c"), s.id("b"), s.id("a")]);
    expect(afterUpdate[2].score).toBeCloseTo(cosine(q, moved.values), 6);
    expect(afterUpdate[2].metadata.document_id).toBe(9);

    // Delete, then more writes: the deleted vector stays gone.
    await admin("/admin/index/delete", { ids: [s.id("c")] });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("b"), s.id("a")]);
    expect((await query(q, s.company, 1)).map((m) => m.id)).toEqual([s.id("b")]);
    await admin("/admin/index/upsert", { vectors: [record(s.id("d"), vec({ 0: 1, 3: 2 }), s.company)] });
    await admin("/admin/index/upsert", { vectors: [moved] });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("b"), s.id("d"), s.id("a")]);

    // Moved to another company: leaves this one's results.
    await admin("/admin/index/upsert", { vectors: [record(s.id("b"), vec({ 0: 1, 1: 1 }), s.company + 1)] });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("d"), s.id("a")]);
    expect((await query(q, s.company + 1)).map((m) => m.id)).toEqual([s.id("b")]);
  });

  it("sees rows written and deleted with plain SQL (the change log is kept by triggers)", async () => {
    const s = scope();
    const q = vec({ 5: 1 });
    await admin("/admin/index/upsert", { vectors: [record(s.id("api"), vec({ 5: 1, 6: 1 }), s.company)] });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("api")]);

    const stored = await env.DB.prepare("SELECT length(quantized) AS n FROM vector_index WHERE id = ?1").bind(s.id("api")).first<any>();
    expect(stored.n).toBe(DIMS + 8);

    const before = await state();
    const blob = new Float32Array(vec({ 5: 1, 6: 0.1 })).buffer;
    await env.DB.prepare(
      "INSERT INTO vector_index (id, document_id, company_id, version, tags, dimensions, embedding) VALUES (?1, 2, ?2, 1, '[]', ?3, ?4)",
    ).bind(s.id("sql"), s.company, DIMS, blob).run();
    const after = await state();
    expect(after.generation).toBe(before.generation + 1);
    expect(after.vector_count).toBe(before.vector_count + 1);
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("sql"), s.id("api")]);

    // An embedding rewritten by hand: its stale quantized form is dropped by a trigger and the
    // cache reads the f32 vector instead.
    await env.DB.prepare("UPDATE vector_index SET embedding = ?1 WHERE id = ?2")
      .bind(new Float32Array(vec({ 5: 1, 6: 3 })).buffer, s.id("api")).run();
    const rewritten = await env.DB.prepare("SELECT quantized FROM vector_index WHERE id = ?1").bind(s.id("api")).first<any>();
    expect(rewritten.quantized).toBeNull();
    const afterRewrite = await query(q, s.company);
    expect(afterRewrite.map((m) => m.id)).toEqual([s.id("sql"), s.id("api")]);
    expect(afterRewrite[1].score).toBeCloseTo(cosine(q, vec({ 5: 1, 6: 3 })), 6);
    expect((await query(q, s.company, 1)).map((m) => m.id)).toEqual([s.id("sql")]);

    const beforeDelete = await state();
    await env.DB.prepare("DELETE FROM vector_index WHERE id = ?1").bind(s.id("sql")).run();
    const tombstone = await env.DB.prepare("SELECT seq, deleted FROM vector_index_changes WHERE id = ?1").bind(s.id("sql")).first<any>();
    expect(tombstone).toEqual({ seq: beforeDelete.generation + 1, deleted: 1 });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("api")]);
    expect((await query(q, s.company, 1)).map((m) => m.id)).toEqual([s.id("api")]);
  });

  it("reloads when deletions it has not seen were pruned from the change log", async () => {
    const s = scope();
    const q = vec({ 7: 1 });
    await admin("/admin/index/upsert", {
      vectors: [record(s.id("keep"), vec({ 7: 1, 8: 1 }), s.company), record(s.id("gone"), vec({ 7: 1 }), s.company)],
    });
    expect((await query(q, s.company)).map((m) => m.id)).toEqual([s.id("gone"), s.id("keep")]);

    // Delete, then prune the tombstone as an old one would be: a cache that only read the
    // changes after its generation would keep serving the deleted vector.
    await env.DB.prepare("DELETE FROM vector_index WHERE id = ?1").bind(s.id("gone")).run();
    await env.DB.batch([
      env.DB.prepare("DELETE FROM vector_index_changes WHERE deleted = 1"),
      env.DB.prepare("UPDATE vector_index_state SET pruned_through = generation WHERE id = 1"),
    ]);
    // top_k 1: a stale cached "gone" would take the only slot in the pre-selection and leave
    // nothing after the rerank (which reads D1 and so never returns it).
    expect((await query(q, s.company, 1)).map((m) => m.id)).toEqual([s.id("keep")]);
  });

  it("ranks many vectors exactly as the exact cosine does, scores included", async () => {
    const s = scope();
    const rand = rng(7);
    const vectors = Array.from({ length: 300 }, (_, i) =>
      record(s.id(`r${String(i).padStart(3, "0")}`), Array.from({ length: DIMS }, () => rand() * 2 - 1), s.company, i),
    );
    await admin("/admin/index/upsert", { vectors });
    for (let round = 0; round < 3; round++) {
      const q = Array.from({ length: DIMS }, () => rand() * 2 - 1);
      const expected = vectors
        .map((v) => ({ id: v.id, score: cosine(q, v.values) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, 20);
      const got = await query(q, s.company, 20);
      expect(got.map((m) => m.id)).toEqual(expected.map((e) => e.id));
      got.forEach((m, i) => expect(m.score).toBeCloseTo(expected[i].score, 5));
    }
  });

  it("reranks a candidate set larger than a page (identical vectors) and breaks ties by id", async () => {
    const s = scope();
    const same = vec({ 11: 1, 12: 0.5 });
    const vectors = Array.from({ length: 1200 }, (_, i) => record(s.id(`t${String(1199 - i).padStart(4, "0")}`), same, s.company, i));
    await admin("/admin/index/upsert", { vectors });
    const got = await query(vec({ 11: 1 }), s.company, 5);
    expect(got.map((m) => m.id)).toEqual(["t0000", "t0001", "t0002", "t0003", "t0004"].map(s.id));
    got.forEach((m) => expect(m.score).toBeCloseTo(cosine(vec({ 11: 1 }), same), 6));
  });

  it("prunes tombstones beyond the retention when deleting through the index", async () => {
    const s = scope();
    await admin("/admin/index/upsert", { vectors: [record(s.id("x"), vec({ 9: 1 }), s.company)] });
    await admin("/admin/index/delete", { ids: [s.id("x")] });
    // Far below the retention (100,000 changes): the tombstone stays, nothing is marked pruned.
    const row = await env.DB.prepare("SELECT deleted FROM vector_index_changes WHERE id = ?1").bind(s.id("x")).first<any>();
    expect(row).toEqual({ deleted: 1 });
    // Pretend 100,000 more changes happened: the next delete prunes it and records how far.
    await env.DB.prepare("UPDATE vector_index_state SET generation = generation + 100000 WHERE id = 1").run();
    await admin("/admin/index/upsert", { vectors: [record(s.id("y"), vec({ 9: 1 }), s.company)] });
    await admin("/admin/index/delete", { ids: [s.id("y")] });
    const st = await state();
    expect(st.pruned_through).toBe(st.generation - 100000);
    expect(await env.DB.prepare("SELECT id FROM vector_index_changes WHERE id = ?1").bind(s.id("x")).first()).toBeNull();
    expect(await env.DB.prepare("SELECT deleted FROM vector_index_changes WHERE id = ?1").bind(s.id("y")).first<any>()).toEqual({ deleted: 1 });
    expect(await query(vec({ 9: 1 }), s.company)).toEqual([]);
  });
});
