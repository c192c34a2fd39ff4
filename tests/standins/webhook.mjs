// A local stand-in for a Slack-compatible incoming webhook, for the alert
// tests (started by vitest.config.ts, like the provider stand-in) and for
// trying alerts under `wrangler dev`: a real HTTP server, so the Worker's own
// fetch delivers the notices.
//
// POST anything else: a notice; its JSON body is recorded (`{ "text" }`), and
//   answered 200 "ok" — or with a scripted failure.
// Control (JSON): GET /__receiver/messages, POST /__receiver/fail
//   `{ "count": n, "status": 503 }` (the next n notices fail), POST /__receiver/reset.
//
//   node tests/standins/webhook.mjs [--port 8791]
import { createServer } from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

/** Starts the receiver; resolves to `{ url, messages, close }`. */
export async function startWebhookReceiver({ port = 0, host = "127.0.0.1" } = {}) {
  let messages = [];
  let failures = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://receiver");
    const reply = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === "/__receiver/messages") return reply(200, { messages });
    if (url.pathname === "/__receiver/reset") {
      messages = [];
      failures = [];
      return reply(200, { ok: true });
    }
    if (url.pathname === "/__receiver/fail") {
      const { count = 1, status = 503 } = raw ? JSON.parse(raw) : {};
      failures = Array.from({ length: count }, () => status);
      return reply(200, { ok: true, failing: failures.length });
    }
    if (req.method !== "POST") return reply(405, { error: "POST a notice" });
    let body = null;
    try {
      body = JSON.parse(raw);
    } catch {}
    const failure = failures.shift();
    const record = { path: url.pathname, body, content_type: req.headers["content-type"] ?? null, at: Date.now(), status: failure ?? 200 };
    if (failure) {
      messages.push({ ...record, delivered: false });
      res.writeHead(failure, { "content-type": "text/plain" });
      return res.end("receiver failure (scripted)");
    }
    messages.push({ ...record, delivered: true });
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  // The test run must not wait on it.
  server.unref();
  const address = server.address();
  // Not a Slack URL: any path works; the tests use one that looks like a hook.
  return {
    url: `http://${host}:${address.port}`,
    messages: () => messages,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({ options: { port: { type: "string", default: "8791" } } });
  const receiver = await startWebhookReceiver({ port: Number(values.port) });
  console.log(`webhook receiver on ${receiver.url} (set ALERT_WEBHOOK_URL=${receiver.url}/hooks/local)`);
}
