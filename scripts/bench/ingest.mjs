// Ingestion benchmark on the local stack (`wrangler dev`: local D1, R2,
// Queues, Durable Objects) with the OpenAI-compatible provider stand-in
// (tests/standins/provider.mjs) answering every embedding and tagging call
// after a fixed latency. Prints, per scenario, documents/minute, chunks/second
// and the ratio of wall time to the provider time (the floor: what a run
// cannot go below with that provider):
//
// - one document at a time, of ~10, ~100 and ~1,000 chunks: the processor's
//   steps are sequential, so wall / provider time is the pipeline's overhead;
// - N documents put at once: one processor per document, so they overlap and
//   the ratio drops below 1.
//
//   node scripts/bench/ingest.mjs [--latency-ms 200] [--docs 50] [--metrics-out FILE]
//
// `--metrics-out FILE` writes GET /admin/metrics?window=1h at the end.
//
// Needs the built Worker (scripts/build-worker.sh). Not a test: it prints figures.
import { saveMetricsReport, startLocalStack } from "../../tests/harness/local-stack.mjs";
import { startProviderStandin } from "../../tests/standins/provider.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const LATENCY_MS = arg("--latency-ms", 200);
const PARALLEL_DOCS = arg("--docs", 50);
const TOKEN = "bench-admin-token-not-a-secret-001";
const KEY = "bench-provider-key";

/** A document of `sections` sections of ~240 tokens: one chunk each. */
function documentText(name, sections) {
  const parts = [`---\ncompany: benchco\n---\n# ${name}\n`];
  for (let s = 0; s < sections; s++) {
    const sentence = `Unit ${s} of ${name} ships pallets of part ${s * 7 + 3} to depot ${s % 13} every morning. `;
    parts.push(`## Unit ${s}\n\n${sentence.repeat(10)}\n`);
  }
  return parts.join("\n");
}

const standin = await startProviderStandin({ latencyMs: LATENCY_MS, apiKey: KEY });
const base = await startLocalStack({
  name: "bench-ingest",
  adminToken: TOKEN,
  vars: { EMBEDDING_PROVIDER: "openai", CHAT_PROVIDER: "openai", OPENAI_BASE_URL: standin.url },
  secrets: { OPENAI_API_KEY: KEY },
});

async function admin(route, init = {}) {
  const res = await fetch(`${base}${route}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`${route}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Waits until every key's run has ended; returns their final statuses. */
async function waitReady(keys) {
  const done = new Map();
  const deadline = performance.now() + 30 * 60_000;
  while (done.size < keys.length) {
    if (performance.now() > deadline) throw new Error(`ingestion stalled: ${done.size}/${keys.length} done`);
    await new Promise((r) => setTimeout(r, 250));
    for (const key of keys.filter((k) => !done.has(k))) {
      const s = await admin(`/admin/documents/${key}`);
      if (s.status === "failed") throw new Error(`${key} failed: ${JSON.stringify(s.last_error)}`);
      if (s.status === "ready" && s.finished_at_ms) done.set(key, s);
    }
  }
  return keys.map((k) => done.get(k));
}

/** Puts `docs` ({ key, text }) at once and measures until all are ready. */
async function scenario(name, docs) {
  standin.reset();
  const started = Date.now();
  await Promise.all(docs.map((d) => admin(`/admin/documents/${d.key}`, { method: "PUT", body: d.text })));
  const statuses = await waitReady(docs.map((d) => d.key));
  // The processors' own clocks: from the first document queued to the last one ready.
  const firstQueued = Math.min(...statuses.map((s) => s.queued_at_ms));
  const lastReady = Math.max(...statuses.map((s) => s.finished_at_ms));
  const wallMs = lastReady - firstQueued;
  const stats = standin.stats();
  const chunks = statuses.reduce((n, s) => n + s.chunk_count, 0);
  const row = {
    name,
    docs: docs.length,
    chunks,
    wall_s: wallMs / 1000,
    client_wall_s: (Date.now() - started) / 1000,
    docs_per_min: (docs.length / wallMs) * 60_000,
    chunks_per_s: (chunks / wallMs) * 1000,
    provider_calls: stats.answered,
    provider_s: stats.provider_ms / 1000,
    ratio: wallMs / stats.provider_ms,
    overhead_per_call_ms: (wallMs - stats.provider_ms) / stats.answered,
  };
  console.error(JSON.stringify(row));
  return row;
}

const rows = [];
let n = 0;
for (const sections of [10, 100, 1000]) {
  const key = `companies/benchco/single-${sections}-${n++}.md`;
  rows.push(await scenario(`1 document, ${sections} sections`, [{ key, text: documentText(`Single ${sections}`, sections) }]));
}
const many = Array.from({ length: PARALLEL_DOCS }, (_, i) => ({
  key: `companies/benchco/many-${i}.md`,
  text: documentText(`Many ${i}`, 10),
}));
rows.push(await scenario(`${PARALLEL_DOCS} documents at once, 10 sections each`, many));

console.log(`provider stand-in latency: ${LATENCY_MS} ms per call (embedding batch of ≤ 64 chunks, tag batch of ≤ 20)\n`);
// Overhead per call only means something where the calls are sequential (one document).
console.log("| scenario | docs | chunks | queued → ready (s) | put → seen ready (s) | docs/min | chunks/s | provider calls | provider time (s) | wall / provider time | overhead per call (ms) |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.docs} | ${r.chunks} | ${r.wall_s.toFixed(1)} | ${r.client_wall_s.toFixed(1)} | ${r.docs_per_min.toFixed(1)} | ${r.chunks_per_s.toFixed(1)} | ${r.provider_calls} | ${r.provider_s.toFixed(1)} | ${r.ratio.toFixed(2)} | ${r.docs === 1 ? r.overhead_per_call_ms.toFixed(0) : "—"} |`,
  );
}
await saveMetricsReport(base, TOKEN);
process.exit(0);
