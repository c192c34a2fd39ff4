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
//   "hang_up": false, "stall_ms": 0, "break_after": null, "down": false }`
//   (`hang_up`: close the connection without answering; `stall_ms`: send the
//   headers, then nothing for that long; `break_after`: SSE only, close the
//   connection after that many events (and a gap); `down`: the endpoint's
//   port stops listening, so connections are refused, until a script without
//   it or a reset), POST /__legacy/reset.
// The chat endpoint is served twice: on the control port (`url`) and on a
// port of its own (`endpointUrl`), the one `down` closes.
//
//   node tests/standins/legacy-chat.mjs [--port 8792]
import { createServer } from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const DEFAULT_SCRIPT = { sources: [], status: 200, delay_ms: 0, gap_ms: 0, hang_up: false, stall_ms: 0, break_after: null, down: false };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the stand-in; resolves to `{ url, endpointUrl, requests, close }`. */
export async function startLegacyChatStandin({ port = 0, host = "127.0.0.1" } = {}) {
  let requests = [];
  let script = { ...DEFAULT_SCRIPT };
  const handle = async (req, res) => {
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
      await endpointUp();
      return reply(200, { ok: true });
    }
    if (url.pathname === "/__legacy/script") {
      script = { ...DEFAULT_SCRIPT, ...(raw ? JSON.parse(raw) : {}) };
      await (script.down ? endpointDown() : endpointUp());
      return reply(200, { ok: true, script });
    }
    requests.push({ method: req.method, path: url.pathname + url.search, headers: req.headers, body: raw, at: Date.now() });
    if (req.method !== "POST") return reply(405, { error: "POST a chat request" });
    // The script as the request arrived: a reset while it waits does not change its answer.
    const scripted = script;
    if (scripted.delay_ms) await sleep(scripted.delay_ms);
    if (scripted.hang_up) return req.socket.destroy();
    // CORS of its own, as a browser-facing edge function has: the proxy must not pass it on.
    const own = { "access-control-allow-origin": "https://old-site.example", "x-legacy-stack": "supabase" };
    if (scripted.status >= 400) return reply(scripted.status, { error: "legacy failure (scripted)" }, own);
    const sse = String(req.headers.accept ?? "").includes("text/event-stream");
    if (scripted.stall_ms) {
      res.writeHead(scripted.status, { "content-type": sse ? "text/event-stream" : "application/json", ...own });
      res.flushHeaders();
      await sleep(scripted.stall_ms);
      if (res.destroyed) return;
    }
    let question = "";
    try {
      question = String(JSON.parse(raw).question ?? JSON.parse(raw).query ?? "");
    } catch {}
    const sources = scripted.sources.map((p) => ({ path: p, title: path.basename(p, ".md") }));
    const answer = `Legacy answer to: ${question}`;
    if (!sse) {
      if (res.headersSent) return res.end(JSON.stringify({ answer, sources, model: "legacy-gpt" }));
      return reply(scripted.status, { answer, sources, model: "legacy-gpt" }, own);
    }
    if (!res.headersSent) res.writeHead(scripted.status, { "content-type": "text/event-stream", "cache-control": "no-cache", ...own });
    const events = [
      `event: sources\ndata: ${JSON.stringify({ sources })}\n\n`,
      ...answer
        .split(" ")
        .slice(0, 3)
        .map((word) => `event: delta\ndata: ${JSON.stringify({ text: `${word} ` })}\n\n`),
      `event: done\ndata: ${JSON.stringify({ model: "legacy-gpt" })}\n\n`,
    ];
    for (const [i, event] of events.entries()) {
      // A gap before each delta, as the old API's tokens arrive.
      if (event.startsWith("event: delta") && scripted.gap_ms) await sleep(scripted.gap_ms);
      // Mid-stream failure: the events so far have gone out (a moment for them to be
      // read); the connection closes without the rest.
      if (scripted.break_after !== null && i >= scripted.break_after) {
        await sleep(100);
        return req.socket.destroy();
      }
      res.write(event);
    }
    res.end();
  };
  const listen = (server, at) => new Promise((resolve) => server.listen(at, host, resolve));
  const server = createServer(handle);
  await listen(server, port);
  // The test runs must not wait on them.
  server.unref();
  const endpoint = createServer(handle);
  await listen(endpoint, 0);
  endpoint.unref();
  const endpointPort = endpoint.address().port;
  async function endpointDown() {
    if (!endpoint.listening) return;
    const closed = new Promise((resolve) => endpoint.close(resolve));
    // Kept-alive connections too, so the next request needs a new one (refused).
    endpoint.closeAllConnections();
    await closed;
  }
  async function endpointUp() {
    if (!endpoint.listening) await listen(endpoint, endpointPort);
  }
  return {
    url: `http://${host}:${server.address().port}`,
    endpointUrl: `http://${host}:${endpointPort}`,
    requests: () => requests,
    close: async () => {
      await endpointDown();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({ options: { port: { type: "string", default: "8792" } } });
  const standin = await startLegacyChatStandin({ port: Number(values.port) });
  console.log(`legacy chat stand-in on ${standin.url} (set LEGACY_CHAT_URL=${standin.url}/functions/v1/chat, or ${standin.endpointUrl}/functions/v1/chat to try "down")`);
}
