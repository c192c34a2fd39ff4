// The local sink's buffer (the `metrics-buffer` project: METRICS_SINK=d1, 5 points, 1 s): a
// request adds no D1 write of its own; its points wait in the isolate until an invocation finds
// the buffer full or old and writes it, after its answer, through its own waitUntil. Readers
// write the waiting points first, so /admin/metrics still sees every request.
import { env, SELF } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { admin, count, poll } from "./support";

const stored = () => count("SELECT COUNT(*) AS n FROM metric_points WHERE kind = 'request' AND name = 'GET /api/health'");
const settle = () => new Promise((r) => setTimeout(r, 300));

async function health() {
  const res = await SELF.fetch("https://svc.test/api/health");
  await res.arrayBuffer();
}

beforeEach(async () => {
  // Whatever an earlier test left waiting is written by a request that finds it old.
  await health();
  await new Promise((r) => setTimeout(r, 1_100));
  await health();
  await settle();
  await env.DB.prepare("DELETE FROM metric_points").run();
});

describe("the isolate's metrics buffer", () => {
  it("writes nothing until five points wait, then all of them at once", async () => {
    for (let i = 0; i < 4; i++) await health();
    await settle();
    expect(await stored()).toBe(0);
    await health();
    await poll(stored, (n) => n === 5, "five health points written by the fifth request");
  });

  it("writes a buffer whose oldest point is a second old at the next answer", async () => {
    await health();
    await settle();
    expect(await stored()).toBe(0);
    await new Promise((r) => setTimeout(r, 1_000));
    await health();
    await poll(stored, (n) => n === 2, "both points, written by the second request");
  });

  it("a reader writes the waiting points before it reads", async () => {
    for (let i = 0; i < 3; i++) await health();
    await settle();
    expect(await stored()).toBe(0);
    const res = await admin("/admin/metrics");
    expect(res.status).toBe(200);
    const body: any = await res.json();
    expect(body.source).toBe("d1");
    expect(body.requests.routes.find((r: any) => r.route === "GET /api/health")).toMatchObject({ count: 3 });
    expect(await stored()).toBe(3);
  });
});
