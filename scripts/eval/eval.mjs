// Retrieval evaluation through the real service: starts the built Worker under
// `wrangler dev` (tests/harness/local-stack.mjs), once per set, ingests a
// BEIR-format set (corpus.jsonl, queries.jsonl, qrels/test.tsv) through the
// admin API, waits until every document is ready, then asks every query of the
// set through POST /api/search in each mode (`mode`, `fusion` and
// `exact_vectors` are request options, so the service itself is measured, not
// a copy of its ranking: vector by the index's int8 estimates and by exact
// cosine, keyword, tag, fused and fused_reranked) and prints nDCG@10,
// Recall@10, MRR@10 and latency per mode (nDCG@10 also per question kind, the
// queries' `metadata.kind`: "name" and "option" in the man-page sets, "faq" in
// eval/debian-faq, "heading" in eval/docker-docs).
//
//   node scripts/eval/eval.mjs [--sets eval/debian-tune,eval/debian-report,…] [--set DIR]
//        [--embedder hashing|minilm] [--reranker local|none] [--rerank-candidates N]
//        [--modes vector,vector_exact,keyword,tag,fused,fused_reranked]
//        [--fusion method=convex,vector=1,keyword=1,tag=0.1]
//        [--candidates N] [--grid] [--max-queries N] [--json FILE] [--main BUILD/index.js]
//   node scripts/eval/eval.mjs --from-json FILE   (the tables of a run saved with --json, again)
//
// --sets      the sets, comma-separated (default: every set in scripts/eval/sets.mjs);
//   --set DIR is one set.
// --grid      also asks every query of every set with each fusion setting of a
//   grid (equal-weight RRF, the previous defaults, and methods rrf k=10, rrf
//   k=60, convex, convex-tmm × keyword 0.5–8 × tag 0/0.25, vector 1), then
//   prints the leave-one-kind-out tables: for each set, the setting a rule
//   chooses on the sets of the OTHER kinds (it never saw this set nor one like
//   it), scored on this set, against the set's best single source, equal-weight
//   RRF, the service's default and the best setting in hindsight. Two rules:
//   the best mean, and the best worst-case margin over each set's best single
//   source. Then the setting each rule chooses on every set, and every setting.
//   (Choose defaults from those tables, not from one set.)
// --main runs another build of the Worker (e.g. a copy of build/, so that
//   rebuilding during a long run does not reload the Worker under it).
// --embedder minilm starts scripts/dev/embed-server.sh (all-MiniLM-L6-v2, an
//   OpenAI-compatible /v1/embeddings server on loopback) and points the
//   service's `openai` embedder at it; hashing is the offline default.
// --reranker local points the service's `http` reranker (RERANKER=http) at
//   the same server's /v1/rerank stand-in, started for it when the embedder
//   is hashing; none (the default) leaves fused_reranked out.
//   --rerank-candidates sets RERANK_CANDIDATES (default the service's, 20).
//   A fused_reranked answer that says `reranked: false` stops the run: a
//   fallback to the fused order must not be reported as reranking.
// --fusion    the fused mode's fusion (default: the service's SEARCH_FUSION
//   for that embedder kind).
//
// Judgement is per document: a query's ranked chunks are reduced to their
// documents in first-seen order (a document counts once; its best chunk
// places it), then cut at 10. The modes pass also prints, as an analysis of
// the same answers (not a ranking the service runs), the vector and fused
// lists with each document placed by the sum of its chunks' scores instead.
// Needs the built Worker (scripts/build-worker.sh). Not a test: it prints figures.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { argument, flag } from "../lib/cli.mjs";
import { EVAL_SETS, kindOf, readJsonl } from "./sets.mjs";
import { freePort, startLocalStack, stopLocalStack, workerdCpuSeconds } from "../../tests/harness/local-stack.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const TOKEN = "eval-admin-token-not-a-secret-0001";
const CUTOFF = 10;
const CHUNKS_ASKED = 30; // top_k: enough chunks for 10 distinct documents


const setDirs = (argument("set", "") ? [argument("set", "")] : argument("sets", EVAL_SETS.join(",")).split(","))
  .map((dir) => path.resolve(root, dir.trim()));
const embedder = argument("embedder", "hashing");
const reranker = argument("reranker", "none");
const rerankCandidates = argument("rerank-candidates", "");
const modes = argument("modes", `vector,vector_exact,keyword,tag,fused${reranker === "none" ? "" : ",fused_reranked"}`).split(",");
const fusionSpec = argument("fusion", "");
const candidates = argument("candidates", "") ? Number(argument("candidates", "")) : undefined;
const maxQueries = Number(argument("max-queries", "0")) || Infinity;
if (!["hashing", "minilm"].includes(embedder)) throw new Error(`--embedder must be hashing or minilm, got ${embedder}`);
if (!["local", "none"].includes(reranker)) throw new Error(`--reranker must be local or none, got ${reranker}`);
if (reranker === "none" && modes.includes("fused_reranked")) throw new Error("--modes fused_reranked needs --reranker local");

/** `method=convex,vector=1,keyword=0.5` → `{ method: "convex", vector: 1, keyword: 0.5 }` (the request's `fusion`). */
function fusionObject(spec) {
  if (!spec) return undefined;
  return Object.fromEntries(
    spec.split(",").map((part) => {
      const [key, value] = part.split("=").map((s) => s.trim());
      if (key === "method") return [key, value];
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
      // The server computes one request at a time: more in flight only wait in its queue,
      // past the time limit on a busy machine, and are computed again when retried.
      INGEST_PROVIDER_CONCURRENCY: "1",
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

/** Documents of a ranked chunk list: by their best chunk (first seen), or by the sum of their chunks' `score`s. */
function documents(results, by) {
  if (by === "best") {
    const ranked = [];
    for (const r of results) {
      const doc = docOf(r.key);
      if (!ranked.includes(doc)) ranked.push(doc);
    }
    return ranked;
  }
  // A vector list sums cosines (its `score` is a rank-based one); a fused list its fused scores.
  const sums = new Map();
  for (const r of results) sums.set(docOf(r.key), (sums.get(docOf(r.key)) ?? 0) + (by === "sum of cosines" ? r.scores.vector : r.score));
  return [...sums.entries()].sort((a, b) => b[1] - a[1]).map(([doc]) => doc);
}

/**
 * Asks every query of `set` with `options` and scores the answers. `concurrency` > 1
 * (the grid) overlaps requests; the latency and CPU figures are then not per search.
 */
async function evaluate(base, set, label, options, { concurrency = 1, sumAnalysis = false } = {}) {
  const perQuery = new Array(set.queries.length);
  const summed = new Array(set.queries.length);
  const latencies = [];
  const serverMs = [];
  const cpuBefore = workerdCpuSeconds();
  let next = 0;
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= set.queries.length) return;
      const query = set.queries[i];
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
      const relevant = set.qrels.get(query._id);
      perQuery[i] = { kind: query.metadata?.kind ?? "all", ...scoreRun(documents(answer.results, "best"), relevant) };
      if (sumAnalysis) summed[i] = scoreRun(documents(answer.results, options.mode === "vector" ? "sum of cosines" : "sum of scores"), relevant);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
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
    ndcg_docs_by_sum: sumAnalysis ? mean("ndcg", summed) : undefined,
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
  console.log(`| mode | nDCG@10 | nDCG@10, documents by the sum of their chunks (analysis) | Recall@10 | MRR@10 | p50 (ms) | p95 (ms) | server p50 (ms) | workerd CPU per search (ms) |${byKind}`);
  console.log(`| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${kinds.map(() => " ---: |").join("")}`);
  for (const r of rows) {
    const perKind = kinds.map((k) => ` ${r.ndcg_by_kind[k].toFixed(3)} |`).join("");
    const summed = r.ndcg_docs_by_sum === undefined ? "" : r.ndcg_docs_by_sum.toFixed(3);
    console.log(
      `| ${r.label} | ${r.ndcg.toFixed(3)} | ${summed} | ${r.recall.toFixed(3)} | ${r.mrr.toFixed(3)} | ${r.p50.toFixed(0)} | ${r.p95.toFixed(0)} | ${r.server_p50} | ${r.cpu_ms.toFixed(1)} |${perKind}`,
    );
  }
}

/** The request options of a mode of the modes pass. */
function modeOptions(mode) {
  const options = mode === "vector_exact" ? { mode: "vector", exact_vectors: true } : { mode };
  if (candidates) options.candidates = candidates;
  const fused = mode === "fused" || mode === "fused_reranked";
  if (fused && fusionSpec) options.fusion = fusionObject(fusionSpec);
  return { options, label: fused && fusionSpec ? `${mode} (${fusionSpec})` : mode };
}

/** The fusion grid: equal-weight RRF, the previous defaults, and every method × relative weights (vector 1). */
function fusionGrid() {
  const grid = [
    { method: "rrf", vector: 1, keyword: 1, tag: 1, k: 60 },
    { method: "rrf", vector: 1, keyword: 8, tag: 0.25, k: 5 },
    { method: "rrf", vector: 1, keyword: 1, tag: 0.25, k: 10 },
  ];
  const seen = new Set(grid.map(specOf));
  for (const method of [{ method: "rrf", k: 10 }, { method: "rrf", k: 60 }, { method: "convex" }, { method: "convex-tmm" }]) {
    for (const keyword of [0.5, 1, 2, 4, 8]) {
      for (const tag of [0, 0.25]) {
        const setting = { ...method, vector: 1, keyword, tag };
        if (!seen.has(specOf(setting))) grid.push(setting);
      }
    }
  }
  return grid;
}

const EQUAL_RRF = "method=rrf,vector=1,keyword=1,tag=1,k=60";

/** A fusion as a spec, its keys in one order (method, weights, k; k only for RRF), so equal settings have equal specs. */
function specOf(fusion) {
  const keys = ["method", "vector", "keyword", "tag", ...(fusion.method === "rrf" ? ["k"] : [])];
  return keys.filter((key) => fusion[key] !== undefined).map((key) => `${key}=${fusion[key]}`).join(",");
}

// --from-json FILE prints the tables of a saved run (its --json) again, without a service.
const saved = argument("from-json", "") ? JSON.parse(readFileSync(argument("from-json", ""), "utf8")) : null;
const results = saved ? saved.results : [];
if (saved) {
  for (const r of results) printTable(`${r.set} · embedder ${saved.embedder} · ${r.chunks} chunks, ${r.queries} queries (saved run)`, r.modes);
  if (Object.keys(results[0]?.grid ?? {}).length) printLeaveOneKindOut(results, saved.embedder);
  process.exit(0);
}
for (const setDir of setDirs) {
  const set = readSet(setDir);
  const name = path.relative(root, setDir);
  console.error(`[eval] ${name}: ${set.corpus.length} documents, ${set.queries.length} judged queries; embedder ${embedder}, reranker ${reranker}`);
  const base = await startStack();
  const ingested = await ingest(base, set.corpus);
  console.error(`[eval] ingested ${set.corpus.length} documents (${ingested.chunks} chunks) in ${ingested.seconds.toFixed(0)} s`);
  // One search first: the isolate loads the index cache on the first query.
  await fetch(`${base}/api/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "warm up" }) });
  const rows = [];
  for (const mode of modes) {
    const { options, label } = modeOptions(mode);
    const sumAnalysis = mode === "vector" || mode === "vector_exact" || mode === "fused";
    rows.push(await evaluate(base, set, label, options, { sumAnalysis }));
    console.error(`[eval] ${name} ${label}: nDCG@10 ${rows.at(-1).ndcg.toFixed(3)}`);
  }
  printTable(`${name} · embedder ${embedder} · reranker ${reranker} · ${set.corpus.length} documents, ${ingested.chunks} chunks, ${set.queries.length} queries`, rows);
  const grid = new Map();
  if (flag("grid")) {
    const started = performance.now();
    for (const fusion of fusionGrid()) {
      const run = await evaluate(base, set, specOf(fusion), { mode: "fused", fusion }, { concurrency: 4 });
      grid.set(specOf(fusion), run.ndcg);
    }
    console.error(`[eval] ${name}: ${grid.size} fusion settings in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
  stopLocalStack();
  const strip = ({ perQuery, ...rest }) => rest;
  results.push({ set: name, kind: kindOf(name), chunks: ingested.chunks, queries: set.queries.length, modes: rows.map(strip), grid: Object.fromEntries(grid) });
}

if (flag("grid")) printLeaveOneKindOut(results, embedder);

/**
 * For each set: the grid setting best on average over the sets of the other kinds, scored on
 * this set, beside its best single source, equal-weight RRF, the service's default fusion and
 * the best setting in hindsight; then the setting best on average over every set.
 */
function printLeaveOneKindOut(results, embedder) {
  const settings = Object.keys(results[0].grid);
  const single = (r) => r.modes.filter((m) => ["vector", "keyword", "tag"].includes(m.label)).reduce((a, b) => (b.ndcg > a.ndcg ? b : a));
  const meanOver = (sets, spec) => sets.reduce((s, r) => s + r.grid[spec], 0) / sets.length;
  // How far `spec` stays above each set's best single source, at worst.
  const worstMargin = (sets, spec) => Math.min(...sets.map((r) => r.grid[spec] - single(r).ndcg));
  const rules = {
    "best mean": (sets, spec) => meanOver(sets, spec),
    "best worst-case margin over the best single source": (sets, spec) => worstMargin(sets, spec) + 1e-6 * meanOver(sets, spec),
  };
  const best = (sets, rule, within = settings) => within.reduce((a, b) => (rule(sets, b) > rule(sets, a) ? b : a));
  const fusedDefault = (r) => r.modes.find((m) => m.label === "fused");
  for (const [name, rule] of Object.entries(rules)) {
    console.log(`\nLeave one kind out (embedder ${embedder}), rule "${name}": each set scored with the setting that rule chooses on the sets of the other kinds\n`);
    console.log("| held-out set (kind) | chosen on the others | its nDCG@10 here | best single source here | equal-weight RRF here | service default here | best setting here, in hindsight |");
    console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (const r of results) {
      const others = results.filter((o) => o.kind !== r.kind);
      if (others.length === 0) continue;
      const chosen = best(others, rule);
      const hindsight = best([r], rules["best mean"]);
      const s = single(r);
      const d = fusedDefault(r);
      console.log(
        `| ${r.set} (${r.kind}) | ${chosen} | ${r.grid[chosen].toFixed(3)} | ${s.label} ${s.ndcg.toFixed(3)} | ${r.grid[EQUAL_RRF].toFixed(3)} | ${d ? d.ndcg.toFixed(3) : "–"} | ${r.grid[hindsight].toFixed(3)} (${hindsight}) |`,
      );
    }
    for (const method of ["rrf", "convex", "convex-tmm"]) {
      const within = settings.filter((spec) => spec.startsWith(`method=${method},`));
      const cells = results.map((r) => {
        const others = results.filter((o) => o.kind !== r.kind);
        return others.length === 0 ? "–" : r.grid[best(others, rule, within)].toFixed(3);
      });
      console.log(`\nwithin method ${method} only, chosen the same way: ${results.map((r, i) => `${r.set} ${cells[i]}`).join(", ")}`);
    }
    const overall = best(results, rule);
    console.log(`\nchosen on every set by this rule: ${overall} (mean nDCG@10 ${meanOver(results, overall).toFixed(3)}, worst margin over the best single source ${worstMargin(results, overall).toFixed(3)})\n`);
    console.log("| set | this setting | best single source | equal-weight RRF | service default |");
    console.log("| --- | ---: | ---: | ---: | ---: |");
    for (const r of results) {
      const s = single(r);
      const d = fusedDefault(r);
      console.log(`| ${r.set} | ${r.grid[overall].toFixed(3)} | ${s.label} ${s.ndcg.toFixed(3)} | ${r.grid[EQUAL_RRF].toFixed(3)} | ${d ? d.ndcg.toFixed(3) : "–"} |`);
    }
  }
  const ranked = [...settings].sort((a, b) => meanOver(results, b) - meanOver(results, a));
  console.log(`\nevery setting, best mean first:\n`);
  console.log(`| setting | mean | worst margin over the best single source | ${results.map((r) => r.set).join(" | ")} |`);
  console.log(`| --- | ---: | ---: |${results.map(() => " ---: |").join("")}`);
  for (const spec of ranked) {
    console.log(`| ${spec} | ${meanOver(results, spec).toFixed(3)} | ${worstMargin(results, spec).toFixed(3)} | ${results.map((r) => r.grid[spec].toFixed(3)).join(" | ")} |`);
  }
}

const jsonOut = argument("json", "");
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ embedder, reranker, results }, null, 2));
process.exit(0);
