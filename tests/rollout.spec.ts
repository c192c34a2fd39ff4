// The cut-over from the old chat API, end to end (the `rollout` project):
// LEGACY_CHAT_URL points at a real local HTTP stand-in of the old endpoint
// (tests/standins/legacy-chat.mjs, JSON and SSE), ROLLOUT_PERCENT=80 caps
// the share served here. Asserts the sticky split (computed here from the
// same SHA-256 buckets), the proxy passing requests and answers through
// unchanged (streaming included), the setting behind PUT /admin/rollout, and
// the shadow comparisons recorded after the response, and the failover: a
// chat whose old endpoint fails before its first byte (refused, no headers or
// first chunk within LEGACY_FIRST_BYTE_TIMEOUT_MS = 1 s here, a 5xx) is
// answered here instead, never one that has started streaming.
import { env, SELF } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { admin, ingestReady, poll, runCron, uniqueKey } from "./support";

const CEILING = 80;

async function legacy(route: string, body?: unknown): Promise<any> {
  const res = await fetch(`${env.LEGACY_STANDIN_URL}${route}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`legacy stand-in ${route}: ${res.status}`);
  return res.json();
}

async function setRollout(body: unknown): Promise<Response> {
  return admin("/admin/rollout", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

// Each chat comes from its own address, so the chat rate limit (30 a minute
// per address) stays out of the way; the split keys on the client id.
let address = 0;
function nextAddress(): string {
  address += 1;
  return `198.51.${100 + Math.floor(address / 250)}.${(address % 250) + 1}`;
}

function chat(clientId: string, question: string, init: { sse?: boolean; headers?: Record<string, string> } = {}) {
  return SELF.fetch("https://svc.test/api/chat", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-client-id": clientId,
      "CF-Connecting-IP": nextAddress(),
      ...(init.sse ? { accept: "text/event-stream" } : {}),
      ...init.headers,
    },
    body: JSON.stringify({ question }),
  });
}

/** The client's bucket as portfolio_core::operations::rollout::bucket computes it. */
async function bucket(salt: string, key: string): Promise<number> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${salt}:${key}`)));
  const hex = [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return Number(BigInt(`0x${hex}`) % 100n);
}

async function servedHere(clientId: string, percent: number): Promise<boolean> {
  return (await bucket("rollout", `id:${clientId}`)) < percent;
}

async function report(): Promise<any> {
  const res = await admin("/admin/rollout/report?days=1");
  expect(res.status).toBe(200);
  return res.json();
}

beforeEach(async () => {
  await legacy("/__legacy/reset", {});
});

describe("rollout", () => {
  it("without a setting serves ROLLOUT_PERCENT of the clients, and reports it", async () => {
    const res = await admin("/admin/rollout");
    expect(res.status).toBe(200);
    const state: any = await res.json();
    expect(state).toMatchObject({ ceiling_percent: CEILING, setting: null, effective: { percent: CEILING, shadow_percent: 0 }, cache_ms: 10_000 });
    // The origin only: a key in the URL's path or query stays out of answers.
    expect(state.legacy).toBe(new URL(env.LEGACY_ENDPOINT_URL!).origin);
  });

  it("percent 0 proxies every client, request and JSON answer unchanged, the old CORS headers dropped", async () => {
    expect((await setRollout({ percent: 0 })).status).toBe(200);
    await legacy("/__legacy/script", { sources: ["acme/overview.md"] });
    for (const client of ["alice", "bob", "carol"]) {
      const res = await chat(client, `What does Acme do, ${client}?`, { headers: { authorization: "Bearer site-anon-key", origin: "https://site.example" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-served-by")).toBe("legacy");
      expect(res.headers.get("x-legacy-stack")).toBe("supabase");
      expect(res.headers.get("access-control-allow-origin")).not.toBe("https://old-site.example");
      expect(res.headers.get("x-request-id")).toBeTruthy();
      expect(await res.json()).toEqual({
        answer: `Legacy answer to: What does Acme do, ${client}?`,
        sources: [{ path: "acme/overview.md", title: "overview" }],
        model: "legacy-gpt",
      });
    }
    const { requests } = await legacy("/__legacy/requests");
    expect(requests).toHaveLength(3);
    expect(requests[0].method).toBe("POST");
    expect(requests[0].path).toBe("/functions/v1/chat?v=1");
    expect(JSON.parse(requests[0].body)).toEqual({ question: "What does Acme do, alice?" });
    expect(requests[0].headers["authorization"]).toBe("Bearer site-anon-key");
    expect(requests[0].headers["x-client-id"]).toBe("alice");
    expect(requests[0].headers["content-type"]).toBe("application/json");
  });

  it("streams the old API's SSE answer through event by event", async () => {
    expect((await setRollout({ percent: 0, shadow_percent: 0 })).status).toBe(200);
    await legacy("/__legacy/script", { sources: ["a.md", "b.md"], gap_ms: 100 });
    const res = await chat("streamer", "Tell me about Acme", { sse: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let firstChunkAt = 0;
    const started = Date.now();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!firstChunkAt) firstChunkAt = Date.now() - started;
      text += decoder.decode(value, { stream: true });
    }
    // The sources event arrives before the old API has finished (3 gaps of 100 ms).
    expect(firstChunkAt).toBeLessThan(250);
    const events = text.trim().split("\n\n").map((block) => block.split("\n")[0]);
    expect(events).toEqual(["event: sources", "event: delta", "event: delta", "event: delta", "event: done"]);
    expect(text).toContain(`data: ${JSON.stringify({ sources: [{ path: "a.md", title: "a" }, { path: "b.md", title: "b" }] })}`);
  });

  it("the split is sticky per client id and follows the setting, capped by ROLLOUT_PERCENT", async () => {
    const clients = Array.from({ length: 30 }, (_, i) => `client-${i}`);
    for (const percent of [50, 100]) {
      const put = await setRollout({ percent });
      expect(put.status).toBe(200);
      const effective = Math.min(percent, CEILING);
      expect(((await put.json()) as any).effective.percent).toBe(effective);
      let here = 0;
      for (const client of clients) {
        const expected = await servedHere(client, effective);
        for (let round = 0; round < 2; round++) {
          const res = await chat(client, "What is Acme?");
          const served = res.headers.get("x-served-by") === "legacy" ? "legacy" : "here";
          expect(served, `${client} at ${percent} %`).toBe(expected ? "here" : "legacy");
          const body: any = await res.json();
          if (expected) expect(body).toHaveProperty("prompt_version");
          else expect(body.model).toBe("legacy-gpt");
        }
        if (expected) here += 1;
      }
      // Raising the share only moves clients to this service.
      expect(here).toBeGreaterThan(0);
      expect(here).toBeLessThan(clients.length);
    }
    // The client id decides, not the address: no id falls back to the address (/64 for IPv6).
    await setRollout({ percent: 0 });
    const res = await SELF.fetch("https://svc.test/api/chat", {
      method: "POST",
      headers: { "content-type": "application/json", "CF-Connecting-IP": "2001:db8::1" },
      body: JSON.stringify({ question: "hi" }),
    });
    expect(res.headers.get("x-served-by")).toBe("legacy");
    await res.arrayBuffer();
  });

  it("shadowing does not slow the proxied answer (measured: time to the whole answer, shadowed or not)", async () => {
    const key = uniqueKey("rollout/timing.md");
    await ingestReady(key, "---\ncompany: timing\n---\n# Timing Co\n\nTiming Co measures the latency of snow turbines.\n");
    await legacy("/__legacy/script", { sources: [key], delay_ms: 20 });
    const ROUNDS = 15;
    const timed = async (shadow: number): Promise<number[]> => {
      expect((await setRollout({ percent: 0, shadow_percent: shadow })).status).toBe(200);
      const times: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const compared = (await report()).compared;
        const started = performance.now();
        const res = await chat(`timing-${i}`, "Who measures the latency of snow turbines?");
        await res.arrayBuffer();
        times.push(performance.now() - started);
        expect(res.headers.get("x-served-by")).toBe("legacy");
        // The next request starts once this one's comparison is recorded, so
        // what is timed is each answer itself, not a neighbour's retrieval.
        if (shadow) await poll(report, (r) => r.compared === compared + 1, "comparison recorded");
      }
      return times;
    };
    // Alternate, so warm-up and drift fall on both sides.
    const plain = [...(await timed(0)), ...(await timed(100))];
    const shadowed = [...plain.splice(ROUNDS), ...(await timed(100))];
    plain.push(...(await timed(0)));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(
      `[rollout] proxied answer, ${2 * ROUNDS} requests each (old API delay 20 ms): median ${median(plain).toFixed(1)} ms without shadow, ${median(shadowed).toFixed(1)} ms with every request shadowed`,
    );
    // The comparison runs after the answer has reached the client: the answer does not wait for it.
    expect(median(shadowed)).toBeLessThan(median(plain) + 25);
  });

  it("a hang-up before answering fails over: answered here, counted, and not a shadow comparison", async () => {
    expect((await setRollout({ percent: 0, shadow_percent: 100 })).status).toBe(200);
    const before = await report();
    await legacy("/__legacy/script", { hang_up: true });
    const res = await chat("hung-up", "Is anyone there?");
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("failover");
    expect(await res.json()).toHaveProperty("prompt_version");
    const after = await poll(report, (r) => r.failovers === before.failovers + 1, "failover counted");
    expect(after.per_day[0].failover_reasons.unreachable).toBeGreaterThanOrEqual(1);
    // The old API gave no answer to compare.
    expect(after.compared).toBe(before.compared);
  });

  it("the daily cron deletes comparisons and failover counts older than 30 days and keeps the rest", async () => {
    const day = 24 * 3_600_000;
    const now = Date.now();
    const insert = env.DB.prepare("INSERT INTO shadow_comparisons (at, overlap, legacy_ms, ours_ms) VALUES (?1, 1.0, 100, 50)");
    await env.DB.batch([insert.bind(now - 31 * day), insert.bind(now - 40 * day), insert.bind(now - 29 * day), insert.bind(now - 1_000)]);
    const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    const failovers = env.DB.prepare("INSERT INTO rollout_failovers (day, reason, count) VALUES (?1, 'cron-test', 3) ON CONFLICT DO NOTHING");
    await env.DB.batch([failovers.bind(utcDay(now - 40 * day)), failovers.bind(utcDay(now - 29 * day))]);
    const old = "SELECT COUNT(*) AS n FROM shadow_comparisons WHERE at < ?1";
    expect((await env.DB.prepare(old).bind(now - 30 * day).first<any>()).n).toBe(2);
    await runCron("17 3 * * *");
    expect((await env.DB.prepare(old).bind(now - 30 * day).first<any>()).n).toBe(0);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM shadow_comparisons WHERE at >= ?1").bind(now - 30 * day).first<any>()).n).toBeGreaterThanOrEqual(2);
    const days = await env.DB.prepare("SELECT day FROM rollout_failovers WHERE reason = 'cron-test'").all<any>();
    expect(days.results.map((r) => r.day)).toEqual([utcDay(now - 29 * day)]);
  });

  it("over 1,000 simulated clients at 10 %, about 10 % are served here, each the same way twice", async () => {
    expect((await setRollout({ percent: 10, shadow_percent: 0 })).status).toBe(200);
    let here = 0;
    const sides = new Map<string, boolean>();
    for (let i = 0; i < 1_000; i++) {
      const client = `sim-${i}`;
      const res = await chat(client, "What is Acme?");
      await res.arrayBuffer();
      expect(res.status, client).toBe(200);
      const isHere = res.headers.get("x-served-by") !== "legacy";
      expect(isHere, client).toBe(await servedHere(client, 10));
      sides.set(client, isHere);
      here += Number(isHere);
    }
    console.log(`[rollout] 1,000 clients at 10 %: ${here} served here`);
    expect(Math.abs(here - 100)).toBeLessThanOrEqual(40);
    // Sticky: every 10th client asks again and lands on the same side.
    for (let i = 0; i < 1_000; i += 10) {
      const res = await chat(`sim-${i}`, "And what else?");
      await res.arrayBuffer();
      expect(res.headers.get("x-served-by") !== "legacy", `sim-${i} again`).toBe(sides.get(`sim-${i}`));
    }
  }, 120_000);

  it("PUT /admin/rollout refuses what is not a share, and needs the token", async () => {
    for (const body of [{ percent: 101 }, { percent: -5 }, { percent: "50" }, { percent: 10, shadow_percent: 200 }, { percent: 10, extra: true }, {}]) {
      const res = await setRollout(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as any).error.code).toBe("bad_rollout");
    }
    expect((await admin("/admin/rollout", { method: "PUT", body: '{"percent": 0}' }, null)).status).toBe(401);
    expect((await admin("/admin/rollout", { method: "POST", body: "{}" })).status).toBe(405);
    expect((await admin("/admin/rollout/report?days=31")).status).toBe(400);
  });

  it("shadows sampled proxied requests after the answer and reports the overlap per day", async () => {
    const key = uniqueKey("rollout/shadow.md");
    await ingestReady(key, "---\ncompany: glacier\ntitle: Glacier Works\n---\n# Glacier Works\n\nGlacier Works builds frostbite-proof snow turbines.\n");
    const before = (await report()).compared;
    expect((await setRollout({ percent: 0, shadow_percent: 100 })).status).toBe(200);
    // The old stack cites the same document (by path, which the migration keeps as the key).
    await legacy("/__legacy/script", { sources: [key] });
    const res = await chat("shadowed", "Who builds frostbite-proof snow turbines?");
    expect(res.headers.get("x-served-by")).toBe("legacy");
    expect(((await res.json()) as any).model).toBe("legacy-gpt");
    const after = await poll(report, (r) => r.compared === before + 1, "shadow comparison recorded");
    const today = after.per_day[0];
    expect(today.shadowed).toBeGreaterThanOrEqual(1);
    expect(today.mean_overlap).toBeGreaterThan(0);
    expect(today.legacy_p50_ms).not.toBeNull();
    expect(today.ours_p50_ms).not.toBeNull();

    // The old API refusing the request (a 4xx: its verdict on this request, not an outage):
    // its answer goes to the client as it is, and the comparison says so.
    await legacy("/__legacy/script", { sources: [key], status: 400 });
    const failed = await chat("shadowed", "Who builds frostbite-proof snow turbines?");
    expect(failed.status).toBe(400);
    expect(failed.headers.get("x-served-by")).toBe("legacy");
    await failed.arrayBuffer();
    const withError = await poll(report, (r) => r.compared === before + 2, "failed comparison recorded");
    expect(withError.per_day[0].legacy_errors).toBeGreaterThanOrEqual(1);
    const rows = await env.DB.prepare("SELECT legacy_error, ours_error, overlap FROM shadow_comparisons ORDER BY id").all<any>();
    expect(rows.results.at(-1)).toEqual({ legacy_error: "status 400", ours_error: null, overlap: null });
    expect(rows.results.at(-2)).toMatchObject({ legacy_error: null, ours_error: null });
  });

  it("shadow_percent 0 records nothing, and proxied requests have their own metrics label", async () => {
    expect((await setRollout({ percent: 0, shadow_percent: 0 })).status).toBe(200);
    const before = (await report()).compared;
    const res = await chat("unshadowed", "anything");
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, 500));
    expect((await report()).compared).toBe(before);
    const labels = await poll(
      async () => (await env.DB.prepare("SELECT DISTINCT name FROM metric_points WHERE kind = 'request'").all<any>()).results.map((r) => r.name),
      (names) => names.includes("POST /api/chat (legacy)"),
      "the proxied request's data point",
    );
    expect(labels).toContain("POST /api/chat (legacy)");
  });
});

describe("failover: the old endpoint failing before its first byte", () => {
  /** A document only this test cites, so its answer's sources can be checked. */
  async function document(name: string): Promise<{ key: string; question: string }> {
    const key = uniqueKey(`rollout/failover-${name}.md`);
    const thing = `${name}-proof hail turbines`;
    await ingestReady(key, `---\ncompany: ${name}\n---\n# ${name} Works\n\n${name} Works builds ${thing}.\n`);
    return { key, question: `Who builds ${thing}?` };
  }

  /** A chat answered here because the old endpoint failed: 200, the header, our answer and its sources. */
  async function expectFailover(res: Response, key: string) {
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("failover");
    const body: any = await res.json();
    expect(body).toHaveProperty("prompt_version");
    expect(body.model).not.toBe("legacy-gpt");
    expect(body.sources.map((s: any) => s.key)).toContain(key);
  }

  /** Failovers for `reason` over a report's days. */
  function failoversBy(reason: string): (r: any) => number {
    return (r) => r.per_day.reduce((n: number, d: any) => n + (d.failover_reasons[reason] ?? 0), 0);
  }

  beforeEach(async () => {
    expect((await setRollout({ percent: 0, shadow_percent: 0 })).status).toBe(200);
  });

  it("down (connections refused): each chat is answered here, JSON and SSE, counted and labelled in the metrics", async () => {
    const { key, question } = await document("refused");
    const before = await report();
    const unreachable = failoversBy("unreachable");
    await legacy("/__legacy/script", { down: true });
    for (const client of ["down-1", "down-2", "down-3"]) {
      await expectFailover(await chat(client, question), key);
    }
    const streamed = await chat("down-sse", question, { sse: true });
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get("x-served-by")).toBe("failover");
    expect(streamed.headers.get("content-type")).toContain("text/event-stream");
    const text = await streamed.text();
    expect(text.split("\n")[0]).toBe("event: sources");
    expect(text).toContain(key);
    expect(text).toContain("event: done");

    const after = await poll(report, (r) => r.failovers === before.failovers + 4, "4 failovers counted");
    expect(unreachable(after) - unreachable(before)).toBe(4);
    expect(after.per_day[0].failovers).toBeGreaterThanOrEqual(4);
    expect(after.compared).toBe(before.compared);
    // Nothing reached the stand-in: its port was closed.
    expect((await legacy("/__legacy/requests")).requests).toHaveLength(0);
    await poll(
      async () => (await env.DB.prepare("SELECT COUNT(*) AS n FROM metric_points WHERE kind = 'request' AND name = ?1").bind("POST /api/chat (failover)").first<any>()).n,
      (n) => n >= 4,
      "the failovers' data points, under their own route label",
    );
    const metrics: any = await (await admin("/admin/metrics?window=1h")).json();
    const route = metrics.requests.routes.find((r: any) => r.route === "POST /api/chat (failover)");
    expect(route?.count).toBeGreaterThanOrEqual(4);
  });

  it("slow (no headers, or headers and then no body, within the limit): answered here once the 1 s limit has passed", async () => {
    const { key, question } = await document("slow");
    const before = await report();
    const timeouts = failoversBy("timeout");
    for (const script of [{ delay_ms: 4_000 }, { stall_ms: 4_000 }]) {
      await legacy("/__legacy/script", { sources: [key], ...script });
      const started = performance.now();
      const res = await chat(`slow-${Object.keys(script)[0]}`, question);
      const elapsed = performance.now() - started;
      await expectFailover(res, key);
      console.log(`[rollout] ${JSON.stringify(script)}: answered here after ${elapsed.toFixed(0)} ms (limit 1,000 ms)`);
      // After the limit, and well before the old endpoint would have answered.
      expect(elapsed, JSON.stringify(script)).toBeGreaterThanOrEqual(950);
      expect(elapsed, JSON.stringify(script)).toBeLessThan(3_500);
    }
    const after = await poll(report, (r) => r.failovers === before.failovers + 2, "2 failovers counted");
    expect(timeouts(after) - timeouts(before)).toBe(2);
    // Both requests did reach the old endpoint; their answers were dropped.
    expect((await legacy("/__legacy/requests")).requests).toHaveLength(2);
  });

  it("failing (503, 500): each chat is answered here and the report counts the failovers by status", async () => {
    const { key, question } = await document("failing");
    const before = await report();
    const s503 = failoversBy("status 503");
    const s500 = failoversBy("status 500");
    await legacy("/__legacy/script", { sources: [key], status: 503 });
    await expectFailover(await chat("failing-a", question), key);
    await expectFailover(await chat("failing-b", question), key);
    await legacy("/__legacy/script", { sources: [key], status: 500 });
    await expectFailover(await chat("failing-c", question), key);
    const after = await poll(report, (r) => r.failovers === before.failovers + 3, "3 failovers counted");
    expect(s503(after) - s503(before)).toBe(2);
    expect(s500(after) - s500(before)).toBe(1);
    expect((await legacy("/__legacy/requests")).requests).toHaveLength(3);
  });

  it("healthy: answered by the old endpoint as today, no failover", async () => {
    const { key, question } = await document("healthy");
    const before = await report();
    await legacy("/__legacy/script", { sources: [key], delay_ms: 50 });
    for (const sse of [false, true]) {
      const res = await chat(`healthy-${sse}`, question, { sse });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-served-by")).toBe("legacy");
      const text = await res.text();
      expect(text).toContain("legacy-gpt");
      expect(text).toContain(key);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect((await report()).failovers).toBe(before.failovers);
  });

  it("failing mid-stream after its first event: not replaced, the stream ends as the old endpoint's did", async () => {
    const { key, question } = await document("midstream");
    const before = await report();
    await legacy("/__legacy/script", { sources: [key], break_after: 1 });
    const res = await chat("midstream", question, { sse: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("legacy");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let ended: "done" | "error" = "done";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
    } catch {
      ended = "error";
    }
    // The old endpoint's first event, and nothing of ours after it.
    expect(text).toContain("event: sources");
    expect(text).toContain(key);
    expect(text).not.toContain("event: done");
    expect(text).not.toContain("prompt_version");
    console.log(`[rollout] mid-stream failure of the old endpoint: the client's stream ended with ${ended === "error" ? "an error" : "its end"} after ${text.length} bytes`);
    await new Promise((r) => setTimeout(r, 300));
    expect((await report()).failovers).toBe(before.failovers);
    expect((await legacy("/__legacy/requests")).requests).toHaveLength(1);
  });
});
