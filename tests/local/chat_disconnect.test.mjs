// A chat client that hangs up mid-answer stops the provider's stream: the
// built Worker under `wrangler dev` answers through the OpenAI code path
// against the provider stand-in, which streams slowly (a gap between chunks)
// and records whether its connection was closed before the answer ended.
// The runtime cancels a request's subrequests when its client goes away, and
// the chat's answer task runs inside that request, so the provider connection
// closes with the client's (seen here within ~1 s: the stand-in notices at its
// next write).
// Run: node_modules/.bin/node --test tests/local/*.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";
import { startProviderStandin } from "../standins/provider.mjs";

const TOKEN = "disconnect-test-token-not-a-secret-01";
const KEY = "standin-key-not-a-secret";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let base;
let standin;

async function standinLog(match) {
  const res = await fetch(`${standin.url}/__standin/requests?match=${encodeURIComponent(match)}`);
  return (await res.json()).requests;
}

async function rule(match, faults) {
  const res = await fetch(`${standin.url}/__standin/rules`, {
    method: "POST",
    body: JSON.stringify({ match, path: "/v1/chat/completions", faults }),
  });
  assert.equal(res.status, 200);
}

/** Opens a streamed chat and returns once the first `delta` event arrived. */
async function openChat(question) {
  const controller = new AbortController();
  const res = await fetch(`${base}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify({ question, stream: true }),
    signal: controller.signal,
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("event: delta")) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended before any delta: ${text}`);
    text += decoder.decode(value, { stream: true });
  }
  return { controller, reader, text, decoder };
}

before(async () => {
  standin = await startProviderStandin({ apiKey: KEY });
  base = await startLocalStack({
    name: "disconnect",
    adminToken: TOKEN,
    vars: { CHAT_PROVIDER: "openai", OPENAI_BASE_URL: standin.url, PROVIDER_TIMEOUT_MS: "10000" },
    secrets: { OPENAI_API_KEY: KEY },
    drop: ["ratelimits"],
  });
  const put = await fetch(`${base}/admin/documents/companies/umbra/overview.md`, {
    method: "PUT",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/markdown" },
    body: "---\ncompany: umbra\n---\n# Umbra\n\nUmbra builds lighthouses that run on tidal power.\n",
  });
  assert.equal(put.status, 202, await put.text());
  for (let i = 0; ; i++) {
    const doc = await (await fetch(`${base}/admin/documents/companies/umbra/overview.md`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    if (doc.status === "ready") break;
    assert.ok(i < 240 && doc.status !== "failed", `document not ready: ${JSON.stringify(doc)}`);
    await sleep(250);
  }
});

after(async () => {
  stopLocalStack();
  await standin?.close();
});

test("hanging up mid-answer closes the provider's stream within a second", async () => {
  const marker = "What powers the Umbra lighthouses, marker hangup-7?";
  await rule(marker, [{ stream_gap_ms: 300 }]);
  const chat = await openChat(marker);
  const hungUpAt = Date.now();
  chat.controller.abort();
  let entry;
  for (let i = 0; i < 60 && !entry?.ended; i++) {
    [entry] = await standinLog(marker);
    await sleep(100);
  }
  assert.equal(entry?.ended, "client_closed", `the provider streamed on: ${JSON.stringify(entry)}`);
  assert.ok(entry.chunks < 15, `stopped early: ${entry.chunks} chunks written`);
  assert.ok(entry.ended_at - hungUpAt < 1500, `stopped ${entry.ended_at - hungUpAt} ms after the hang-up`);
});

test("a client that stays gets the whole slow answer", async () => {
  const marker = "What powers the Umbra lighthouses, marker stays-8?";
  await rule(marker, [{ stream_gap_ms: 30 }]);
  const chat = await openChat(marker);
  let text = chat.text;
  for (;;) {
    const { value, done } = await chat.reader.read();
    if (done) break;
    text += chat.decoder.decode(value, { stream: true });
  }
  assert.match(text, /event: done/);
  const [entry] = await standinLog(marker);
  assert.equal(entry.ended, "complete");
});
