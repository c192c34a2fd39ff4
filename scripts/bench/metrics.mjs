// What recording metrics costs a search: one build (build/), one run, the local stack
// (`wrangler dev`, local D1, offline providers), started once per metrics setting, the settings
// alternating round by round:
//   off        METRICS_SINK=none: nothing recorded (the baseline)
//   d1-each    METRICS_SINK=d1, METRICS_BUFFER_POINTS=1: every request's point written to D1
//              after its answer (what each request cost before the per-isolate buffer)
//   d1         METRICS_SINK=d1 with the default buffer: points wait in the isolate; the request
//              that finds 100 waiting (or the oldest 10 s old) writes them after its answer
//   ae         METRICS_SINK=analytics-engine (a local dataset binding: writeDataPoint only)
//
//   node scripts/bench/metrics.mjs [--rounds 2] [--n 200] [--settings off,d1-each,d1,ae]
//
// Per setting and round: 20 documents ingested, 20 warm-up searches, then --n sequential
// POST /api/search and 3 bursts of 100 concurrent searches. Prints p50/p95 latency and the
// workerd processes' CPU per search (Worker + local D1: an upper bound on the Worker's own), and
// each figure's ratio to `off` measured in the same run. Not a test.
import { parseArgs } from "node:util";
import { startLocalStack, stopLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    n: { type: "string", default: "200" },
    settings: { type: "string", default: "off,d1-each,d1,ae" },
  },
});
const TOKEN = "bench-admin-token-not-a-secret-001";
const N = Number(values.n);
const SETTINGS = {
  off: { vars: { METRICS_SINK: "none" } },
  "d1-each": { vars: { METRICS_SINK: "d1", METRICS_BUFFER_POINTS: "1" } },
  d1: { vars: { METRICS_SINK: "d1" } },
  ae: {
    vars: { METRICS_SINK: "analytics-engine" },
    extra: { analytics_engine_datasets: [{ binding: "METRICS", dataset: "portfolio_metrics_bench" }] },
  },
};
const chosen = values.settings.split(",");
for (const s of chosen) if (!SETTINGS[s]) throw new Error(`unknown setting ${s}; known: ${Object.keys(SETTINGS).join(", ")}`);
if (!chosen.includes("off")) throw new Error("the baseline `off` must be measured in the same run");

function percentile(xs, p) {
  const sorted = [...xs].sort((a, b) => a - b);
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

async function measure(setting) {
  const base = await startLocalStack({
    name: `bench-metrics-${setting}`,
    adminToken: TOKEN,
    drop: ["ratelimits"],
    vars: SETTINGS[setting].vars,
    extra: SETTINGS[setting].extra ?? {},
  });
  try {
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
    const search = (i) =>
      fetch(`${base}/api/search`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `pump programme ${i % 20}` }),
      });
    for (let i = 0; i < 20; i++) await timed(() => search(i));
    const results = [];
    results.push(
      await phase("search, sequential", async () => {
        const t = [];
        for (let i = 0; i < N; i++) t.push(await timed(() => search(i)));
        return t;
      }),
    );
    results.push(
      await phase("search, 100 concurrent × 3", async () => {
        const t = [];
        for (let r = 0; r < 3; r++) t.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => timed(() => search(i))))));
        return t;
      }),
    );
    // The points recorded (a reader writes what waits first): proof the setting recorded them.
    const metrics = await fetch(`${base}/admin/metrics`, { headers });
    const body = metrics.status === 200 ? await metrics.json() : null;
    const searches = body?.requests.routes.find((r) => r.route === "POST /api/search")?.count ?? 0;
    return { results, searches, status: metrics.status };
  } finally {
    stopLocalStack();
  }
}

const rows = [];
for (let round = 0; round < Number(values.rounds); round++) {
  for (const setting of chosen) {
    const run = await measure(setting);
    for (const r of run.results) rows.push({ round, setting, ...r });
    console.error(`[bench-metrics] round ${round} ${setting}: /admin/metrics ${run.status}, search points read back = ${run.searches}`);
  }
}
console.log("| round | setting | phase | n | p50 (ms) | p95 (ms) | CPU per search (ms) |");
console.log("| ---: | --- | --- | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(`| ${r.round} | ${r.setting} | ${r.name} | ${r.n} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.cpu_ms.toFixed(2)} |`);
}
const mean = (setting, phaseName, key) => {
  const xs = rows.filter((r) => r.name === phaseName && r.setting === setting).map((r) => r[key]);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
console.log("");
console.log("| phase | setting | p50 (ms) | p95 (ms) | CPU (ms) | p50 / off | p95 / off | CPU / off |");
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const phaseName of [...new Set(rows.map((r) => r.name))]) {
  for (const setting of chosen) {
    const [p50, p95, cpu] = ["p50", "p95", "cpu_ms"].map((k) => mean(setting, phaseName, k));
    const [b50, b95, bcpu] = ["p50", "p95", "cpu_ms"].map((k) => mean("off", phaseName, k));
    console.log(
      `| ${phaseName} | ${setting} | ${p50.toFixed(1)} | ${p95.toFixed(1)} | ${cpu.toFixed(2)} | ${(p50 / b50).toFixed(2)} | ${(p95 / b95).toFixed(2)} | ${(cpu / bcpu).toFixed(2)} |`,
    );
  }
}
process.exit(0);
