// Metrics (issue 15): every request, ingestion step, run, reconciliation page
// and provider call leaves a data point in the local `metric_points` table,
// written after the response; GET /admin/metrics folds a window of them into
// per-route percentiles and error rates, ingestion rates, failures and
// provider usage. The workloads here are scripted, so the report's counts and
// percentiles are checked against what the test did and the rows it left.
import { env, SELF } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { admin, count, deliverBatch, ingestReady, INGEST, poll, runCron, uniqueKey, waitForStatus } from "./support";

/** Nearest-rank percentile, as the service computes it. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1];
}

async function report(window = "1h"): Promise<any> {
  const res = await admin(`/admin/metrics?window=${window}`);
  expect(res.status).toBe(200);
  return res.json();
}

/** Waits until `n` points of `kind` (and `name`, if given) are stored: they are written after the response. */
async function waitForPoints(kind: string, n: number, name?: string): Promise<void> {
  await poll(
    () => count(`SELECT COUNT(*) AS n FROM metric_points WHERE kind = ?1 AND (?2 IS NULL OR name = ?2)`, kind, name ?? null),
    (seen) => seen >= n,
    `${n} ${kind} points${name ? ` for ${name}` : ""}`,
  );
}

function route(body: any, label: string): any {
  return body.requests.routes.find((r: any) => r.route === label);
}

beforeEach(async () => {
  await env.DB.prepare("DELETE FROM metric_points").run();
});

describe("request metrics", () => {
  it("count every request by route and status, with percentiles over the recorded durations", async () => {
    const client: number[] = [];
    for (let i = 0; i < 12; i++) {
      const started = Date.now();
      const res = await SELF.fetch("https://svc.test/api/health");
      await res.arrayBuffer();
      client.push(Date.now() - started);
    }
    // Client errors: a bad search body and unknown paths (one label for all of them).
    for (let i = 0; i < 3; i++) {
      const res = await SELF.fetch("https://svc.test/api/search", { method: "POST", body: "not json" });
      expect(res.status).toBe(400);
      await res.arrayBuffer();
    }
    for (const path of ["/nope", "/wp-login.php"]) {
      expect((await SELF.fetch(`https://svc.test${path}`)).status).toBe(404);
    }
    await waitForPoints("request", 17);

    const body = await report();
    const health = route(body, "GET /api/health");
    expect(health).toMatchObject({ count: 12, errors: 0, error_rate: 0, by_status: { "200": 12 } });
    const search = route(body, "POST /api/search");
    expect(search).toMatchObject({ count: 3, errors: 0, by_status: { "400": 3 } });
    expect(route(body, "GET (unrouted)")).toMatchObject({ count: 2, by_status: { "404": 2 } });

    const rows = await env.DB.prepare(
      "SELECT duration_ms FROM metric_points WHERE kind = 'request' AND name = 'GET /api/health'",
    ).all<{ duration_ms: number }>();
    const durations = rows.results.map((r) => r.duration_ms);
    expect(durations).toHaveLength(12);
    // The Worker's own time never exceeds what the client waited.
    expect(Math.max(...durations)).toBeLessThanOrEqual(Math.max(...client));
    expect(health.p50_ms).toBe(percentile(durations, 50));
    expect(health.p95_ms).toBe(percentile(durations, 95));
    expect(health.p99_ms).toBe(percentile(durations, 99));
  });

  it("report exact percentiles and error rates of a known set of points, within the window only", async () => {
    const now = Date.now();
    const insert = env.DB.prepare(
      "INSERT INTO metric_points (at, kind, name, outcome, duration_ms, status) VALUES (?1, 'request', 'POST /api/chat', ?2, ?3, ?4)",
    );
    const statements = [];
    // 100 requests of 10, 20, …, 1000 ms; every tenth a 503.
    for (let i = 1; i <= 100; i++) {
      const status = i % 10 === 0 ? 503 : 200;
      statements.push(insert.bind(now - 1_000 - i, status === 503 ? "error" : "ok", i * 10, status));
    }
    // Two hours old: inside 24h, outside 1h.
    statements.push(insert.bind(now - 2 * 3_600_000, "error", 99_999, 500));
    await env.DB.batch(statements);

    const hour = route(await report("1h"), "POST /api/chat");
    expect(hour).toMatchObject({ count: 100, errors: 10, error_rate: 0.1, p50_ms: 500, p95_ms: 950, p99_ms: 990 });
    expect(hour.by_status).toEqual({ "200": 90, "503": 10 });
    const day = route(await report("24h"), "POST /api/chat");
    expect(day).toMatchObject({ count: 101, errors: 11, p99_ms: 1_000 });
    expect(day.error_rate).toBeCloseTo(11 / 101, 12);
  });

  it("refuses an unknown window with 400 bad_window", async () => {
    for (const window of ["2h", "1d", "", "7D"]) {
      const res = await admin(`/admin/metrics?window=${encodeURIComponent(window)}`);
      expect(res.status, window).toBe(400);
      expect(((await res.json()) as any).error.code).toBe("bad_window");
    }
    expect((await admin("/admin/metrics")).status).toBe(200);
    expect((await admin("/admin/metrics", {}, null)).status).toBe(401);
  });
});

describe("ingestion metrics", () => {
  it("record each run, step attempt and provider call of a scripted ingestion", async () => {
    const keys = [uniqueKey("m/one.md"), uniqueKey("m/two.md"), uniqueKey("m/three.md")];
    let chunks = 0;
    for (const [i, key] of keys.entries()) {
      const sections = Array.from({ length: i + 1 }, (_, s) => `## Part ${s}\n\n${"Words about widgets. ".repeat(40)}\n`);
      const doc = await ingestReady(key, `# Doc ${i}\n\n${sections.join("\n")}`);
      chunks += doc.chunk_count;
    }
    // A binary object fails permanently at the chunk step.
    const binary = uniqueKey("m/binary.md");
    const object = await env.DOCUMENTS.put(binary, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]));
    await deliverBatch(INGEST, [
      { id: "metrics-bin", body: { action: "PutObject", object: { key: binary, size: object!.size, eTag: object!.etag }, eventTime: new Date().toISOString() } },
    ]);
    await waitForStatus(binary, ["failed"]);
    await waitForPoints("run", 4);

    const runs = await env.DB.prepare("SELECT name, outcome, detail, items, retries FROM metric_points WHERE kind = 'run' ORDER BY id").all<any>();
    expect(runs.results.map((r: any) => [r.name, r.outcome])).toEqual([
      [keys[0], "ready"],
      [keys[1], "ready"],
      [keys[2], "ready"],
      [binary, "failed"],
    ]);
    expect(runs.results[3].detail).toBe("chunk: permanent");

    const body = await report();
    expect(body.ingestion).toMatchObject({
      runs: 4,
      by_outcome: { ready: 3, failed: 1 },
      documents_ready: 3,
      chunks,
      retries: 0,
      failures_by_reason: { "chunk: permanent": 1 },
    });
    expect(body.ingestion.documents_per_minute).toBeCloseTo(3 / 60, 12);
    expect(body.ingestion.chunks_per_second).toBeCloseTo(chunks / 3_600, 12);
    const steps = Object.fromEntries(body.ingestion.steps.map((s: any) => [s.step, s]));
    // Four downloads and chunk attempts, three embeds (one batch each) and commits.
    expect(steps.download).toMatchObject({ attempts: 4, errors: 0 });
    expect(steps.chunk).toMatchObject({ attempts: 4, errors: 1 });
    expect(steps.embed).toMatchObject({ attempts: 3, errors: 0 });
    expect(steps.commit).toMatchObject({ attempts: 3, errors: 0 });
    expect(steps.embed.p95_ms).toBeGreaterThanOrEqual(steps.embed.p50_ms);

    // The offline embedder: one call per batch, free.
    const embed = body.providers.find((p: any) => p.provider === "offline" && p.operation === "embed");
    expect(embed).toMatchObject({ calls: 3, errors: 0, estimated_cost_usd: 0 });
    expect(embed.tokens).toBeGreaterThan(0);

    expect(body.documents.by_status).toMatchObject({ ready: 3, failed: 1 });
    expect(body.queue).toMatchObject({ queued: 0, processing: 0 });
    expect(body.sink).toBe("d1");
  });

  it("counts provider calls of queries, and reconciliation pages", async () => {
    const key = uniqueKey("m/query.md");
    await ingestReady(key, "# Query\n\nGeothermal heat pumps balance boreholes.\n");
    // The run's points are written after its last alarm; start counting after them.
    await waitForPoints("run", 1, key);
    await env.DB.prepare("DELETE FROM metric_points").run();
    for (let i = 0; i < 4; i++) {
      const res = await SELF.fetch("https://svc.test/api/search", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `heat pumps ${i}` }),
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const chat = await SELF.fetch("https://svc.test/api/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "What balances the boreholes?" }),
    });
    expect(chat.status).toBe(200);
    await chat.arrayBuffer();
    await waitForPoints("provider", 6);

    const started = await admin("/admin/reconcile", { method: "POST", body: JSON.stringify({ page_size: 1000 }) });
    expect(started.status).toBe(202);
    await poll(
      async () => (await env.DB.prepare("SELECT status FROM reconcile_runs ORDER BY id DESC LIMIT 1").first<any>())?.status,
      (s) => s === "done",
      "reconciliation done",
    );
    await waitForPoints("reconcile", 1);

    const body = await report();
    const embed = body.providers.find((p: any) => p.provider === "offline" && p.operation === "embed");
    const answer = body.providers.find((p: any) => p.provider === "offline" && p.operation === "chat");
    expect(embed).toMatchObject({ calls: 5, errors: 0 });
    expect(answer).toMatchObject({ calls: 1, errors: 0, estimated_cost_usd: 0 });
    expect(route(body, "POST /api/search")).toMatchObject({ count: 4, by_status: { "200": 4 } });
    expect(route(body, "POST /api/chat")).toMatchObject({ count: 1 });
    const objects = (await env.DOCUMENTS.list()).objects.length;
    expect(body.reconciliation).toMatchObject({ pages: 1, runs_finished: 1, objects_seen: objects });
  });
});

describe("metrics per Worker version (canary analysis)", () => {
  async function versions(window = "15m"): Promise<any> {
    const res = await admin(`/admin/metrics/versions?window=${window}`);
    expect(res.status).toBe(200);
    return res.json();
  }

  /** The id of the version answering, as GET /api/health reports it. */
  async function runningVersion(): Promise<string> {
    const health: any = await (await SELF.fetch("https://svc.test/api/health")).json();
    expect(health.version.id).toMatch(/^[0-9a-f-]{36}$/);
    return health.version.id;
  }

  it("counts the running version's public requests, a 5xx as an error, and labels every point with it", async () => {
    const id = await runningVersion();
    for (let i = 0; i < 5; i++) {
      const res = await SELF.fetch("https://svc.test/api/health");
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    // A 4xx is the client's: counted, not an error.
    const bad = await SELF.fetch("https://svc.test/api/search", { method: "POST", body: "not json" });
    expect(bad.status).toBe(400);
    await bad.arrayBuffer();
    // A 5xx on a public route: D1 fails the catalog's query while its table is away.
    await env.DB.prepare("ALTER TABLE companies RENAME TO companies_away").run();
    try {
      const failed = await SELF.fetch("https://svc.test/api/companies");
      expect(failed.status).toBe(500);
      await failed.arrayBuffer();
    } finally {
      await env.DB.prepare("ALTER TABLE companies_away RENAME TO companies").run();
    }
    // Neither an admin call nor an unrouted probe is the public service.
    expect((await admin("/admin/alerts")).status).toBe(200);
    expect((await SELF.fetch("https://svc.test/wp-login.php")).status).toBe(404);
    // 1 + 5 health checks, the bad search, the failed catalog, the admin call, the probe.
    await waitForPoints("request", 10);

    const body = await versions();
    expect(body.window_ms).toBe(15 * 60_000);
    expect(body.since_ms).toBe(body.until_ms - body.window_ms);
    expect(body.rows_read).toBe(10);
    expect(body.versions).toHaveLength(1);
    const running = body.versions[0];
    expect(running).toMatchObject({ version_id: id, requests: 8, errors: 1, error_rate: 1 / 8 });
    const rows = await env.DB.prepare(
      "SELECT duration_ms FROM metric_points WHERE kind = 'request' AND (name LIKE '% /api%')",
    ).all<{ duration_ms: number }>();
    const durations = rows.results.map((r) => r.duration_ms);
    expect(durations).toHaveLength(8);
    expect(running.p50_ms).toBe(percentile(durations, 50));
    expect(running.p95_ms).toBe(percentile(durations, 95));
    // Every point this version wrote carries its id (the admin call's and the probe's too).
    const labels = await env.DB.prepare("SELECT DISTINCT version FROM metric_points").all<{ version: string }>();
    expect(labels.results.map((r) => r.version)).toEqual([id]);
  });

  it("splits a window's public requests between two versions serving side by side", async () => {
    const now = Date.now();
    const insert = env.DB.prepare(
      "INSERT INTO metric_points (at, kind, name, outcome, duration_ms, status, version) VALUES (?1, 'request', ?2, 'ok', ?3, ?4, ?5)",
    );
    const statements = [];
    // The old version: 90 requests of 10, 20, …, 900 ms; every thirtieth a 503.
    for (let i = 1; i <= 90; i++) {
      statements.push(insert.bind(now - 60_000 - i, "POST /api/search", i * 10, i % 30 === 0 ? 503 : 200, "v-old"));
    }
    // The new version (10 %): 10 chats of 100 … 1000 ms, two of them 500s, one a 429.
    for (let i = 1; i <= 10; i++) {
      const status = i <= 2 ? 500 : i === 3 ? 429 : 200;
      statements.push(insert.bind(now - 60_000 - i, "POST /api/chat", i * 100, status, "v-new"));
    }
    // Not counted: admin and unrouted requests, a step, and a request before the window.
    statements.push(insert.bind(now - 1_000, "GET /admin/metrics", 5_000, 500, "v-new"));
    statements.push(insert.bind(now - 1_000, "GET (unrouted)", 1, 404, "v-new"));
    statements.push(insert.bind(now - 20 * 60_000, "POST /api/chat", 9_000, 500, "v-new"));
    statements.push(
      env.DB.prepare(
        "INSERT INTO metric_points (at, kind, name, outcome, duration_ms, version) VALUES (?1, 'step', 'embed', 'permanent', 9000, 'v-new')",
      ).bind(now - 1_000),
    );
    // Written before migration 0010 (no version): its own entry, id "".
    statements.push(
      env.DB.prepare(
        "INSERT INTO metric_points (at, kind, name, outcome, duration_ms, status) VALUES (?1, 'request', 'GET /api/health', 'ok', 3, 200)",
      ).bind(now - 1_000),
    );
    await env.DB.batch(statements);

    const body = await versions("15m");
    expect(body.versions.map((v: any) => v.version_id)).toEqual(["v-old", "v-new", ""]);
    const [old, fresh, unknown] = body.versions;
    expect(old).toMatchObject({ requests: 90, errors: 3, p50_ms: 450, p95_ms: 860 });
    expect(old.error_rate).toBeCloseTo(3 / 90, 12);
    expect(fresh).toMatchObject({ requests: 10, errors: 2, error_rate: 0.2, p50_ms: 500, p95_ms: 1_000 });
    expect(unknown).toMatchObject({ requests: 1, errors: 0, p50_ms: 3 });

    // A wider window takes in the older 500 of the new version.
    const hour = await versions("1h");
    expect(hour.versions.find((v: any) => v.version_id === "v-new")).toMatchObject({ requests: 11, errors: 3 });
  });

  it("refuses a window that is not a duration, and answers only with the token", async () => {
    for (const window of ["", "15", "0m", "1.5h", "-5m", "8d", "1w", "15M"]) {
      const res = await admin(`/admin/metrics/versions?window=${encodeURIComponent(window)}`);
      expect(res.status, window).toBe(400);
      expect(((await res.json()) as any).error.code).toBe("bad_window");
    }
    const fallback: any = await (await admin("/admin/metrics/versions")).json();
    expect(fallback.window_ms).toBe(3_600_000);
    expect((await admin("/admin/metrics/versions", {}, null)).status).toBe(401);
    expect((await admin("/admin/metrics/versions", { method: "POST" })).status).toBe(404);
  });
});

describe("retention", () => {
  it("the daily cron deletes points past the retention and keeps at most METRICS_MAX_ROWS", async () => {
    const now = Date.now();
    const day = 24 * 3_600_000;
    const insert = env.DB.prepare("INSERT INTO metric_points (at, kind, name, outcome) VALUES (?1, 'request', 'GET /api/health', 'ok')");
    const statements = [];
    for (let i = 0; i < 50; i++) statements.push(insert.bind(now - 9 * day - i));
    for (let i = 0; i < 1_200; i++) statements.push(insert.bind(now - 1_000 + (i % 500)));
    await env.DB.batch(statements);

    await runCron("17 3 * * *");

    // METRICS_MAX_ROWS is 1000 in the test configuration (vitest.config.ts). The
    // cron's own points (a reconciliation page) are written after the prune.
    expect(await count("SELECT COUNT(*) AS n FROM metric_points WHERE at < ?1", now - 8 * day)).toBe(0);
    expect(await count("SELECT COUNT(*) AS n FROM metric_points WHERE kind = 'request'")).toBeLessThanOrEqual(1_000);
    expect(await count("SELECT COUNT(*) AS n FROM metric_points WHERE kind = 'request' AND at >= ?1", now - 1_000)).toBeGreaterThanOrEqual(990);
  });
});
