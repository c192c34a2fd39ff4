// Starts the already-built Worker under `wrangler dev` on a free loopback
// port with a fresh persisted state (local D1 migrated, R2, Queues, Durable
// Objects), for the benchmarks. The process group and the state are removed
// when the calling process exits.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { writePrebuiltConfig } from "./prebuilt-config.mjs";

const root = path.resolve(import.meta.dirname, "..");

function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the stack; resolves to its base URL once `/api/health` answers.
 * `vars` go into the config; `secrets` are passed on the command line, like the admin token.
 */
export async function startLocalStack({ name, adminToken, vars = {}, secrets = {} }) {
  const persist = mkdtempSync(path.join(root, ".wrangler", `${name}-`));
  const config = writePrebuiltConfig(path.join(persist, "wrangler.json"), { vars });
  const env = { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false" };
  execFileSync("npx", ["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "-c", config], {
    cwd: root,
    env,
    stdio: "ignore",
  });
  const port = await freePort();
  const dev = spawn(
    "npx",
    ["wrangler", "dev", "-c", config, "--persist-to", persist, "--port", String(port), "--ip", "127.0.0.1", "--var", `ADMIN_TOKEN:${adminToken}`, ...Object.entries(secrets).flatMap(([k, v]) => ["--var", `${k}:${v}`])],
    { cwd: root, env, detached: true, stdio: "ignore" },
  );
  process.on("exit", () => {
    try {
      process.kill(-dev.pid, "SIGTERM");
    } catch {}
    rmSync(persist, { recursive: true, force: true });
  });
  process.on("SIGINT", () => process.exit(130));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/api/health`)).ok) return base;
    } catch {}
    if (i > 240) throw new Error("wrangler dev did not start");
    await new Promise((r) => setTimeout(r, 500));
  }
}
