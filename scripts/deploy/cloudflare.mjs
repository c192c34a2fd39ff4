// What provision.mjs and deploy.mjs share: one environment's resources as wrangler.jsonc
// names them, a reader of Cloudflare's REST API (the same endpoints wrangler calls, at
// CLOUDFLARE_API_BASE_URL when set, as wrangler does), and a runner for wrangler itself.
//
// Owns reading state; never decides what to change (the scripts do) and never prints a
// secret's value.
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { experimental_readRawConfig } from "wrangler";

export const root = path.resolve(import.meta.dirname, "../..");
export const ENVIRONMENTS = ["dev", "staging", "production"];

export class CloudflareApiError extends Error {
  constructor(status, errors, what) {
    const first = errors?.[0] ?? {};
    super(`${what}: HTTP ${status}${first.code ? `, code ${first.code}` : ""}${first.message ? `: ${first.message}` : ""}`);
    this.status = status;
    this.code = first.code ?? null;
  }
}

/** The deployed environment `env` of a wrangler config: names, ids and settings. */
export function environment(configPath, env) {
  const { rawConfig } = experimental_readRawConfig({ config: configPath });
  const e = rawConfig.env?.[env];
  if (!e?.name) throw new Error(`${configPath} has no env.${env}.name`);
  const d1 = e.d1_databases?.find((d) => d.binding === "DB");
  if (!d1) throw new Error(`env.${env} binds no D1 database as DB`);
  const consumers = e.queues?.consumers ?? [];
  const queues = [...new Set([...(e.queues?.producers ?? []).map((p) => p.queue), ...consumers.flatMap((c) => [c.queue, c.dead_letter_queue].filter(Boolean))])];
  // Top-level migrations apply to every environment (wrangler: `migrations` is inheritable).
  const migrations = e.migrations ?? rawConfig.migrations ?? [];
  const migrationsDir = path.resolve(path.dirname(configPath), d1.migrations_dir ?? "migrations");
  return {
    env,
    name: e.name,
    vars: e.vars ?? {},
    d1: { name: d1.database_name, id: d1.database_id, migrationsDir },
    bucket: e.r2_buckets?.find((b) => b.binding === "DOCUMENTS")?.bucket_name ?? null,
    queues,
    // The queue R2 events go to: the ingest consumer's queue (the one with a dead-letter queue).
    ingestQueue: consumers.find((c) => c.dead_letter_queue)?.queue ?? null,
    vectorize: e.vectorize?.find((v) => v.binding === "VECTORIZE")?.index_name ?? null,
    crons: e.triggers?.crons ?? [],
    routes: e.routes ?? (e.route ? [e.route] : []),
    migrationTag: migrations.at(-1)?.tag ?? null,
    migrationTags: migrations.map((m) => m.tag),
  };
}

/** The D1 migration files of a directory, in the order wrangler applies them. */
export function migrationFiles(dir) {
  return readdirSync(dir).filter((f) => f.endsWith(".sql")).sort();
}

/** A client of Cloudflare's REST API for one account. */
export function cloudflareApi({ accountId = process.env.CLOUDFLARE_ACCOUNT_ID, token = process.env.CLOUDFLARE_API_TOKEN, base = process.env.CLOUDFLARE_API_BASE_URL ?? "https://api.cloudflare.com/client/v4" } = {}) {
  if (!accountId) throw new Error("CLOUDFLARE_ACCOUNT_ID is not set");
  if (!token) throw new Error("CLOUDFLARE_API_TOKEN is not set");
  async function call(method, resource, body) {
    const what = `${method} ${resource}`;
    let res;
    // A connection can be closed while idle (wrangler runs for seconds between calls): a
    // request that never reached the server is sent again, twice at most.
    for (let attempt = 1; ; attempt++) {
      try {
        res = await fetch(`${base}/accounts/${accountId}${resource}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(30_000),
        });
        break;
      } catch (e) {
        const refused = e.cause?.code === "ECONNRESET" || e.cause?.code === "UND_ERR_SOCKET";
        if (!refused || attempt >= 3) throw new CloudflareApiError(0, [{ message: `${e.message}${e.cause?.code ? ` (${e.cause.code})` : ""}` }], what);
      }
    }
    let json = null;
    try {
      json = await res.json();
    } catch {}
    if (!res.ok || !json?.success) throw new CloudflareApiError(res.status, json?.errors, what);
    return json.result;
  }
  /** GET, or `null` when the API answers 404 (the thing does not exist). */
  async function find(resource) {
    try {
      return await call("GET", resource);
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  }
  return { accountId, call, find };
}

/** The D1 migrations a database has applied, in order (none when wrangler never applied any). */
export async function appliedMigrations(api, databaseId) {
  try {
    const [res] = await api.call("POST", `/d1/database/${databaseId}/query`, { sql: "SELECT name FROM d1_migrations ORDER BY id" });
    return res.results.map((r) => r.name);
  } catch (err) {
    if (err instanceof CloudflareApiError && /no such table/i.test(err.message)) return [];
    throw err;
  }
}

/** Runs wrangler (or `WRANGLER`) from the repository root; throws with its output on failure. */
export function wrangler(argv, { input, dryRun = false, log = console.log } = {}) {
  log(`${dryRun ? "would run" : "run"}: wrangler ${argv.join(" ")}`);
  if (dryRun) return "";
  // wrangler's own launcher runs on the PATH's node; run it on this one (Node 22, see setup.sh).
  const [bin, ...pre] = process.env.WRANGLER ? [process.env.WRANGLER] : [process.execPath, path.join(root, "node_modules", "wrangler", "bin", "wrangler.js")];
  try {
    return execFileSync(bin, [...pre, ...argv], {
      cwd: root,
      encoding: "utf8",
      input,
      env: { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false", FORCE_COLOR: "0", NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    const out = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim();
    const error = new Error(`wrangler ${argv.join(" ")} failed (exit ${e.status}):\n${out}`);
    error.output = out;
    throw error;
  }
}

/** Parses `--flag value` / `--switch` arguments against the names allowed. */
export function parseArgs(argv, { values, switches }, fail) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const key = arg.replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (switches.includes(arg)) args[key] = true;
    else if (values.includes(arg)) {
      const value = argv[++i];
      if (value === undefined) fail(`${arg} needs a value`);
      args[key] = value;
    } else fail(`unknown argument ${arg}`);
  }
  return args;
}
