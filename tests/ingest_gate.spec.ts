// The provider gate (`IngestGate`) holding lease requests open: a waiter's
// request is answered by the release that frees a slot, a hold that runs out
// is answered "come back soon", and a gate restarted while holding requests
// fails them but keeps its leases and its queue. Each test has its own gate
// object (the Worker's processors use the one named "provider"); the local
// configuration allows 8 leases at once (INGEST_PROVIDER_CONCURRENCY's default).
import { abortAllDurableObjects, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { uniqueKey } from "./support";

const LIMIT = 8;

function gate(name: string) {
  const call = async (route: string, body?: unknown) => {
    // A new stub per call: one that saw its object reset fails every later call.
    const stub = env.INGEST_GATE.get(env.INGEST_GATE.idFromName(name));
    const res = await stub.fetch(`https://ingest-gate.internal${route}`, {
      method: body === undefined ? "GET" : "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status !== 200) throw new Error(`gate ${route}: ${res.status}`);
    return res.json<any>();
  };
  return {
    acquire: (holder: string, wait_ms?: number) => call("/acquire", { holder, wait_ms }),
    release: (holder: string) => call("/release", { holder }),
    stats: () => call("/stats"),
  };
}

/** A gate whose slots are all taken by `taken-0` … `taken-7`. */
async function fullGate() {
  const g = gate(uniqueKey("gate"));
  for (let i = 0; i < LIMIT; i++) {
    expect((await g.acquire(`taken-${i}`)).admission).toBe("granted");
  }
  return g;
}

/** Whether `promise` has settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number) {
  const timer = new Promise((resolve) => setTimeout(() => resolve("pending"), ms));
  return (await Promise.race([promise.then(() => "settled", () => "settled"), timer])) === "settled";
}

describe("provider gate: held lease requests", () => {
  it("answers a held request from the release that frees a slot", async () => {
    const g = await fullGate();
    const started = Date.now();
    const held = g.acquire("waiter", 20_000);
    expect(await settlesWithin(held, 300)).toBe(false);
    expect((await g.stats()).held).toBe(1);
    expect((await g.release("taken-3")).released).toBe(true);
    expect((await held).admission).toBe("granted");
    // Answered by the release, not by the end of its 20 s hold.
    expect(Date.now() - started).toBeLessThan(10_000);
    const stats = await g.stats();
    expect([stats.in_flight, stats.waiting, stats.held, stats.handed_off]).toEqual([LIMIT, 0, 0, 1]);
  });

  it("answers a hold that runs out with a short wait, and keeps the waiter first in line", async () => {
    const g = await fullGate();
    const started = Date.now();
    const answer = await g.acquire("patient", 400);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(answer).toEqual({ admission: "wait", retry_after_ms: 50, ahead: 0 });
    // Back and held again before its grace is over, it is still ahead of a later waiter.
    const later = g.acquire("later", 20_000);
    expect(await settlesWithin(later, 200)).toBe(false);
    const back = g.acquire("patient", 20_000);
    expect(await settlesWithin(back, 200)).toBe(false);
    expect((await g.stats()).held).toBe(2);
    await g.release("taken-0");
    expect((await back).admission).toBe("granted");
    expect(await settlesWithin(later, 300)).toBe(false);
    await g.release("taken-1");
    expect((await later).admission).toBe("granted");
  });

  it("fails held requests when the gate restarts, and keeps its leases and queue", async () => {
    const g = await fullGate();
    const held = g.acquire("survivor", 20_000);
    expect(await settlesWithin(held, 300)).toBe(false);
    await abortAllDurableObjects();
    // The request dies with the instance (its processor defers the batch and asks again).
    await expect(held).rejects.toThrow();
    const stats = await g.stats();
    expect([stats.in_flight, stats.waiting, stats.held]).toEqual([LIMIT, 1, 0]);
    // Asking again, held, it is handed the next slot given back.
    const again = g.acquire("survivor", 20_000);
    expect(await settlesWithin(again, 300)).toBe(false);
    await g.release("taken-5");
    expect((await again).admission).toBe("granted");
  });
});
