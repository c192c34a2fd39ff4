// Vectorize applies writes seconds after the call (the stand-in: after
// `mutationDelayMs`). A document must not turn ready before vector search can
// find it, and an update must keep the old generation serving until the new
// one's vectors have landed. Runs in the `vectorize` project only.
import { env, SELF } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ingest, poll, uniqueKey, waitForStatus } from "./support";

const standin: any = (env as any).VECTORIZE;
/** Longer than the pipeline takes from the last upsert to the commit. */
const WRITE_DELAY_MS = 1_500;

let previousDelay: number;
beforeEach(async () => {
  previousDelay = (await standin.configure({ mutationDelayMs: WRITE_DELAY_MS })).mutationDelayMs;
});
afterEach(async () => {
  await standin.configure({ mutationDelayMs: previousDelay });
});

async function search(query: string, company: string): Promise<any[]> {
  const res = await SELF.fetch("https://svc.test/api/search", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, company, top_k: 5 }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as any).results;
}

describe("writes that land later (Vectorize)", () => {
  it("a document turns ready only once its vectors are visible, and is found by vector search at once", async () => {
    const company = `vis${Date.now().toString(36)}`;
    const key = uniqueKey("visible/doc.md");
    await ingest(key, `---\ncompany: ${company}\n---\n# Quillmoor\n\nThe quillmoor turbine spins in the northern wind farm.\n`);
    // The commit waits in the commit step while the index has not applied the upsert.
    await poll(
      () => env.DB.prepare("SELECT status, step FROM documents WHERE key = ?1").bind(key).first<any>(),
      (row) => row?.status === "ready" || row?.step === "commit",
      "never reached the commit",
    );
    const doc = await waitForStatus(key, ["ready", "failed"], 30_000);
    expect(doc.status, doc.last_error ?? "").toBe("ready");
    // No waiting here: ready already means visible.
    const visible = await standin.listIds(`${doc.id}:${doc.active_version}:`);
    expect(visible).toHaveLength(doc.chunk_count);
    const [top] = await search("quillmoor turbine wind farm", company);
    expect(top.key).toBe(key);
    expect(top.scores.vector).toBeGreaterThan(0);
    // Waiting is not a failed attempt.
    const run: any = await env.DB.prepare("SELECT steps, attempts FROM processing_runs WHERE document_key = ?1").bind(key).first();
    const commit = JSON.parse(run.steps).find((s: any) => s.step === "commit");
    expect(commit.attempts).toBe(1);
    expect(commit.finished_at_ms - commit.started_at_ms).toBeGreaterThanOrEqual(400);
  });

  it("an update keeps the old generation serving until the new generation's vectors have landed", async () => {
    const company = `upd${Date.now().toString(36)}`;
    const key = uniqueKey("visible/update.md");
    await ingest(key, `---\ncompany: ${company}\n---\n# Old\n\nThe brassleaf valve regulates steam.\n`);
    const first = await waitForStatus(key, ["ready"], 30_000);
    await ingest(key, `---\ncompany: ${company}\n---\n# New\n\nThe copperwing pump moves brine.\n`);
    // While the new generation waits for its vectors, the old one is live and found.
    await poll(
      () => env.DB.prepare("SELECT step FROM documents WHERE key = ?1").bind(key).first<any>(),
      (row) => row?.step === "commit",
      "the update never reached the commit",
    );
    const during: any = await env.DB.prepare("SELECT active_version FROM documents WHERE key = ?1").bind(key).first();
    expect(during.active_version).toBe(first.active_version);
    const old = await search("brassleaf valve steam", company);
    expect(old[0]?.key).toBe(key);
    expect(old[0].text).toContain("brassleaf");

    const second = await poll(
      () => env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first<any>(),
      (row) => row.status === "ready" && row.active_version > first.active_version,
      "the update never went live",
      30_000,
    );
    const [top] = await search("copperwing pump brine", company);
    expect(top.key).toBe(key);
    expect(top.text).toContain("copperwing");
    expect(top.scores.vector).toBeGreaterThan(0);
    expect(await standin.listIds(`${second.id}:${second.active_version}:`)).toHaveLength(second.chunk_count);
  });
});
