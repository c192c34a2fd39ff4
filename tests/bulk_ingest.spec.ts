// Bulk ingestion against a slow provider of small capacity (the `bulk`
// project): a few hundred documents PUT through the admin API at once, the
// embedding provider on a stand-in that computes 2 requests at a time (the
// others queue, so latency grows with load, as on a self-hosted model
// server), and a 1 s request time limit that such a queue would blow through
// if every processor called at once. The provider gate (INGEST_PROVIDER_CONCURRENCY=2)
// keeps the calls in flight at the server's capacity: every document ends
// ready, none failed, and the wall time is compared with the provider's
// capacity (documents × calls × latency / concurrency).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin } from "./support";

/** The stand-in's own numbers (vitest.config.ts: BULK_LATENCY_MS, BULK_CONCURRENCY). */
const LATENCY_MS = Number(env.BULK_LATENCY_MS);
const CONCURRENCY = Number(env.BULK_CONCURRENCY);
const DOCUMENTS = 240;

async function standin(route: string, method = "GET") {
  const res = await fetch(`${env.STANDIN_URL}${route}`, { method });
  if (!res.ok) throw new Error(`stand-in ${route}: ${res.status}`);
  return res.json<any>();
}

async function gateStats() {
  const stub = env.INGEST_GATE.get(env.INGEST_GATE.idFromName("provider"));
  return (await stub.fetch("https://ingest-gate.internal/stats")).json<any>();
}

describe("bulk ingestion against a slow provider", () => {
  it(`ingests ${DOCUMENTS} documents at once with 0 failed and the provider never over its capacity`, async () => {
    await standin("/__standin/reset", "POST");
    const prefix = `bulk${Date.now().toString(36)}`;
    const started = Date.now();
    // All at once, as a script looping over a folder with `&` would.
    const answers = await Promise.all(
      Array.from({ length: DOCUMENTS }, (_, i) =>
        admin(`/admin/documents/${prefix}/doc-${i}.md`, {
          method: "PUT",
          body: `# Document ${i}\n\nCompany ${i} builds widgets number ${i} for ${prefix}.\n`,
        }).then((r) => r.status),
      ),
    );
    expect(answers.every((s) => s === 202)).toBe(true);
    const uploaded = Date.now() - started;

    const statuses = async () =>
      (await env.DB.prepare("SELECT status, COUNT(*) AS n FROM documents WHERE key LIKE ?1 GROUP BY status")
        .bind(`${prefix}/%`)
        .all<{ status: string; n: number }>()).results;
    const deadline = Date.now() + 200_000;
    let last = await statuses();
    const settled = (rows: { status: string; n: number }[]) =>
      rows.filter((r) => r.status === "ready" || r.status === "failed").reduce((a, r) => a + r.n, 0) === DOCUMENTS;
    while (!settled(last) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      last = await statuses();
    }
    const wall = Date.now() - started;
    expect(last).toEqual([{ status: "ready", n: DOCUMENTS }]);
    const runs = await env.DB.prepare(
      `SELECT COUNT(*) AS n, SUM(status = 'failed') AS failed, SUM(attempts) AS attempts,
              MIN(started_at) AS first, MAX(finished_at) AS last
         FROM processing_runs WHERE document_key LIKE ?1`,
    ).bind(`${prefix}/%`).first<any>();
    // One run each, none failed, and not one step retried: download, chunk, embed, tag, commit.
    expect([runs.n, runs.failed, runs.attempts]).toEqual([DOCUMENTS, 0, 5 * DOCUMENTS]);
    const ingestion = runs.last - runs.first;

    const provider = await standin("/__standin/stats");
    const gate = await gateStats();
    // One embedding call per small document (tags come from keywords, offline chat); the
    // provider client may have repeated one whose answer came late on a busy machine.
    const calls = provider.by_path["/v1/embeddings"];
    expect(calls).toBeGreaterThanOrEqual(DOCUMENTS);
    // The server never had more requests inside it than it computes at once: nothing queued
    // there, nothing timed out, nothing computed for a client that had given up.
    expect(provider.max_in_flight).toBeLessThanOrEqual(CONCURRENCY);
    expect(provider.abandoned).toBe(0);
    expect(gate.granted).toBeGreaterThanOrEqual(DOCUMENTS);
    // Processors wait at the gate with their request held open, and a released slot is handed
    // to the next of them inside the release: most leases come that way, not from a retry.
    expect(gate.handed_off).toBeGreaterThan(DOCUMENTS / 2);
    const ideal = (calls * LATENCY_MS) / CONCURRENCY;
    console.log(
      `[bulk] ${DOCUMENTS} documents, ${calls} provider calls of ${LATENCY_MS} ms at ${CONCURRENCY} at once: ` +
        `wall ${(wall / 1000).toFixed(1)} s (uploads ${(uploaded / 1000).toFixed(1)} s; first run start to ` +
        `last run end ${(ingestion / 1000).toFixed(1)} s), provider-bound ideal ${(ideal / 1000).toFixed(1)} s, ` +
        `ratio ${(ingestion / ideal).toFixed(2)} (wall ${(wall / ideal).toFixed(2)}); gate granted ${gate.granted} ` +
        `(${gate.handed_off} handed to held requests), mean hold ${gate.mean_hold_ms} ms, ` +
        `expired ${gate.expired}; server max in flight ${provider.max_in_flight}`,
    );
  }, 240_000);
});
