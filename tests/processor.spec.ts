// The DocumentProcessor Durable Object: one per key, state persisted in its
// own storage across restarts, commands validated.
import { abortAllDurableObjects, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { processorState, uniqueKey, waitForStatus } from "./support";

function stubFor(key: string) {
  return env.DOCUMENT_PROCESSOR.get(env.DOCUMENT_PROCESSOR.idFromName(key));
}

async function sendCommand(key: string, command: unknown) {
  return stubFor(key).fetch("https://document-processor/commands", {
    method: "POST",
    body: JSON.stringify(command),
  });
}

describe("DocumentProcessor", () => {
  it("processes a command for its key and keeps its state across a restart", async () => {
    const key = uniqueKey("acme/p.md");
    await env.DOCUMENTS.put(key, "# P\n\nPersisted state.\n");
    const first = await sendCommand(key, { type: "process", key, reason: "test" });
    expect(first.status).toBe(202);
    await waitForStatus(key, ["ready"]);

    // Tear the instance down; only durable storage survives.
    await abortAllDurableObjects();

    const state = await processorState(key);
    expect(state).toMatchObject({ key, status: "ready", chunk_count: 1 });
  });

  it("keeps one object per key: another key's object is untouched", async () => {
    const a = uniqueKey("acme/a.md");
    const b = uniqueKey("acme/b.md");
    await env.DOCUMENTS.put(a, "# A");
    await sendCommand(a, { type: "process", key: a, reason: "test" });
    await waitForStatus(a, ["ready"]);
    const state = await processorState(b);
    expect(state).toEqual({ key: null });
  });

  it("refuses a command for another key", async () => {
    const a = uniqueKey("acme/mine.md");
    await env.DOCUMENTS.put(a, "# Mine");
    await sendCommand(a, { type: "process", key: a, reason: "test" });
    const res = await sendCommand(a, { type: "process", key: "someone/else.md", reason: "test" });
    expect(res.status).toBe(409);
    await waitForStatus(a, ["ready"]);
    expect(((await res.json()) as any).error.code).toBe("wrong_processor");
  });

  it("rejects a malformed command with a JSON 400", async () => {
    const key = uniqueKey("acme/bad.md");
    const res = await sendCommand(key, { type: "explode" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe("bad_command");
  });

  it("a document of 50,000 nested block quotes ends ready with no failed attempt (issue 26)", async () => {
    // Its chunk step used to overflow the Worker's stack (a RangeError out of
    // the wasm), leaving the document `processing` at step `chunk` for good.
    const key = uniqueKey("acme/deep-quotes.md");
    const text = `${">".repeat(50_000)} deep quote\n`;
    await env.DOCUMENTS.put(key, text);
    expect((await sendCommand(key, { type: "process", key, reason: "test" })).status).toBe(202);
    const row = await waitForStatus(key, ["ready", "failed"], 30_000);
    expect(row.status, row.last_error ?? "").toBe("ready");
    // Quotes deeper than the outline keeps are cut as text: 50 KB in pieces of at most 512 tokens.
    expect(row.chunk_count).toBeGreaterThanOrEqual(25);
    const chunks: any = await env.DB.prepare("SELECT COUNT(*) AS n, SUM(end_byte - start_byte) AS bytes FROM chunks WHERE document_id = ?1 AND version = ?2")
      .bind(row.id, row.active_version)
      .first();
    expect(chunks.n).toBe(row.chunk_count);
    expect(chunks.bytes).toBeGreaterThanOrEqual(text.trimEnd().length);
    // Bounded: no attempt of the run failed; the chunk step took one attempt (one alarm).
    const state: any = await runInDurableObject(stubFor(key), async (_instance: unknown, storage: DurableObjectState) => {
      const saved: any = storage.storage.sql.exec("SELECT value FROM meta WHERE name = 'state'").one();
      return JSON.parse(saved.value);
    });
    expect(state.run.outcome).toBe("committed");
    expect(state.run.retries).toBe(0);
    expect(state.run.last_error).toBeNull();
    expect(state.run.steps.find((s: any) => s.step === "chunk")?.attempts).toBe(1);
  }, 60_000);

  it("a process command for an object that no longer exists removes the document", async () => {
    const key = uniqueKey("acme/never.md");
    const res = await sendCommand(key, { type: "process", key, reason: "admin" });
    expect(res.status).toBe(202);
    expect((await processorState(key)).status).toMatch(/queued|processing|deleted/);
    await waitForStatus(key, ["deleted"]);
  });
});
