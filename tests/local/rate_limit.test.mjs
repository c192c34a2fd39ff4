// Rate limits of the public routes, against the built Worker under
// `wrangler dev` (its local rate-limiter simulation): /api/search and
// /api/chat have separate budgets, keyed by IPv4 address or IPv6 /64, and a
// refused request gets 429 rate_limited with Retry-After and CORS headers.
// Run: node_modules/.bin/node --test tests/local/*.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";

let base;

before(async () => {
  base = await startLocalStack({ name: "limits", adminToken: "limits-test-token-not-a-secret-0001" });
});

after(() => stopLocalStack());

function post(route, body, ip) {
  return fetch(`${base}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", "cf-connecting-ip": ip, origin: "https://site.example" },
    body: JSON.stringify(body),
  });
}

test("a /64 that rotates addresses shares one search budget; another network and chat keep theirs", async () => {
  const limit = 120; // SEARCH_RATE_LIMITER in wrangler.jsonc
  let refused = null;
  for (let i = 0; i < limit + 10 && !refused; i++) {
    const res = await post("/api/search", { query: "anything" }, `2001:db8:1:2::${(i + 1).toString(16)}`);
    await res.arrayBuffer();
    if (res.status === 429) refused = { at: i, res };
    else assert.equal(res.status, 200);
  }
  assert.ok(refused, "the budget ran out");
  assert.ok(refused.at >= limit - 1, `not before the budget: refused at request ${refused.at + 1}`);
  assert.equal(refused.res.headers.get("retry-after"), "60");
  assert.equal(refused.res.headers.get("access-control-allow-origin"), "https://site.example");

  const otherNetwork = await post("/api/search", { query: "anything" }, "2001:db8:9:9::1");
  assert.equal(otherNetwork.status, 200);
  const chat = await post("/api/chat", { question: "anything?" }, "2001:db8:1:2::1");
  assert.equal(chat.status, 200, "chat has a budget of its own");
});

test("chat has a budget of 30 per minute per /64, independent of search", async () => {
  const limit = 30; // CHAT_RATE_LIMITER in wrangler.jsonc
  let refused = null;
  for (let i = 0; i < limit + 5 && !refused; i++) {
    const res = await post("/api/chat", { question: "anything?" }, `2001:db8:5:6::${(i + 1).toString(16)}`);
    const body = await res.json();
    if (res.status === 429) refused = { at: i, body };
    else assert.equal(res.status, 200);
  }
  assert.ok(refused, "the chat budget ran out");
  assert.ok(refused.at >= limit - 1, `not before the budget: refused at request ${refused.at + 1}`);
  assert.equal(refused.body.error.code, "rate_limited");
  const search = await post("/api/search", { query: "anything" }, "2001:db8:5:6::1");
  assert.equal(search.status, 200, "search keeps its own budget");
});
