// Crash recovery under `wrangler dev`: documents ingest through a slow
// OpenAI-compatible stand-in, the whole stack is killed with SIGKILL once some
// but not all are ready, and started again on the same persisted state. With
// the `*/5` cron's watchdog triggered as time passes (its threshold lowered to
// one minute), every document must end ready within 7 minutes of the restart,
// and D1's live chunk rows, FTS5 rows and vectors must agree with each
// document's active generation (FTS5 `integrity-check` passing).
//
// Prints the time from restart to all ready and where it went (first progress,
// watchdog rounds and re-arms, attempts found crashed by the step watchdog alarm).
// Run: node_modules/.bin/node --test tests/local/crash_recovery.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { killLocalStack, localStackState, restartLocalStack, startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";
import { startProviderStandin } from "../standins/provider.mjs";

const root = path.resolve(import.meta.dirname, "..", "..");
const TOKEN = "crash-test-token-not-a-secret-001";
const KEY = "crash-provider-key";
const DOCS = 48;
const PREFIX = "companies/crashco/";
const RECOVERY_LIMIT_MS = 7 * 60_000;
const CRON_EVERY_MS = 10_000;
const WATCHDOG_CRON = "*/5 * * * *";

// The Worker's log (the watchdog's and processors' events) goes to a file of this test's own.
const logFile = path.join(mkdtempSync(path.join(tmpdir(), "crash-recovery-")), "wrangler.log");
process.env.LOCAL_STACK_LOG = logFile;

let standin;
after(async () => {
  stopLocalStack();
  await standin?.close?.();
});

/** A document of `sections` sections (one chunk each). */
function documentText(name, sections) {
  const parts = [`---\ncompany: crashco\n---\n# ${name}\n`];
  for (let s = 0; s < sections; s++) {
    const sentence = `Unit ${s} of ${name} ships crates of part ${s * 7 + 3} to depot ${s % 13} at dawn. `;
    parts.push(`## Unit ${s}\n\n${sentence.repeat(8)}\n`);
  }
  return parts.join("\n");
}

async function admin(base, route, init = {}) {
  const res = await fetch(`${base}${route}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`${route}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Status → count over the test's documents. */
async function statusCounts(base) {
  const { documents } = await admin(base, `/admin/documents?prefix=${encodeURIComponent(PREFIX)}&limit=1000`);
  const counts = {};
  for (const d of documents) counts[d.status] = (counts[d.status] ?? 0) + 1;
  return counts;
}

/** Runs SQL on the stack's local D1 (the SQLite file under its --persist-to directory). */
function d1(sql) {
  const { persist, config } = localStackState();
  const out = execFileSync(
    "npx",
    ["wrangler", "d1", "execute", "DB", "--local", "--persist-to", persist, "-c", config, "--json", "--command", sql],
    { cwd: root, env: { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false" }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  return JSON.parse(out)[0].results;
}

/** Worker log events named `event` written after byte `from` of the log. */
function logEvents(event, from) {
  const text = readFileSync(logFile, "utf8").slice(from);
  return text.split("\n").filter((line) => line.includes(`"event":"${event}"`)).length;
}

test("after a SIGKILL mid-ingest, a restart on the same state ends every document ready and consistent", { timeout: 12 * 60_000 }, async () => {
  standin = await startProviderStandin({ latencyMs: 1_500, apiKey: KEY });
  let base = await startLocalStack({
    name: "crash-recovery",
    adminToken: TOKEN,
    vars: {
      EMBEDDING_PROVIDER: "openai",
      CHAT_PROVIDER: "openai",
      OPENAI_BASE_URL: standin.url,
      INGEST_PROVIDER_CONCURRENCY: "4",
      INGEST_WATCHDOG_AFTER_MINUTES: "1",
    },
    secrets: { OPENAI_API_KEY: KEY },
    drop: ["ratelimits"],
  });
  const keys = Array.from({ length: DOCS }, (_, i) => `${PREFIX}doc-${String(i).padStart(2, "0")}.md`);
  await Promise.all(keys.map((key, i) => admin(base, `/admin/documents/${key}`, { method: "PUT", body: documentText(`Crash ${i}`, 3 + (i % 4)) })));

  // Kill once a third is ready (but not all).
  const putAt = Date.now();
  let before;
  for (;;) {
    before = await statusCounts(base);
    if ((before.ready ?? 0) >= DOCS / 3) break;
    assert.ok(Date.now() - putAt < 5 * 60_000, `ingestion too slow to crash mid-way: ${JSON.stringify(before)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await killLocalStack("SIGKILL");
  const killedAt = Date.now();
  assert.ok((before.ready ?? 0) < DOCS, `everything was ready before the kill: ${JSON.stringify(before)}`);
  console.log(`[crash] killed (SIGKILL, whole process group) ${((killedAt - putAt) / 1000).toFixed(1)} s after the puts; statuses then: ${JSON.stringify(before)}`);

  const logFrom = readFileSync(logFile, "utf8").length;
  const restartAt = Date.now();
  base = await restartLocalStack();
  const upAt = Date.now();
  console.log(`[crash] restarted on the same state in ${((upAt - restartAt) / 1000).toFixed(1)} s`);

  let firstProgressAt = null;
  let lastCronAt = 0;
  let crons = 0;
  let counts = await statusCounts(base);
  const readyAtRestart = counts.ready ?? 0;
  while ((counts.ready ?? 0) < DOCS) {
    const elapsed = Date.now() - restartAt;
    assert.ok(elapsed < RECOVERY_LIMIT_MS, `not all ready ${elapsed / 1000} s after the restart: ${JSON.stringify(counts)}`);
    assert.equal(counts.failed ?? 0, 0, `documents failed: ${JSON.stringify(counts)}`);
    if (Date.now() - lastCronAt >= CRON_EVERY_MS) {
      lastCronAt = Date.now();
      const res = await fetch(`${base}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent(WATCHDOG_CRON).replaceAll("%20", "+")}`);
      assert.equal(res.status, 200, await res.text());
      crons += 1;
    }
    await new Promise((r) => setTimeout(r, 500));
    counts = await statusCounts(base);
    if (firstProgressAt === null && (counts.ready ?? 0) > readyAtRestart) firstProgressAt = Date.now();
  }
  const allReadyAt = Date.now();
  const rearmedByWatchdog = logEvents("watchdog_rearmed", logFrom);
  const watchdogRounds = logEvents("watchdog_run", logFrom);
  const crashedAttempts = (readFileSync(logFile, "utf8").slice(logFrom).match(/did not finish in attempt/g) ?? []).length;
  console.log(
    `[crash] all ${DOCS} ready ${((allReadyAt - restartAt) / 1000).toFixed(1)} s after the restart ` +
      `(up after ${((upAt - restartAt) / 1000).toFixed(1)} s; first document ready after the restart at ` +
      `${firstProgressAt === null ? "—" : ((firstProgressAt - restartAt) / 1000).toFixed(1)} s; ` +
      `${readyAtRestart} were ready at the restart); cron triggered ${crons}×, watchdog rounds with stalled rows: ${watchdogRounds}, ` +
      `alarms re-armed by the watchdog: ${rearmedByWatchdog}; crashed attempts found by the step watchdog alarm: ${crashedAttempts}`,
  );

  // Every document: live chunk rows, FTS5 rows and vectors agree with its active generation.
  const rows = d1(`
    SELECT d.key, d.status, d.active_version AS active, d.chunk_count,
      (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id AND c.version = d.active_version) AS live_chunks,
      (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id AND c.version <> d.active_version) AS other_chunks,
      (SELECT COUNT(*) FROM chunks_fts f JOIN chunks c ON c.id = f.rowid
         WHERE c.document_id = d.id AND c.version = d.active_version) AS fts_rows,
      (SELECT COUNT(*) FROM vector_index v WHERE v.document_id = d.id AND v.version = d.active_version) AS vectors,
      (SELECT COUNT(*) FROM vector_index v WHERE v.document_id = d.id AND v.version <> d.active_version) AS other_vectors
    FROM documents d WHERE d.key LIKE '${PREFIX}%' ORDER BY d.key`);
  assert.equal(rows.length, DOCS);
  const leftovers = rows.filter((r) => r.other_chunks > 0 || r.other_vectors > 0);
  for (const r of rows) {
    assert.equal(r.status, "ready", r.key);
    assert.ok(r.active > 0, `${r.key}: no active generation`);
    assert.ok(r.chunk_count > 0, `${r.key}: no chunks`);
    assert.equal(r.live_chunks, r.chunk_count, `${r.key}: live chunk rows`);
    assert.equal(r.fts_rows, r.chunk_count, `${r.key}: FTS5 rows`);
    assert.equal(r.vectors, r.chunk_count, `${r.key}: vectors`);
  }
  // FTS5's own check, and (rank 1) its check against the `chunks` content table: an error if either fails.
  d1("INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check')");
  d1("INSERT INTO chunks_fts(chunks_fts, rank) VALUES('integrity-check', 1)");
  const totals = d1(`SELECT (SELECT COUNT(*) FROM chunks) AS chunks, (SELECT COUNT(*) FROM chunks_fts) AS fts, (SELECT COUNT(*) FROM vector_index) AS vectors`)[0];
  console.log(
    `[crash] consistency: ${rows.length} documents, ${rows.reduce((n, r) => n + r.chunk_count, 0)} live chunks = FTS5 rows = vectors; ` +
      `FTS5 integrity-check passed; totals ${JSON.stringify(totals)}; documents with rows of other generations: ${leftovers.length}`,
  );
  assert.deepEqual(leftovers, [], "rows of generations that are not live");
});
