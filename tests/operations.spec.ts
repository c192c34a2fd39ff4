// Run history and dead letters without SQL (issue 15): GET
// /admin/documents/{key}/runs reads `processing_runs`, GET
// /admin/dead-letters pages `dead_letters`, and POST
// /admin/dead-letters/{id}/replay re-enqueues the letter's document as R2
// holds it now, like a forced POST /admin/documents/{key}/process.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, deliverBatch, ingestReady, poll, uniqueKey, waitForStatus } from "./support";

const DLQ = "portfolio-ingest-dlq";

async function json(res: Response): Promise<any> {
  return res.json();
}

describe("run history", () => {
  it("lists a document's runs newest first, paged with a cursor", async () => {
    const key = uniqueKey("ops/history.md");
    await ingestReady(key, "# History\n\nFirst version.\n");
    const put = await admin(`/admin/documents/${key}`, { method: "PUT", body: "# History\n\nSecond version, longer.\n\n## More\n\nText.\n" });
    expect(put.status).toBe(202);
    await poll(
      async () => (await json(await admin(`/admin/documents/${key}/runs`))).runs.length,
      (n) => n >= 2,
      "two runs",
    );

    const all = await json(await admin(`/admin/documents/${key}/runs`));
    expect(all.key).toBe(key);
    expect(all.cursor).toBeNull();
    expect(all.runs.map((r: any) => [r.version, r.status])).toEqual([
      [2, "ready"],
      [1, "ready"],
    ]);
    const [latest] = all.runs;
    expect(latest).toMatchObject({ reason: "admin", attempts: expect.any(Number) });
    expect(latest.duration_ms).toBe(latest.finished_at - latest.started_at);
    expect(latest.steps.map((s: any) => s.step)).toEqual(["download", "chunk", "embed", "tag", "commit"]);
    const rows = await env.DB.prepare("SELECT id FROM processing_runs WHERE document_key = ?1 ORDER BY id DESC").bind(key).all<any>();
    expect(all.runs.map((r: any) => r.id)).toEqual(rows.results.map((r: any) => r.id));

    const first = await json(await admin(`/admin/documents/${key}/runs?limit=1`));
    expect(first.runs.map((r: any) => r.version)).toEqual([2]);
    expect(first.cursor).toBe(String(first.runs[0].id));
    const second = await json(await admin(`/admin/documents/${key}/runs?limit=1&cursor=${first.cursor}`));
    expect(second.runs.map((r: any) => r.version)).toEqual([1]);
    expect(second.cursor).toBeNull();
  });

  it("answers 404 for an unknown document and 400 for a bad limit or cursor", async () => {
    const unknown = await admin(`/admin/documents/${uniqueKey("ops/none.md")}/runs`);
    expect(unknown.status).toBe(404);
    const key = uniqueKey("ops/limits.md");
    await ingestReady(key, "# Limits\n\nText.\n");
    for (const [query, code] of [["limit=0", "bad_limit"], ["limit=101", "bad_limit"], ["cursor=abc", "bad_cursor"]]) {
      const res = await admin(`/admin/documents/${key}/runs?${query}`);
      expect(res.status, query).toBe(400);
      expect((await json(res)).error.code).toBe(code);
    }
    expect((await admin(`/admin/documents/${key}/runs`, {}, null)).status).toBe(401);
  });
});

describe("dead letters", () => {
  it("lists letters newest first and replays one: the document is processed again", async () => {
    const key = uniqueKey("ops/dead.md");
    await env.DOCUMENTS.put(key, "# Dead\n\nA document whose message ran out of retries.\n");
    const now = Date.now();
    await env.DB.prepare("INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'processing', ?2, ?2)").bind(key, now).run();
    const result = await deliverBatch(DLQ, [
      { id: "ops-dead", attempts: 1, body: { type: "process", key } },
      { id: "ops-malformed", attempts: 1, body: { dead_letter: { queue: "portfolio-ingest", message_id: "x", error: "malformed", attempts: 1 }, body: { hello: 1 } } },
    ]);
    expect(result.explicitAcks.sort()).toEqual(["ops-dead", "ops-malformed"]);
    expect((await waitForStatus(key, ["failed"])).last_error).toBe("dead-lettered: out of retries");

    const listed = await json(await admin("/admin/dead-letters"));
    const ours = listed.dead_letters.filter((l: any) => ["ops-dead", "x"].includes(l.message_id));
    expect(ours.map((l: any) => l.message_id)).toEqual(["x", "ops-dead"]);
    const letter = ours[1];
    expect(letter).toMatchObject({ queue: DLQ, document_key: key, error: "out of retries", replays: 0, replayed_at: null });
    expect(letter.body).toEqual({ type: "process", key });

    const replay = await admin(`/admin/dead-letters/${letter.id}/replay`, { method: "POST" });
    expect(replay.status).toBe(202);
    expect(await json(replay)).toEqual({ id: letter.id, key, force: true, status: "queued", replays: 1 });
    const doc = await waitForStatus(key, ["ready"]);
    expect(doc.active_version).toBeGreaterThan(0);
    const again = await json(await admin("/admin/dead-letters"));
    const replayed = again.dead_letters.find((l: any) => l.id === letter.id);
    expect(replayed.replays).toBe(1);
    expect(replayed.replayed_at).toBeGreaterThanOrEqual(now);
    const runs = await json(await admin(`/admin/documents/${key}/runs`));
    expect(runs.runs[0]).toMatchObject({ reason: "admin", status: "ready" });

    // A letter that names no document cannot be replayed.
    const malformed = ours[0];
    const refused = await admin(`/admin/dead-letters/${malformed.id}/replay`, { method: "POST" });
    expect(refused.status).toBe(409);
    expect((await json(refused)).error.code).toBe("not_replayable");
  });

  it("pages with a cursor and refuses unknown, malformed and objectless replays", async () => {
    const keys = [uniqueKey("ops/p1.md"), uniqueKey("ops/p2.md"), uniqueKey("ops/p3.md")];
    await deliverBatch(
      DLQ,
      keys.map((key, i) => ({ id: `ops-page-${i}`, attempts: 1, body: { type: "process", key } })),
    );
    const seen: number[] = [];
    let cursor = "";
    for (let page = 0; page < 10; page++) {
      const res = await json(await admin(`/admin/dead-letters?limit=2&cursor=${cursor}`));
      expect(res.dead_letters.length).toBeLessThanOrEqual(2);
      seen.push(...res.dead_letters.map((l: any) => l.id));
      if (!res.cursor) break;
      cursor = res.cursor;
    }
    const ids = await env.DB.prepare("SELECT id FROM dead_letters ORDER BY id DESC").all<any>();
    expect(seen).toEqual(ids.results.map((r: any) => r.id));

    // The object of p1 was never stored: nothing to replay.
    const p1 = await env.DB.prepare("SELECT id FROM dead_letters WHERE document_key = ?1").bind(keys[0]).first<any>();
    const gone = await admin(`/admin/dead-letters/${p1.id}/replay`, { method: "POST" });
    expect(gone.status).toBe(404);
    expect((await admin("/admin/dead-letters/999999/replay", { method: "POST" })).status).toBe(404);
    const bad = await admin("/admin/dead-letters/abc/replay", { method: "POST" });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.code).toBe("bad_id");
    expect((await admin(`/admin/dead-letters/${p1.id}/replay`)).status).toBe(404);
    for (const query of ["limit=0", "cursor=x"]) {
      expect((await admin(`/admin/dead-letters?${query}`)).status, query).toBe(400);
    }
    expect((await admin(`/admin/dead-letters/${p1.id}/replay`, { method: "POST" }, null)).status).toBe(401);
  });
});
