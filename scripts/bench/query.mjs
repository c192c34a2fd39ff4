// Load benchmark of the query service on the local stack (`wrangler dev`,
// local D1/R2/Queues/Durable Objects, offline embedder and answerer): grows a
// corpus through the admin API to each size in turn (chunks), waits until it
// is ingested, then fires rounds of 100 concurrent requests at /api/search
// and /api/chat and prints p50/p95/p99 latency, with GET /api/health measured
// in the same run as the baseline. Also prints the workerd process's CPU time
// per request over each load phase (Worker + local D1 + runtime: an upper
// bound on the Worker's own CPU time) and the medians of the vector / keyword
// / tag timings the responses carry; with --by-source, the same load once per
// single-source search mode (vector, keyword, tag), which shows where a fused
// search's CPU goes.
//
//   node scripts/bench/query.mjs [chunks ...] [--corpus generated|debian] [--by-source]
//        [--rounds N] [--main BUILD/index.js] [--metrics-out FILE]
//   (default sizes 1000 5000 10000; --metrics-out writes GET /admin/metrics?window=1h at the end)
//
// --main runs another build of the Worker (before/after on one machine).
// --corpus generated (the default): documents of 100 one-chunk sections that
//   share most of their words, a worst case for keyword and tag search.
// --corpus debian: the man pages of both evaluation sets (eval/debian-*,
//   458 documents, about 4,000 chunks) and their judged questions; past that
//   size the pages are ingested again as further copies (under copy-N/ keys,
//   each copy its own company), so term statistics stay those of real
//   documentation while the corpus grows.
//
// Needs the built Worker (scripts/build-worker.sh). Not a test: it prints figures.
import { argument } from "../lib/cli.mjs";
import { manPagesAndQuestions } from "../eval/sets.mjs";
import { saveMetricsReport, startLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const optionValues = new Set(["--corpus", "--rounds", "--main", "--metrics-out"].map((o) => process.argv[process.argv.indexOf(o) + 1]));
const sizes = process.argv
  .slice(2)
  .filter((a) => !a.startsWith("--") && !optionValues.has(a))
  .map(Number)
  .filter((n) => n > 0);
const SIZES = sizes.length > 0 ? sizes : [1000, 5000, 10000];
const CORPUS = argument("corpus", "generated");
if (!["generated", "debian"].includes(CORPUS)) throw new Error(`--corpus must be generated or debian, got ${CORPUS}`);
const BY_SOURCE = process.argv.includes("--by-source");
const TOKEN = "bench-admin-token-not-a-secret-001";
const CONCURRENCY = 100;
const ROUNDS = Number(argument("rounds", "3"));
const SECTIONS_PER_DOC = 100; // ~240 tokens each: one chunk per section
const COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne"];
const TOPICS = ["forklift", "pump", "reactor", "ledger", "turbine", "sensor", "robot", "battery", "satellite", "compiler"];

function documentText(d) {
  const company = COMPANIES[d % COMPANIES.length];
  const lines = [`---\ncompany: ${company}\ntags: [${TOPICS[d % TOPICS.length]}]\n---\n# ${company} handbook ${d}\n`];
  for (let s = 0; s < SECTIONS_PER_DOC; s++) {
    const topic = TOPICS[(d + s) % TOPICS.length];
    const code = `${topic.slice(0, 2).toUpperCase()}-${d}${s}`;
    const sentence = `The ${topic} programme ${code} of ${company} improves throughput for team ${s} in region ${d % 7}. `;
    lines.push(`## ${topic} ${code}\n\n${sentence.repeat(10)}\n`);
  }
  return lines.join("\n");
}

const QUESTIONS = [];
for (let i = 0; i < 50; i++) {
  const topic = TOPICS[i % TOPICS.length];
  const company = COMPANIES[(i * 3) % COMPANIES.length];
  QUESTIONS.push(i % 5 === 0 ? `${topic.slice(0, 2).toUpperCase()}-${i}${i % SECTIONS_PER_DOC}` : `How does ${company} improve ${topic} throughput?`);
}

const DEBIAN = CORPUS === "debian" ? manPagesAndQuestions() : null;
if (DEBIAN) QUESTIONS.splice(0, QUESTIONS.length, ...DEBIAN.questions);

/** Document `d` of the corpus: its key and markdown. */
function corpusDocument(d) {
  if (!DEBIAN) return { key: `companies/${COMPANIES[d % COMPANIES.length]}/handbook-${d}.md`, text: documentText(d) };
  const page = DEBIAN.pages[d % DEBIAN.pages.length];
  const copy = Math.floor(d / DEBIAN.pages.length);
  const text = `---\ncompany: copy-${copy}\n---\n# ${page.title || page._id}\n\n${page.text}\n`;
  return { key: `copy-${copy}/${encodeURIComponent(page._id)}.md`, text };
}

const base = await startLocalStack({ name: "bench-query", adminToken: TOKEN, vars: {}, main: argument("main", "") || undefined });

async function admin(route, init = {}) {
  const res = await fetch(`${base}${route}`, {
    ...init,
    headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) },
  });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`${route}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function readyChunks() {
  let chunks = 0;
  let pending = 0;
  let cursor = "";
  do {
    const page = await admin(`/admin/documents?limit=1000&cursor=${encodeURIComponent(cursor)}`);
    for (const d of page.documents) {
      if (d.status === "ready") chunks += d.chunk_count;
      else pending += 1;
    }
    cursor = page.cursor ?? "";
  } while (cursor);
  return { chunks, pending };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function load(name, makeRequest) {
  const cpuBefore = workerdCpuSeconds();
  const times = [];
  const statuses = {};
  const parts = { vector_ms: [], keyword_ms: [], tag_ms: [] };
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, i) => {
        const started = performance.now();
        const res = await makeRequest(round * CONCURRENCY + i);
        const body = await res.text();
        times.push(performance.now() - started);
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status === 200 && body.startsWith("{")) {
          const t = JSON.parse(body).timings;
          const r = t?.retrieval ?? t;
          for (const k of Object.keys(parts)) if (typeof r?.[k] === "number") parts[k].push(r[k]);
        }
      }),
    );
  }
  const cpuAfter = workerdCpuSeconds();
  const cpuMsPerRequest = cpuBefore === null || cpuAfter === null ? NaN : ((cpuAfter - cpuBefore) * 1000) / times.length;
  times.sort((a, b) => a - b);
  const median = (xs) => (xs.length ? xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);
  return {
    name,
    n: times.length,
    p50: percentile(times, 50),
    p95: percentile(times, 95),
    p99: percentile(times, 99),
    statuses,
    cpuMsPerRequest,
    parts: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, median(v)])),
  };
}

const post = (route, body, i) =>
  fetch(`${base}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", "cf-connecting-ip": `198.51.100.${i % 250}` },
    body: JSON.stringify(body),
  });

const rows = [];
let documents = 0;
for (const target of SIZES) {
  const t0 = performance.now();
  let state = await readyChunks();
  // Generated documents have a known size; man pages vary, so add a batch, wait, and look again.
  const wantDocs = DEBIAN ? Infinity : Math.ceil(target / SECTIONS_PER_DOC);
  while (state.chunks < target * 0.95 && documents < wantDocs) {
    const batch = [];
    for (let k = 0; k < (DEBIAN ? 40 : 10) && documents < wantDocs; k++, documents++) {
      const { key, text } = corpusDocument(documents);
      batch.push(admin(`/admin/documents/${key}`, { method: "PUT", body: text }));
    }
    await Promise.all(batch);
    if (DEBIAN || documents >= wantDocs) {
      for (;;) {
        state = await readyChunks();
        if (state.pending === 0) break;
        if (performance.now() - t0 > 60 * 60_000) throw new Error(`ingestion stalled: ${JSON.stringify(state)}`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
  const ingestS = (performance.now() - t0) / 1000;
  const health = await load("GET /api/health", () => fetch(`${base}/api/health`));
  // One search alone first: after ingestion the isolate's index cache must catch up (the
  // whole index on the first query), which the first round would otherwise absorb.
  const first = performance.now();
  await (await post("/api/search", { query: QUESTIONS[0] }, 0)).text();
  const firstSearchMs = performance.now() - first;
  const solo = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await (await post("/api/search", { query: QUESTIONS[i % QUESTIONS.length] }, i)).text();
    solo.push(performance.now() - t);
  }
  solo.sort((a, b) => a - b);
  const soloSearch = { p50: percentile(solo, 50), p95: percentile(solo, 95) };
  const search = await load("POST /api/search", (i) => post("/api/search", { query: QUESTIONS[i % QUESTIONS.length] }, i));
  const bySource = [];
  for (const mode of BY_SOURCE ? ["vector", "keyword", "tag"] : []) {
    bySource.push(await load(`POST /api/search (${mode} only)`, (i) => post("/api/search", { query: QUESTIONS[i % QUESTIONS.length], mode }, i)));
  }
  const chat = await load("POST /api/chat", (i) => post("/api/chat", { question: QUESTIONS[i % QUESTIONS.length] }, i));
  rows.push({ chunks: state.chunks, ingestS, firstSearchMs, soloSearch, results: [health, search, ...bySource, chat] });
  console.error(JSON.stringify(rows.at(-1)));
}

console.log(`\ncorpus: ${CORPUS}${DEBIAN ? ` (${DEBIAN.pages.length} man pages, ${DEBIAN.questions.length} questions)` : ""}, ${CONCURRENCY} concurrent × ${ROUNDS} rounds\n`);
console.log(`| chunks | route | requests | p50 (ms) | p95 (ms) | p99 (ms) | p95 / health p95 | workerd CPU per request (ms) | statuses | median vector / keyword / tag (ms) |`);
console.log(`| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |`);
for (const row of rows) {
  const baseline = row.results[0].p95;
  for (const r of row.results) {
    const parts = Number.isNaN(r.parts.vector_ms) ? "" : `${r.parts.vector_ms} / ${r.parts.keyword_ms} / ${r.parts.tag_ms}`;
    console.log(
      `| ${row.chunks} | ${r.name} | ${r.n} | ${r.p50.toFixed(0)} | ${r.p95.toFixed(0)} | ${r.p99.toFixed(0)} | ${(r.p95 / baseline).toFixed(1)}× | ${r.cpuMsPerRequest.toFixed(1)} | ${JSON.stringify(r.statuses)} | ${parts} |`,
    );
  }
}
console.log(
  `\nsolo /api/search (20 sequential): ${rows.map((r) => `${r.chunks} chunks p50 ${r.soloSearch.p50.toFixed(0)} ms, p95 ${r.soloSearch.p95.toFixed(0)} ms; first search after ingestion ${r.firstSearchMs.toFixed(0)} ms`).join("; ")}`,
);
console.log(`\ningestion: ${rows.map((r) => `${r.chunks} chunks ready after ${r.ingestS.toFixed(0)} s`).join("; ")}`);
await saveMetricsReport(base, TOKEN);
process.exit(0);
