// What recording metrics costs the request path: the same requests against
// two builds of the Worker, alternating, on the local stack (`wrangler dev`,
// local D1, offline providers). "before" is a build without metrics (e.g.
// main's, copied aside), "after" is build/ (every request records a data
// point, written to D1 after the response through waitUntil).
//
//   node scripts/bench/metrics.mjs --before /tmp/build-before [--after build] [--rounds 2] [--n 300]
//     [--sink d1|analytics-engine|both]   (the after build's METRICS_SINK; with Analytics
//                                         Engine a local METRICS dataset binding is added)
//
// Per build and round: 20 documents ingested, then --n sequential GET
// /api/health and POST /api/search, and 3 bursts of 100 concurrent health
// checks. Prints p50/p95 latency and the workerd processes' CPU per request
// (Worker + local D1: an upper bound on the Worker's own). Not a test.
import path from "node:path";
import { parseArgs } from "node:util";
import { startLocalStack, stopLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const { values } = parseArgs({
  options: {
    before: { type: "string" },
    after: { type: "string", default: "build" },
    rounds: { type: "string", default: "2" },
    n: { type: "string", default: "300" },
    sink: { type: "string", default: "d1" },
  },
});
if (!values.before) {
  console.error("usage: node scripts/bench/metrics.mjs --before DIR [--after DIR] [--rounds R] [--n N]");
  process.exit(2);
}
const TOKEN = "bench-admin-token-not-a-secret-001";
const N = Number(values.n);

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1];
}

async function timed(request) {
  const started = performance.now();
  const res = await request();
  await res.arrayBuffer();
  if (res.status >= 300) throw new Error(`status ${res.status}`);
  return performance.now() - started;
}

async function phase(name, requests) {
  const cpu = workerdCpuSeconds();
  const times = await requests();
  const used = workerdCpuSeconds() - cpu;
  return { name, n: times.length, p50: percentile(times, 50), p95: percentile(times, 95), cpu_ms: (used * 1000) / times.length };
}

async function measure(label, dir) {
  const after = label === "after";
  const base = await startLocalStack({
    name: `bench-metrics-${label}`,
    adminToken: TOKEN,
    main: path.join(dir, "index.js"),
    drop: ["ratelimits"],
    vars: after ? { METRICS_SINK: values.sink } : {},
    extra:
      after && values.sink !== "d1"
        ? { analytics_engine_datasets: [{ binding: "METRICS", dataset: "portfolio_metrics_bench" }] }
        : {},
  });
  const headers = { authorization: `Bearer ${TOKEN}` };
  for (let d = 0; d < 20; d++) {
    const body = `---\ncompany: acme\n---\n# Handbook ${d}\n\n## Pumps\n\nThe pump programme ${d} improves throughput.\n\n## Sensors\n\nSensors report every second.\n`;
    const res = await fetch(`${base}/admin/documents/bench/doc-${d}.md`, { method: "PUT", headers, body });
    if (res.status !== 202) throw new Error(`put: ${res.status}`);
  }
  for (let i = 0; i < 600; i++) {
    const page = await (await fetch(`${base}/admin/documents?limit=1000`, { headers })).json();
    if (page.documents.length === 20 && page.documents.every((d) => d.status === "ready")) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const health = () => fetch(`${base}/api/health`);
  const search = (i) =>
    fetch(`${base}/api/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: `pump programme ${i % 20}` }),
    });
  for (let i = 0; i < 20; i++) await timed(() => search(i));
  const results = [];
  results.push(
    await phase("GET /api/health (sequential)", async () => {
      const t = [];
      for (let i = 0; i < N; i++) t.push(await timed(health));
      return t;
    }),
  );
  results.push(
    await phase("POST /api/search (sequential)", async () => {
      const t = [];
      for (let i = 0; i < N; i++) t.push(await timed(() => search(i)));
      return t;
    }),
  );
  results.push(
    await phase("GET /api/health (100 concurrent × 3)", async () => {
      const t = [];
      for (let r = 0; r < 3; r++) t.push(...(await Promise.all(Array.from({ length: 100 }, () => timed(health)))));
      return t;
    }),
  );
  // Give the last waitUntil writes time to land, then count them (after only).
  await new Promise((r) => setTimeout(r, 1000));
  const metrics = await fetch(`${base}/admin/metrics`, { headers });
  const points = metrics.status === 200 ? (await metrics.json()).requests.total : null;
  stopLocalStack();
  return { label, results, points };
}

const rows = [];
for (let round = 0; round < Number(values.rounds); round++) {
  for (const [label, dir] of [
    ["before", values.before],
    ["after", values.after],
  ]) {
    const run = await measure(label, dir);
    for (const r of run.results) rows.push({ round, build: label, ...r });
    console.error(`[bench-metrics] round ${round} ${label}: request points recorded = ${run.points ?? "n/a (no metrics route)"}`);
  }
}
console.log("| round | build | phase | n | p50 (ms) | p95 (ms) | CPU per request (ms) |");
console.log("| ---: | --- | --- | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(`| ${r.round} | ${r.build} | ${r.name} | ${r.n} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.cpu_ms.toFixed(2)} |`);
}
for (const phaseName of [...new Set(rows.map((r) => r.name))]) {
  const mean = (build, key) => {
    const xs = rows.filter((r) => r.name === phaseName && r.build === build).map((r) => r[key]);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  console.log(
    `${phaseName}: p50 ${mean("before", "p50").toFixed(1)} → ${mean("after", "p50").toFixed(1)} ms, ` +
      `p95 ${mean("before", "p95").toFixed(1)} → ${mean("after", "p95").toFixed(1)} ms, ` +
      `CPU ${mean("before", "cpu_ms").toFixed(2)} → ${mean("after", "cpu_ms").toFixed(2)} ms/request`,
  );
}
process.exit(0);
