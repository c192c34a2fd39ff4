// Smoke test of a running service: health, one search, one chat. Used by the
// deploy script between rollout steps and runnable on its own:
//
//   node scripts/deploy/smoke.mjs --url https://staging.example.com \
//     [--question "…"] [--worker NAME --version ID [--expect-version ID]] [--timeout-ms 10000]
//
// With --worker and --version every request carries
// `Cloudflare-Workers-Version-Overrides: NAME="ID"`, so during a gradual
// deployment the checks reach the new version whatever its traffic share.
// Exit code 0 when every check passed, 1 otherwise; one line per check.
import path from "node:path";
import { pathToFileURL } from "node:url";

const DEFAULT_QUESTION = "What does the company build?";

/** Runs the checks; returns `{ ok, checks: [{ name, ok, status, ms, detail }] }`. */
export async function smoke({ url, question = DEFAULT_QUESTION, worker = null, version = null, expectVersion = null, timeoutMs = 10_000 }) {
  const base = url.replace(/\/+$/, "");
  const headers = { "content-type": "application/json" };
  if (worker && version) headers["cloudflare-workers-version-overrides"] = `${worker}="${version}"`;
  const checks = [];

  async function check(name, request, accept) {
    const started = Date.now();
    let status = null;
    let detail = "";
    let ok = false;
    try {
      const res = await fetch(`${base}${request.path}`, {
        method: request.body === undefined ? "GET" : "POST",
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = res.status;
      const text = await res.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        detail = `not JSON: ${text.slice(0, 120)}`;
      }
      if (json !== null) {
        const why = accept(res.status, json);
        ok = why === true;
        detail = ok ? "" : why;
      }
    } catch (e) {
      detail = e.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : e.message;
    }
    checks.push({ name, ok, status, ms: Date.now() - started, detail });
  }

  // With expectVersion, health must come from that version (its version_metadata binding):
  // an override the platform ignored would otherwise test the old version.
  await check("health", { path: "/api/health" }, (status, body) => {
    if (status !== 200 || body.status !== "ok") return `status ${status}, ${JSON.stringify(body).slice(0, 200)}`;
    if (expectVersion && body.version?.id !== expectVersion) return `answered by version ${body.version?.id ?? "(unknown)"}, not ${expectVersion}`;
    return true;
  });
  await check("search", { path: "/api/search", body: { query: question } }, (status, body) =>
    status === 200 && Array.isArray(body.results) ? true : `status ${status}, ${JSON.stringify(body).slice(0, 200)}`,
  );
  await check("chat", { path: "/api/chat", body: { question } }, (status, body) =>
    status === 200 && typeof body.answer === "string" && body.answer.length > 0 && Array.isArray(body.sources)
      ? true
      : `status ${status}, ${JSON.stringify(body).slice(0, 200)}`,
  );
  return { ok: checks.every((c) => c.ok), checks };
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, "");
    args[name.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = argv[++i];
  }
  return args;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = parseArgs(process.argv.slice(2));
  if (!args.url) {
    console.error("usage: node scripts/deploy/smoke.mjs --url URL [--question Q] [--worker NAME --version ID] [--expect-version ID] [--timeout-ms N]");
    process.exit(2);
  }
  const result = await smoke({ ...args, timeoutMs: Number(args.timeoutMs ?? 10_000) });
  for (const c of result.checks) {
    console.log(`[smoke] ${c.ok ? "ok  " : "FAIL"} ${c.name} (${c.status ?? "-"}, ${c.ms} ms)${c.detail ? `: ${c.detail}` : ""}`);
  }
  process.exit(result.ok ? 0 : 1);
}
