// The D1-exact index past its budget, against the built Worker under
// `wrangler dev` with D1_INDEX_MAX_VECTORS=2: within the budget vector search
// answers from the isolate cache; one vector more and the index refuses to
// query (no page-by-page scan of D1, which took seconds per query at 30,000
// vectors), so searches keep their keyword and tag sources, a vector-only
// search fails with a clear code, and /api/health names the fix; a delete that
// brings the index back within the budget brings vector search back.
// Run: node_modules/.bin/node --test tests/local/*.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";

const TOKEN = "budget-test-token-not-a-secret-001";
const auth = { authorization: `Bearer ${TOKEN}` };
let base;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function ingest(name, sentence) {
  const key = `companies/budgetco/${name}.md`;
  const put = await fetch(`${base}/admin/documents/${key}`, {
    method: "PUT",
    headers: { ...auth, "content-type": "text/markdown" },
    body: `---\ncompany: budgetco\n---\n# ${name}\n\n${sentence}\n`,
  });
  assert.equal(put.status, 202, await put.text());
  for (let i = 0; ; i++) {
    const doc = await (await fetch(`${base}/admin/documents/${key}`, { headers: auth })).json();
    if (doc.status === "ready") return doc;
    assert.ok(i < 240 && doc.status !== "failed", `document not ready: ${JSON.stringify(doc)}`);
    await sleep(250);
  }
}

async function search(body) {
  const res = await fetch(`${base}/api/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

before(async () => {
  base = await startLocalStack({ name: "d1-budget", adminToken: TOKEN, vars: { D1_INDEX_MAX_VECTORS: "2" }, drop: ["ratelimits"] });
  await ingest("lighthouse", "Budgetco keeps lighthouses running on tidal power.");
  await ingest("ferry", "Budgetco ferries cross the fjord twice a day.");
});

after(() => stopLocalStack());

test("within the budget the vector source answers and health is ok", async () => {
  const vector = await search({ query: "tidal lighthouses", mode: "vector" });
  assert.equal(vector.status, 200, JSON.stringify(vector.body));
  assert.match(vector.body.results[0].key, /lighthouse/);
  const health = await fetch(`${base}/api/health`);
  assert.equal(health.status, 200, JSON.stringify(await health.clone().json()));
});

test("one vector past the budget: the index refuses, searches keep keyword and tags, health names the fix", async () => {
  await ingest("harbour", "Budgetco harbour cranes lift containers at night.");
  const fused = await search({ query: "harbour cranes" });
  assert.equal(fused.status, 200);
  assert.match(fused.body.results[0].key, /harbour/);
  assert.equal(fused.body.results[0].scores.vector, null, "the vector source took no part");

  const vectorOnly = await search({ query: "harbour cranes", mode: "vector" });
  assert.equal(vectorOnly.status >= 500, true, JSON.stringify(vectorOnly.body));

  const query = await fetch(`${base}/admin/index/query`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ vector: Array.from({ length: 1536 }, (_, i) => (i === 0 ? 1 : 0)), top_k: 3 }),
  });
  const refused = await query.json();
  assert.equal(refused.error.code, "d1_index_over_budget", JSON.stringify(refused));

  const health = await fetch(`${base}/api/health`);
  assert.equal(health.status, 503);
  const report = await health.json();
  assert.equal(report.status, "degraded");
  assert.equal(report.unavailable.length, 1);
  assert.match(report.unavailable[0], /holds 3 vectors, more than the 2 an isolate may cache \(D1_INDEX_MAX_VECTORS\).*VECTOR_INDEX=vectorize/);
});

test("back within the budget after a delete, the vector source answers again and health is ok", async () => {
  const del = await fetch(`${base}/admin/documents/companies/budgetco/harbour.md`, { method: "DELETE", headers: auth });
  assert.ok(del.status < 300, `${del.status} ${await del.text()}`);
  for (let i = 0; ; i++) {
    const vector = await search({ query: "tidal lighthouses", mode: "vector" });
    if (vector.status === 200) {
      assert.match(vector.body.results[0].key, /lighthouse/);
      break;
    }
    assert.ok(i < 120, `vector search still refused: ${JSON.stringify(vector.body)}`);
    await sleep(250);
  }
  const health = await fetch(`${base}/api/health`);
  assert.equal(health.status, 200, JSON.stringify(await health.clone().json()));
});
