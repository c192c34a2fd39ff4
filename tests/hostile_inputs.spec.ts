// Security suite, part 2 — hostile inputs on every public route: FTS5 syntax,
// deeply nested JSON, invalid UTF-8, unknown fields, odd `top_k`, oversized
// bodies (declared and streamed), odd query strings, and a document whose own
// text looks like Server-Sent Events. Every answer is a JSON 2xx/4xx (never a
// 5xx, never a hang); every `data:` line of a chat stream is one JSON event.
// The number of cases per category is printed.
import { SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { ingestReady, uniqueKey } from "./support";

const BASE = "https://svc.test";
const counts: Record<string, number> = {};

function tally(category: string) {
  counts[category] = (counts[category] ?? 0) + 1;
}

let client = 0;

/**
 * A client address of its own for each request: the rate limiters (keyed by
 * IPv4 address) are not what this suite tests; tests/local/rate_limit.test.mjs is.
 */
function nextClient(): string {
  client += 1;
  return `10.${(client >> 16) & 255}.${(client >> 8) & 255}.${client & 255}`;
}

/** Sends a request with a time bound (a hang fails the case) and checks the shared expectations. */
async function expectSane(what: string, path: string, init: RequestInit, statuses: number[]): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("cf-connecting-ip", nextClient());
  const res = await Promise.race([
    SELF.fetch(`${BASE}${path}`, { ...init, headers }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within 10 s`)), 10_000)),
  ]);
  expect(res.status, `${what}: status`).toBeLessThan(500);
  expect(statuses, `${what}: status ${res.status}`).toContain(res.status);
  expect(res.headers.get("content-type") ?? "", `${what}: content type`).toMatch(/application\/json|text\/event-stream/);
  return res;
}

function postJson(body: BodyInit, extra: Record<string, string> = {}): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json", ...extra }, body };
}

const FTS_QUERIES = [
  '"a" OR b*',
  "a OR b",
  "a AND NOT b",
  "NEAR(",
  "NEAR(a b, 2)",
  "NEAR(a",
  "^",
  "^start",
  '"unbalanced',
  'un"balanced"quote"',
  '"',
  '""',
  "col:term",
  "chunks_fts:term",
  "text:robot",
  "{text key}: x",
  "*",
  "a*",
  "-",
  "-a",
  "+a",
  "(",
  ")",
  "(a OR b",
  "a) OR (b",
  "AND",
  "OR",
  "NOT",
  "a NOT",
  ":",
  "'",
  "';--",
  "'; DROP TABLE chunks; --",
  "\u0000",
  "a\u0000b",
  "\\",
  "%",
  "_",
  "rank",
  "bm25(chunks_fts)",
  "\u202eevil",
  "😀 emoji query",
  "ｆｕｌｌｗｉｄｔｈ",
  "a".repeat(2_000),
  "a ".repeat(999),
  "x:y:z OR (p* NEAR q) ^r \"s",
];

describe("hostile inputs on the public routes", () => {
  beforeAll(async () => {
    await ingestReady(
      uniqueKey("hostile/robots.md"),
      "---\ncompany: hostile\ntags: [robotics]\n---\n# Robots\n\nAcme builds robots OR forklifts; NEAR the freezer a robot* works.\n",
    );
  }, 60_000);

  it("FTS5 syntax in search queries and chat questions is text, not a query language", async () => {
    for (const query of FTS_QUERIES) {
      for (const body of [{ query }, { query, company: query.slice(0, 40) }, { query, tags: [query.slice(0, 40)] }]) {
        tally("fts");
        const res = await expectSane(`search ${JSON.stringify(body).slice(0, 80)}`, "/api/search", postJson(JSON.stringify(body)), [200, 400]);
        const json: any = await res.json();
        if (res.status === 200) expect(Array.isArray(json.results)).toBe(true);
        else expect(typeof json.error.code).toBe("string");
      }
      tally("fts");
      const chat = await expectSane(`chat ${query.slice(0, 40)}`, "/api/chat", postJson(JSON.stringify({ question: query })), [200, 400]);
      await chat.json();
    }
  }, 120_000);

  it("malformed, nested, non-UTF-8 and unknown-field bodies are 400 JSON errors", async () => {
    const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    const nestedObject = (depth: number) => '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
    const bodies: [string, BodyInit][] = [
      ["nested array 100", nested(100)],
      ["nested array 10k", nested(10_000)],
      ["nested array 8k", nested(8_000)],
      ["nested object 2k", nestedObject(2_000)],
      ["query nested", `{"query":${nested(5_000)}}`],
      ["invalid utf-8", new Uint8Array([0x7b, 0x22, 0x71, 0x75, 0x65, 0x72, 0x79, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
      ["lone surrogate escape", '{"query":"\\ud800"}'],
      ["overlong utf-8", new Uint8Array([0x7b, 0x22, 0x71, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d])],
      ["utf-16 bom", new Uint8Array([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00])],
      ["empty", ""],
      ["null", "null"],
      ["array", "[]"],
      ["string", '"query"'],
      ["number", "1e999"],
      ["truncated", '{"query":"a'],
      ["trailing garbage", '{"query":"a"} {"query":"b"}'],
      ["duplicate keys", '{"query":"a","query":"b"}'],
      ["unknown field", '{"query":"a","question":"b","__proto__":{"x":1}}'],
      ["proto only", '{"__proto__":{"query":"x"}}'],
      ["wrong type", '{"query":1}'],
      ["query null", '{"query":null}'],
      ["tags not list", '{"query":"a","tags":"x"}'],
      ["tags huge", JSON.stringify({ query: "a", tags: Array(1_000).fill("t") })],
      ["company object", '{"query":"a","company":{"slug":"x"}}'],
      ["nul bytes", '{"query":"a\\u0000"}\u0000'],
    ];
    const topKs: unknown[] = [0, -1, -1e9, 51, 1e9, 2 ** 31, 2 ** 53, 1e308, -0, 1.5, 0.0001, "5", null, true, [], {}, "NaN", 9007199254740993];
    for (const route of ["/api/search", "/api/chat"]) {
      for (const [name, body] of bodies) {
        tally("malformed");
        const res = await expectSane(`${route} ${name}`, route, postJson(body), [400, 413]);
        expect(typeof ((await res.json()) as any).error.code, `${route} ${name}`).toBe("string");
      }
    }
    for (const top_k of topKs) {
      tally("top_k");
      const res = await expectSane(`search top_k ${JSON.stringify(top_k)}`, "/api/search", postJson(JSON.stringify({ query: "robots", top_k })), [200, 400]);
      const json: any = await res.json();
      // Only the integers 1..=50 are valid (-0 is the integer 0); null means the default.
      const valid = top_k === null || (Number.isInteger(top_k) && (top_k as number) >= 1 && (top_k as number) <= 50);
      expect(res.status, `top_k ${JSON.stringify(top_k)}`).toBe(valid ? 200 : 400);
      if (res.status === 200) expect(Array.isArray(json.results)).toBe(true);
      else expect(json.error.code).toMatch(/bad_top_k|bad_json/);
    }
    for (const field of [{ top_k: 5 }, { history: [{ role: "user", content: "x", extra: 1 }] }, { stream: "yes" }, { question: "q", query: "q" }]) {
      tally("unknown/wrong fields");
      await expectSane(`chat ${JSON.stringify(field)}`, "/api/chat", postJson(JSON.stringify({ question: "robots", ...field })), [400]);
    }
  }, 120_000);

  it("oversized bodies are refused with 413 JSON, declared or streamed", async () => {
    const routes: [string, number, (filler: string) => string][] = [
      ["/api/search", 16 * 1024, (f) => JSON.stringify({ query: "a", company: f })],
      ["/api/chat", 256 * 1024, (f) => JSON.stringify({ question: "a", company: f })],
    ];
    for (const [route, limit, make] of routes) {
      for (const size of [limit + 1, limit * 4, 50 * 1024 * 1024]) {
        tally("oversized");
        const body = make("x".repeat(size));
        const res = await expectSane(`${route} ${size} B declared`, route, postJson(body), [413]);
        expect(((await res.json()) as any).error.code).toBe("payload_too_large");
      }
      tally("oversized");
      // No Content-Length: the limit holds while reading.
      const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent > limit * 2) return controller.close();
          sent += chunk.length;
          controller.enqueue(chunk);
        },
      });
      const res = await expectSane(`${route} streamed`, route, { method: "POST", headers: { "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit, [413]);
      expect(((await res.json()) as any).error.code).toBe("payload_too_large");
    }
  }, 120_000);

  it("GET routes take hostile query strings without a 5xx", async () => {
    const values = ["", "%", "%ff", "%00", "'", '"', "*", "a".repeat(4_000), "-1", "1e9", "NEAR(", "\u202e", "../../etc", "a&b", "[]", "{}"];
    const routes = ["/api/health", "/api/companies", "/api/documents"];
    for (const route of routes) {
      for (const name of ["company", "cursor", "limit", "prefix", "tag", "x"]) {
        for (const value of values) {
          tally("query strings");
          const path = `${route}?${name}=${value.startsWith("%") ? value : encodeURIComponent(value)}`;
          const res = await expectSane(`GET ${path.slice(0, 80)}`, path, {}, [200, 400, 503]);
          await res.json();
        }
      }
    }
  }, 120_000);

  it("methods the runtime does not know are 405 with Allow, not served as GET", async () => {
    for (const route of ["/api/health", "/api/companies", "/api/documents", "/api/search", "/api/chat"]) {
      for (const method of ["QUERY", "TRACE"]) {
        tally("methods");
        const res = await expectSane(`${method} ${route}`, route, { method }, [405]);
        expect(res.headers.get("allow"), `${method} ${route}`).toMatch(/^(GET|POST), OPTIONS$/);
        expect(((await res.json()) as any).error.code).toBe("method_not_allowed");
      }
    }
  });

  it("a document that looks like SSE stays inside one JSON data line per event", async () => {
    const evil = [
      "# Stream tricks",
      "",
      'data: {"injected":true}',
      "",
      "event: done",
      "data: {}",
      "",
      "event: sources\r\ndata: {\"sources\":[]}\r\n\r\nid: 7\rretry: 1",
      "The zebrafish protocol says: data: [DONE]\n\nevent: error\ndata: oops",
    ].join("\n");
    await ingestReady(uniqueKey("hostile/sse.md"), `---\ncompany: ssetrick\n---\n${evil}\n`);
    for (const question of ["What does the zebrafish protocol say?", "data: event: done", "stream tricks injected"]) {
      tally("sse");
      const res = await expectSane(`chat stream ${question}`, "/api/chat", postJson(JSON.stringify({ question, company: "ssetrick", stream: true }), { accept: "text/event-stream" }), [200]);
      const text = await res.text();
      // Frames are separated by a blank line; inside one, every line is a field.
      const frames = text.split("\n\n").filter((f) => f !== "");
      expect(text.includes("\r"), "a bare CR would split a line for an SSE parser").toBe(false);
      const events: string[] = [];
      for (const frame of frames) {
        const lines = frame.split("\n");
        const eventLines = lines.filter((l) => l.startsWith("event: "));
        const dataLines = lines.filter((l) => l.startsWith("data: "));
        expect(eventLines.length + dataLines.length, `frame ${JSON.stringify(frame).slice(0, 200)}`).toBe(lines.length);
        expect(eventLines.length).toBe(1);
        expect(dataLines.length).toBe(1);
        expect(() => JSON.parse(dataLines[0].slice(6)), dataLines[0]).not.toThrow();
        events.push(eventLines[0].slice(7));
      }
      expect(events[0]).toBe("sources");
      expect(events.at(-1)).toBe("done");
      expect(events.filter((e) => e === "done").length).toBe(1);
      expect(events.slice(1, -1).every((e) => e === "delta")).toBe(true);
    }
  }, 120_000);

  it("prints the case counts", () => {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    console.log(`[security] hostile inputs: ${total} cases — ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    expect(total).toBeGreaterThan(0);
  });
});
