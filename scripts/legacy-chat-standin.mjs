// A local stand-in for the old stack's chat endpoint (the Supabase edge
// function the site calls today), for the rollout tests (started by
// vitest.config.ts) and for trying the cut-over under `wrangler dev`: a real
// HTTP server, so the Worker's own fetch proxies to it.
//
// POST anything else: a chat request. Answers JSON `{ answer, sources: [{ path,
//   title }], model }`, or, when the request accepts `text/event-stream`, SSE:
//   `sources` (data `{ "sources": [...] }`), three `delta`s, `done`. The cited
//   paths are the `sources` of the current script (default: none). Each
//   request (method, path, headers, body) is recorded.
// Control (JSON): GET /__legacy/requests, POST /__legacy/script
//   `{ "sources": ["a.md"], "status": 200, "delay_ms": 0, "gap_ms": 0,
//   "hang_up": false }` (`hang_up`: close the connection without answering),
//   POST /__legacy/reset.
//
//   node scripts/legacy-chat-standin.mjs [--port 8792]
import { createServer } from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const DEFAULT_SCRIPT = { sources: [], status: 200, delay_ms: 0, gap_ms: 0, hang_up: false };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the stand-in; resolves to `{ url, requests, close }`. */
export async function startLegacyChatStandin({ port = 0, host = "127.0.0.1" } = {}) {
  let requests = [];
  let script = { ...DEFAULT_SCRIPT };
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://legacy");
    const reply = (status, body, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === "/__legacy/requests") return reply(200, { requests });
    if (url.pathname === "/__legacy/reset") {
      requests = [];
      script = { ...DEFAULT_SCRIPT };
      return reply(200, { ok: true });
    }
    if (url.pathname === "/__legacy/script") {
      script = { ...DEFAULT_SCRIPT, ...(raw ? JSON.parse(raw) : {}) };
      return reply(200, { ok: true, script });
    }
    requests.push({ method: req.method, path: url.pathname + url.search, headers: req.headers, body: raw, at: Date.now() });
    if (req.method !== "POST") return reply(405, { error: "POST a chat request" });
    if (script.delay_ms) await sleep(script.delay_ms);
    if (script.hang_up) return req.socket.destroy();
    // CORS of its own, as a browser-facing edge function has: the proxy must not pass it on.
    const own = { "access-control-allow-origin": "https://old-site.example", "x-legacy-stack": "supabase" };
    if (script.status >= 400) return reply(script.status, { error: "legacy failure (scripted)" }, own);
    let question = "";
    try {
      question = String(JSON.parse(raw).question ?? JSON.parse(raw).query ?? "");
    } catch {}
    const sources = script.sources.map((p) => ({ path: p, title: path.basename(p, ".md") }));
    const answer = `Legacy answer to: ${question}`;
    if (!String(req.headers.accept ?? "").includes("text/event-stream")) {
      return reply(script.status, { answer, sources, model: "legacy-gpt" }, own);
    }
    res.writeHead(script.status, { "content-type": "text/event-stream", "cache-control": "no-cache", ...own });
    res.write(`event: sources\ndata: ${JSON.stringify({ sources })}\n\n`);
    for (const word of answer.split(" ").slice(0, 3)) {
      if (script.gap_ms) await sleep(script.gap_ms);
      res.write(`event: delta\ndata: ${JSON.stringify({ text: `${word} ` })}\n\n`);
    }
    res.end(`event: done\ndata: ${JSON.stringify({ model: "legacy-gpt" })}\n\n`);
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  // The test run must not wait on it.
  server.unref();
  const address = server.address();
  return {
    url: `http://${host}:${address.port}`,
    requests: () => requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({ options: { port: { type: "string", default: "8792" } } });
  const standin = await startLegacyChatStandin({ port: Number(values.port) });
  console.log(`legacy chat stand-in on ${standin.url} (set LEGACY_CHAT_URL=${standin.url}/functions/v1/chat)`);
}
