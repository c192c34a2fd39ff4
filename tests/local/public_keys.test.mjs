// With the PUBLIC_API_KEYS secret set, the public routes need one of its keys
// (bearer or x-api-key) and each key has its own rate-limit budget; health
// stays open. The built Worker under `wrangler dev`, rate limiters on (as
// wrangler.jsonc declares them), one sample document; the `openai` and MCP
// SDK clients pass their key the way their users would.
// Run: node_modules/.bin/node --test tests/local/public_keys.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";

// Not secrets: keys of this throwaway local stack.
const TOKEN = "public-keys-test-token-not-a-secret-01";
const KEY_A = "public-key-a-not-a-secret-000001";
const KEY_B = "public-key-b-not-a-secret-000002";
const SEARCH_LIMIT = 120; // SEARCH_RATE_LIMITER in wrangler.jsonc (also the catalog's)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let base;

before(async () => {
  base = await startLocalStack({ name: "public-keys", adminToken: TOKEN, secrets: { PUBLIC_API_KEYS: `${KEY_A},\n${KEY_B}` } });
  const auth = { authorization: `Bearer ${TOKEN}` };
  const key = "companies/umbra/overview.md";
  const put = await fetch(`${base}/admin/documents/${key}`, {
    method: "PUT",
    headers: auth,
    body: "---\ncompany: umbra\n---\n# Umbra\n\nUmbra builds lighthouses that run on tidal power.\n",
  });
  assert.equal(put.status, 202, await put.text());
  for (let i = 0; ; i++) {
    const doc = await (await fetch(`${base}/admin/documents/${key}`, { headers: auth })).json();
    if (doc.status === "ready") break;
    assert.ok(i < 240 && doc.status !== "failed", JSON.stringify(doc));
    await sleep(250);
  }
});

after(() => stopLocalStack());

const get = (path, headers = {}) => fetch(`${base}${path}`, { headers });

test("without a key every public route but health is 401; with one it answers", async () => {
  assert.equal((await get("/api/health")).status, 200);
  for (const [path, code] of [["/api/companies", "api_key_required"], ["/api/documents", "api_key_required"]]) {
    const res = await get(path);
    assert.equal(res.status, 401, path);
    assert.equal((await res.json()).error.code, code);
    const wrong = await get(path, { "x-api-key": `${KEY_A}x` });
    assert.equal(wrong.status, 401);
    assert.equal((await wrong.json()).error.code, "invalid_api_key");
    assert.equal((await get(path, { authorization: `Bearer ${KEY_A}` })).status, 200, path);
    assert.equal((await get(path, { "x-api-key": KEY_B })).status, 200, path);
  }
  const search = await fetch(`${base}/api/search`, { method: "POST", body: JSON.stringify({ query: "tidal" }) });
  assert.equal(search.status, 401);
  const mcp = await fetch(`${base}/mcp`, { method: "POST", body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }) });
  assert.equal(mcp.status, 401);
  // The admin token is not a public key.
  assert.equal((await get("/api/companies", { authorization: `Bearer ${TOKEN}` })).status, 401);
});

test("the openai client's apiKey and the MCP client's header are the key", async () => {
  await assert.rejects(
    new OpenAI({ baseURL: `${base}/v1`, apiKey: "not-a-key", maxRetries: 0 }).models.list(),
    (e) => e instanceof OpenAI.AuthenticationError && e.code === "invalid_api_key" && e.type === "authentication_error",
  );
  const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY_A, maxRetries: 0 });
  const completion = await openai.chat.completions.create({ model: "portfolio-docs", messages: [{ role: "user", content: "Who builds lighthouses?" }] });
  assert.ok(completion.sources.some((s) => s.company === "umbra"), JSON.stringify(completion.sources));
  const client = new Client({ name: "keys-test", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { authorization: `Bearer ${KEY_B}` } } }));
  const companies = await client.callTool({ name: "list_companies", arguments: {} });
  assert.deepEqual(companies.structuredContent.companies.map((c) => c.slug), ["umbra"]);
  await client.close();
});

test("the catalog is rate-limited, each key on its own budget", async () => {
  // Key B spends its budget on the catalog (the MCP session above took a few requests of it).
  let limited = null;
  // (The local limiter's window may roll over mid-loop: some slack, as in rate_limit.test.mjs.)
  for (let i = 0; i < SEARCH_LIMIT + 10 && limited === null; i++) {
    const res = await get("/api/documents", { "x-api-key": KEY_B });
    const body = await res.json();
    if (res.status === 429) limited = { res, body };
    else assert.equal(res.status, 200);
  }
  assert.ok(limited, `no 429 within ${SEARCH_LIMIT + 10} requests`);
  assert.equal(limited.body.error.code, "rate_limited");
  limited = limited.res;
  assert.ok(Number(limited.headers.get("retry-after")) > 0);
  assert.equal((await get("/api/companies", { "x-api-key": KEY_B })).status, 429);
  // Key A, from the same address, still has its own.
  assert.equal((await get("/api/companies", { "x-api-key": KEY_A })).status, 200);
});
