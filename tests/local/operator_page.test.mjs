// The operator page in a real browser: headless Chromium drives /operator,
// served by the built Worker under `wrangler dev`, over a stack with
// documents in every state (the samples ready; one `failed`, whose
// embeddings the provider stand-in refuses; one held `processing`, whose
// embeddings it does not answer), an alert raised by real 5xx answers and a
// cron run, a cut-over setting with shadow comparisons against the legacy
// stand-in, and a rating given on the chat page. It signs in with the keyboard, checks every section,
// reprocesses the failed document from the page, and checks that nothing
// leaves the service and the token lives only in the tab's session storage.
// Screenshots: test-output/operator-page.png (desktop, full page) and
// operator-page-phone.png. Prints the page's weight and time to first chart.
// Run: node_modules/.bin/node --test tests/local/operator_page.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { loadSamples } from "../../scripts/dev/load-samples.mjs";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";
import { startLegacyChatStandin } from "../standins/legacy-chat.mjs";
import { startProviderStandin } from "../standins/provider.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
// Not secrets: credentials of this throwaway local stack and its stand-in.
const TOKEN = "operator-page-token-not-a-secret-0001";
const KEY = "standin-key-not-a-secret";
const FAILED_KEY = "companies/broken/refused.md";
const HELD_KEY = "companies/held/slow.md";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const auth = { authorization: `Bearer ${TOKEN}` };

let base;
let browser;
let provider;
let legacy;

async function adminJson(route, init = {}) {
  const res = await fetch(`${base}${route}`, { ...init, headers: { ...auth, ...(init.headers || {}) } });
  assert.ok(res.ok, `${route}: ${res.status} ${await res.clone().text()}`);
  return res.json();
}

async function documentStatus(key) {
  const res = await fetch(`${base}/admin/documents/${key.split("/").map(encodeURIComponent).join("/")}`, { headers: auth });
  return res.ok ? (await res.json()).status : null;
}

async function waitFor(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

function put(key, body) {
  return fetch(`${base}/admin/documents/${key.split("/").map(encodeURIComponent).join("/")}`, { method: "PUT", headers: auth, body });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`);
  provider = await startProviderStandin({ apiKey: KEY });
  legacy = await startLegacyChatStandin();
  base = await startLocalStack({
    name: "operator",
    adminToken: TOKEN,
    testScheduled: true,
    vars: {
      EMBEDDING_PROVIDER: "openai",
      CHAT_PROVIDER: "openai",
      OPENAI_BASE_URL: provider.url,
      PROVIDER_TIMEOUT_MS: "300000",
      PROVIDER_RETRY_BASE_MS: "50",
      ALERT_MIN_REQUESTS: "5",
      LEGACY_CHAT_URL: `${legacy.url}/functions/v1/chat`,
    },
    secrets: { OPENAI_API_KEY: KEY },
    drop: ["ratelimits"],
  });
  await loadSamples({ url: base, token: TOKEN });
  // Failed: the provider refuses this document's embeddings for good (400).
  const refuse = { match: "broken-marker", path: "/v1/embeddings", faults: [{ status: 400 }], repeat: true };
  assert.ok((await fetch(`${provider.url}/__standin/rules`, { method: "POST", body: JSON.stringify(refuse) })).ok);
  assert.equal((await put(FAILED_KEY, "# Broken\n\nThe broken-marker document, whose embeddings are refused.\n")).status, 202);
  await waitFor("the binary upload to fail", async () => (await documentStatus(FAILED_KEY)) === "failed");
  // Processing: the stand-in holds this document's embeddings past the test.
  const rule = { match: "held-marker", path: "/v1/embeddings", faults: [{ delay_ms: 600_000 }], repeat: true };
  assert.ok((await fetch(`${provider.url}/__standin/rules`, { method: "POST", body: JSON.stringify(rule) })).ok);
  assert.equal((await put(HELD_KEY, "# Held\n\nThe held-marker document waits for its embeddings.\n")).status, 202);
  await waitFor("the held document to start processing", async () => (await documentStatus(HELD_KEY)) === "processing");

  // The cut-over: half of the clients here, every legacy chat shadowed.
  await adminJson("/admin/rollout", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ percent: 50, shadow_percent: 100 }) });
  for (let i = 0; i < 8; i++) {
    const res = await fetch(`${base}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-client-id": `reader-${i}` },
      body: JSON.stringify({ question: "How does Northwind store its orders?" }),
    });
    await res.arrayBuffer();
  }
  await waitFor("shadow comparisons", async () => (await adminJson("/admin/rollout/report?days=1")).compared > 0);
  await adminJson("/admin/rollout", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ percent: 100, shadow_percent: 0 }) });

  // An alert: the provider refuses six chats (502 each), then a cron run evaluates.
  const refusals = { match: "refused-marker", path: "/v1/chat/completions", faults: Array.from({ length: 6 }, () => ({ status: 401 })), repeat: false };
  assert.ok((await fetch(`${provider.url}/__standin/rules`, { method: "POST", body: JSON.stringify(refusals) })).ok);
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${base}/api/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ question: `refused-marker question ${i}?` }) });
    assert.equal(res.status, 502);
    await res.arrayBuffer();
  }
  await sleep(500); // each request's point is written after its answer
  const cron = await fetch(`${base}/__scheduled?cron=${encodeURIComponent("*/5 * * * *")}`);
  assert.equal(cron.status, 200);
  await cron.arrayBuffer();
  await waitFor("the error-rate alert", async () => (await adminJson("/admin/alerts")).active.some((a) => a.key === "error_rate"));

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  stopLocalStack();
  await provider?.close();
  await legacy?.close();
});

/** A page that records every request URL and every script error. */
async function watchedPage(context) {
  const page = await context.newPage();
  const requests = [];
  const errors = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  return { page, requests, errors };
}

test("a rating given on the chat page is stored for the operator", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const { page, errors } = await watchedPage(context);
  await page.goto(`${base}/`);
  await page.getByLabel("Your question").fill("How does Northwind store its orders?");
  await page.getByLabel("Your question").press("Enter");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Answered in"));
  await page.waitForSelector("#rate:not([hidden])");
  await page.getByLabel(/Was this answer helpful/).fill("It should name the partitioning scheme.");
  await page.click("#rate-no");
  await page.waitForFunction(() => document.getElementById("rate-status").textContent.startsWith("Thank you"));
  const { feedback } = await adminJson("/admin/feedback?helpful=false");
  assert.equal(feedback.length, 1);
  assert.equal(feedback[0].question, "How does Northwind store its orders?");
  assert.equal(feedback[0].comment, "It should name the partitioning scheme.");
  // The keys of the sources the page showed for this answer.
  assert.ok(feedback[0].sources.some((k) => k.startsWith("companies/northwind/")), feedback[0].sources.join());
  // One key per cited document (the page lists one item per passage).
  const keys = feedback[0].sources;
  assert.equal(new Set(keys).size, keys.length);
  assert.ok(keys.length <= (await page.$$eval("#sources li", (items) => items.length)));
  assert.deepEqual(errors, []);
  await context.close();
});

test("the operator signs in with the keyboard and sees every section; the failed document is reprocessed from the page", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const { page, requests, errors } = await watchedPage(context);
  const response = await page.goto(`${base}/operator`);
  assert.match(response.headers()["content-security-policy"], /default-src 'none'/);
  assert.equal(await page.title(), "Operator — portfolio docs");
  // The token field has the focus: type and press Enter.
  await page.keyboard.type(TOKEN);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("refreshed").textContent.startsWith("Refreshed"));

  const section = (id) => page.textContent(`#${id} .body`);
  assert.match(await section("health"), /ok|healthy/i);
  assert.match(await section("availability"), /over 30 days, objective 99\.9 %/);
  // Six 5xx among a few dozen requests: the 30-day budget is already overspent.
  assert.match(await section("availability"), /Error budget overspent: 6 5xx answers/);
  assert.match(await section("alerts"), /error_rate/);
  const documents = await section("documents");
  assert.match(documents, /Failed \(1\)/);
  assert.ok(documents.includes(FAILED_KEY), documents);
  assert.match(await page.textContent("#documents svg"), /ready/);
  assert.match(await page.textContent("#documents svg"), /processing/);
  assert.match(await section("requests"), /POST \/api\/chat/);
  assert.match(await section("providers"), /openai/);
  assert.match(await section("ingestion"), /\S/);
  assert.match(await section("rollout"), /comparisons/);
  const feedback = await section("feedback");
  assert.match(feedback, /How does Northwind store its orders\?/);
  assert.match(feedback, /It should name the partitioning scheme\./);
  assert.ok((await page.$$("svg")).length >= 5, "charts are drawn");

  mkdirSync(path.join(root, "test-output"), { recursive: true });
  await page.screenshot({ path: path.join(root, "test-output", "operator-page.png"), fullPage: true });

  // "Process again" on the failed document: the page calls the existing route.
  const runsOf = async () => (await adminJson(`/admin/documents/${FAILED_KEY.split("/").map(encodeURIComponent).join("/")}/runs`)).runs;
  const runsBefore = (await runsOf()).length;
  const processed = page.waitForResponse((r) => r.url().endsWith("/process") && r.request().method() === "POST");
  await page.click(`#documents button[data-key="${FAILED_KEY}"]`);
  assert.equal((await processed).status(), 202);
  await page.waitForSelector(`#documents button[data-key="${FAILED_KEY}"]:text("Queued")`).catch(() => {});
  await waitFor("a new run of the failed document", async () => (await runsOf()).length > runsBefore);

  // Nothing left the service; the token never rode in a URL, a cookie or local storage.
  assert.ok(requests.every((u) => u.startsWith(base)), `all requests to the service: ${requests.filter((u) => !u.startsWith(base))}`);
  assert.ok(requests.every((u) => !u.includes(TOKEN)), "the token is never in a URL");
  assert.deepEqual(await context.cookies(), []);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("portfolio-admin-token")), TOKEN);
  assert.deepEqual(errors, [], "no script errors");

  // Reloaded, the tab still holds the token: the time to the first chart from navigation.
  await page.reload();
  await page.waitForFunction(() => performance.getEntriesByName("operator-first-chart").length > 0);
  const firstChartMs = await page.evaluate(() => performance.getEntriesByName("operator-first-chart")[0].startTime);
  const [transferred, decoded] = await page.evaluate(() => {
    const assets = performance
      .getEntriesByType("navigation")
      .concat(performance.getEntriesByType("resource"))
      .filter((e) => !e.name.includes("/admin/") && !e.name.includes("/api/"));
    return [assets.reduce((sum, e) => sum + e.encodedBodySize, 0), assets.reduce((sum, e) => sum + e.decodedBodySize, 0)];
  });
  console.log(`[operator] page weight ${decoded} bytes (HTML + CSS + JS), ${transferred} bytes as transferred; first chart ${firstChartMs.toFixed(0)} ms after navigation`);
  assert.ok(decoded > 0 && transferred > 0);

  // "Forget token" empties the tab's storage.
  await page.click("#forget");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await context.close();
});

test("on a phone the page reflows; a wrong token is refused and not kept", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const { page, errors } = await watchedPage(context);
  await page.goto(`${base}/operator`);
  await page.fill("#token", "not-the-token-but-long-enough-000000000");
  await page.press("#token", "Enter");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.length > 0);
  assert.match(await page.textContent("#login-error"), /refused/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.fill("#token", TOKEN);
  await page.press("#token", "Enter");
  await page.waitForFunction(() => document.getElementById("refreshed").textContent.startsWith("Refreshed"));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no sideways scrolling on a phone (${overflow} px)`);
  await page.screenshot({ path: path.join(root, "test-output", "operator-page-phone.png"), fullPage: true });
  assert.deepEqual(errors.filter((e) => !/401/.test(e)), []);
  await context.close();
});
