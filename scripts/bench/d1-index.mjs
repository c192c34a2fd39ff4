// Measures the D1-exact vector index's query latency against corpus size, on the
// local stack (`wrangler dev`, local D1 = SQLite in workerd): loads N random
// 1536-dim vectors through POST /admin/index/upsert, then times
// POST /admin/index/query (top_k 10, metadata returned) end to end.
//
//   node scripts/bench/d1-index.mjs [N ...] [--main BUILD/index.js]   (default: 1000 2500 5000 10000 20000)
//   --main runs another build of the Worker (a before/after comparison on one machine).
//
// Build the Worker first (scripts/build-worker.sh). Prints one row per N with the
// median and p95 of the query latency, a ratio against the smallest N, the
// workerd process's CPU per query (Worker + local D1) and the first query after
// each load, which brings the isolate's index cache up to date.
// Local D1 has no network hop: production D1 adds its round trips per page
// (one page per 1000 rows), so treat these figures as a lower bound.
import { startLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const mainAt = process.argv.indexOf("--main");
const main = mainAt > 0 ? process.argv[mainAt + 1] : undefined;
const sizes = process.argv
  .slice(2)
  .filter((a, i, all) => all[i - 1] !== "--main")
  .map(Number)
  .filter((n) => n > 0);
const SIZES = sizes.length > 0 ? sizes : [1000, 2500, 5000, 10000, 20000];
const DIMS = 1536;
const TOKEN = "bench-admin-token-not-a-secret-001";
const QUERIES = 30;
const BATCH = 500;

// Deterministic pseudo-random numbers (mulberry32), so runs are comparable.
function rng(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(42);
const vector = () => Array.from({ length: DIMS }, () => Number((rand() * 2 - 1).toFixed(4)));

async function call(base, route, body) {
  const res = await fetch(`${base}${route}`, {
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`${route}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const base = await startLocalStack({ name: "bench-d1-index", adminToken: TOKEN, vars: { VECTOR_INDEX: "d1" }, main });

const rows = [];
let loaded = 0;
for (const n of SIZES) {
  const t0 = performance.now();
  while (loaded < n) {
    const count = Math.min(BATCH, n - loaded);
    const vectors = Array.from({ length: count }, (_, i) => ({
      id: `bench:${loaded + i}`,
      values: vector(),
      metadata: { document_id: loaded + i, company_id: (loaded + i) % 10, version: 1, tags: ["bench"] },
    }));
    await call(base, "/admin/index/upsert", { vectors });
    loaded += count;
  }
  const loadMs = performance.now() - t0;
  const info = await call(base, "/admin/index");
  // The first query after the load brings the isolate's index cache up to date (every vector
  // loaded since the previous size): timed apart from the steady state.
  const t1 = performance.now();
  await call(base, "/admin/index/query", { vector: vector(), top_k: 10 });
  const firstMs = performance.now() - t1;
  const cpuBefore = workerdCpuSeconds();
  const times = [];
  for (let q = 0; q < QUERIES; q++) {
    const t = performance.now();
    const { matches } = await call(base, "/admin/index/query", { vector: vector(), top_k: 10 });
    times.push(performance.now() - t);
    if (matches.length !== 10) throw new Error(`expected 10 matches, got ${matches.length}`);
  }
  const cpuAfter = workerdCpuSeconds();
  const cpuMs = cpuBefore === null || cpuAfter === null ? NaN : ((cpuAfter - cpuBefore) * 1000) / QUERIES;
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const p95 = times[Math.min(times.length - 1, Math.ceil(times.length * 0.95) - 1)];
  rows.push({ n: info.vector_count, median, p95, loadMs, firstMs, cpuMs });
}

const baseline = rows[0].median;
console.log("| vectors | query median (ms) | query p95 (ms) | ratio vs smallest | workerd CPU per query (ms) | first query after load (ms) | load time (s) |");
console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(
    `| ${r.n} | ${r.median.toFixed(0)} | ${r.p95.toFixed(0)} | ${(r.median / baseline).toFixed(1)}× | ${r.cpuMs.toFixed(1)} | ${r.firstMs.toFixed(0)} | ${(r.loadMs / 1000).toFixed(1)} |`,
  );
}
process.exit(0);
