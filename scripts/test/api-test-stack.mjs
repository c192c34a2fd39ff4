// Starts the built Worker under `wrangler dev` for tools that drive the
// public API from outside (scripts/test/schemathesis.sh): rate limiters removed
// (one client sends every request), the sample corpus ingested through the
// admin API and ready, so searches and chats have something to return.
// Prints `BASE_URL=<url>` once ready and stays up until stdin closes or it is
// signalled; the wrangler process group and its state go with it.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { startLocalStack, stopLocalStack } from "../../tests/harness/local-stack.mjs";

const root = path.resolve(import.meta.dirname, "../..");
// Not a secret: a token for this throwaway local stack only.
const ADMIN_TOKEN = "api-test-stack-token-not-a-secret-0001";

function markdownFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? markdownFiles(full) : name.endsWith(".md") ? [full] : [];
  });
}

process.on("SIGTERM", () => process.exit(143));
process.on("SIGINT", () => process.exit(130));

const base = await startLocalStack({ name: "api-test", adminToken: ADMIN_TOKEN, drop: ["ratelimits"] });
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const samples = path.join(root, "samples");
const keys = [];
for (const file of markdownFiles(samples)) {
  const key = path.relative(samples, file).split(path.sep).join("/");
  const res = await fetch(`${base}/admin/documents/${key}`, { method: "PUT", headers: auth, body: readFileSync(file) });
  if (res.status !== 202) throw new Error(`upload ${key}: ${res.status} ${await res.text()}`);
  keys.push(key);
}
const deadline = Date.now() + 60_000;
for (const key of keys) {
  for (;;) {
    const status = await (await fetch(`${base}/admin/documents/${key}`, { headers: auth })).json();
    if (status.status === "ready") break;
    if (status.status === "failed" || Date.now() > deadline) throw new Error(`${key}: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
console.log(`BASE_URL=${base}`);
console.error(`[api-test-stack] ${keys.length} sample documents ready at ${base}`);
process.stdin.resume();
process.stdin.on("end", () => {
  stopLocalStack();
  process.exit(0);
});
