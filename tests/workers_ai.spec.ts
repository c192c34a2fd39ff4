// Workers AI end to end (the `workers-ai` project): the Worker embeds, tags and answers
// through its `AI` binding, served by the Workers AI stand-in (tests/standins/workers-ai.js)
// over a service binding, with `EMBEDDING_PROVIDER=workers-ai`, `CHAT_PROVIDER=workers-ai`
// and 768-dimension vectors (bge-base). Each test scripts the binding's documented errors for
// inputs carrying its own marker and reads back what the stand-in did.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ingest, ingestReady, uniqueKey, waitForStatus } from "./support";

const EMBEDDER = "@cf/baai/bge-base-en-v1.5";
const CHAT_MODEL = "@cf/meta/llama-3.1-8b-instruct-fp8-fast";
const RERANKER = "@cf/baai/bge-reranker-base";
const ai = () => (env as any).AI;
/** What the stand-in did, in order (all calls, or those a script's marker matched). */
async function calls(match: string | null = null): Promise<any[]> {
  return await ai().calls(match);
}

function markdown(marker: string, body: string) {
  return `---\ntitle: ${marker} notes\ncompany: aico\n---\n# ${marker} notes\n\n${body} The reference is ${marker}.\n`;
}

async function post(path: string, body: unknown, accept = "application/json") {
  return SELF.fetch(`https://portfolio.test${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept },
    body: JSON.stringify(body),
  });
}

/** The SSE events of a streamed chat answer, each `data:` parsed. */
async function events(res: Response) {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const name = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      return { name, data: data === undefined ? null : JSON.parse(data) };
    });
}

describe("Workers AI through the AI binding", () => {
  it("ingests with 768-dimension bge-base vectors and LLM tags", async () => {
    const marker = "wai-ingest-7";
    const key = uniqueKey(`companies/aico/${marker}.md`);
    const doc = await ingestReady(key, markdown(marker, "Aico ships solar kettles to mountain huts."));
    expect(doc.chunk_count).toBeGreaterThan(0);
    const dims = await env.DB.prepare("SELECT DISTINCT dimensions AS d FROM vector_index WHERE document_id = ?1")
      .bind(doc.id)
      .all<any>();
    expect(dims.results.map((r: any) => r.d)).toEqual([768]);
    const seen = await calls();
    const models = new Set(seen.map((c) => c.model));
    expect(models.has(EMBEDDER)).toBe(true);
    expect(models.has(CHAT_MODEL), "tags come from the chat model").toBe(true);
    const tags = await env.DB.prepare("SELECT tags FROM chunks WHERE document_id = ?1").bind(doc.id).all<any>();
    expect(tags.results.some((r: any) => JSON.parse(r.tags).includes("standin-tagged"))).toBe(true);
  });

  it("retries capacity errors (3040) and the daily limit (3036), then ends ready", async () => {
    const marker = "wai-capacity-3";
    await ai().script(marker, [{ code: 3040 }, { code: 3036 }]);
    const key = uniqueKey(`companies/aico/${marker}.md`);
    await ingestReady(key, markdown(marker, "Aico's kettles boil at altitude."));
    const outcomes = (await calls(marker)).map((c) => c.outcome);
    expect(outcomes.slice(0, 3)).toEqual(["3040", "3036", "ok"]);
  });

  it("fails a document at once on a permanent error (3023 account blocked) and keeps nothing half-written", async () => {
    const marker = "wai-blocked-5";
    await ai().script(marker, [{ code: 3023 }]);
    const key = uniqueKey(`companies/aico/${marker}.md`);
    await ingest(key, markdown(marker, "Aico sells to huts above 2,000 m."));
    const doc = await waitForStatus(key, ["ready", "failed"]);
    expect(doc.status).toBe("failed");
    expect(doc.last_error).toContain("3023");
    expect((await calls(marker)).map((c) => c.outcome)).toEqual(["3023"]);
    const vectors = await env.DB.prepare("SELECT COUNT(*) AS n FROM vector_index WHERE document_id = ?1").bind(doc.id).first<any>();
    expect(vectors.n).toBe(0);
  });

  it("answers a chat with sources, whole and streamed, through the chat model", async () => {
    const marker = "wai-chat-9";
    await ingestReady(uniqueKey(`companies/aico/${marker}.md`), markdown(marker, "Aico kettles run on sunlight."));
    const question = `What do ${marker} kettles run on?`;
    const whole = await post("/api/chat", { question, company: "aico" });
    expect(whole.status).toBe(200);
    const body: any = await whole.json();
    expect(body.model).toBe(CHAT_MODEL);
    expect(body.answer).toContain("[1]");
    expect(body.sources.length).toBeGreaterThan(0);

    const streamed = await post("/api/chat", { question, company: "aico", stream: true }, "text/event-stream");
    expect(streamed.status).toBe(200);
    const seen = await events(streamed);
    const deltas = seen.filter((e) => e.name === "delta");
    expect(seen[0].name).toBe("sources");
    expect(deltas.length, "the model's stream arrives in pieces").toBeGreaterThan(1);
    expect(deltas.map((e) => e.data.text).join("")).toBe(body.answer);
    expect(seen.at(-1)!.name).toBe("done");
    const streamedCalls = (await calls(null)).filter((c) => c.model === CHAT_MODEL && c.stream);
    expect(streamedCalls.length).toBeGreaterThan(0);
  });

  it("a stream cut after some text ends with an error event; before any text it is retried", async () => {
    const cutMarker = "wai-cut-4";
    await ingestReady(uniqueKey(`companies/aico/${cutMarker}.md`), markdown(cutMarker, "Aico kettles whistle twice."));
    const question = `How often do ${cutMarker} kettles whistle?`;
    await ai().script(question, [{ cut_after_events: 2 }], CHAT_MODEL);
    const cut = await events(await post("/api/chat", { question, company: "aico", stream: true }, "text/event-stream"));
    expect(cut.filter((e) => e.name === "delta").length).toBeGreaterThan(0);
    expect(cut.at(-1)!.name).toBe("error");
    expect(cut.at(-1)!.data.code).toBe("provider_error");
    expect(JSON.stringify(cut.at(-1)!.data)).not.toContain("3040");

    const busy = `Who makes ${cutMarker} kettles?`;
    await ai().script(busy, [{ code: 3040 }], CHAT_MODEL);
    const retried = await events(await post("/api/chat", { question: busy, company: "aico", stream: true }, "text/event-stream"));
    expect(retried.at(-1)!.name).toBe("done");
    expect((await calls(busy)).map((c) => c.outcome)).toEqual(["3040", "ok"]);
  });

  it("a chat whose model does not exist (5007) is a 502 with a request id, not the provider's text", async () => {
    const question = "wai-missing-2: anything?";
    await ai().script(question, [{ code: 5007 }], CHAT_MODEL);
    const res = await post("/api/chat", { question });
    expect(res.status).toBe(502);
    const json: any = await res.json();
    expect(json.error.code).toBe("provider_error");
    expect(json.error.message).not.toContain("5007");
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  it("fused_reranked reorders the fused candidates by bge-reranker-base; fused asks no reranker", async () => {
    const marker = "wai-rerank-3";
    const company = "rerankco";
    const doc = (n: number, body: string) =>
      ingestReady(uniqueKey(`companies/${company}/${marker}-${n}.md`), `---\ntitle: ${marker} ${n}\ncompany: ${company}\n---\n# Part ${n}\n\n${body}\n`);
    await doc(1, "Kettle kettle kettle: the kettle boils water and the kettle whistles.");
    await doc(2, "Warranty terms: a kettle returned within a year gets a refund under warranty.");
    await doc(3, "The samovar keeps tea warm; no kettle needed.");
    const query = "kettle warranty refund";
    const before = (await calls()).length;
    const fused: any = await (await post("/api/search", { query, company, mode: "fused" })).json();
    expect(fused.reranked).toBe(false);
    expect(fused.timings.rerank_ms).toBe(0);
    expect((await calls()).slice(before).some((c) => c.model === RERANKER), "fused asks no reranker").toBe(false);

    const res = await post("/api/search", { query, company, mode: "fused_reranked" });
    expect(res.status).toBe(200);
    const reranked: any = await res.json();
    expect(reranked.reranked).toBe(true);
    const scores = reranked.results.map((r: any) => r.scores.rerank);
    expect(scores.every((s: unknown) => typeof s === "number")).toBe(true);
    expect(scores).toEqual([...scores].sort((a: number, b: number) => b - a));
    // The same chunks, reordered: the one naming every asked word leads.
    expect(new Set(reranked.results.map((r: any) => r.key))).toEqual(new Set(fused.results.map((r: any) => r.key)));
    expect(reranked.results[0].text).toContain("Warranty terms");
    const rerankCall = (await calls()).slice(before).find((c) => c.model === RERANKER);
    expect(rerankCall.texts).toBe(fused.results.length);
  });

  it("a reranker that fails leaves the fused order and still answers", async () => {
    const marker = "wai-rerank-fail-4";
    const company = "rerankfail";
    await ingestReady(
      uniqueKey(`companies/${company}/${marker}.md`),
      `---\ntitle: ${marker}\ncompany: ${company}\n---\n# Notes\n\nCopper pipes and brass valves for ${marker}.\n`,
    );
    const query = `copper valves ${marker}`;
    await ai().script(marker, [{ code: 5007 }], RERANKER);
    const res = await post("/api/search", { query, company, mode: "fused_reranked" });
    expect(res.status).toBe(200);
    const json: any = await res.json();
    expect(json.reranked).toBe(false);
    expect(json.results[0].text).toContain("Copper pipes");
    expect(json.results[0].scores.rerank).toBeUndefined();
    const fused: any = await (await post("/api/search", { query, company, mode: "fused" })).json();
    expect(json.results.map((r: any) => r.key)).toEqual(fused.results.map((r: any) => r.key));
    expect((await calls(marker)).filter((c) => c.model === RERANKER).map((c) => c.outcome)).toEqual(["5007"]);
  });

  it("search embeds the query with the same model", async () => {
    const marker = "wai-search-6";
    await ingestReady(uniqueKey(`companies/aico/${marker}.md`), markdown(marker, "Aico also rents barometric samovars by the week."));
    const res = await post("/api/search", { query: "barometric samovars", company: "aico" });
    expect(res.status).toBe(200);
    const json: any = await res.json();
    expect(json.results[0].key).toContain(marker);
    const last = (await calls(null)).at(-1);
    expect(last.model).toBe(EMBEDDER);
    expect(last.texts).toBe(1);
  });
});
