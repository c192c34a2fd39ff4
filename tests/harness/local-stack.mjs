// Starts the already-built Worker under `wrangler dev` on a free loopback
// port with a fresh persisted state (local D1 migrated, R2, Queues, Durable
// Objects), for tests/local, the benchmarks, the evaluation and the load test:
// the one place JS starts `wrangler dev`. The process group and the state are
// removed when the calling process exits. Never asserts anything: callers do.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { writePrebuiltConfig } from "./prebuilt-config.mjs";
import { newCredentials, S3_REGION, waitForS3Standin, writeS3StandinConfigs } from "../standins/r2-s3-setup.mjs";

const root = path.resolve(import.meta.dirname, "../..");
let groupId = null;
let stopStack = null;
/** How to start the stack's `wrangler dev` again (same state, same port), after `killLocalStack`. */
let relaunch = null;
let s3Endpoint = null;

/**
 * The running stack's S3 endpoint for its R2 bucket (started with `s3: true`):
 * `{ endpoint, bucket, region, accessKeyId, secretAccessKey }`, else `null`.
 */
export function localS3Endpoint() {
  return s3Endpoint;
}

/** Stops the stack this process started (also done when the process exits). */
export function stopLocalStack() {
  stopStack?.();
  stopStack = null;
}

/**
 * CPU seconds (user + system) used so far by the stack's `workerd` processes,
 * read from /proc (Linux; `null` elsewhere). workerd runs the Worker and local
 * D1 (SQLite) alike, so the difference over a load phase divided by its
 * requests is an upper bound on the Worker's CPU time per request.
 */
export function workerdCpuSeconds() {
  if (groupId === null) return null;
  let ticks = 0;
  let found = false;
  try {
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      let stat;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      } catch {
        continue;
      }
      // pid (comm) state ppid pgrp ... utime(14) stime(15): split after the comm.
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) !== groupId || !comm.startsWith("workerd")) continue;
      ticks += Number(fields[11]) + Number(fields[12]);
      found = true;
    }
  } catch {
    return null;
  }
  return found ? ticks / 100 : null; // USER_HZ is 100 on Linux
}

export function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function logTo(file) {
  return openSync(file, "a");
}

/**
 * Starts the stack; resolves to its base URL once `/api/health` answers (whatever it says).
 * `vars` go into the config; `secrets` are passed on the command line, like the admin token;
 * `drop` removes top-level config keys (e.g. `ratelimits`, for tools that send many requests);
 * `main` runs another build (a before/after benchmark); `extra` adds top-level config keys;
 * `inspectorPort` opens the Worker's DevTools endpoint there (a CPU profile of the Worker alone);
 * `s3: true` adds the local S3 endpoint for the stack's R2 bucket, which emits R2 event
 * notifications onto its ingest queue (tests/standins/r2-s3.js; see `localS3Endpoint()`);
 * `testScheduled: true` starts `wrangler dev --test-scheduled`, so `GET /__scheduled?cron=…` runs the
 *   Worker's scheduled handler (https://developers.cloudflare.com/workers/configuration/cron-triggers/#test-cron-triggers-locally).
 */
export async function startLocalStack({ name, adminToken, vars = {}, secrets = {}, drop = [], main, extra, inspectorPort, s3 = false, testScheduled = false }) {
  mkdirSync(path.join(root, ".wrangler"), { recursive: true });
  const persist = mkdtempSync(path.join(root, ".wrangler", `${name}-`));
  const config = writePrebuiltConfig(path.join(persist, "wrangler.json"), { vars, drop, main, extra });
  // The S3 stand-in's port process finds the stand-in through a dev registry of this stack's own.
  const env = { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false", ...(s3 ? { WRANGLER_REGISTRY_PATH: path.join(persist, "registry") } : {}) };
  const credentials = s3 ? newCredentials() : null;
  const standin = s3 ? writeS3StandinConfigs({ dir: path.join(persist, "s3"), serviceConfig: config, credentials }) : null;
  execFileSync("npx", ["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "-c", config], {
    cwd: root,
    env,
    stdio: "ignore",
  });
  const port = await freePort();
  const launch = () => spawn(
    "npx",
    ["wrangler", "dev", "-c", config, ...(standin ? ["-c", standin.standinConfig] : []), "--persist-to", persist, "--port", String(port), "--ip", "127.0.0.1", "--var", `ADMIN_TOKEN:${adminToken}`, ...Object.entries(secrets).flatMap(([k, v]) => ["--var", `${k}:${v}`]), ...(inspectorPort ? ["--inspector-port", String(inspectorPort)] : []), ...(testScheduled ? ["--test-scheduled"] : [])],
    // LOCAL_STACK_LOG=FILE keeps wrangler's output (the Worker's logs) for debugging.
    { cwd: root, env, detached: true, stdio: process.env.LOCAL_STACK_LOG ? ["ignore", logTo(process.env.LOCAL_STACK_LOG), logTo(process.env.LOCAL_STACK_LOG)] : "ignore" },
  );
  const dev = launch();
  relaunch = { launch, base: `http://127.0.0.1:${port}`, persist, config };
  groupId = dev.pid;
  // The stack must not keep the caller alive: it ends with the caller.
  dev.unref();
  const groups = [dev.pid];
  stopStack = () => {
    for (const pid of groups) {
      try {
        process.kill(-pid, "SIGTERM");
      } catch {}
    }
    s3Endpoint = null;
    rmSync(persist, { recursive: true, force: true });
  };
  process.on("exit", () => stopLocalStack());
  process.on("SIGINT", () => process.exit(130));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      // Any answer means the Worker runs (a 503 from health is a finding for the caller).
      await fetch(`${base}/api/health`);
      break;
    } catch {}
    if (i > 240) throw new Error("wrangler dev did not start");
    await new Promise((r) => setTimeout(r, 500));
  }
  if (standin) {
    const s3Port = await freePort();
    const front = spawn(
      "npx",
      ["wrangler", "dev", "-c", standin.portConfig, "--persist-to", path.join(persist, "s3-port"), "--port", String(s3Port), "--ip", "127.0.0.1"],
      { cwd: root, env, detached: true, stdio: process.env.LOCAL_STACK_LOG ? ["ignore", logTo(process.env.LOCAL_STACK_LOG), logTo(process.env.LOCAL_STACK_LOG)] : "ignore" },
    );
    front.unref();
    groups.push(front.pid);
    const endpoint = `http://127.0.0.1:${s3Port}`;
    await waitForS3Standin(endpoint, { timeoutMs: 120_000, alive: () => front.exitCode === null });
    s3Endpoint = { endpoint, bucket: standin.bucket, region: S3_REGION, ...credentials };
  }
  return base;
}

/**
 * With `--metrics-out FILE` on the command line: writes the stack's
 * `GET /admin/metrics?window=1h` report (what an operator would see after
 * the run) to FILE as JSON. Without it, does nothing.
 */
export async function saveMetricsReport(base, adminToken) {
  const i = process.argv.indexOf("--metrics-out");
  if (i < 0 || !process.argv[i + 1]) return;
  const res = await fetch(`${base}/admin/metrics?window=1h`, { headers: { authorization: `Bearer ${adminToken}` } });
  if (res.status !== 200) throw new Error(`GET /admin/metrics answered ${res.status}: ${await res.text()}`);
  writeFileSync(process.argv[i + 1], JSON.stringify(await res.json(), null, 2));
  console.error(`[bench] /admin/metrics?window=1h written to ${process.argv[i + 1]}`);
}

/** The stack's persisted state directory and generated config (for `wrangler d1 execute`). */
export function localStackState() {
  return relaunch && { persist: relaunch.persist, config: relaunch.config, base: relaunch.base };
}

/**
 * Kills the stack's `wrangler dev` process group with `signal` (default
 * SIGKILL: no shutdown, as in a crash) and waits until all of it is gone.
 * The persisted state stays, for `restartLocalStack`.
 */
export async function killLocalStack(signal = "SIGKILL") {
  if (groupId === null) return;
  const group = groupId;
  groupId = null;
  try {
    process.kill(-group, signal);
  } catch {}
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(-group, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`process group ${group} still alive after ${signal}`);
}

/**
 * Starts `wrangler dev` again on the killed stack's persisted state and port;
 * resolves to its base URL once `/api/health` answers. `stopLocalStack` stops it.
 */
export async function restartLocalStack() {
  if (relaunch === null) throw new Error("no stack to restart");
  if (groupId !== null) throw new Error("the stack still runs: killLocalStack() first");
  const dev = relaunch.launch();
  dev.unref();
  groupId = dev.pid;
  const stopRest = stopStack;
  stopStack = () => {
    try {
      process.kill(-dev.pid, "SIGTERM");
    } catch {}
    stopRest?.();
  };
  for (let i = 0; ; i++) {
    try {
      await fetch(`${relaunch.base}/api/health`);
      return relaunch.base;
    } catch {}
    if (i > 240) throw new Error("wrangler dev did not restart");
    await new Promise((r) => setTimeout(r, 500));
  }
}
