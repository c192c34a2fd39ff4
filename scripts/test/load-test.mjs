// Load test against the built Worker under `wrangler dev`: 100 concurrent
// chats while 50 documents are uploaded through the admin API. Passes when
// no request fails, every uploaded document becomes ready and every answer
// has sources; prints latencies and the ingestion time. Run after
// scripts/build-worker.sh: node_modules/.bin/node scripts/test/load-test.mjs
// (CHATS, DOCUMENTS override the counts).
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { startLocalStack, stopLocalStack } from "../../tests/harness/local-stack.mjs";

const CHATS = Number(process.env.CHATS ?? 100);
const DOCUMENTS = Number(process.env.DOCUMENTS ?? 50);
// Not a secret: a token for this throwaway local stack only.
const TOKEN = "load-test-stack-token-not-a-secret-0001";
const root = path.resolve(import.meta.dirname, "../..");
const auth = { authorization: `Bearer ${TOKEN}` };

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

async function waitReady(base, keys, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(keys);
  while (pending.size) {
    for (const key of [...pending]) {
      const status = await (await fetch(`${base}/admin/documents/${key}`, { headers: auth })).json().catch(() => ({}));
      if (status.status === "ready") pending.delete(key);
      else if (status.status === "failed") throw new Error(`${key} failed: ${status.last_error}`);
    }
    if (pending.size && Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms: ${[...pending].slice(0, 5).join(", ")}…`);
    if (pending.size) await new Promise((r) => setTimeout(r, 250));
  }
}

const base = await startLocalStack({ name: "load", adminToken: TOKEN, drop: ["ratelimits"] });
const failures = [];
try {
  // A served corpus first, so every chat has something to cite.
  const sampleDir = path.join(root, "samples", "companies");
  const seedKeys = [];
  for (const company of readdirSync(sampleDir)) {
    for (const file of readdirSync(path.join(sampleDir, company))) {
      const key = `companies/${company}/${file}`;
      const res = await fetch(`${base}/admin/documents/${key}`, { method: "PUT", headers: auth, body: readFileSync(path.join(sampleDir, company, file)) });
      if (res.status !== 202) throw new Error(`seed ${key}: ${res.status}`);
      seedKeys.push(key);
    }
  }
  await waitReady(base, seedKeys, 60_000);

  const questions = ["What does Acme Robotics build?", "How does the route planner work?", "What does Lumen Health do?", "How many robots run in the plants?", "What does Northwind sell?"];
  const started = Date.now();
  const uploads = Array.from({ length: DOCUMENTS }, async (_, i) => {
    const key = `companies/loadco${i % 5}/doc-${i}.md`;
    const body = `---\ncompany: loadco${i % 5}\ntags: [load]\n---\n# Load document ${i}\n\n${"Loadco ships pallets of widgets to warehouses. ".repeat(40)}\n\n## Section\n\nDocument ${i} talks about conveyor belts and forklifts.\n`;
    const t = Date.now();
    const res = await fetch(`${base}/admin/documents/${key}`, { method: "PUT", headers: auth, body });
    if (res.status !== 202) failures.push(`upload ${key}: ${res.status} ${await res.text()}`);
    return { key, ms: Date.now() - t };
  });
  const chats = Array.from({ length: CHATS }, async (_, i) => {
    const t = Date.now();
    const res = await fetch(`${base}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": `10.9.${i >> 8}.${i & 255}` },
      body: JSON.stringify({ question: questions[i % questions.length] }),
    });
    const text = await res.text();
    const ms = Date.now() - t;
    if (res.status !== 200) failures.push(`chat ${i}: ${res.status} ${text.slice(0, 200)}`);
    else {
      const body = JSON.parse(text);
      if (!Array.isArray(body.sources) || body.sources.length === 0) failures.push(`chat ${i}: no sources`);
    }
    return ms;
  });
  const [uploaded, chatMs] = await Promise.all([Promise.all(uploads), Promise.all(chats)]);
  const chatsDone = Date.now() - started;
  await waitReady(base, uploaded.map((u) => u.key), 180_000);
  const allReady = Date.now() - started;
  const sorted = chatMs.sort((a, b) => a - b);
  const uploadSorted = uploaded.map((u) => u.ms).sort((a, b) => a - b);
  console.log(`[load] ${CHATS} concurrent chats: p50 ${percentile(sorted, 50)} ms, p95 ${percentile(sorted, 95)} ms, max ${sorted.at(-1)} ms; all answered in ${chatsDone} ms`);
  console.log(`[load] ${DOCUMENTS} uploads: p50 ${percentile(uploadSorted, 50)} ms, p95 ${percentile(uploadSorted, 95)} ms; all ${DOCUMENTS} ready ${allReady} ms after the start`);
  console.log(`[load] failures: ${failures.length}`);
  for (const f of failures.slice(0, 20)) console.log(`  ${f}`);
} catch (e) {
  failures.push(String(e));
  console.error(`[load] ${e}`);
} finally {
  stopLocalStack();
}
process.exit(failures.length ? 1 : 0);
