// The chat page in a real browser: headless Chromium (Debian's package)
// drives the page served by the built Worker under `wrangler dev`, with the
// sample documents loaded through the admin API. It types a question, waits
// for the streamed answer, checks the sources, opens one, and saves a
// screenshot to test-output/chat-page.png (and chat-page-source.png).
// Run: node_modules/.bin/node --test tests/local/*.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { loadSamples } from "../../scripts/dev/load-samples.mjs";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
// Flags for a sandboxed, offline machine: no network beyond loopback.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let base;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`);
  const adminToken = "browser-test-token-not-a-secret-01";
  base = await startLocalStack({ name: "browser", adminToken });
  await loadSamples({ url: base, token: adminToken });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  stopLocalStack();
});

test("asks a question, shows the sources first and the streamed answer, opens a source", async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // a phone
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(`${base}/`);
  assert.equal(await page.title(), "Ask the portfolio");

  // The company filter is filled from /api/companies.
  await page.waitForSelector('#company option[value="northwind"]', { state: "attached" });
  await page.selectOption("#company", "northwind");

  // Keyboard only: type, then Enter asks.
  await page.getByLabel("Your question").fill("How does Northwind store its orders?");
  await page.getByLabel("Your question").press("Enter");

  await page.waitForSelector("#sources li");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Answered in"));
  const answer = await page.textContent("#answer");
  assert.match(answer, /PostgreSQL 15/);
  assert.match(answer, /\[\d+\]/, "the answer cites its sources");
  const sources = await page.$$eval("#sources li", (items) => items.map((i) => i.textContent));
  assert.ok(sources.length >= 1);
  assert.ok(sources.every((s) => s.includes("Northwind")), `only Northwind sources: ${sources}`);

  mkdirSync(path.join(root, "test-output"), { recursive: true });
  await page.screenshot({ path: path.join(root, "test-output", "chat-page.png"), fullPage: true });

  // A source opens with its heading path and text.
  await page.click("#sources li:first-child button");
  await page.waitForSelector("#source-view[open]");
  const pathText = await page.textContent("#source-path");
  assert.match(pathText, /companies\/northwind\//);
  const text = await page.textContent("#source-text");
  assert.ok(text.length > 20);

  await page.screenshot({ path: path.join(root, "test-output", "chat-page-source.png") });
  await page.keyboard.press("Escape");
  assert.deepEqual(errors, [], "no script errors");
});

test("the README's quick-start question gets the answer the README shows", async () => {
  const res = await fetch(`${base}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ question: "How does Northwind store its orders?" }),
  });
  assert.equal(res.status, 200);
  const { answer, sources } = await res.json();
  console.log(JSON.stringify({ answer, sources: sources.map((s) => `[${s.number}] ${s.key} › ${s.heading_path}`) }, null, 2));
  assert.match(answer, /Orders are stored in PostgreSQL 15, partitioned by month/);
  const cited = sources.find((s) => s.heading_path === "Northwind Logistics > What they built with us");
  assert.ok(cited, "the section that answers is among the sources");
  assert.ok(answer.includes(`[${cited.number}]`), "and the answer cites it");
});

test("the page loads nothing from elsewhere and the JSON route list moved to /api", async () => {
  const page = await browser.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  const response = await page.goto(`${base}/`);
  assert.match(response.headers()["content-security-policy"], /default-src 'none'/);
  await page.waitForLoadState("networkidle");
  assert.ok(requests.length >= 3);
  assert.ok(requests.every((u) => u.startsWith(base)), `all requests to the service: ${requests}`);
  const api = await (await fetch(`${base}/api`)).json();
  assert.equal(api.service, "portfolio-docs");
});

test("CHAT_PAGE=off serves no page, only the API", async () => {
  // A second stack with the var set; stopped with the process.
  const { startLocalStack: startOther } = await import(`../harness/local-stack.mjs?off`);
  const off = await startOther({ name: "browser-off", adminToken: "off-test-token-not-a-secret-000001", vars: { CHAT_PAGE: "off" } });
  const page = await fetch(`${off}/`);
  assert.equal(page.status, 404);
  assert.equal((await page.json()).error.code, "not_found");
  assert.equal((await fetch(`${off}/assets/chat.js`)).status, 404);
  assert.equal((await fetch(`${off}/api/health`)).status, 200);
});
