// Loads a folder of markdown documents into a running service through its
// admin API (PUT /admin/documents/{key}, the path a user takes without R2
// notifications) and waits until every document is ready.
// Usage: node scripts/dev/load-samples.mjs --url http://localhost:8787 --token T [--dir samples] [--timeout-s 60]
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { argument } from "../lib/cli.mjs";

const root = path.resolve(import.meta.dirname, "../..");

function markdownFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...markdownFiles(full));
    else if (name.endsWith(".md")) out.push(full);
  }
  return out;
}

/** PUTs every `.md` under `dir` (keys relative to it) and waits for them to be ready. */
export async function loadSamples({ url, token, dir = path.join(root, "samples"), timeoutMs = 60_000 }) {
  const auth = { authorization: `Bearer ${token}` };
  const keys = [];
  for (const file of markdownFiles(dir)) {
    const key = path.relative(dir, file).split(path.sep).join("/");
    const body = readFileSync(file);
    const sha256 = createHash("sha256").update(body).digest("hex");
    const encoded = key.split("/").map(encodeURIComponent).join("/");
    const res = await fetch(`${url}/admin/documents/${encoded}`, {
      method: "PUT",
      headers: { ...auth, "content-type": "text/markdown; charset=utf-8", "x-content-sha256": sha256 },
      body,
    });
    if (res.status !== 202) throw new Error(`PUT ${key}: ${res.status} ${await res.text()}`);
    keys.push(key);
  }
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(keys);
  while (pending.size > 0) {
    for (const key of [...pending]) {
      const encoded = key.split("/").map(encodeURIComponent).join("/");
      const res = await fetch(`${url}/admin/documents/${encoded}`, { headers: auth });
      const doc = res.ok ? await res.json() : null;
      if (doc?.status === "ready") pending.delete(key);
      else if (doc?.status === "failed") throw new Error(`${key} failed: ${doc.last_error}`);
    }
    if (pending.size === 0) break;
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms: ${[...pending].join(", ")}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return keys;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const url = argument("url", "http://localhost:8787");
  const token = argument("token", process.env.ADMIN_TOKEN);
  if (!token) {
    console.error("usage: node scripts/dev/load-samples.mjs --url URL --token ADMIN_TOKEN [--dir DIR]");
    process.exit(2);
  }
  const started = Date.now();
  const keys = await loadSamples({
    url,
    token,
    dir: path.resolve(argument("dir", path.join(root, "samples"))),
    timeoutMs: Number(argument("timeout-s", "60")) * 1000,
  });
  console.log(`[samples] ${keys.length} documents ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
