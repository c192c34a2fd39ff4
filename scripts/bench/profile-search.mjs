// Where a search's CPU goes in the Worker itself: starts the built Worker under
// `wrangler dev` with its DevTools endpoint open, ingests the man pages of both
// evaluation sets (3,828 chunks, offline embedder), then records a V8 CPU
// profile of the Worker's isolate while it answers the sets' questions, one at
// a time, once per mode. The profile covers the Worker only: Miniflare's D1,
// R2 and Durable Objects run in other isolates, so what the workerd process
// spends on them is not in it. Prints, per mode, the Worker's CPU per search
// (sampled time of the isolate, idle excluded) next to the workerd process's,
// and where the isolate's time goes: the Worker's wasm, the Worker's own JS
// (its bundle: wasm-bindgen glue), other scripts in the isolate (the runtime's
// and Miniflare's, such as the local D1 binding), built-ins such as fetch, and
// garbage collection.
//
//   node scripts/bench/profile-search.mjs [--queries N] [--modes fused,vector,keyword,tag] [--main BUILD/index.js]
//
// --main profiles another build of the Worker (before/after on one machine).
//
// Also counts the D1 calls per search, a figure the machine's load cannot move:
// the build is copied to a temporary folder and its wasm-bindgen imports that
// send a D1 call (`all`, `raw`, `first`, `run` of a statement, `batch`) count
// themselves in a global the script reads over DevTools after each mode.
//
// Needs the built Worker (scripts/build-worker.sh). Not a test: it prints figures.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { argument } from "../lib/cli.mjs";
import { manPagesAndQuestions } from "../eval/sets.mjs";
import { freePort, startLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const TOKEN = "profile-admin-token-not-a-secret-01";
const QUERIES = Number(argument("queries", "200"));
const MODES = argument("modes", "fused,vector,keyword,tag").split(",");

const { pages, questions } = manPagesAndQuestions();

/** A copy of the build whose D1 calls count themselves in `globalThis.__d1Calls`. */
function countingBuild(main) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "profile-search-"));
  fs.cpSync(path.dirname(main), dir, { recursive: true });
  const entry = path.join(dir, path.basename(main));
  const source = fs.readFileSync(entry, "utf8");
  let imports = 0;
  const counted = source.replace(
    /(__wbg_(?:all|raw|first|batch|run)_[0-9a-f]+:function\((e|e,t|e,t,n)\)\{return )(e\.(?:all|raw|first|batch|run)\()/g,
    (_, head, _params, call) => {
      imports += 1;
      return `${head}(globalThis.__d1Calls=(globalThis.__d1Calls||0)+1),${call}`;
    },
  );
  if (imports < 4) throw new Error(`found ${imports} D1 imports to count in ${main}: has the glue changed?`);
  fs.writeFileSync(entry, counted);
  return entry;
}
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const main = countingBuild(argument("main", "") || path.join(repoRoot, "build/index.js"));

const inspectorPort = await freePort();
const base = await startLocalStack({
  name: "profile-search",
  adminToken: TOKEN,
  vars: {},
  drop: ["ratelimits"],
  inspectorPort,
  main,
});
const admin = async (route, init = {}) => {
  const res = await fetch(`${base}${route}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${route}: ${res.status} ${text}`);
  return JSON.parse(text);
};

for (let i = 0; i < pages.length; i += 20) {
  await Promise.all(
    pages.slice(i, i + 20).map((p) =>
      admin(`/admin/documents/docs/${encodeURIComponent(p._id)}.md`, { method: "PUT", body: `# ${p.title || p._id}\n\n${p.text}\n` }),
    ),
  );
}
let chunks = 0;
for (;;) {
  let pending = 0;
  chunks = 0;
  let cursor = "";
  do {
    const page = await admin(`/admin/documents?limit=1000&cursor=${encodeURIComponent(cursor)}`);
    for (const d of page.documents) d.status === "ready" ? (chunks += d.chunk_count) : (pending += 1);
    cursor = page.cursor ?? "";
  } while (cursor);
  if (pending === 0) break;
  await new Promise((r) => setTimeout(r, 1000));
}
console.error(`[profile] ${pages.length} documents, ${chunks} chunks ready`);

// The Worker's DevTools target.
const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  ws.once("open", resolve);
  ws.once("error", reject);
});
let nextId = 1;
const pending = new Map();
const contexts = [];
ws.on("message", (data) => {
  const msg = JSON.parse(data);
  if (msg.method === "Runtime.executionContextCreated") contexts.push(msg.params.context.id);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
});
const send = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, (msg) => (msg.error ? reject(new Error(`${method}: ${msg.error.message}`)) : resolve(msg.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });

const search = (body) =>
  fetch(`${base}/api/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.text());
// Warm up: the first search loads the index cache.
for (let i = 0; i < 10; i++) await search({ query: questions[i] });

await send("Runtime.enable");
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });

/** Self time (µs) by category, from a V8 CPU profile. */
function breakdown(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt);
  }
  const sums = {};
  const functions = {};
  const urls = {};
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    const name = callFrame.functionName || "(anonymous)";
    let category;
    if (name === "(idle)") category = "idle";
    else if (name === "(garbage collector)") category = "gc";
    else if (name === "(program)" || name === "(root)") category = "runtime";
    else if (callFrame.url.includes("wasm") || /^\$?[a-z_]+::|wasm-function|^[_a-zA-Z0-9]+::/.test(name)) category = "wasm";
    else if (callFrame.url === "") category = "built-in";
    // The Worker's own JS is its bundle (wasm-bindgen glue, the worker-build shim); any other
    // script in the isolate is the runtime's or Miniflare's (e.g. the local D1 binding).
    else if (/index\.js$|shim/.test(callFrame.url) && !/miniflare|cloudflare-internal|node:/.test(callFrame.url)) category = "js";
    else category = "js-other";
    urls[category] = urls[category] ?? new Map();
    urls[category].set(callFrame.url, (urls[category].get(callFrame.url) ?? 0) + us);
    sums[category] = (sums[category] ?? 0) + us;
    if (category !== "idle") functions[`${category} ${name}`] = (functions[`${category} ${name}`] ?? 0) + us;
  }
  const top = Object.entries(functions).sort((a, b) => b[1] - a[1]).slice(0, 8);
  const scripts = Object.fromEntries(Object.entries(urls).map(([k, m]) => [k, [...m].sort((a, b) => b[1] - a[1]).slice(0, 4)]));
  return { sums, top, scripts };
}

const d1Calls = async () =>
  (await send("Runtime.evaluate", { expression: "globalThis.__d1Calls || 0", returnByValue: true, contextId: contexts[0] })).result.value;

const rows = [];
for (const mode of MODES) {
  const callsBefore = await d1Calls();
  await send("Profiler.start");
  const cpuBefore = workerdCpuSeconds();
  for (let i = 0; i < QUERIES; i++) await search({ query: questions[i % questions.length], mode });
  const cpuAfter = workerdCpuSeconds();
  const { profile } = await send("Profiler.stop");
  // A search's metrics write runs after its answer: let the last one land.
  await new Promise((r) => setTimeout(r, 500));
  const callsPerSearch = ((await d1Calls()) - callsBefore) / QUERIES;
  const { sums, top, scripts } = breakdown(profile);
  const busy = Object.entries(sums).filter(([k]) => k !== "idle").reduce((s, [, v]) => s + v, 0);
  rows.push({ mode, workerMs: busy / 1000 / QUERIES, processMs: ((cpuAfter - cpuBefore) * 1000) / QUERIES, callsPerSearch, sums, top, scripts });
  console.error(`[profile] ${mode}: ${(busy / 1000 / QUERIES).toFixed(2)} ms of Worker CPU per search`);
}
ws.close();

console.log(`\n${chunks} chunks, ${QUERIES} searches per mode, one at a time\n`);
console.log("| mode | D1 calls per search | Worker isolate CPU per search (ms, profiled) | workerd process CPU per search (ms) | wasm | the Worker's JS | other JS in the isolate | built-ins (fetch, …) | GC | runtime |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
const ms = (r, k) => ((r.sums[k] ?? 0) / 1000 / QUERIES).toFixed(2);
for (const r of rows) {
  console.log(`| ${r.mode} | ${r.callsPerSearch.toFixed(2)} | ${r.workerMs.toFixed(2)} | ${r.processMs.toFixed(1)} | ${ms(r, "wasm")} | ${ms(r, "js")} | ${ms(r, "js-other")} | ${ms(r, "built-in")} | ${ms(r, "gc")} | ${ms(r, "runtime")} |`);
}
for (const r of rows) {
  console.log(`\n${r.mode}: most self time per search`);
  for (const [name, us] of r.top) console.log(`  ${(us / 1000 / QUERIES).toFixed(3)} ms  ${name.slice(0, 140)}`);
  for (const [category, list] of Object.entries(r.scripts)) {
    for (const [url, us] of list) console.log(`  ${category}: ${(us / 1000 / QUERIES).toFixed(3)} ms in ${url.slice(-100) || "(no script)"}`);
  }
}
process.exit(0);
