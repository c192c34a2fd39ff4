// The ingestion watchdog on the `*/5` cron: a document left `processing`
// whose Durable Object lost its alarm (the platform drops an alarm after its
// retries) is woken, re-arms and ends `ready`; a document whose alarm is armed
// is left alone.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ingestReady, runCron, uniqueKey, waitForStatus } from "./support";

const WATCHDOG_CRON = "*/5 * * * *";
/** Older than the default INGEST_WATCHDOG_AFTER_MINUTES (15). */
const STALE_MS = 20 * 60_000;

function stubFor(key: string) {
  return env.DOCUMENT_PROCESSOR.get(env.DOCUMENT_PROCESSOR.idFromName(key));
}

/**
 * Rewinds a ready document's processor to a forced run of the same object that
 * was accepted but never ran (`queued`, next attempt not before `notBeforeMs`),
 * with its alarm at `alarmAt` (`null`: dropped), and makes its D1 row
 * `processing` and unchanged for STALE_MS. Returns the generation of that run.
 */
async function leaveProcessing(key: string, notBeforeMs: number, alarmAt: number | null): Promise<number> {
  return runInDurableObject(stubFor(key), async (_instance: unknown, state: DurableObjectState) => {
    const row: any = state.storage.sql.exec("SELECT value FROM meta WHERE name = 'state'").one();
    const saved = JSON.parse(row.value);
    const generation = saved.last_generation + 1;
    const now = Date.now();
    saved.last_generation = generation;
    saved.stage = { stage: "queued" };
    saved.run = {
      ...saved.run,
      generation,
      request: { ...saved.run.request, force: true },
      queued_at_ms: now - STALE_MS,
      started_at_ms: null,
      updated_at_ms: now - STALE_MS,
      finished_at_ms: null,
      attempts: 0,
      retries: 0,
      in_flight: null,
      not_before_ms: notBeforeMs,
      last_error: null,
      sha256: null,
      bytes_len: null,
      chunk_count: null,
      batches: null,
      batches_done: { embed: 0, tag: 0 },
      steps: [],
      outcome: null,
    };
    state.storage.sql.exec("UPDATE meta SET value = ?1 WHERE name = 'state'", JSON.stringify(saved));
    if (alarmAt === null) await state.storage.deleteAlarm();
    else await state.storage.setAlarm(alarmAt);
    return generation;
  }).then(async (generation) => {
    await env.DB.prepare("UPDATE documents SET status = 'processing', step = 'download', updated_at = ?2 WHERE key = ?1")
      .bind(key, Date.now() - STALE_MS)
      .run();
    return generation;
  });
}

async function alarmOf(key: string): Promise<number | null> {
  return runInDurableObject(stubFor(key), (_instance: unknown, state: DurableObjectState) => state.storage.getAlarm());
}

async function savedState(key: string): Promise<string> {
  return runInDurableObject(stubFor(key), (_instance: unknown, state: DurableObjectState) => {
    const row: any = state.storage.sql.exec("SELECT value FROM meta WHERE name = 'state'").one();
    return row.value as string;
  });
}

describe("ingestion watchdog (*/5 cron)", () => {
  it("re-arms a processing document whose alarm was dropped, and leaves an armed one alone", async () => {
    const dropped = uniqueKey("watchdog/dropped.md");
    const armed = uniqueKey("watchdog/armed.md");
    const first = await ingestReady(dropped, "# Dropped\n\nWidgets ship from the north depot.\n\n## More\n\nGadgets too.\n");
    await ingestReady(armed, "# Armed\n\nSprockets ship from the south depot.\n");

    const generation = await leaveProcessing(dropped, Date.now() - STALE_MS, null);
    // A run in a long backoff: its alarm is armed an hour out, exactly as its state asks.
    const later = Date.now() + 60 * 60_000;
    await leaveProcessing(armed, later, later);
    const armedBefore = await savedState(armed);
    expect(await alarmOf(dropped)).toBeNull();

    await runCron(WATCHDOG_CRON);

    const row = await waitForStatus(dropped, ["ready", "failed"]);
    expect(row.status, row.last_error ?? "").toBe("ready");
    expect(row.active_version).toBe(generation);
    expect(row.active_version).toBeGreaterThan(first.active_version);
    const chunks: any = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2",
    ).bind(row.id, generation).first();
    expect(chunks.n).toBe(row.chunk_count);
    const stale: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version <> ?2")
      .bind(row.id, generation)
      .first();
    expect(stale.n).toBe(0);

    // Untouched: same state, same alarm, the row still processing.
    expect(await savedState(armed)).toBe(armedBefore);
    expect(await alarmOf(armed)).toBe(later);
    const armedRow: any = await env.DB.prepare("SELECT status FROM documents WHERE key = ?1").bind(armed).first();
    expect(armedRow.status).toBe("processing");

    // A second cron run changes nothing for either.
    await runCron(WATCHDOG_CRON);
    expect(await savedState(armed)).toBe(armedBefore);
    expect(await alarmOf(armed)).toBe(later);
    expect((await waitForStatus(dropped, ["ready"])).active_version).toBe(generation);

    // Leave nothing armed behind for other tests.
    await runInDurableObject(stubFor(armed), (_instance: unknown, state: DurableObjectState) => state.storage.deleteAlarm());
  });
});
