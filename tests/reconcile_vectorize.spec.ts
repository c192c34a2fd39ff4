// Reconciliation against Vectorize (the `vectorize` project: VECTOR_INDEX=vectorize,
// the index served by tests/standins/vectorize.js). Vectorize applies writes
// asynchronously, so a document committed moments ago may not show all its
// vectors yet: reconciliation must not call that a mismatch inside the settle
// window, and must once the window has passed (issue 11, case 8).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, ingestReady, poll, uniqueKey } from "./support";

const SETTLE_MS = 10 * 60 * 1000; // portfolio_core::reconcile::VECTOR_SETTLE_MS

async function reconcile(): Promise<any> {
  const res = await admin("/admin/reconcile", { method: "POST" });
  const body: any = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(202);
  const row = await poll(
    () => env.DB.prepare("SELECT status, enqueued FROM reconcile_runs WHERE id = ?1").bind(body.run_id).first<any>(),
    (r) => r?.status === "done" || r?.status === "failed",
    `run ${body.run_id} did not finish`,
  );
  expect(row.status).toBe("done");
  return JSON.parse(row.enqueued);
}

describe("reconciliation with Vectorize", () => {
  it("gives a fresh commit's vectors time to appear, then reports the mismatch", async () => {
    const key = uniqueKey("settle/fresh.md");
    const doc = await ingestReady(key, "# Fresh\n\nJust committed; Vectorize may still be applying it.\n");
    // As if Vectorize had not applied the upsert yet: the ids are not found.
    const ids = Array.from({ length: doc.chunk_count }, (_, i) => `${doc.id}:${doc.active_version}:${i}`);
    const deleted = await admin("/admin/index/delete", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ids }),
    });
    expect(deleted.status).toBe(200);
    // The stand-in applies mutations after a couple of calls, like Vectorize
    // applies them asynchronously: wait until the ids are really gone.
    await poll(
      async () => (await (await admin("/admin/index/get", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ids }),
      })).json<any>()).vectors.length,
      (n) => n === 0,
      "the vectors never disappeared",
    );

    const fresh = await reconcile();
    expect(fresh["reconcile:vectors-mismatch"] ?? 0).toBe(0);

    // Once the window has passed, missing vectors are a mismatch to repair.
    const old = Date.now() - SETTLE_MS - 60_000;
    await env.DB.prepare("UPDATE documents SET updated_at = ?1, processed_at = ?1 WHERE id = ?2").bind(old, doc.id).run();
    const later = await reconcile();
    expect(later["reconcile:vectors-mismatch"]).toBe(1);
    // The repair re-ingests it; the stores agree again.
    await poll(
      () => env.DB.prepare("SELECT status, updated_at FROM documents WHERE id = ?1").bind(doc.id).first<any>(),
      (r) => r.status === "ready" && r.updated_at > old,
      "the repair never finished",
      30_000,
    );
  });
});
