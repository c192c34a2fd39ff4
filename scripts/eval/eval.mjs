// Retrieval evaluation through the real service: starts the built Worker under
// `wrangler dev` (tests/harness/local-stack.mjs), ingests a BEIR-format set
// (corpus.jsonl, queries.jsonl, qrels/test.tsv) through the admin API, waits
// until every document is ready, then asks every query of the set through
// POST /api/search in each mode (`mode` and `fusion` are request options, so
// the service itself is measured, not a copy of its ranking: vector, keyword,
// tag, fused and fused_reranked) and prints
// nDCG@10, Recall@10, MRR@10 and latency per mode (nDCG@10 also per question
// kind, the queries' `metadata.kind`: "name" and "option" in the man-page
// sets, "faq" in eval/debian-faq, "heading" in eval/docker-docs; EVAL_SETS in
// sets.mjs lists the sets).
//
//   node scripts/eval/eval.mjs --set eval/debian-report [--embedder hashing|minilm]
//        [--reranker local|none] [--rerank-candidates N]
//        [--modes vector,keyword,tag,fused,fused_reranked] [--fusion vector=1,keyword=0.5,tag=0,k=60]
//        [--candidates N] [--sweep] [--max-queries N] [--json FILE] [--main BUILD/index.js]
//
// --main runs another build of the Worker (e.g. a copy of build/, so that
//   rebuilding during a long run does not reload the Worker under it).
// --embedder minilm starts scripts/dev/embed-server.sh (all-MiniLM-L6-v2, an
//   OpenAI-compatible /v1/embeddings server on loopback) and points the
//   service's `openai` embedder at it; hashing is the offline default.
// --reranker local (the default) points the service's `http` reranker
//   (RERANKER=http) at the same server's /v1/rerank stand-in, started for
//   it when the embedder is hashing; none leaves fused_reranked out.
//   --rerank-candidates sets RERANK_CANDIDATES (default the service's, 20).
//   A fused_reranked answer that says `reranked: false` stops the run: a
//   fallback to the fused order must not be reported as reranking.
// --fusion    the fused mode's weights (default: the service's SEARCH_FUSION
//   for that embedder kind).
// --sweep     also runs a grid of fusion weights, k and candidate counts and
//   prints it best first (tune on the tuning set only, never on the report set);
//   --sweep-k, --sweep-keyword, --sweep-tag (comma-separated) set the grid
//   (default 5,10,30 × 1,2,4,8 × 0,0.25, vector weight 1).
//
// Judgement is per document: a query's ranked chunks are reduced to their
// documents in first-seen order (a document counts once), then cut at 10.
// Needs the built Worker (scripts/build-worker.sh). Not a test: it prints figures.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { argument, flag } from "../lib/cli.mjs";
import { readJsonl } from "./sets.mjs";
import { freePort, startLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const TOKEN = "eval-admin-token-not-a-secret-0001";
const CUTOFF = 10;
const CHUNKS_ASKED = 30; // top_k: enough chunks for 10 distinct documents


const setDir = path.resolve(root, argument("set", "eval/debian-report"));
const embedder = argument("embedder", "hashing");
const reranker = argument("reranker", "local");
const rerankCandidates = argument("rerank-candidates", "");
const modes = argument("modes", `vector,keyword,tag,fused${reranker === "none" ? "" : ",fused_reranked"}`).split(",");
const fusionSpec = argument("fusion", "");
const candidates = argument("candidates", "") ? Number(argument("candidates", "")) : undefined;
const maxQueries = Number(argument("max-queries", "0")) || Infinity;
if (!["hashing", "minilm"].includes(embedder)) throw new Error(`--embedder must be hashing or minilm, got ${embedder}`);
if (!["local", "none"].includes(reranker)) throw new Error(`--reranker must be local or none, got ${reranker}`);
if (reranker === "none" && modes.includes("fused_reranked")) throw new Error("--modes fused_reranked needs --reranker local");

/** `vector=1,keyword=0.5` → `{ vector: 1, keyword: 0.5 }` (the request's `fusion`). */
function fusionObject(spec) {
  if (!spec) return undefined;
  return Object.fromEntries(
    spec.split(",").map((part) => {
      const [key, value] = part.split("=").map((s) => s.trim());
      if (!["vector", "keyword", "tag", "k"].includes(key) || !Number.isFinite(Number(value))) {
        throw new Error(`--fusion: bad part ${part}`);
      }
      return [key, Number(value)];
    }),
  );
}

function readSet(dir) {
  const corpus = readJsonl(path.join(dir, "corpus.jsonl"));
  const queries = readJsonl(path.join(dir, "queries.jsonl"));
  const qrels = new Map();
  const lines = readFileSync(path.join(dir, "qrels", "test.tsv"), "utf8").split("\n").slice(1);
  for (const line of lines) {
    if (!line.trim()) continue;
    const [qid, docId, score] = line.split("\t");
    if (Number(score) <= 0) continue;
    if (!qrels.has(qid)) qrels.set(qid, new Map());
    qrels.get(qid).set(docId, Number(score));
  }
  return { corpus, queries: queries.filter((q) => qrels.has(q._id)).slice(0, maxQueries), qrels };
}

/** The R2 key a corpus document is stored under, and back. */
const keyOf = (docId) => `eval/${docId}.md`;
const docOf = (key) => key.replace(/^eval\//, "").replace(/\.md$/, "");

// --- metrics (binary or graded relevance, per document) ---

function dcg(gains) {
  return gains.reduce((sum, g, i) => sum + (2 ** g - 1) / Math.log2(i + 2), 0);
}

function scoreRun(ranked, relevant) {
  const top = ranked.slice(0, CUTOFF);
  const gains = top.map((d) => relevant.get(d) ?? 0);
  const ideal = [...relevant.values()].sort((a, b) => b - a).slice(0, CUTOFF);
  const ndcg = dcg(ideal) > 0 ? dcg(gains) / dcg(ideal) : 0;
  const found = top.filter((d) => relevant.has(d)).length;
  const first = top.findIndex((d) => relevant.has(d));
  return { ndcg, recall: found / relevant.size, mrr: first < 0 ? 0 : 1 / (first + 1) };
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// --- the stack ---

async function startEmbedServer() {
  const port = await freePort();
  const child = spawn("bash", [path.join(root, "scripts", "dev", "embed-server.sh"), "--port", String(port)], {
    cwd: root,
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  child.unref();
  process.on("exit", () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
  });
  await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("listening on")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`embed-server exited with ${code}`)));
  });
  return `http://127.0.0.1:${port}`;
}

async function startStack() {
  const vars = {};
  const secrets = {};
  const url = embedder === "minilm" || reranker === "local" ? await startEmbedServer() : null;
  if (reranker === "local") {
    Object.assign(vars, { RERANKER: "http", RERANK_URL: url, PROVIDER_TIMEOUT_MS: "60000" });
    if (rerankCandidates) vars.RERANK_CANDIDATES = rerankCandidates;
  }
  if (embedder === "minilm") {
    Object.assign(vars, {
      EMBEDDING_PROVIDER: "openai",
      OPENAI_BASE_URL: url,
      OPENAI_EMBEDDING_MODEL: "all-MiniLM-L6-v2",
      EMBEDDING_DIMENSIONS: "384",
      PROVIDER_TIMEOUT_MS: "60000",
    });
    secrets.OPENAI_API_KEY = "local-embed-server-needs-no-key";
  }
  const main = argument("main", "") || undefined;
  return startLocalStack({ name: `eval-${embedder}`, adminToken: TOKEN, vars, secrets, drop: ["ratelimits"], main });
}

async function admin(base, route, init = {}) {
  const res = await fetch(`${base}${route}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${route}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function ingest(base, corpus) {
  const started = performance.now();
  for (let i = 0; i < corpus.length; i += 8) {
    await Promise.all(
      corpus.slice(i, i + 8).map((doc) => {
        const markdown = `# ${doc.title || doc._id}\n\n${doc.text}\n`;
        const key = keyOf(doc._id).split("/").map(encodeURIComponent).join("/");
        return admin(base, `/admin/documents/${key}`, {
          method: "PUT",
          headers: { "content-type": "text/markdown; charset=utf-8" },
          body: markdown,
        });
      }),
    );
  }
  for (;;) {
    let ready = 0;
    let failed = [];
    let chunks = 0;
    let cursor = "";
    do {
      const page = await admin(base, `/admin/documents?limit=1000&cursor=${encodeURIComponent(cursor)}`);
      for (const d of page.documents) {
        if (d.status === "ready") {
          ready += 1;
          chunks += d.chunk_count;
        } else if (d.status === "failed") failed.push(d.key);
      }
      cursor = page.cursor ?? "";
    } while (cursor);
    if (failed.length) throw new Error(`ingestion failed for ${failed.length} documents: ${failed.slice(0, 5).join(", ")}`);
    if (ready >= corpus.length) return { seconds: (performance.now() - started) / 1000, chunks };
    if (performance.now() - started > 60 * 60_000) throw new Error(`ingestion stalled at ${ready}/${corpus.length}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// --- one evaluation run ---

async function evaluate(base, set, label, options) {
  const perQuery = [];
  const latencies = [];
  const serverMs = [];
  const cpuBefore = workerdCpuSeconds();
  for (const query of set.queries) {
    const body = { query: query.text, top_k: CHUNKS_ASKED, ...options };
    const started = performance.now();
    const res = await fetch(`${base}/api/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    latencies.push(performance.now() - started);
    if (res.status !== 200) throw new Error(`${label}: /api/search answered ${res.status}: ${text}`);
    const answer = JSON.parse(text);
    if (options.mode === "fused_reranked" && !answer.reranked && answer.results.length > 0) {
      throw new Error(`${label}: the answer to ${JSON.stringify(query.text)} was not reranked (see the service's rerank_failed log)`);
    }
    serverMs.push(answer.timings.total_ms);
    const ranked = [];
    for (const r of answer.results) {
      const doc = docOf(r.key);
      if (!ranked.includes(doc)) ranked.push(doc);
    }
    perQuery.push({ kind: query.metadata?.kind ?? "all", ...scoreRun(ranked, set.qrels.get(query._id)) });
  }
  const cpuAfter = workerdCpuSeconds();
  const mean = (k, qs = perQuery) => qs.reduce((s, q) => s + q[k], 0) / qs.length;
  const kinds = [...new Set(perQuery.map((q) => q.kind))].sort();
  return {
    ndcg_by_kind: Object.fromEntries(kinds.map((kind) => [kind, mean("ndcg", perQuery.filter((q) => q.kind === kind))])),
    label,
    queries: perQuery.length,
    ndcg: mean("ndcg"),
    recall: mean("recall"),
    mrr: mean("mrr"),
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    server_p50: percentile(serverMs, 50),
    cpu_ms: cpuBefore === null || cpuAfter === null ? NaN : ((cpuAfter - cpuBefore) * 1000) / perQuery.length,
    perQuery,
  };
}

function printTable(title, rows) {
  console.log(`\n${title}\n`);
  const kinds = Object.keys(rows[0]?.ndcg_by_kind ?? {});
  const byKind = kinds.map((k) => ` nDCG@10 ${k} |`).join("");
  console.log(`| mode | nDCG@10 | Recall@10 | MRR@10 | p50 (ms) | p95 (ms) | server p50 (ms) | workerd CPU per search (ms) |${byKind}`);
  console.log(`| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${kinds.map(() => " ---: |").join("")}`);
  for (const r of rows) {
    const perKind = kinds.map((k) => ` ${r.ndcg_by_kind[k].toFixed(3)} |`).join("");
    console.log(
      `| ${r.label} | ${r.ndcg.toFixed(3)} | ${r.recall.toFixed(3)} | ${r.mrr.toFixed(3)} | ${r.p50.toFixed(0)} | ${r.p95.toFixed(0)} | ${r.server_p50} | ${r.cpu_ms.toFixed(1)} |${perKind}`,
    );
  }
}

const set = readSet(setDir);
console.error(`[eval] ${path.relative(root, setDir)}: ${set.corpus.length} documents, ${set.queries.length} judged queries; embedder ${embedder}, reranker ${reranker}`);
const base = await startStack();
const ingested = await ingest(base, set.corpus);
console.error(`[eval] ingested ${set.corpus.length} documents (${ingested.chunks} chunks) in ${ingested.seconds.toFixed(0)} s`);
// One search first: the isolate loads the index cache on the first query.
await fetch(`${base}/api/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "warm up" }) });

const rows = [];
for (const mode of modes) {
  const options = { mode, ...(candidates ? { candidates } : {}) };
  const fused = mode === "fused" || mode === "fused_reranked";
  if (fused && fusionSpec) options.fusion = fusionObject(fusionSpec);
  const label = fused && fusionSpec ? `${mode} (${fusionSpec})` : mode;
  rows.push(await evaluate(base, set, label, options));
  console.error(`[eval] ${label}: nDCG@10 ${rows.at(-1).ndcg.toFixed(3)}`);
}
printTable(`${path.relative(root, setDir)} · embedder ${embedder} · reranker ${reranker} · ${set.corpus.length} documents, ${ingested.chunks} chunks, ${set.queries.length} queries`, rows);

const sweep = [];
if (flag("sweep")) {
  const grid = [];
  // Vector weight 1, the others relative to it. The defaults go on from a
  // first grid (k 10/30/60 × keyword 0.25–2 × tag 0–1) whose best settings
  // were all at its largest keyword weight and tag 0 or 0.25.
  const list = (name, fallback) => argument(name, fallback).split(",").map(Number);
  for (const k of list("sweep-k", "5,10,30")) {
    for (const keyword of list("sweep-keyword", "1,2,4,8")) {
      for (const tag of list("sweep-tag", "0,0.25")) grid.push({ vector: 1, keyword, tag, k });
    }
  }
  for (const fusion of grid) {
    const spec = Object.entries(fusion).map(([key, v]) => `${key}=${v}`).join(",");
    sweep.push({ spec, ...(await evaluate(base, set, `fused (${spec})`, { mode: "fused", fusion })) });
  }
  sweep.sort((a, b) => b.ndcg - a.ndcg);
  const best = sweep[0];
  for (const n of [10, 20, 50]) {
    const spec = `${best.spec},candidates=${n}`;
    sweep.push({ spec, ...(await evaluate(base, set, `fused (${spec})`, { mode: "fused", fusion: fusionObject(best.spec), candidates: n })) });
  }
  printTable(`sweep (${sweep.length} settings, best nDCG@10 first; candidates default to 50 at top_k ${CHUNKS_ASKED})`, [...sweep].sort((a, b) => b.ndcg - a.ndcg));
}

const jsonOut = argument("json", "");
if (jsonOut) {
  const strip = ({ perQuery, ...rest }) => rest;
  writeFileSync(jsonOut, JSON.stringify({ set: path.relative(root, setDir), embedder, reranker, chunks: ingested.chunks, modes: rows.map(strip), sweep: sweep.map(strip) }, null, 2));
}
process.exit(0);
