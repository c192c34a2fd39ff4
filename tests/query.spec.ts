// The query service against a small known corpus ingested through the real
// pipeline: hybrid retrieval, filters, generations, chat (JSON and SSE),
// the public catalog and input validation.
import { env, SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { admin, deliverBatch, putDocument, waitForStatus } from "./support";

const CORPUS: Record<string, string> = {
  "companies/acme/overview.md": `---
company: acme
tags: [robotics]
---
# Acme Robotics

Acme builds autonomous forklifts for cold-storage warehouses.

## Frostbite

Frostbite is a picking robot that keeps working at minus thirty degrees Celsius in freezer aisles.
`,
  "companies/globex/products.md": `---
company: globex
tags: [energy]
---
# Globex Energy

Globex designs geothermal heat pumps for apartment buildings.

## Controllers

The ZX-4000 controller balances the flow between boreholes.
`,
  "companies/initech/people.md": `---
company: initech
tags: [software]
---
# Initech

Initech writes banking software. Its chief executive is Bill Lumbergh, who introduced weekly status reports.
`,
};

/**
 * The offline providers' answers and keyword tags are known in advance; with a model
 * provider (the `workers-ai` project) the tests of answer text and tag filters that depend
 * on them are skipped, the rest run alike.
 */
const OFFLINE = ((env as any).CHAT_PROVIDER ?? "offline") === "offline";

async function ingestAll() {
  for (const [key, markdown] of Object.entries(CORPUS)) {
    const event = await putDocument(key, markdown);
    await deliverBatch("portfolio-ingest", [{ id: `q-${key}`, body: event }]);
  }
  for (const key of Object.keys(CORPUS)) await waitForStatus(key, ["ready"]);
}

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return SELF.fetch(`https://svc.test${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function search(body: unknown): Promise<any> {
  const res = await post("/api/search", body);
  expect(res.status).toBe(200);
  return res.json();
}

beforeAll(ingestAll, 60_000);

async function waitForActiveVersionAbove(key: string, version: number) {
  await expect.poll(async () => {
    const row: any = await env.DB.prepare("SELECT active_version FROM documents WHERE key = ?1").bind(key).first();
    return row.active_version;
  }, { timeout: 20_000 }).toBeGreaterThan(version);
}

describe("POST /api/search", () => {
  it("puts the document that answers the question first, with per-source scores", async () => {
    const body = await search({ query: "Which robot works in freezer aisles at minus thirty degrees?" });
    expect(body.results.length).toBeGreaterThan(0);
    const top = body.results[0];
    expect(top.key).toBe("companies/acme/overview.md");
    expect(top).toMatchObject({ company: "acme", title: "Acme Robotics" });
    expect(top.heading_path).toContain("Frostbite");
    expect(top.scores.vector).toBeGreaterThan(0);
    expect(top.scores.keyword).toBeGreaterThan(0);
    expect(top.score).toBeGreaterThan(0);
    expect(body.timings.total_ms).toBeGreaterThanOrEqual(0);
  });

  it("finds exact product codes through the keyword side", async () => {
    const body = await search({ query: "ZX-4000", top_k: 3 });
    expect(body.results[0].key).toBe("companies/globex/products.md");
    expect(body.results[0].text).toContain("ZX-4000");
    expect(body.results[0].scores.keyword).toBeGreaterThan(0);
  });

  it("ranks by one source alone in a single-source mode, and by the request's fusion", async () => {
    const query = "Which robot works in freezer aisles at minus thirty degrees?";
    const single: Record<string, "vector" | "keyword" | "tag"> = { vector: "vector", keyword: "keyword", tag: "tag" };
    for (const [mode, field] of Object.entries(single)) {
      const body = await search({ query, mode });
      for (const r of body.results) {
        for (const other of ["vector", "keyword", "tag"].filter((f) => f !== field)) {
          expect(r.scores[other], `${mode}: ${other}`).toBeNull();
        }
        expect(r.scores[field], mode).not.toBeNull();
      }
      const own = body.results.map((r: any) => r.scores[field]);
      expect(own, mode).toEqual([...own].sort((a: number, b: number) => b - a));
      // Sources it did not ask took no time.
      for (const other of ["vector", "keyword", "tag"].filter((f) => f !== field)) {
        expect(body.timings[`${other}_ms`], mode).toBe(0);
      }
    }
    const keywordOnly = await search({ query, mode: "keyword" });
    expect(keywordOnly.results[0].key).toBe("companies/acme/overview.md");
    // Weight 0 turns a source off within fused mode; k changes the fused scores.
    const noVector = await search({ query, fusion: { method: "rrf", vector: 0, k: 1 } });
    expect(noVector.results.every((r: any) => r.scores.vector === null)).toBe(true);
    const top = noVector.results[0];
    const ranks = [top.scores.keyword, top.scores.tag].filter((s) => s !== null);
    expect(ranks.length).toBeGreaterThan(0);
    expect(top.score).toBeGreaterThan(1 / (1 + 1) - 1e-9); // rank 1 in some source at k = 1
    // A convex combination: each source's scores scaled to [0, 1] within its list, weighted.
    const convex = await search({ query, fusion: { method: "convex", vector: 1, keyword: 2, tag: 0 } });
    expect(convex.results.length).toBeGreaterThan(0);
    const fused = convex.results.map((r: any) => r.score);
    expect(fused).toEqual([...fused].sort((a: number, b: number) => b - a));
    expect(convex.results.every((r: any) => r.scores.tag === null && r.score >= 0 && r.score <= 3 + 1e-9)).toBe(true);
    // The best keyword hit scores at least the keyword weight (its scaled score is 1).
    const bestKeyword = convex.results.reduce((a: any, b: any) => ((b.scores.keyword ?? -1) > (a.scores.keyword ?? -1) ? b : a));
    expect(bestKeyword.score).toBeGreaterThanOrEqual(2 - 1e-9);
  });

  it.runIf(OFFLINE)("restricts results to a company and to tags", async () => {
    const byCompany = await search({ query: "robot heat pumps banking software", company: "globex" });
    expect(byCompany.results.length).toBeGreaterThan(0);
    expect(byCompany.results.every((r: any) => r.company === "globex")).toBe(true);

    const byTag = await search({ query: "robot heat pumps banking software", tags: ["software"] });
    expect(byTag.results.length).toBeGreaterThan(0);
    expect(byTag.results.every((r: any) => r.tags.includes("software"))).toBe(true);

    const unknown = await search({ query: "robot", company: "nobody" });
    expect(unknown.results).toEqual([]);
  });

  it("never returns chunks of a superseded generation", async () => {
    const key = "companies/acme/changelog.md";
    await deliverBatch("portfolio-ingest", [{ id: "cl-1", body: await putDocument(key, "# Changelog\n\nThe quuxotron sensor was retired.\n") }]);
    const first = await waitForStatus(key, ["ready"]);
    expect((await search({ query: "quuxotron" })).results.map((r: any) => r.key)).toContain(key);

    await deliverBatch("portfolio-ingest", [{ id: "cl-2", body: await putDocument(key, "# Changelog\n\nThe blorptastic gauge arrived.\n") }]);
    await waitForActiveVersionAbove(key, first.active_version);

    const old = await search({ query: "quuxotron sensor retired" });
    expect(old.results.every((r: any) => !r.text.includes("quuxotron"))).toBe(true);
    const fresh = await search({ query: "blorptastic" });
    expect(fresh.results[0].key).toBe(key);
  });

  // The isolate keeps the chunk rows it served (portfolio_core::query::row_cache) until the
  // served-rows marker (migration 0014) moves: the search after an update or a delete must
  // not answer from rows it kept.
  // The first pass is one D1 batch, which fails as a whole when one statement fails: the
  // Worker then asks each statement alone, so only the failing source degrades.
  it("degrades only the source whose first-pass statement fails, and answers without the served-rows marker", async () => {
    const query = "Which robot works in freezer aisles at minus thirty degrees?";
    const rename = (from: string, to: string) => env.DB.exec(`ALTER TABLE ${from} RENAME TO ${to}`);
    const normal = await search({ query });
    await rename("chunk_tags", "chunk_tags_away");
    try {
      const body = await search({ query });
      expect(body.results[0].key).toBe("companies/acme/overview.md");
      expect(body.results[0].scores.keyword).toBeGreaterThan(0);
      expect(body.results.every((r: any) => r.scores.tag === null)).toBe(true);
    } finally {
      await rename("chunk_tags_away", "chunk_tags");
    }
    await rename("served_state", "served_state_away");
    try {
      // Every row read from D1, none kept: the same answer.
      expect((await search({ query })).results).toEqual(normal.results);
    } finally {
      await rename("served_state_away", "served_state");
    }
  });

  it("serves a document's new text on the first search after its update, though the old rows were kept", async () => {
    const key = "companies/acme/pumps-cache.md";
    await deliverBatch("portfolio-ingest", [{ id: "rc-1", body: await putDocument(key, "# Pumps\n\nThe zorblaxian pump runs on diesel.\n") }]);
    const first = await waitForStatus(key, ["ready"]);
    for (let i = 0; i < 2; i++) {
      const kept = await search({ query: "zorblaxian pump" });
      expect(kept.results[0].text).toContain("diesel");
    }
    await deliverBatch("portfolio-ingest", [{ id: "rc-2", body: await putDocument(key, "# Pumps\n\nThe zorblaxian pump runs on solar power.\n") }]);
    await waitForActiveVersionAbove(key, first.active_version);
    const fresh = await search({ query: "zorblaxian pump" });
    expect(fresh.results[0].key).toBe(key);
    expect(fresh.results[0].text).toContain("solar");
    expect(fresh.results.every((r: any) => !r.text.includes("diesel"))).toBe(true);
  });

  it("serves nothing of a deleted document on the first search after its deletion, though its rows were kept", async () => {
    const key = "companies/acme/gone-cache.md";
    await deliverBatch("portfolio-ingest", [{ id: "rd-1", body: await putDocument(key, "# Gone\n\nThe vorpalite bracket is discontinued.\n") }]);
    await waitForStatus(key, ["ready"]);
    for (let i = 0; i < 2; i++) {
      expect((await search({ query: "vorpalite bracket" })).results[0].key).toBe(key);
    }
    await env.DOCUMENTS.delete(key);
    await deliverBatch("portfolio-ingest", [{ id: "rd-2", body: { action: "DeleteObject", bucket: "b", object: { key }, eventTime: new Date().toISOString() } }]);
    await waitForStatus(key, ["deleted"]);
    const gone = await search({ query: "vorpalite bracket" });
    expect(gone.results.every((r: any) => r.key !== key && !r.text.includes("vorpalite"))).toBe(true);
  });
});

describe("GET /admin/index/check", () => {
  it("finds every property the service filters on filterable in the index", async () => {
    const res = await admin("/admin/index/check");
    expect(res.status).toBe(200);
    const check: any = await res.json();
    expect(check.verdict).toBe("ok");
    expect(check.sample).toMatch(/^\d+:\d+:0$/);
    expect(check.properties.map((p: any) => [p.property, p.index_type, p.status])).toEqual([
      ["company_id", "number", "filterable"],
      ["document_id", "number", "filterable"],
      ["version", "number", "filterable"],
    ]);
  });
});

async function readSse(res: Response) {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))!.slice(7);
      const data = JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6));
      return { event, data };
    });
}

describe("POST /api/chat", () => {
  it.runIf(OFFLINE)("answers with numbered citations and sources (JSON)", async () => {
    const res = await post("/api/chat", { question: "Who is the chief executive of Initech?" });
    expect(res.status).toBe(200);
    const body: any = await res.json();
    expect(body.answer).toContain("Lumbergh");
    expect(body.answer).toMatch(/\[\d\]/);
    expect(body.sources[0]).toMatchObject({ number: 1, key: "companies/initech/people.md" });
    expect(body.prompt_version).toBe("answer-v1");
  });

  it.runIf(OFFLINE)("streams sources, then deltas, then done as Server-Sent Events", async () => {
    const res = await post("/api/chat", { question: "What does the ZX-4000 controller do?" }, { accept: "text/event-stream" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = await readSse(res);
    expect(events[0].event).toBe("sources");
    expect(events[0].data.sources[0].key).toBe("companies/globex/products.md");
    expect(events.at(-1)!.event).toBe("done");
    const deltas = events.slice(1, -1);
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.every((e) => e.event === "delta")).toBe(true);
    expect(deltas.map((e) => e.data.text).join("")).toContain("boreholes");
  });

  it.runIf(OFFLINE)("says so when nothing relevant was found", async () => {
    const res = await post("/api/chat", { question: "zzqx wwvy" });
    expect(res.status).toBe(200);
    const body: any = await res.json();
    // Vector search always has nearest neighbours; the answerer must not
    // pretend they answer the question.
    expect(body.answer).toBe("I could not find anything about that in the documents.");
  });
});

describe("input validation", () => {
  const cases: [string, unknown, string][] = [
    ["/api/search", "{not json", "bad_json"],
    ["/api/search", { query: "x", surprise: true }, "bad_json"],
    ["/api/search", { query: "   " }, "empty_query"],
    ["/api/search", { query: "x".repeat(2_001) }, "query_too_long"],
    ["/api/search", { query: "x", top_k: 0 }, "bad_top_k"],
    ["/api/search", { query: "x", top_k: 51 }, "bad_top_k"],
    ["/api/search", { query: "x", mode: "bm25" }, "bad_mode"],
    ["/api/search", { query: "x", fusion: { vector: -1 } }, "bad_fusion"],
    ["/api/search", { query: "x", fusion: { k: 0 } }, "bad_fusion"],
    ["/api/search", { query: "x", fusion: { method: "borda" } }, "bad_fusion"],
    ["/api/search", { query: "x", fusion: { bm25: 1 } }, "bad_json"],
    ["/api/search", { query: "x", fusion: [null, null] }, "bad_json"],
    ["/api/search", { query: "x", candidates: 0 }, "bad_candidates"],
    ["/api/chat", { question: "" }, "empty_query"],
    ["/api/chat", { question: "q", history: Array(21).fill({ role: "user", content: "x" }) }, "bad_history"],
    ["/api/chat", { question: "q", history: [{ role: "system", content: "x" }] }, "bad_history"],
  ];
  for (const [path, body, code] of cases) {
    it(`${path} ${JSON.stringify(body).slice(0, 60)} → 400 ${code}`, async () => {
      const res = await post(path, body);
      expect(res.status).toBe(400);
      const json: any = await res.json();
      expect(json.error.code).toBe(code);
      expect(json.error.message.length).toBeGreaterThan(0);
    });
  }

  it("answers GET on a POST route with 405", async () => {
    const res = await SELF.fetch("https://svc.test/api/search");
    expect(res.status).toBe(405);
  });
});

describe("catalog and CORS", () => {
  it("lists companies and served documents without admin data", async () => {
    const companies: any = await (await SELF.fetch("https://svc.test/api/companies")).json();
    expect(companies.companies.map((c: any) => c.slug)).toEqual(expect.arrayContaining(["acme", "globex", "initech"]));
    const docs: any = await (await SELF.fetch("https://svc.test/api/documents?company=globex")).json();
    expect(docs.documents).toEqual([
      expect.objectContaining({ key: "companies/globex/products.md", company: "globex", tags: ["energy"] }),
    ]);
    expect(docs.documents[0]).not.toHaveProperty("sha256");
    expect(docs.documents[0]).not.toHaveProperty("last_error");
    expect(docs.cursor).toBeNull();
  });

  it("pages the served documents with a cursor instead of stopping at a fixed count", async () => {
    const all: any = await (await SELF.fetch("https://svc.test/api/documents?limit=1000")).json();
    expect(all.documents.length).toBeGreaterThanOrEqual(3);
    const seen: string[] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const page: any = await (await SELF.fetch(`https://svc.test/api/documents?limit=2&cursor=${encodeURIComponent(cursor)}`)).json();
      expect(page.documents.length).toBeLessThanOrEqual(2);
      seen.push(...page.documents.map((d: any) => d.key));
      cursor = page.cursor;
    }
    expect(seen).toEqual(all.documents.map((d: any) => d.key));
  });

  it("refuses a page size outside 1–1000 instead of silently shortening the page", async () => {
    for (const limit of ["0", "1001", "-3", "2.5", "many"]) {
      const res = await SELF.fetch(`https://svc.test/api/documents?limit=${limit}`);
      expect(res.status, limit).toBe(400);
      const json: any = await res.json();
      expect(json.error.code).toBe("bad_limit");
      expect(json.error.message).toContain("1 to 1000");
    }
    for (const [path, limit] of [["/admin/documents", "1001"], ["/admin/companies", "0"], ["/admin/reconcile/runs", "101"]]) {
      const res = await admin(`${path}?limit=${limit}`);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as any).error.code).toBe("bad_limit");
    }
    expect((await SELF.fetch("https://svc.test/api/documents?limit=1000")).status).toBe(200);
  });

  it("answers preflight and tags API responses for an allowed origin", async () => {
    const preflight = await SELF.fetch("https://svc.test/api/chat", {
      method: "OPTIONS",
      headers: { origin: "https://site.example", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://site.example");
    const res = await SELF.fetch("https://svc.test/api/companies", { headers: { origin: "https://site.example" } });
    expect(res.headers.get("access-control-allow-origin")).toBe("https://site.example");
  });
});

describe("rate limit", () => {
  it("limits chat per client", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await post("/api/chat", { question: "robot?" }, { "cf-connecting-ip": "203.0.113.9" });
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    expect(statuses).toContain(429);
    const other = await post("/api/chat", { question: "robot?" }, { "cf-connecting-ip": "203.0.113.10" });
    expect(other.status).toBe(200);
  });
});
