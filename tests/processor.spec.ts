// The DocumentProcessor Durable Object: reachable per key, state persisted in
// its own storage across evictions.
import { abortAllDurableObjects, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { processorState, uniqueKey } from "./support";

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
  it("accepts commands for its key and keeps them across a restart of the object", async () => {
    const key = uniqueKey("acme/p.md");
    const first = await sendCommand(key, { type: "process", key, reason: "test" });
    expect(first.status).toBe(202);
    await sendCommand(key, { type: "delete", key, reason: "test" });

    // Tear the instance down; only durable storage survives.
    await abortAllDurableObjects();

    const state = await processorState(key);
    expect(state.key).toBe(key);
    expect(state.commands_received).toBe(2);
    expect(state.last_command).toEqual({ type: "delete", key, reason: "test" });
  });

  it("keeps one object per key: another key's object is untouched", async () => {
    const a = uniqueKey("acme/a.md");
    const b = uniqueKey("acme/b.md");
    await sendCommand(a, { type: "process", key: a, reason: "test" });
    const state = await processorState(b);
    expect(state.commands_received).toBe(0);
    expect(state.key).toBeNull();
  });

  it("rejects a malformed command with a JSON 400", async () => {
    const key = uniqueKey("acme/bad.md");
    const res = await sendCommand(key, { type: "explode" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe("bad_command");
  });
});
