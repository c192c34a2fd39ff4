// Reconciliation end to end: runs started through the admin API walk R2 and
// D1 page by page (continuations go through the real local queue), enqueue
// repairs, and the repairs reach the documents' processors. Every test leaves
// the stores consistent, because every run looks at the whole bucket.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { deliverBatch, putDocument, uniqueKey, waitForStatus } from "./support";
import { fetchVectors, IMPL, plantVectors, removeVectors, storedVectorCount, storedVectorIds } from "./vector_state";

const TOKEN = "test-admin-token-not-a-secret-0001";
const INGEST = "portfolio-ingest";
const HOUR = 60 * 60 * 1000;
/** portfolio_core::reconcile::VECTOR_SETTLE_MS: how long a Vectorize commit may take to show. */
const VECTOR_SETTLE_MS = 10 * 60 * 1000;

function admin(path: string, init: RequestInit = {}, token: string | null = TOKEN) {
  const headers = new Headers(init.headers);
  if (token !== null) headers.set("Authorization", `Bearer ${token}`);
  return SELF.fetch(`https://svc.test${path}`, { ...init, headers });
}

/** Starts a run through the admin API and returns its id. */
async function startRun(pageSize?: number): Promise<number> {
  const res = await admin("/admin/reconcile", {
    method: "POST",
    body: pageSize === undefined ? undefined : JSON.stringify({ page_size: pageSize }),
  });
  const body: any = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(202);
  return body.run_id;
}

/** Polls the run row until it is done (continuations are queue messages). */
async function waitForRun(runId: number, timeout = 20_000): Promise<any> {
  const deadline = Date.now() + timeout;
  let row: any = null;
  while (Date.now() < deadline) {
    row = await env.DB.prepare("SELECT * FROM reconcile_runs WHERE id = ?1").bind(runId).first();
    if (row?.status === "failed") throw new Error(`run ${runId} failed: ${row.errors}`);
    if (row?.status === "done") return { ...row, enqueued: JSON.parse(row.enqueued), errors: JSON.parse(row.errors) };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`run ${runId} did not finish: ${JSON.stringify(row)}`);
}

async function reconcile(pageSize?: number) {
  return waitForRun(await startRun(pageSize));
}

async function ingest(key: string, markdown: string) {
  const event = await putDocument(key, markdown);
  await deliverBatch(INGEST, [{ id: `m-${key}`, body: event }]);
  return waitForStatus(key, ["ready"]);
}

async function count(sql: string, ...params: unknown[]): Promise<number> {
  const row = await env.DB.prepare(sql).bind(...params).first<{ n: number }>();
  return row!.n;
}

async function countObjects(): Promise<number> {
  let n = 0;
  let cursor: string | undefined;
  do {
    const page = await env.DOCUMENTS.list({ cursor });
    n += page.objects.length;
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return n;
}

describe("reconciliation", () => {
  it("finds and ingests an object put into R2 without a notification", async () => {
    const key = uniqueKey("acme/silent.md");
    await env.DOCUMENTS.put(key, "# Silent\n\nNobody told the queue about the Quillfeather project.\n");

    const run = await reconcile();
    expect(run.enqueued).toEqual({ "reconcile:missing": 1 });
    expect(run.errors).toEqual([]);
    const doc = await waitForStatus(key, ["ready"]);
    expect(doc.chunk_count).toBeGreaterThan(0);
    expect(await storedVectorCount(doc.id, doc.active_version)).toBe(doc.chunk_count);
    const runs = await env.DB.prepare("SELECT reason FROM processing_runs WHERE document_key = ?1").bind(key).all<any>();
    expect(runs.results).toEqual([{ reason: "reconciliation" }]);
  });

  it("deletes a document whose R2 object was removed behind its back", async () => {
    const key = uniqueKey("acme/vanished.md");
    const doc = await ingest(key, "# Vanished\n\nSoon gone.\n");
    await env.DOCUMENTS.delete(key); // no notification

    const run = await reconcile();
    expect(run.enqueued).toEqual({ "reconcile:gone": 1 });
    const gone = await waitForStatus(key, ["deleted"]);
    expect(gone.active_version).toBeNull();
    expect(await count("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1", doc.id)).toBe(0);
    expect(await storedVectorCount(doc.id)).toBe(0);
  });

  it("resets a document stuck in processing and completes it, leaving recent in-flight ones alone", async () => {
    const stuck = uniqueKey("acme/stuck.md");
    const inFlight = uniqueKey("acme/in-flight.md");
    await env.DOCUMENTS.put(stuck, "# Stuck\n\nThe alarm of this one never fired.\n");
    const old = Date.now() - 25 * HOUR;
    const recent = Date.now();
    await env.DB.prepare(
      "INSERT INTO documents (key, status, step, created_at, updated_at) VALUES (?1, 'processing', 'embed', ?2, ?2), (?3, 'processing', 'embed', ?4, ?4)",
    ).bind(stuck, old, inFlight, recent).run();

    const run = await reconcile();
    expect(run.enqueued).toEqual({ "reconcile:stuck": 1 });
    const doc = await waitForStatus(stuck, ["ready"]);
    expect(doc.updated_at).toBeGreaterThan(old);
    expect(doc.chunk_count).toBeGreaterThan(0);
    const untouched: any = await env.DB.prepare("SELECT status, updated_at FROM documents WHERE key = ?1").bind(inFlight).first();
    expect(untouched).toEqual({ status: "processing", updated_at: recent });
  });

  it("detects vectors deleted behind the service's back and repairs them", async () => {
    const key = uniqueKey("acme/vectors.md");
    const before = await ingest(key, "# Vectors\n\nThe Brambleworth index.\n\n## More\n\nAnother section about pallets.\n");
    expect(before.chunk_count).toBeGreaterThan(0);
    await removeVectors(await storedVectorIds(before.id));
    if (IMPL === "vectorize") {
      // Vectorize's writes land late, so only a commit older than the settle
      // window is checked (tests/reconcile_vectorize.spec.ts: the fresh case).
      const old = Date.now() - VECTOR_SETTLE_MS - 60_000;
      await env.DB.prepare("UPDATE documents SET updated_at = ?1, processed_at = ?1 WHERE id = ?2").bind(old, before.id).run();
    }

    const run = await reconcile();
    expect(run.enqueued).toEqual({ "reconcile:vectors-mismatch": 1 });
    expect(run.stores_checked).toBeGreaterThanOrEqual(1);
    await expect.poll(async () => {
      const row: any = await env.DB.prepare("SELECT status, active_version FROM documents WHERE key = ?1").bind(key).first();
      return row.status === "ready" && row.active_version > before.active_version;
    }, { timeout: 20_000 }).toBe(true);
    const after: any = await env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first();
    expect(await storedVectorCount(after.id, after.active_version)).toBe(after.chunk_count);
  });

  it("re-ingests a ready document whose object changed without a notification", async () => {
    const key = uniqueKey("acme/changed.md");
    const before = await ingest(key, "# Before\n\nOld text.\n");
    await env.DOCUMENTS.put(key, "# After\n\nNew text about the Thornquist deal.\n");

    const run = await reconcile();
    expect(run.enqueued).toEqual({ "reconcile:changed": 1 });
    await expect.poll(async () => {
      const row: any = await env.DB.prepare("SELECT status, title FROM documents WHERE key = ?1").bind(key).first();
      return `${row.status}:${row.title}`;
    }, { timeout: 20_000 }).toBe("ready:After");
    const after: any = await env.DB.prepare("SELECT active_version FROM documents WHERE key = ?1").bind(key).first();
    expect(after.active_version).toBeGreaterThan(before.active_version);
  });

  it("completes a run over a bucket larger than one page across continuations, with one summary", async () => {
    const keys = Array.from({ length: 5 }, (_, i) => uniqueKey(`paged/doc-${i}.md`));
    for (const [i, key] of keys.entries()) await env.DOCUMENTS.put(key, `# Paged ${i}\n\nPage test document number ${i}.\n`);
    const runsBefore = await count("SELECT COUNT(*) AS n FROM reconcile_runs");
    const objects = await countObjects();
    const documents = await count("SELECT COUNT(*) AS n FROM documents WHERE status != 'deleted'");
    const pageSize = 2;

    const run = await reconcile(pageSize);
    expect(run.pages).toBeGreaterThanOrEqual(Math.ceil(objects / pageSize));
    expect(run.objects_seen).toBe(objects);
    expect(run.documents_seen).toBe(documents);
    expect(run.enqueued).toEqual({ "reconcile:missing": 5 });
    expect(run.finished_at).toBeGreaterThanOrEqual(run.started_at);
    expect(await count("SELECT COUNT(*) AS n FROM reconcile_runs")).toBe(runsBefore + 1);
    for (const key of keys) await waitForStatus(key, ["ready"]);
  });

  it("enqueues nothing when run twice in a row, nor once everything has settled", async () => {
    const key = uniqueKey("acme/twice.md");
    await env.DOCUMENTS.put(key, "# Twice\n\nFound once, not twice.\n");

    const first = await reconcile();
    expect(first.enqueued).toEqual({ "reconcile:missing": 1 });
    const second = await reconcile(); // the first run's work may still be in flight
    expect(second.enqueued).toEqual({});
    await waitForStatus(key, ["ready"]);
    const third = await reconcile(3); // settled, and paged differently
    expect(third.enqueued).toEqual({});
    expect(third.stores_checked).toBeGreaterThan(0);
  });

  it("retries a failed document a bounded number of times, not forever", async () => {
    const key = uniqueKey("acme/binary.md");
    const object = await env.DOCUMENTS.put(key, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff, 0xfe]));
    await deliverBatch(INGEST, [{ id: "bin", body: { action: "PutObject", object: { key, size: object!.size, eTag: object!.etag }, eventTime: new Date().toISOString() } }]);
    await waitForStatus(key, ["failed"]);
    const failedRuns = () => count("SELECT COUNT(*) AS n FROM processing_runs WHERE document_key = ?1 AND status = 'failed'", key);
    expect(await failedRuns()).toBe(1);

    for (const expected of [2, 3]) {
      const run = await reconcile();
      expect(run.enqueued).toEqual({ "reconcile:failed-retry": 1 });
      await expect.poll(failedRuns, { timeout: 20_000 }).toBe(expected);
      await waitForStatus(key, ["failed"]);
    }
    const last = await reconcile();
    expect(last.enqueued).toEqual({});
  });

  it("walks 1,000 consistent documents page by page and enqueues nothing", async () => {
    const n = 1000;
    const prefix = uniqueKey("bulk/");
    const now = Date.now();
    const puts = await Promise.all(
      Array.from({ length: n }, (_, i) => env.DOCUMENTS.put(`${prefix}${String(i).padStart(4, "0")}.md`, `# ${i}\n`)),
    );
    // Ready rows matching their objects, with an (empty) active generation.
    const rows = puts.map((o) =>
      env.DB.prepare(
        "INSERT INTO documents (key, status, etag, active_version, chunk_count, created_at, updated_at) VALUES (?1, 'ready', ?2, 1, 0, ?3, ?3)",
      ).bind(o!.key, o!.etag, now),
    );
    await env.DB.batch(rows);
    const objects = await countObjects();

    const started = Date.now();
    const run = await reconcile(250);
    const elapsed = Date.now() - started;
    expect(run.enqueued).toEqual({});
    expect(run.objects_seen).toBe(objects);
    expect(run.stores_checked).toBeGreaterThanOrEqual(n);
    expect(run.pages).toBeGreaterThanOrEqual(Math.ceil(objects / 250));
    console.log(JSON.stringify({ figure: "reconcile_run", objects, pages: run.pages, run_ms: run.finished_at - run.started_at, wall_ms: elapsed }));

    // Clean up so later runs stay small.
    await env.DB.prepare("DELETE FROM documents WHERE key LIKE ?1").bind(`${prefix}%`).run();
    await env.DOCUMENTS.delete(puts.map((o) => o!.key));
  });

  it("sweeps generations that failed to drop, keeping the live and the staged ones", async () => {
    const key = uniqueKey("acme/sweep.md");
    const doc = await ingest(key, "# Sweep\n\nThe Pennywhistle ledger.\n\n## More\n\nAnother section about barrels.\n");
    const live = doc.active_version;
    const old = live - 1;
    const staged = live + 1;
    // Rows of an old generation (and of one being written: newer than the
    // live one), written long ago, with their vectors (through the index, so
    // either implementation holds them); FTS rows follow by trigger.
    const [template] = await fetchVectors([`${doc.id}:${live}:0`]);
    const plant = async (documentId: number, version: number, chunks: number) => {
      const vectors = [];
      for (let i = 0; i < chunks; i++) {
        await env.DB.prepare(
          "INSERT INTO chunks (document_id, version, chunk_index, heading_path, content, token_count, start_byte, end_byte, \
           start_line, end_line, tags, vector_id, created_at) VALUES (?1, ?2, ?3, '', ?4, 3, 0, 10, 1, 1, '[]', ?5, 0)",
        ).bind(documentId, version, i, `Zorblequint leftover ${version} ${i}`, `${documentId}:${version}:${i}`).run();
        vectors.push({
          id: `${documentId}:${version}:${i}`,
          values: template.values,
          metadata: { ...template.metadata, document_id: documentId, version },
        });
      }
      await plantVectors(vectors);
    };
    await plant(doc.id, old, 3);
    await plant(doc.id, staged, 2);
    // A deleted document whose rows and vectors were left behind.
    const tombstone = await env.DB.prepare(
      "INSERT INTO documents (key, status, latest_version, created_at, updated_at) VALUES (?1, 'deleted', 4, 0, 0) RETURNING id",
    ).bind(uniqueKey("acme/sweep-deleted.md")).first<{ id: number }>();
    await plant(tombstone!.id, 4, 2);
    const fts = () => count("SELECT COUNT(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'zorblequint'");
    expect(await fts()).toBe(7);

    const run = await reconcile();
    expect(run.errors).toEqual([]);
    expect(run.enqueued).toEqual({});
    expect(run.swept).toBeGreaterThanOrEqual(2);
    const gen = (documentId: number, version: number) =>
      count("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2", documentId, version);
    const vectors = (documentId: number, version: number) => storedVectorCount(documentId, version);
    expect(await gen(doc.id, old)).toBe(0);
    expect(await vectors(doc.id, old)).toBe(0);
    expect(await gen(tombstone!.id, 4)).toBe(0);
    expect(await vectors(tombstone!.id, 4)).toBe(0);
    expect(await fts()).toBe(2); // the staged generation's
    expect(await gen(doc.id, staged)).toBe(2);
    expect(await vectors(doc.id, staged)).toBe(2);
    expect(await gen(doc.id, live)).toBe(doc.chunk_count);
    expect(await vectors(doc.id, live)).toBe(doc.chunk_count);
    expect(await count("SELECT COUNT(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'pennywhistle'")).toBe(1);

    const res = await admin("/admin/reconcile/runs?limit=1");
    const body: any = await res.json();
    expect(body.runs[0].swept).toBe(run.swept);

    // Leave the stores as a processor would: the staged generation is dropped.
    await env.DB.prepare("DELETE FROM chunks WHERE document_id = ?1 AND version = ?2").bind(doc.id, staged).run();
    await removeVectors(await storedVectorIds(doc.id, staged));
  });

  it("counts a redelivered page once", async () => {
    const objects = await countObjects();
    const now = Date.now();
    const row = await env.DB.prepare(
      "INSERT INTO reconcile_runs (trigger, status, started_at, page_size, updated_at) VALUES ('admin', 'running', ?1, 1000, ?1) RETURNING id",
    ).bind(now).first<{ id: number }>();
    const page = { type: "reconcile", run_id: row!.id, page: 1, cursor: "" };
    const result = await deliverBatch(INGEST, [
      { id: "page-1", body: page },
      { id: "page-1-again", body: page, attempts: 2 },
    ]);
    expect(result.explicitAcks.sort()).toEqual(["page-1", "page-1-again"]);
    const run = await waitForRun(row!.id);
    expect(run.pages).toBe(1);
    expect(run.objects_seen).toBe(objects);
    expect(run.enqueued).toEqual({});
  });
});

describe("reconciliation admin routes", () => {
  it("need the admin token", async () => {
    for (const token of [null, "wrong-token"]) {
      expect((await admin("/admin/reconcile", { method: "POST" }, token)).status).toBe(401);
      expect((await admin("/admin/reconcile/runs", {}, token)).status).toBe(401);
    }
  });

  it("list the latest runs first with their summaries", async () => {
    const a = await reconcile();
    const b = await reconcile();
    const res = await admin("/admin/reconcile/runs?limit=2");
    expect(res.status).toBe(200);
    const body: any = await res.json();
    expect(body.runs.map((r: any) => r.id)).toEqual([b.id, a.id]);
    expect(body.runs[0]).toMatchObject({
      trigger: "admin",
      status: "done",
      objects_seen: b.objects_seen,
      documents_seen: b.documents_seen,
      enqueued: {},
      errors: [],
    });
    expect(body.runs[0].duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("refuse a second concurrent run, and abandon a run that stopped making progress", async () => {
    const now = Date.now();
    const row = await env.DB.prepare(
      "INSERT INTO reconcile_runs (trigger, status, started_at, updated_at) VALUES ('cron', 'running', ?1, ?1) RETURNING id",
    ).bind(now).first<{ id: number }>();
    const refused = await admin("/admin/reconcile", { method: "POST" });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as any).error.code).toBe("reconcile_running");

    await env.DB.prepare("UPDATE reconcile_runs SET started_at = ?2, updated_at = ?2 WHERE id = ?1").bind(row!.id, now - 2 * HOUR).run();
    const run = await reconcile();
    expect(run.id).toBeGreaterThan(row!.id);
    const abandoned: any = await env.DB.prepare("SELECT status, errors FROM reconcile_runs WHERE id = ?1").bind(row!.id).first();
    expect(abandoned.status).toBe("failed");
    expect(JSON.parse(abandoned.errors)[0]).toMatch(/abandoned/);
  });

  it("reject a malformed body", async () => {
    const res = await admin("/admin/reconcile", { method: "POST", body: "{ nope" });
    expect(res.status).toBe(400);
  });
});
