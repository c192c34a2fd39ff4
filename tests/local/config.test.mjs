// Configuration errors, against the built Worker under `wrangler dev` with a
// var set to something the service cannot use: health names the var and
// answers 503, public routes refuse with a generic 503, the admin API (with
// the token) names the problem, and nothing runs half-configured.
// Run: node_modules/.bin/node --test tests/local/*.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";

const TOKEN = "config-test-token-not-a-secret-001";
let base;

before(async () => {
  base = await startLocalStack({
    name: "config",
    adminToken: TOKEN,
    vars: {
      VECTOR_INDEX: "pinecone",
      EMBED_BATCH_SIZE: "",
      SEARCH_FUSION: "bm25=1",
      RERANKER: "cohere",
      RERANK_CANDIDATES: "99",
      SEARCH_MODE: "fused_reranked",
    },
  });
});

after(() => stopLocalStack());

test("health answers 503 degraded and names every var set wrongly", async () => {
  const res = await fetch(`${base}/api/health`);
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.status, "degraded");
  assert.equal(body.providers, null);
  assert.deepEqual(body.configuration_errors, [
    'VECTOR_INDEX is "pinecone"; expected d1 or vectorize',
    "EMBED_BATCH_SIZE is blank; expected a whole number from 1 to 2048",
    'SEARCH_FUSION is "bm25=1"; expected comma-separated vector=W,keyword=W,tag=W,k=K (any of them; weights >= 0 and not all 0, k > 0)',
    'RERANKER is "cohere"; expected none, workers-ai or http',
    'RERANK_CANDIDATES is "99"; expected a whole number from 2 to 50',
    'SEARCH_MODE is "fused_reranked"; expected fused, or a RERANKER (workers-ai or http) to rerank with',
  ]);
});

test("health names the Worker version even while misconfigured (wrangler dev makes one up)", async () => {
  const first = (await (await fetch(`${base}/api/health`)).json()).version;
  // wrangler dev's version_metadata: a random UUID per start, an empty tag, the start time.
  assert.match(first.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(first.tag, null);
  assert.ok(Date.parse(first.timestamp) <= Date.now());
  const again = (await (await fetch(`${base}/api/health`)).json()).version;
  assert.deepEqual(again, first, "one version per start");
});

test("public routes refuse with a generic 503, the admin API names the problem", async () => {
  const search = await fetch(`${base}/api/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: "anything" }),
  });
  assert.equal(search.status, 503);
  const error = (await search.json()).error;
  assert.equal(error.code, "configuration_invalid");
  assert.doesNotMatch(error.message, /pinecone/);

  const unauthorized = await fetch(`${base}/admin/documents`);
  assert.equal(unauthorized.status, 401, "the token is checked first");
  const admin = await fetch(`${base}/admin/documents`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(admin.status, 503);
  assert.match((await admin.json()).error.message, /VECTOR_INDEX is "pinecone"/);
});

test("the operator page is served while misconfigured, so an operator can see what is wrong", async () => {
  for (const path of ["/operator", "/assets/operator.js", "/assets/operator.css"]) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get("content-security-policy"), /default-src 'none'/);
    await res.arrayBuffer();
  }
  // Its data still needs the token, and then names the problem.
  const alerts = await fetch(`${base}/admin/alerts`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(alerts.status, 503);
  assert.match((await alerts.json()).error.message, /VECTOR_INDEX is "pinecone"/);
});

test("a short ADMIN_TOKEN authorises nobody; health names it and the missing provider key, never their values", async () => {
  const { startLocalStack: startOther } = await import("../harness/local-stack.mjs?short-token");
  const short = "too-short-token";
  // Also configured for a provider whose key it does not have.
  const other = await startOther({
    name: "config-short",
    adminToken: short,
    vars: { EMBEDDING_PROVIDER: "openai" },
  });
  const health = await fetch(`${other}/api/health`);
  assert.equal(health.status, 503);
  const text = await health.text();
  assert.match(text, /ADMIN_TOKEN is missing or shorter than 32 characters/);
  assert.match(text, /OPENAI_API_KEY is missing: EMBEDDING_PROVIDER needs it/);
  assert.equal(JSON.parse(text).unavailable, undefined, "D1 answered its probe");
  assert.ok(!text.includes(short), "the token's value never appears");
  const admin = await fetch(`${other}/admin/documents`, { headers: { authorization: `Bearer ${short}` } });
  assert.equal(admin.status, 401);
});
