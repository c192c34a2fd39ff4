// A local stand-in for an OpenAI-compatible provider (`/v1/embeddings`, `/v1/rerank`,
// `/v1/chat/completions`, whole and streamed), for the tests and benchmarks
// that cannot reach the real one. The Worker talks to it through its real
// transport (fetch over HTTP), so timeouts, statuses and bodies are real.
//
// - Answers like the API documents: bearer auth (401), input limits (400),
//   `dimensions`, usage, SSE chunks ending in `data: [DONE]`, OpenAI-shaped
//   error bodies. Embeddings are deterministic (hashed words, unit length);
//   tag requests get `{"1": [...], ...}` from each chunk's frequent words;
//   answers cite passage [1].
// - A fixed latency per answered request (`latencyMs`), summed in `stats()`
//   as the provider time a run cannot go below.
// - A capacity (`concurrency`, 0 = unlimited): at most that many requests are
//   computed at once and the others wait their turn, so latency grows with
//   load like a self-hosted model server's; a request whose client gave up is
//   still computed, as such a server does. `stats()` reports `max_in_flight`
//   (requests inside the server at once, queued or computing) and
//   `max_computing`.
// - Scripted faults: a rule matches requests whose body contains `match`
//   (and `path`, when given) and serves its faults in order — `{ status,
//   retry_after?, body? }`, `{ delay_ms }` (then answers), `{ malformed:
//   "html" | "truncated" | "count" }`, `{ stream_gap_ms }` (a streamed answer
//   that waits this long between chunks; its log entry gets `ended`:
//   "complete", or "client_closed" with the chunks written when the client
//   hung up first) — then answers normally, or repeats its last fault forever
//   with `repeat: true`. Every request a rule matched is logged with its
//   outcome.
//
// Control (JSON): POST /__standin/rules, GET /__standin/requests?match=…,
// GET /__standin/stats, POST /__standin/reset.
//
//   node tests/standins/provider.mjs [--port N] [--latency-ms N] [--concurrency N] [--api-key K]
import { createServer } from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { chatAnswer, embed, rerankScore } from "./answers.mjs";

/** OpenAI's documented request limits for `/v1/embeddings`. */
const MAX_EMBEDDING_INPUTS = 2048;
const DEFAULT_DIMENSIONS = 1536;
const errorBody = (message, type, code = null) => JSON.stringify({ error: { message, type, param: null, code } });
// Unref'd: a held request must not keep a finished test process alive.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());

export async function startProviderStandin({ port = 0, host = "127.0.0.1", latencyMs = 0, concurrency = 0, apiKey = null } = {}) {
  let rules = [];
  let log = [];
  const freshStats = () => ({
    requests: 0, answered: 0, faulted: 0, provider_ms: 0, by_path: {},
    in_flight: 0, max_in_flight: 0, computing: 0, max_computing: 0, abandoned: 0,
  });
  let stats = freshStats();
  /** Requests waiting for a free slot (resolvers), first come first served. */
  const queue = [];

  function reset() {
    rules = [];
    log = [];
    stats = freshStats();
  }

  /** Computes one answer: waits for a slot when the capacity is taken, then `latencyMs`. */
  async function compute(res) {
    // A waiter is handed its slot by the request that leaves it, already counted in `computing`.
    if (concurrency > 0 && stats.computing >= concurrency) await new Promise((resolve) => queue.push(resolve));
    else stats.computing += 1;
    stats.max_computing = Math.max(stats.max_computing, stats.computing);
    try {
      if (latencyMs > 0) await sleep(latencyMs);
    } finally {
      if (res.destroyed) stats.abandoned += 1;
      // Hand the slot to the next waiter directly, so `computing` never exceeds the capacity.
      const next = queue.shift();
      if (next) next();
      else stats.computing -= 1;
    }
  }

  /** The next fault for this request, if a rule matches; records the match. */
  function faultFor(pathname, raw) {
    // Several rules may match (a chat request quotes other documents' passages): a rule
    // with faults left to serve goes first.
    const matching = rules.filter((r) => raw.includes(r.match) && (!r.path || r.path === pathname));
    const rule = matching.find((r) => r.served < r.faults.length || r.repeat) ?? matching[0];
    if (!rule) return { rule: null, fault: null };
    let fault = null;
    if (rule.served < rule.faults.length) fault = rule.faults[rule.served++];
    else if (rule.repeat && rule.faults.length > 0) fault = rule.faults[rule.faults.length - 1];
    return { rule, fault };
  }

  async function provider(pathname, req, res, raw) {
    stats.in_flight += 1;
    stats.max_in_flight = Math.max(stats.max_in_flight, stats.in_flight);
    try {
      return await answer(pathname, req, res, raw);
    } finally {
      stats.in_flight -= 1;
    }
  }

  async function answer(pathname, req, res, raw) {
    const started = performance.now();
    stats.requests += 1;
    stats.by_path[pathname] = (stats.by_path[pathname] ?? 0) + 1;
    const { rule, fault } = faultFor(pathname, raw);
    const record = (outcome) => {
      if (!rule) return null;
      const entry = { match: rule.match, path: pathname, outcome, at: Date.now() };
      log.push(entry);
      return entry;
    };
    const send = (status, body, headers = {}) => {
      if (res.destroyed) return;
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(body);
    };

    if (apiKey && req.headers.authorization !== `Bearer ${apiKey}`) {
      record("401");
      return send(401, errorBody("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"));
    }
    if (fault?.status) {
      stats.faulted += 1;
      record(String(fault.status));
      const headers = fault.retry_after !== undefined ? { "retry-after": String(fault.retry_after) } : {};
      return send(fault.status, fault.body ?? errorBody(`stand-in fault ${fault.status}`, "server_error"), headers);
    }
    if (fault?.delay_ms) {
      // Logged on arrival, so the log keeps arrival order; the client may give up meanwhile.
      stats.faulted += 1;
      record("delayed");
      await sleep(fault.delay_ms);
      if (res.destroyed) return;
    }
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      record("400");
      return send(400, errorBody("We could not parse the JSON body of your request.", "invalid_request_error"));
    }
    await compute(res);

    if (pathname === "/v1/embeddings") {
      const inputs = typeof body.input === "string" ? [body.input] : body.input;
      if (!Array.isArray(inputs) || inputs.length === 0 || inputs.length > MAX_EMBEDDING_INPUTS || inputs.some((t) => typeof t !== "string" || t === "")) {
        record("400");
        return send(400, errorBody(`'input' must be 1 to ${MAX_EMBEDDING_INPUTS} non-empty strings`, "invalid_request_error"));
      }
      const dimensions = body.dimensions ?? DEFAULT_DIMENSIONS;
      let data = inputs.map((t, index) => ({ object: "embedding", index, embedding: embed(t, dimensions) }));
      if (fault?.malformed === "count") data = data.slice(1);
      const tokens = inputs.reduce((n, t) => n + Math.ceil(t.length / 4), 0);
      const answer = JSON.stringify({ object: "list", data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
      return finish(answer);
    }

    if (pathname === "/v1/rerank") {
      const { query, documents } = body;
      if (typeof query !== "string" || !Array.isArray(documents) || documents.some((d) => typeof d !== "string")) {
        record("400");
        return send(400, errorBody("'query' must be a string and 'documents' an array of strings", "invalid_request_error"));
      }
      let results = documents
        .map((d, index) => ({ index, relevance_score: rerankScore(query, d) }))
        .sort((a, b) => b.relevance_score - a.relevance_score || a.index - b.index);
      if (Number.isInteger(body.top_n)) results = results.slice(0, body.top_n);
      if (fault?.malformed === "count") results = results.slice(1);
      return finish(JSON.stringify({ model: body.model, results }));
    }

    // /v1/chat/completions
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      record("400");
      return send(400, errorBody("'messages' must be a non-empty array", "invalid_request_error"));
    }
    const text = chatAnswer(body.messages);
    if (body.stream && !fault?.malformed) {
      stats.answered += 1;
      stats.provider_ms += performance.now() - started;
      const entry = record("ok");
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const id = `chatcmpl-standin-${stats.requests}`;
      const chunk = (delta, finish_reason = null) =>
        `data: ${JSON.stringify({ id, object: "chat.completion.chunk", model: body.model, choices: [{ index: 0, delta, finish_reason }] })}\n\n`;
      const gap = fault?.stream_gap_ms ?? 0;
      // A slow stream repeats its answer so that it lasts a while (20 chunks at least).
      const pieces = text.match(/.{1,24}/gs) ?? [];
      while (gap > 0 && pieces.length < 20) pieces.push(...(text.match(/.{1,24}/gs) ?? ["…"]));
      let written = 0;
      const write = (data) => {
        res.write(data);
        written += 1;
      };
      write(chunk({ role: "assistant", content: "" }));
      for (const piece of pieces) {
        if (gap > 0) {
          await sleep(gap);
          if (res.destroyed || res.socket?.destroyed) {
            if (entry) Object.assign(entry, { ended: "client_closed", chunks: written, ended_at: Date.now() });
            return;
          }
        }
        write(chunk({ content: piece }));
      }
      write(chunk({}, "stop"));
      if (entry) Object.assign(entry, { ended: "complete", chunks: written, ended_at: Date.now() });
      return res.end("data: [DONE]\n\n");
    }
    return finish(
      JSON.stringify({
        id: `chatcmpl-standin-${stats.requests}`,
        object: "chat.completion",
        model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
        usage: { prompt_tokens: Math.ceil(raw.length / 4), completion_tokens: Math.ceil(text.length / 4) },
      }),
    );

    function finish(answer) {
      if (fault?.malformed === "html") {
        record("malformed");
        return send(200, "<html><body>502 Bad Gateway</body></html>", { "content-type": "text/html" });
      }
      if (fault?.malformed === "truncated") {
        record("malformed");
        return send(200, answer.slice(0, Math.floor(answer.length / 2)));
      }
      if (fault?.malformed) record("malformed");
      else if (!fault?.delay_ms) record("ok");
      stats.answered += 1;
      stats.provider_ms += performance.now() - started;
      return send(200, answer);
    }
  }

  async function control(pathname, url, req, res, raw) {
    const reply = (status, value) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    if (req.method === "POST" && pathname === "/__standin/rules") {
      const rule = JSON.parse(raw);
      if (typeof rule.match !== "string" || rule.match === "" || !Array.isArray(rule.faults)) {
        return reply(400, { error: "a rule needs a non-empty `match` and a `faults` array" });
      }
      rules.push({ match: rule.match, path: rule.path ?? null, faults: rule.faults, repeat: !!rule.repeat, served: 0 });
      return reply(200, { rules: rules.length });
    }
    if (req.method === "GET" && pathname === "/__standin/requests") {
      const match = url.searchParams.get("match");
      return reply(200, { requests: log.filter((e) => !match || e.match === match) });
    }
    if (req.method === "GET" && pathname === "/__standin/stats") return reply(200, stats);
    if (req.method === "POST" && pathname === "/__standin/reset") {
      reset();
      return reply(200, { ok: true });
    }
    return reply(404, { error: `no control route ${req.method} ${pathname}` });
  }

  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://standin");
    try {
      if (url.pathname.startsWith("/__standin/")) return await control(url.pathname, url, req, res, raw);
      if (req.method === "POST" && ["/v1/embeddings", "/v1/chat/completions", "/v1/rerank"].includes(url.pathname)) {
        return await provider(url.pathname, req, res, raw);
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(errorBody(`Unknown request URL: ${req.method} ${url.pathname}`, "invalid_request_error"));
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(errorBody(`stand-in error: ${e.message}`, "server_error"));
    }
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  server.unref();
  const url = `http://${host}:${server.address().port}`;
  return {
    url,
    stats: () => structuredClone(stats),
    reset,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const standin = await startProviderStandin({
    port: Number(arg("--port", "8790")),
    latencyMs: Number(arg("--latency-ms", "0")),
    concurrency: Number(arg("--concurrency", "0")),
    apiKey: arg("--api-key", null),
  });
  console.log(`provider stand-in at ${standin.url} (OPENAI_BASE_URL)`);
  setInterval(() => {}, 1 << 30);
}
