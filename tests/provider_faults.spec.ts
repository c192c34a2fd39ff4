// Provider faults end to end (the `providers` project): the Worker embeds and
// tags through the OpenAI-compatible provider stand-in over real HTTP, with a
// 1 s request time limit and short backoffs (vitest.config.ts). Each test
// scripts faults for requests carrying its own marker and reads back what the
// stand-in served.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ingest, ingestReady, processorState, uniqueKey, waitForStatus } from "./support";

const EMBEDDINGS = "/v1/embeddings";
const CHAT = "/v1/chat/completions";

async function standin(route: string, body?: unknown) {
  const res = await fetch(`${env.STANDIN_URL}${route}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`stand-in ${route}: ${res.status} ${await res.text()}`);
  return res.json<any>();
}

/** Scripts `faults` for the requests to `path` whose body contains `match`. */
function injectFaults(match: string, path: string, faults: object[], repeat = false) {
  return standin("/__standin/rules", { match, path, faults, repeat });
}

/** What the stand-in did with the requests a rule matched, in arrival order. */
async function served(match: string): Promise<{ outcome: string; path: string; at: number }[]> {
  return (await standin(`/__standin/requests?match=${encodeURIComponent(match)}`)).requests;
}

function markdown(marker: string, body: string) {
  return `---\ntitle: ${marker} report\ncompany: faultco\n---\n# ${marker} report\n\n${body} The reference is ${marker}.\n`;
}


/** Polls the processor until its run for the latest event has ended. */
async function waitForRunEnd(key: string, timeout = 25_000): Promise<any> {
  const deadline = Date.now() + timeout;
  let last: any = null;
  while (Date.now() < deadline) {
    last = await processorState(key);
    if (["ready", "failed", "deleted"].includes(last.status)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`processor for ${key} did not finish: ${JSON.stringify(last)}`);
}

/**
 * Polls `read` until it yields `expected`: a failed run's status is saved before its clean-up
 * runs, so what the clean-up removes may linger for a moment (never served: not active).
 */
async function eventually<T>(read: () => Promise<T>, expected: T, timeout = 5_000) {
  const deadline = Date.now() + timeout;
  let last = await read();
  while (JSON.stringify(last) !== JSON.stringify(expected) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    last = await read();
  }
  expect(last).toEqual(expected);
}

async function chunkRows(documentId: number) {
  return (
    await env.DB.prepare("SELECT version, content, tags FROM chunks WHERE document_id = ?1 ORDER BY chunk_index")
      .bind(documentId)
      .all<any>()
  ).results;
}

async function vectorVersions(documentId: number) {
  const rows = await env.DB.prepare("SELECT DISTINCT version FROM vector_index WHERE document_id = ?1 ORDER BY version")
    .bind(documentId)
    .all<any>();
  return rows.results.map((r) => r.version);
}

async function search(query: string) {
  const res = await SELF.fetch("https://portfolio.test/api/search", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, company: "faultco" }),
  });
  expect(res.status).toBe(200);
  return (await res.json<any>()).results;
}

describe("provider faults during ingestion", () => {
  it("retries 429 (after Retry-After), 500, a timeout and a malformed body, then ends ready", async () => {
    const marker = `transient${Date.now().toString(36)}`;
    await injectFaults(marker, EMBEDDINGS, [
      { status: 429, retry_after: 1 },
      { status: 500 },
      { delay_ms: 3_000 },
      { malformed: "html" },
    ]);
    const key = uniqueKey("faultco/transient.md");
    const doc = await ingestReady(key, markdown(marker, "Glacier pumps move brine through the cold store."));
    const log = await served(marker);
    expect(log.map((e) => e.outcome)).toEqual(["429", "500", "delayed", "malformed", "ok"]);
    // The retry after the 429 waited for its Retry-After (1 s).
    expect(log[1].at - log[0].at).toBeGreaterThanOrEqual(950);
    // The slow answer was given up after the 1 s limit, not waited out (3 s).
    expect(log[3].at - log[2].at).toBeLessThan(2_500);

    const chunks = await chunkRows(doc.id);
    expect(chunks.length).toBe(doc.chunk_count);
    expect(chunks.every((c) => c.version === doc.active_version)).toBe(true);
    expect(await vectorVersions(doc.id)).toEqual([doc.active_version]);
    // Tags came from the (stand-in) LLM, not from the keyword fallback.
    expect(chunks.every((c) => JSON.parse(c.tags).includes("standin-tagged"))).toBe(true);
    // The status keeps the last error the run overcame, marked retryable.
    const state = await processorState(key);
    expect(state).toMatchObject({ status: "ready", last_error: { retryable: true } });
    expect(state.last_error.message).toContain("malformed");
  });

  it("retries tagging through a 503 and a truncated answer, then ends ready with LLM tags", async () => {
    const marker = `tagfault${Date.now().toString(36)}`;
    await injectFaults(marker, CHAT, [{ status: 503 }, { malformed: "truncated" }]);
    const key = uniqueKey("faultco/tags.md");
    const doc = await ingestReady(key, markdown(marker, "Cryogenic valves keep the vaccine freezers sealed."));
    expect((await served(marker)).map((e) => e.outcome)).toEqual(["503", "malformed", "ok"]);
    const chunks = await chunkRows(doc.id);
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.every((c) => JSON.parse(c.tags).includes("standin-tagged"))).toBe(true);
  });

  it("a permanent fault fails the update while the previous generation keeps serving", async () => {
    const key = uniqueKey("faultco/permanent.md");
    const first = `firstgen${Date.now().toString(36)}`;
    const v1 = await ingestReady(key, markdown(first, "Tundra sensors log humidity."));
    const v1Chunks = await chunkRows(v1.id);

    // The update has 70 sections, so two embedding batches (64 + 6): the first is embedded
    // and its vectors written, then the provider refuses the second (400: the request
    // itself is rejected; no retry can help). The run must fail and take back batch one.
    const second = `secondgen${Date.now().toString(36)}`;
    const poison = `poison${Date.now().toString(36)}`;
    const sections = Array.from({ length: 70 }, (_, i) => {
      const extra = i === 69 ? ` ${poison}` : "";
      return `## Sensor ${i}\n\n${`Tundra sensor ${i} of ${second} now also logs pressure. `.repeat(12)}${extra}\n`;
    });
    await injectFaults(poison, EMBEDDINGS, [{ status: 400 }], true);
    await ingest(key, markdown(second, sections.join("\n")));
    const state = await waitForRunEnd(key);
    expect(state.status).toBe("failed");
    expect(state.last_error.message).toContain("HTTP 400");
    expect(state.last_error.message).toContain("embedding batch 1");
    expect((await served(poison)).map((e) => e.outcome)).toEqual(["400"]);

    const row = await env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first<any>();
    expect(row.status).toBe("failed");
    expect(row.last_error).toContain("HTTP 400");
    expect(row.active_version).toBe(v1.active_version);
    // Nothing of the failed generation is visible: same chunk rows, and batch one's
    // vectors are taken back.
    expect(await chunkRows(v1.id)).toEqual(v1Chunks);
    await eventually(() => vectorVersions(v1.id), [v1.active_version]);
    const results = await search(`${first} tundra humidity`);
    expect(results[0].key).toBe(key);
    const ours = results.filter((r: any) => r.key === key);
    expect(ours.every((r: any) => r.text.includes(first) && !r.text.includes(second))).toBe(true);
  });

  it("a provider that stays overloaded keeps the run waiting past its attempts, then gives up; old generation intact", async () => {
    const key = uniqueKey("faultco/overloaded.md");
    const first = `steady${Date.now().toString(36)}`;
    const v1 = await ingestReady(key, markdown(first, "Permafrost drills bore core samples."));

    const second = `overload${Date.now().toString(36)}`;
    await injectFaults(second, EMBEDDINGS, [{ status: 503 }], true);
    await ingest(key, markdown(second, "Permafrost drills now bore deeper."));
    // A 503 is the provider's state, not the document's: more than the 3 step attempts × 4
    // calls go by with the run still processing, waiting longer each time.
    await eventually(async () => (await served(second)).length > 12, true, 10_000);
    const waiting = await processorState(key);
    expect(waiting.status).toBe("processing");
    expect(waiting.last_error).toMatchObject({ retryable: true, overloaded: true });
    // Then INGEST_OVERLOAD_GIVE_UP_MS (4 s in this project) passes and the run fails, retryable.
    const state = await waitForRunEnd(key);
    expect(state.status).toBe("failed");
    expect(state.last_error.message).toMatch(/^provider overloaded for \d+ ms .*HTTP 503/);
    const calls = (await served(second)).map((e) => e.at);
    expect(calls.length).toBeGreaterThan(12);
    // The waits between step attempts grew (200 ms doubling, capped by the give-up time).
    const run = await env.DB.prepare(
      "SELECT status, error FROM processing_runs WHERE document_key = ?1 ORDER BY id DESC LIMIT 1",
    ).bind(key).first<any>();
    expect(run.status).toBe("failed");
    expect(run.error).toContain("HTTP 503");
    expect(calls[calls.length - 1] - calls[0]).toBeGreaterThanOrEqual(3_000);

    const row = await env.DB.prepare("SELECT active_version FROM documents WHERE key = ?1").bind(key).first<any>();
    expect(row.active_version).toBe(v1.active_version);
    await eventually(() => vectorVersions(v1.id), [v1.active_version]);
    const chunks = await chunkRows(v1.id);
    expect(chunks.every((c) => c.version === v1.active_version && c.content.includes(first))).toBe(true);
  });
});

describe("provider faults while answering", () => {
  it("fused_reranked asks the /v1/rerank server with the key; a failing one leaves the fused order", async () => {
    const marker = "rerank-http-8";
    await ingestReady(uniqueKey(`companies/faultco/${marker}.md`), markdown(marker, "Bronze bells ring over the harbour at noon."));
    await injectFaults(marker, "/v1/rerank", []);
    const query = `bronze bells harbour ${marker}`;
    const res = await SELF.fetch("https://portfolio.test/api/search", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query, company: "faultco", mode: "fused_reranked" }),
    });
    expect(res.status).toBe(200);
    const json: any = await res.json();
    expect(json.reranked).toBe(true);
    expect(json.results[0].key).toContain(marker);
    expect(typeof json.results[0].scores.rerank).toBe("number");
    // The stand-in refuses a request without its key (401), so "ok" proves the bearer key was sent.
    expect((await served(marker)).filter((r) => r.path === "/v1/rerank").map((r) => r.outcome)).toEqual(["ok"]);

    const failing = `${marker}-down`;
    await injectFaults(failing, "/v1/rerank", [{ status: 500 }], true);
    const down: any = await (
      await SELF.fetch("https://portfolio.test/api/search", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `${query} ${failing}`, company: "faultco", mode: "fused_reranked" }),
      })
    ).json();
    expect(down.reranked).toBe(false);
    expect(down.results[0].key).toContain(marker);
    const outcomes = (await served(failing)).filter((r) => r.path === "/v1/rerank").map((r) => r.outcome);
    expect(outcomes.length, "500 is retried before giving up").toBeGreaterThan(1);
    expect(outcomes.every((o) => o === "500")).toBe(true);
  });

  it("answers through the provider, and reports a failing provider as an error", async () => {
    const key = uniqueKey("faultco/answers.md");
    const marker = `answer${Date.now().toString(36)}`;
    await ingestReady(key, markdown(marker, "Icebreaker hulls are made of layered steel."));

    const ask = (question: string, stream: boolean) =>
      SELF.fetch("https://portfolio.test/api/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ question, company: "faultco", stream }),
      });
    const ok = await ask(`What are ${marker} icebreaker hulls made of?`, false);
    expect(ok.status).toBe(200);
    const answer = await ok.json<any>();
    expect(answer.answer).toContain("provider stand-in");
    expect(answer.sources.some((s: any) => s.key === key)).toBe(true);

    const broken = `brokenq${Date.now().toString(36)}`;
    await injectFaults(broken, CHAT, [{ status: 500 }], true);
    const failed = await ask(`What about ${broken} ${marker} hulls?`, false);
    expect(failed.status).toBe(502);
    const error = (await failed.json<any>()).error;
    expect(error.code).toBe("provider_error");
    // The provider's detail (its URL, status line, body) stays in the log; the
    // client gets the request id to quote, which the response also carries.
    const requestId = failed.headers.get("x-request-id");
    expect(requestId).toMatch(/^[0-9a-f]{16}$/);
    expect(error.message).toBe(`the request could not be completed; quote request id ${requestId}`);

    const streamed = await ask(`And ${broken} ${marker} in a stream?`, true);
    expect(streamed.status).toBe(200);
    const events = [...(await streamed.text()).matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    expect(events[0]).toBe("sources");
    expect(events.at(-1)).toBe("error");
  });
});
