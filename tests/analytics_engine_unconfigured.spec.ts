// METRICS_SINK=analytics-engine without its API token (the `analytics-engine-unconfigured`
// project): requests are still served and written to Analytics Engine; /api/health names the
// missing secret, and the routes that read the points answer a clear 503, never a crash.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, poll } from "./support";

describe("Analytics Engine reads without a token", () => {
  it("health names the secret, /admin/metrics answers 503, requests still count", async () => {
    await env.METRICS.reset();
    const health = await SELF.fetch("https://svc.test/api/health");
    expect(health.status).toBe(503);
    expect(JSON.stringify(await health.json())).toContain("ANALYTICS_ENGINE_API_TOKEN is missing");
    await poll(
      async () => ((await env.METRICS.points()) as any[]).filter((p) => p.blob2 === "GET /api/health").length,
      (n) => n >= 1,
      "the health request's point",
    );
    for (const path of ["/admin/metrics", "/admin/metrics/versions", "/admin/availability"]) {
      const res = await admin(path);
      expect(res.status, path).toBe(503);
      const body: any = await res.json();
      expect(body.error.code).toBe("metrics_store_not_configured");
      expect(body.error.message).toContain("ANALYTICS_ENGINE_API_TOKEN is not set");
    }
    expect(await env.METRICS.queries()).toEqual([]);
  });
});
