// Metrics in production's shape (the `analytics-engine` project, METRICS_SINK=analytics-engine):
// the request path writes points only to Analytics Engine, and /admin/metrics, its split per
// version and the alerts read them back through the SQL API. Both halves are the stand-in
// (tests/standins/analytics-engine.js): the Worker's `METRICS` binding records what it writes,
// and its SQL API answers from those records, parsing only the statements the reader sends.
import { env, SELF } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { admin, count, ingestReady, poll, runCron, uniqueKey } from "./support";

const SQL_API = "https://api.cloudflare.com/client/v4/accounts/0123456789abcdef0123456789abcdef/analytics_engine/sql";
const CHAT = "/v1/chat/completions";
const HOUR = 3_600_000;

/** Nearest-rank percentile, as the service computes it (weight 1 each). */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1];
}

async function report(): Promise<any> {
  const res = await admin("/admin/metrics?window=1h");
  expect(res.status, await res.clone().text()).toBe(200);
  return res.json();
}

function route(body: any, label: string): any {
  return body.requests.routes.find((r: any) => r.route === label);
}

/** Points the stand-in holds for request `label` (writes arrive after each response). */
async function points(label: string, n: number): Promise<any[]> {
  return poll(
    async () => ((await env.METRICS.points()) as any[]).filter((p) => p.index1 === "request" && p.blob2 === label),
    (seen) => seen.length >= n,
    `${n} Analytics Engine points for ${label}`,
  );
}

async function get(path: string) {
  const res = await SELF.fetch(`https://svc.test${path}`);
  await res.arrayBuffer();
  return res.status;
}

beforeEach(async () => {
  await env.METRICS.reset();
});

describe("metrics on Analytics Engine", () => {
  it("a request writes to Analytics Engine only, and /admin/metrics reads it back through the SQL API", async () => {
    const stored = await count("SELECT COUNT(*) AS n FROM metric_points");
    for (let i = 0; i < 6; i++) expect(await get("/api/health")).toBe(200);
    for (let i = 0; i < 2; i++) {
      const res = await SELF.fetch("https://svc.test/api/search", { method: "POST", body: "not json" });
      expect(res.status).toBe(400);
      await res.arrayBuffer();
    }
    expect(await get("/wp-login.php")).toBe(404);
    const health = await points("GET /api/health", 6);
    await points("POST /api/search", 2);
    await points("GET (unrouted)", 1);

    const body = await report();
    expect(body.sink).toBe("analytics-engine");
    expect(body.source).toBe("analytics-engine");
    expect(route(body, "GET /api/health")).toMatchObject({ count: 6, errors: 0, by_status: { "200": 6 } });
    expect(route(body, "POST /api/search")).toMatchObject({ count: 2, by_status: { "400": 2 } });
    expect(route(body, "GET (unrouted)")).toMatchObject({ count: 1, by_status: { "404": 1 } });
    // The percentiles are the SQL API's, over exactly what the Worker wrote.
    const durations = health.map((p) => p.double1);
    expect(route(body, "GET /api/health").p95_ms).toBe(percentile(durations, 95));
    expect(route(body, "GET /api/health").p50_ms).toBe(percentile(durations, 50));
    // Every point carries the documented layout: index1 = kind, blob1..5, double1..7.
    expect(health[0]).toMatchObject({ index1: "request", blob1: "request", blob3: "ok", double2: 200 });
    // Nothing went to D1 on the way.
    expect(await count("SELECT COUNT(*) AS n FROM metric_points")).toBe(stored);

    const versions = await admin("/admin/metrics/versions?window=15m");
    expect(versions.status).toBe(200);
    const split: any = await versions.json();
    expect(split.source).toBe("analytics-engine");
    // Public requests only: the search's 400s and health; not the probe, not /admin.
    expect(split.versions.reduce((n: number, v: any) => n + v.requests, 0)).toBe(8);

    const queries: string[] = await env.METRICS.queries();
    expect(queries.length).toBeGreaterThanOrEqual(10);
    for (const sql of queries) expect(sql).toMatch(/ FROM portfolio_metrics_test WHERE index1 = '[a-z]+'.* FORMAT JSON$/);
    expect(await env.METRICS.rejected()).toEqual({ sql: [], writes: [] });
  });

  it("counts what a sampled point stands for (_sample_interval)", async () => {
    // One point in four is kept, standing for four.
    await env.METRICS.configure({ sampleInterval: 4 });
    for (let i = 0; i < 8; i++) expect(await get("/api/health")).toBe(200);
    // The admin request itself is written after its answer: wait for the health points only.
    await poll(
      async () => (await env.METRICS.points()).length,
      (n: number) => n >= 2,
      "two kept points",
    );
    const kept = ((await env.METRICS.points()) as any[]).filter((p) => p.blob2 === "GET /api/health");
    expect(kept.length).toBe(2);
    expect(kept.every((p) => p._sample_interval === 4)).toBe(true);
    expect(route(await report(), "GET /api/health")).toMatchObject({ count: 8, by_status: { "200": 8 } });
  });

  it("the SQL API is asked with the account's address and the bearer token, which it checks", async () => {
    const ask = (headers: Record<string, string>) =>
      fetch(SQL_API, { method: "POST", headers, body: "SELECT sum(_sample_interval) AS n FROM portfolio_metrics_test WHERE index1 = 'request' FORMAT JSON" });
    expect((await ask({})).status).toBe(401);
    expect((await ask({ authorization: "Bearer wrong" })).status).toBe(401);
    expect((await ask({ authorization: "Bearer standin-analytics-token" })).status).toBe(200);
    // The Worker's own reads pass the same check.
    expect((await admin("/admin/metrics")).status).toBe(200);
  });

  it("an SQL API error is a clear 502/503 naming the API, never a crash", async () => {
    await env.METRICS.failNext(500, "Internal error: too many concurrent queries");
    const failed = await admin("/admin/metrics");
    expect(failed.status).toBe(502);
    const body: any = await failed.json();
    expect(body.error.code).toBe("metrics_store_rejected");
    expect(body.error.message).toContain("HTTP 500");
    expect(body.error.message).toContain("too many concurrent queries");

    await env.METRICS.failNext(401, JSON.stringify({ success: false, errors: [{ code: 10000, message: "Authentication error" }] }));
    const refused = await admin("/admin/metrics/versions");
    expect(refused.status).toBe(503);
    const why: any = await refused.json();
    expect(why.error.code).toBe("metrics_store_unauthorized");
    expect(why.error.message).toContain("ANALYTICS_ENGINE_API_TOKEN");
    expect(why.error.message).not.toContain("standin-analytics-token");

    await env.METRICS.failNext(200, "<html>maintenance</html>");
    const garbled = await admin("/admin/metrics");
    expect(garbled.status).toBe(502);
    expect(((await garbled.json()) as any).error.code).toBe("metrics_store_malformed");
    // And then it reads again.
    expect((await admin("/admin/metrics")).status).toBe(200);
  });

  it("alert conditions fire from Analytics Engine's points: a revoked provider key", async () => {
    const key = uniqueKey("analytics/revoked.md");
    await ingestReady(key, "# Revoked\n\nThe ae-revoked-marker document about tidal turbines.\n");
    await env.METRICS.reset();
    const rule = await fetch(`${env.STANDIN_URL}/__standin/rules`, {
      method: "POST",
      body: JSON.stringify({ match: "ae-revoked-marker", path: CHAT, faults: Array.from({ length: 6 }, () => ({ status: 401 })), repeat: false }),
    });
    expect(rule.ok).toBe(true);
    for (let i = 0; i < 6; i++) {
      const res = await SELF.fetch("https://svc.test/api/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ question: `ae-revoked-marker question ${i}?` }),
      });
      expect(res.status).toBe(502);
      await res.arrayBuffer();
    }
    await points("POST /api/chat", 6);
    await runCron("*/5 * * * *");
    const listing: any = await (await admin("/admin/alerts")).json();
    const active = listing.active.map((a: any) => a.key).sort();
    expect(active).toEqual(expect.arrayContaining(["error_rate", "provider_auth:openai", "availability_burn"]));
    expect(listing.active.find((a: any) => a.key === "error_rate").message).toContain("6 of 6 requests");

    // An hour passes in Analytics Engine: the windows empty and the request alerts resolve.
    await env.METRICS.age(2 * HOUR);
    await runCron("*/5 * * * *");
    const after: any = await (await admin("/admin/alerts")).json();
    const still = after.active.map((a: any) => a.key);
    expect(still).not.toContain("error_rate");
    expect(still).not.toContain("availability_burn");
    expect(await env.METRICS.rejected()).toEqual({ sql: [], writes: [] });
  });
});
