// Issue 11's races end to end: the built Worker in workerd with real local
// D1, R2, Queues and Durable Objects. Each case interleaves writes and
// messages the way the platform can, and asserts on stored state.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, deliverBatch, INGEST, poll, processorState, putDocument, sha256, uniqueKey, waitForStatus } from "./support";

function markdown(title: string, sections: number): string {
  let text = `---\ncompany: acme\n---\n# ${title}\n\n`;
  for (let i = 0; i < sections; i++) text += `## ${title} part ${i}\n\n${title} text number ${i}.\n\n`;
  return text;
}

/** Waits until the row serves `content` (ready with its hash) and returns it. */
async function waitServing(key: string, content: string, timeout = 20_000): Promise<any> {
  const want = await sha256(content);
  return poll(
    () => env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first<any>(),
    (row) => row?.status === "ready" && row.sha256 === want,
    `${key} never served the expected content`,
    timeout,
  );
}

async function liveChunkCount(row: any): Promise<number> {
  const n: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2")
    .bind(row.id, row.active_version)
    .first();
  return n.n;
}

describe("issue 11 races, end to end", () => {
  it("case 1: delete then re-create within one queue batch ends serving the new version", async () => {
    for (const deleteFirst of [true, false]) {
      const key = uniqueKey(`race/recreate-${deleteFirst}.md`);
      const first = markdown("Old", 2);
      await deliverBatch(INGEST, [{ id: "put-1", body: await putDocument(key, first) }]);
      await waitServing(key, first);
      // The service's own delete message carries no time; the re-upload lands before it is handled.
      await env.DOCUMENTS.delete(key);
      const deleteMessage = { type: "delete", key, reason: "admin:delete" };
      const second = markdown("New", 4);
      const putEvent = await putDocument(key, second);
      const batch = [
        { id: "del", body: deleteMessage },
        { id: "put-2", body: putEvent },
      ];
      const result = await deliverBatch(INGEST, deleteFirst ? batch : batch.reverse());
      expect(result.explicitAcks.sort()).toEqual(["del", "put-2"]);
      const row = await waitServing(key, second);
      expect(await env.DOCUMENTS.head(key)).not.toBeNull();
      expect(await liveChunkCount(row)).toBe(row.chunk_count);
      // Settled: still serving the new version a moment later (no late delete).
      await new Promise((r) => setTimeout(r, 300));
      expect((await env.DB.prepare("SELECT status FROM documents WHERE key = ?1").bind(key).first<any>()).status).toBe("ready");
    }
  });

  it("case 1: reconciliation's `gone` delete against a re-upload made after its listing does not delete", async () => {
    const key = uniqueKey("race/gone.md");
    const content = markdown("Back", 3);
    await deliverBatch(INGEST, [{ id: "put", body: await putDocument(key, content) }]);
    await waitServing(key, content);
    const result = await deliverBatch(INGEST, [{ id: "gone", body: { type: "delete", key, reason: "reconcile:gone" } }]);
    expect(result.explicitAcks).toEqual(["gone"]);
    await new Promise((r) => setTimeout(r, 300));
    const row = await waitServing(key, content);
    expect(await liveChunkCount(row)).toBeGreaterThan(0);
  });

  it("case 2: a forced process after a reconciliation-triggered run does run", async () => {
    const key = uniqueKey("race/force.md");
    const content = markdown("Forced", 2);
    await deliverBatch(INGEST, [{ id: "put", body: await putDocument(key, content) }]);
    const before = await waitServing(key, content);
    await deliverBatch(INGEST, [{ id: "rec", body: { type: "process", key, reason: "reconcile:stuck" } }]);
    await new Promise((r) => setTimeout(r, 200));
    const res = await admin(`/admin/documents/${key}/process`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ force: true }),
    });
    expect(res.status).toBe(202);
    // The queue delivers the forced command; a new generation goes live.
    const row = await poll(
      () => env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first<any>(),
      (r) => r.status === "ready" && r.active_version > before.active_version,
      "the forced run never committed",
    );
    expect(row.active_version).toBeGreaterThan(before.active_version);
    const runs: any = await env.DB.prepare("SELECT reason, status FROM processing_runs WHERE document_key = ?1 ORDER BY id").bind(key).all();
    expect(runs.results.at(-1)).toEqual({ reason: "admin", status: "ready" });
    const status = await processorState(key);
    expect(status.status).toBe("ready");
  });

  it("case 5: a dead letter does not overwrite a document its processor has since committed", async () => {
    const key = uniqueKey("race/dead.md");
    const content = markdown("Committed", 2);
    await deliverBatch(INGEST, [{ id: "put", body: await putDocument(key, content) }]);
    await waitServing(key, content);
    const result = await deliverBatch("portfolio-ingest-dlq", [
      { id: "late-letter", body: { type: "process", key, reason: "admin:put" } },
    ]);
    expect(result.explicitAcks).toEqual(["late-letter"]);
    const row: any = await env.DB.prepare("SELECT status, last_error FROM documents WHERE key = ?1").bind(key).first();
    expect(row).toEqual({ status: "ready", last_error: null });
    const letter = await env.DB.prepare("SELECT document_key FROM dead_letters WHERE message_id = 'late-letter'").first();
    expect(letter).toEqual({ document_key: key });
  });

  it("case 7: the chunk step records the etag of the bytes it read, not the event's", async () => {
    const key = uniqueKey("race/etag.md");
    const content = markdown("Etag", 2);
    const event = await putDocument(key, content);
    const actual = event.object.eTag;
    event.object.eTag = "an-older-etag-from-a-late-event";
    await deliverBatch(INGEST, [{ id: "stale-etag", body: event }]);
    const row = await waitServing(key, content);
    expect(row.etag).toBe(actual);
  });

  it("case 3: a crash after the flip, before the state was saved, ends ready without rewriting the live rows", async () => {
    const key = uniqueKey("race/crash.md");
    const first = markdown("First", 2);
    await deliverBatch(INGEST, [{ id: "v1", body: await putDocument(key, first) }]);
    await waitServing(key, first);
    const stub = env.DOCUMENT_PROCESSOR.get(env.DOCUMENT_PROCESSOR.idFromName(key));
    const readState = () =>
      runInDurableObject(stub, async (_instance: unknown, state: DurableObjectState) => {
        const row: any = state.storage.sql.exec("SELECT value FROM meta WHERE name = 'state'").one();
        return JSON.parse(row.value);
      });
    const v1State = await readState();
    const second = markdown("Second", 5);
    await deliverBatch(INGEST, [{ id: "v2", body: await putDocument(key, second) }]);
    const served = await waitServing(key, second);
    const liveIds = async () =>
      (await env.DB.prepare("SELECT id FROM chunks WHERE document_id = ?1 AND version = ?2 ORDER BY id").bind(served.id, served.active_version).all()).results;
    const before = await liveIds();
    // Rewind the processor to the moment the commit was in flight: D1 has
    // flipped to v2, but the state still says v1 is live and the commit's
    // result never arrived (its deadline has passed).
    const crashed = await readState();
    crashed.stage = { stage: "committing" };
    crashed.live = v1State.live;
    crashed.run.outcome = null;
    crashed.run.finished_at_ms = null;
    crashed.run.attempts = 1;
    crashed.run.in_flight = { issued_at_ms: 0, deadline_ms: 0 };
    await runInDurableObject(stub, async (_instance: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE meta SET value = ?1 WHERE name = 'state'", JSON.stringify(crashed));
    });
    await runDurableObjectAlarm(stub);
    const status = await processorState(key);
    expect(status).toMatchObject({ status: "ready", generation: served.active_version });
    const row: any = await env.DB.prepare("SELECT status, active_version FROM documents WHERE key = ?1").bind(key).first();
    expect(row).toEqual({ status: "ready", active_version: served.active_version });
    expect(await liveIds()).toEqual(before);
  });

  it("case 6: a document over the chunk cap fails permanently with a clear error", async () => {
    const key = uniqueKey("race/many.md");
    let text = "";
    for (let i = 0; i <= 20_000; i++) text += `# H${i}\n\nw${i}\n\n`;
    await deliverBatch(INGEST, [{ id: "many", body: await putDocument(key, text) }]);
    const row = await waitForStatus(key, ["failed", "ready"], 60_000);
    expect(row.status).toBe("failed");
    expect(row.last_error).toMatch(/20001 chunks; the limit is 20000/);
    const chunks: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(row.id).first();
    expect(chunks.n).toBe(0);
  }, 90_000);
});
