// The ingest queue consumer: per-message ack/retry, dead-lettering of
// malformed messages, and the hand-off to the document's processor.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { deliverBatch, processorState, putDocument, uniqueKey, waitForStatus } from "./support";

const INGEST = "portfolio-ingest";
const DLQ = "portfolio-ingest-dlq";

describe("ingest queue consumer", () => {
  it("acks a well-formed R2 notification and hands it to the document's processor", async () => {
    const key = uniqueKey("acme/about.md");
    const event = await putDocument(key, "# About\n\nAcme makes things.\n");
    const result = await deliverBatch(INGEST, [{ id: "m-put", body: event }]);
    expect(result.outcome).toBe("ok");
    expect(result.explicitAcks).toEqual(["m-put"]);
    expect(result.retryMessages).toEqual([]);

    const state = await processorState(key);
    expect(state.key).toBe(key);
    expect(["queued", "processing", "ready"]).toContain(state.status);
    await waitForStatus(key, ["ready"]);
  });

  it("handles a delete notification and a service message in one batch, acking each", async () => {
    const a = uniqueKey("acme/a.md");
    const b = uniqueKey("acme/b.md");
    await env.DOCUMENTS.put(b, "# B\n\nForced run.\n");
    const result = await deliverBatch(INGEST, [
      { id: "m-del", body: { action: "DeleteObject", bucket: "b", object: { key: a } } },
      { id: "m-svc", body: { type: "process", key: b, force: true, reason: "admin" } },
    ]);
    expect(result.explicitAcks.sort()).toEqual(["m-del", "m-svc"]);
    expect((await waitForStatus(a, ["deleted"])).status).toBe("deleted");
    expect((await waitForStatus(b, ["ready"])).status).toBe("ready");
  });

  it("never retries a malformed message forever: it is dead-lettered with its reason and acked", async () => {
    const result = await deliverBatch(INGEST, [
      { id: "m-bad", attempts: 1, body: { hello: "world" } },
      { id: "m-bad-key", attempts: 1, body: { action: "PutObject", object: { size: 1 } } },
    ]);
    expect(result.explicitAcks.sort()).toEqual(["m-bad", "m-bad-key"]);
    expect(result.retryMessages).toEqual([]);

    // The letters reach the dead-letter consumer, which records them in D1.
    await expect.poll(async () => {
      const rows = await env.DB.prepare("SELECT message_id, error FROM dead_letters ORDER BY message_id").all();
      return rows.results;
    }, { timeout: 10_000 }).toEqual([
      { message_id: "m-bad", error: "message has neither an `action` (R2 event) nor a `type` (service message)" },
      { message_id: "m-bad-key", error: "field `object.key` is missing or not a string" },
    ]);
  });

  it("dead-letter consumer records out-of-retries messages on their document", async () => {
    const key = uniqueKey("acme/failing.md");
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'processing', ?2, ?2)",
    ).bind(key, now).run();
    const result = await deliverBatch(DLQ, [
      { id: "m-dead", attempts: 1, body: { type: "process", key } },
    ]);
    expect(result.explicitAcks).toEqual(["m-dead"]);
    const doc = await env.DB.prepare("SELECT status, last_error FROM documents WHERE key = ?1").bind(key).first();
    expect(doc).toEqual({ status: "failed", last_error: "dead-lettered: out of retries" });
    const letter = await env.DB.prepare("SELECT queue, document_key FROM dead_letters WHERE message_id = 'm-dead'").first();
    expect(letter).toEqual({ queue: DLQ, document_key: key });
  });
});
