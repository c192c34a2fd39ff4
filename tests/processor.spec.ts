// The DocumentProcessor Durable Object: one per key, state persisted in its
// own storage across restarts, commands validated.
import { abortAllDurableObjects, env } from "cloudflare:test";
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

  it("a process command for an object that no longer exists removes the document", async () => {
    const key = uniqueKey("acme/never.md");
    const res = await sendCommand(key, { type: "process", key, reason: "admin" });
    expect(res.status).toBe(202);
    expect((await processorState(key)).status).toMatch(/queued|processing|deleted/);
    await waitForStatus(key, ["deleted"]);
  });
});
