// Alerts end to end (the `alerts` project): the Worker's chat provider is the
// provider stand-in, thresholds are low (vitest.config.ts), and
// ALERT_WEBHOOK_URL points at a real local HTTP receiver
// (tests/standins/webhook.mjs), so notices travel through the Worker's own
// fetch. Each condition is made real (refused and slow provider calls, a
// binary document, a stuck row, dead letters, a reconciliation that enqueues
// too much); each alert must fire exactly once while it holds and resolve
// exactly once when it clears. The passing of time is played by moving the
// stored points and letters back by an hour.
import { env, SELF } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { admin, deliverBatch, ingestReady, INGEST, poll, runCron, uniqueKey, waitForStatus } from "./support";

const FIVE_MINUTES = "*/5 * * * *";
const DLQ = "portfolio-ingest-dlq";
const CHAT = "/v1/chat/completions";
const HOUR = 3_600_000;

interface Received {
  path: string;
  body: { text: string } | null;
  content_type: string | null;
  delivered: boolean;
  status: number;
}

async function receiver(route: string, body?: unknown): Promise<any> {
  const res = await fetch(`${env.RECEIVER_URL}${route}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`receiver ${route}: ${res.status}`);
  return res.json();
}

/** Notices the receiver accepted, in arrival order. */
async function notices(): Promise<string[]> {
  const { messages } = (await receiver("/__receiver/messages")) as { messages: Received[] };
  return messages.filter((m) => m.delivered).map((m) => m.body!.text);
}

/** Scripts `faults` for chat requests whose body contains `marker` (finite: then it answers). */
async function standinFaults(marker: string, faults: object[]) {
  const res = await fetch(`${env.STANDIN_URL}/__standin/rules`, {
    method: "POST",
    body: JSON.stringify({ match: marker, path: CHAT, faults, repeat: false }),
  });
  expect(res.ok).toBe(true);
}

async function ask(question: string): Promise<number> {
  const res = await SELF.fetch("https://svc.test/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ question }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** Waits until `n` request points are stored (they are written after each response). */
async function waitForRequests(n: number) {
  await poll(
    async () => (await env.DB.prepare("SELECT COUNT(*) AS n FROM metric_points WHERE kind = 'request' AND at > ?1").bind(Date.now() - HOUR / 2).first<any>()).n,
    (seen: number) => seen >= n,
    `${n} request points`,
  );
}

/** Moves every stored point and dead letter an hour back: the alert windows pass. */
async function timePasses() {
  await env.DB.batch([
    env.DB.prepare("UPDATE metric_points SET at = at - ?1").bind(HOUR),
    env.DB.prepare("UPDATE dead_letters SET received_at = received_at - ?1").bind(HOUR),
  ]);
}

/** The notices of one evaluation (the 5-minute cron). */
async function evaluation(): Promise<string[]> {
  const before = (await notices()).length;
  await runCron(FIVE_MINUTES);
  return (await notices()).slice(before);
}

function firing(key: string) {
  return expect.stringMatching(new RegExp(`^\\[FIRING\\] \\[local\\] ${key.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: `));
}

function resolved(key: string) {
  return expect.stringMatching(new RegExp(`^\\[RESOLVED\\] \\[local\\] ${key.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} `));
}

async function alertsListing(): Promise<any> {
  const res = await admin("/admin/alerts");
  expect(res.status).toBe(200);
  return res.json();
}

beforeEach(async () => {
  // Whatever an earlier test left in the windows is history now.
  await timePasses();
  await runCron(FIVE_MINUTES);
  await receiver("/__receiver/reset");
});

describe("alerts", () => {
  it("a revoked provider key: the error rate, the availability burn and the provider's 401 fire once and resolve once", async () => {
    const key = uniqueKey("alerts/revoked.md");
    await ingestReady(key, "# Revoked\n\nThe revoked-marker document about geothermal pumps.\n");
    await standinFaults("revoked-marker", Array.from({ length: 6 }, () => ({ status: 401 })));
    for (let i = 0; i < 6; i++) expect(await ask(`revoked-marker question ${i}?`)).toBe(502);
    await waitForRequests(6);

    const fired = await evaluation();
    expect(fired.sort()).toEqual([firing("availability_burn"), firing("error_rate"), firing("provider_auth:openai")].sort());
    expect(fired.find((t) => t.includes("error_rate"))).toContain("6 of 6 requests (100.0 %) answered 5xx");
    // 6 of 6 answered 5xx burns a 99.9 % objective's budget 1,000x too fast (the rule's rate is 14.4x).
    expect(fired.find((t) => t.includes("availability_burn"))).toMatch(/the 99\.9 % availability budget is burning 1000\.0x too fast/);
    expect(fired.find((t) => t.includes("provider_auth"))).toContain("HTTP 401");
    // Still holding: nothing new.
    expect(await evaluation()).toEqual([]);
    const listing = await alertsListing();
    expect(listing.active.map((a: any) => a.key).sort()).toEqual(["availability_burn", "error_rate", "provider_auth:openai"]);
    expect(listing.active.every((a: any) => a.fire_sent_at !== null && a.notice_owed === null)).toBe(true);

    // The key works again (the stand-in's faults are used up): the provider resolves.
    expect(await ask("revoked-marker question after the fix?")).toBe(200);
    await waitForRequests(7);
    expect(await evaluation()).toEqual([resolved("provider_auth:openai")]);
    // The window passes without errors: the error rate and the burn resolve.
    await timePasses();
    expect((await evaluation()).sort()).toEqual([resolved("availability_burn"), resolved("error_rate")].sort());
    expect(await evaluation()).toEqual([]);
    const after = await alertsListing();
    expect(after.active).toEqual([]);
    expect(after.recent.map((a: any) => a.key).sort()).toEqual(["availability_burn", "error_rate", "provider_auth:openai"]);
    expect(after.recent.every((a: any) => a.status === "resolved" && a.resolve_sent_at !== null)).toBe(true);

    // What the receiver got is Slack's shape.
    const { messages } = (await receiver("/__receiver/messages")) as { messages: Received[] };
    expect(messages.every((m) => m.path === "/hooks/alerts-test" && m.content_type === "application/json")).toBe(true);
    expect(messages.every((m) => Object.keys(m.body!).join() === "text")).toBe(true);
  });

  it("slow answers: p95 above ALERT_P95_MS fires once and resolves once", async () => {
    const key = uniqueKey("alerts/slow.md");
    await ingestReady(key, "# Slow\n\nThe slow-marker document about heat exchangers.\n");
    await standinFaults("slow-marker", Array.from({ length: 6 }, () => ({ delay_ms: 1_200 })));
    for (let i = 0; i < 6; i++) expect(await ask(`slow-marker question ${i}?`)).toBe(200);
    await waitForRequests(6);

    const fired = await evaluation();
    expect(fired).toEqual([firing("latency_p95")]);
    expect(fired[0]).toMatch(/p95 latency \d+ ms over 6 requests in the last 5 min \(threshold 1000 ms\)/);
    expect(await evaluation()).toEqual([]);
    await timePasses();
    expect(await evaluation()).toEqual([resolved("latency_p95")]);
    expect(await evaluation()).toEqual([]);
  });

  it("a document that fails permanently fires for that document, and resolves when it is fixed", async () => {
    const key = uniqueKey("alerts/binary.md");
    const object = await env.DOCUMENTS.put(key, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]));
    await deliverBatch(INGEST, [
      { id: "alerts-bin", body: { action: "PutObject", object: { key, size: object!.size, eTag: object!.etag }, eventTime: new Date().toISOString() } },
    ]);
    await waitForStatus(key, ["failed"]);

    const fired = await evaluation();
    expect(fired).toEqual([firing(`document_failed:${key}`)]);
    expect(fired[0]).toContain("failed permanently");
    expect(await evaluation()).toEqual([]);

    await ingestReady(key, "# Fixed\n\nNow it is markdown.\n");
    expect(await evaluation()).toEqual([resolved(`document_failed:${key}`)]);
    expect(await evaluation()).toEqual([]);
  });

  it("stuck documents fire once; a webhook that fails keeps the notice owed until it is delivered", async () => {
    const key = uniqueKey("alerts/stuck.md");
    const longAgo = Date.now() - 45 * 60_000;
    await env.DB.prepare("INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'processing', ?2, ?2)").bind(key, longAgo).run();
    await receiver("/__receiver/fail", { count: 1, status: 503 });

    expect(await evaluation()).toEqual([]);
    const owed = (await alertsListing()).active.find((a: any) => a.key === "stuck_documents");
    expect(owed).toMatchObject({ notice_owed: "fire", attempts: 1, last_error: "the webhook answered HTTP 503", fire_sent_at: null });
    expect(owed.message).toContain(`oldest ${key}, for 45 min`);

    const delivered = await evaluation();
    expect(delivered).toEqual([firing("stuck_documents")]);
    expect((await alertsListing()).active.find((a: any) => a.key === "stuck_documents")).toMatchObject({ notice_owed: null, attempts: 0, last_error: null });
    expect(await evaluation()).toEqual([]);
    const { messages } = (await receiver("/__receiver/messages")) as { messages: Received[] };
    expect(messages.map((m) => m.status)).toEqual([503, 200]);

    await env.DB.prepare("UPDATE documents SET status = 'ready', updated_at = ?2 WHERE key = ?1").bind(key, Date.now()).run();
    expect(await evaluation()).toEqual([resolved("stuck_documents")]);
    expect(await evaluation()).toEqual([]);
  });

  it("dead letters fire at once from the dead-letter consumer, and resolve when the window passes", async () => {
    const key = uniqueKey("alerts/dead.md");
    const before = (await notices()).length;
    await deliverBatch(DLQ, [{ id: "alerts-dead", attempts: 1, body: { type: "process", key } }]);
    // No cron: the consumer evaluated after recording the letter.
    const fired = (await notices()).slice(before);
    expect(fired).toEqual([firing("dead_letters")]);
    expect(fired[0]).toContain("1 dead letters in the last 5 min");
    // More letters while it fires: no second notice.
    await deliverBatch(DLQ, [{ id: "alerts-dead-2", attempts: 1, body: { type: "process", key } }]);
    expect(await evaluation()).toEqual([]);

    await timePasses();
    expect(await evaluation()).toEqual([resolved("dead_letters")]);
    expect(await evaluation()).toEqual([]);
  });

  it("a reconciliation that enqueues more than ALERT_RECONCILE_ENQUEUED fires, and resolves after a quiet run", async () => {
    const keys = [uniqueKey("alerts/r1.md"), uniqueKey("alerts/r2.md"), uniqueKey("alerts/r3.md")];
    for (const key of keys) await env.DOCUMENTS.put(key, `# ${key}\n\nAn object nobody announced.\n`);
    const latestRun = async () => env.DB.prepare("SELECT id, status, enqueued FROM reconcile_runs ORDER BY id DESC LIMIT 1").first<any>();
    expect((await admin("/admin/reconcile", { method: "POST" })).status).toBe(202);
    const run = await poll(latestRun, (r) => r?.status === "done", "first run done");
    const enqueued: Record<string, number> = JSON.parse(run.enqueued);
    expect(enqueued["reconcile:missing"]).toBe(3);
    // Earlier tests' rows may add their own repairs (a `gone` one, say).
    const total = Object.values(enqueued).reduce((a, b) => a + b, 0);

    const fired = await evaluation();
    expect(fired).toEqual([firing("reconcile_enqueued")]);
    expect(fired[0]).toContain(`reconciliation run ${run.id} enqueued ${total} documents (threshold 2)`);
    expect(await evaluation()).toEqual([]);

    for (const key of keys) await waitForStatus(key, ["ready"]);
    expect((await admin("/admin/reconcile", { method: "POST" })).status).toBe(202);
    const quiet = await poll(latestRun, (r) => r?.id !== run.id && r?.status === "done", "second run done");
    expect(JSON.parse(quiet.enqueued)).toEqual({});
    expect(await evaluation()).toEqual([resolved("reconcile_enqueued")]);
    expect(await evaluation()).toEqual([]);
  });

  it("two overlapping evaluations fire and notify once", async () => {
    const key = uniqueKey("alerts/overlap.md");
    await env.DB.prepare("INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'queued', ?2, ?2)").bind(key, Date.now() - 3 * HOUR).run();
    await Promise.all([runCron(FIVE_MINUTES), runCron(FIVE_MINUTES), runCron("17 3 * * *")]);
    expect(await notices()).toEqual([firing("stuck_documents")]);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE key = 'stuck_documents' AND status = 'firing'").first<any>();
    expect(rows.n).toBe(1);

    await env.DB.prepare("DELETE FROM documents WHERE key = ?1").bind(key).run();
    await receiver("/__receiver/reset");
    await Promise.all([runCron(FIVE_MINUTES), runCron(FIVE_MINUTES)]);
    expect(await notices()).toEqual([resolved("stuck_documents")]);
  });
});
