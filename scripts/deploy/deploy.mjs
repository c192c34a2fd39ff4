// Releases the built Worker to an environment as a canary, or rolls it back:
//
//   node scripts/deploy/deploy.mjs --env production --smoke-url https://www.example.com [--steps 10,50,100]
//   node scripts/deploy/deploy.mjs --env production --rollback [--to VERSION_ID]
//   … --dry-run   reads the account and prints the decisions and commands, changing nothing
//
// A release decides first, and says why, whether it needs a non-versioned `wrangler deploy`:
// the Worker does not exist yet (a version can only be uploaded to an existing Worker), or
// wrangler.jsonc has Durable Object migrations the deployed Worker lacks (they cannot go
// through `versions upload`). Otherwise it goes out as a canary:
//
//   D1 migrations (Time Travel bookmark first; non-additive SQL refused) → versions upload →
//   new version at 0 % → smoke test through a version override, checking the answering
//   version → each step of --steps: traffic split, smoke test, canary analysis (new against
//   old over the same window; rollback on a regression) → 100 % → wrangler triggers deploy.
//
// Any failed status read aborts: a release never guesses that it is the first one. Rules and
// their pages: docs/going-live.md; tests/standins/cloudflare-api.mjs.
//
// Credentials: CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID; the canary analysis reads
// /admin/metrics/versions with ADMIN_TOKEN. Exit 0 released (or rolled back on request),
// 1 a step failed or the canary rolled back, 2 bad arguments.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { appliedMigrations, cloudflareApi, ENVIRONMENTS, environment, migrationFiles, parseArgs, root, wrangler } from "./cloudflare.mjs";
import { smoke } from "./smoke.mjs";

const DEFAULT_STEPS = { dev: [100], staging: [100], production: [10, 50, 100] };
/**
 * Canary thresholds. Error rate: the new version may exceed the old one's by at most 1
 * percentage point (an error budget of 99.9 % cannot absorb more for long). p95: at most
 * 20 % slower (the rollout plan's "> 20 % slowdown" rule), but never judged on less than
 * 25 ms of difference, which is noise at the p95s of a few tens of ms seen locally.
 * At least 20 requests per version in the window, or the step is inconclusive.
 */
export const CANARY_DEFAULTS = { maxErrorRateIncrease: 0.01, maxP95Slowdown: 0.2, p95SlackMs: 25, minRequests: 20, probes: 20, windowS: 60 };

function fail(message, code = 2) {
  console.error(`[deploy] ${message}`);
  process.exit(code);
}
const log = (line) => console.log(`[deploy] ${line}`);

export function parseSteps(text, env) {
  if (text === undefined) return DEFAULT_STEPS[env];
  const steps = text.split(",").map((s) => Number(s.trim()));
  const valid = steps.length > 0 && steps.every((p, i) => Number.isInteger(p) && p > 0 && p <= 100 && (i === 0 || p > steps[i - 1]));
  if (!valid || steps.at(-1) !== 100) fail(`--steps must rise to 100, e.g. 10,50,100 (got ${text})`);
  return steps;
}

/** The version ids and shares of `wrangler deployments status --json`. */
export function currentVersions(statusJson) {
  const status = JSON.parse(statusJson);
  if (!Array.isArray(status?.versions)) throw new Error(`no versions in: ${statusJson.slice(0, 200)}`);
  return status.versions.map((v) => ({ id: v.version_id, percentage: v.percentage }));
}

/** The id `wrangler versions upload` printed. */
export function uploadedVersion(output) {
  const m = /Worker Version ID:\s*([0-9a-f-]{8,})/i.exec(output);
  return m ? m[1] : null;
}

/**
 * Statements a migration may not hold while two versions share the schema: a DROP, a RENAME,
 * or a NOT NULL column added without a default. Returns one reason per offending statement.
 */
export function destructiveStatements(sql) {
  const text = sql.replace(/--[^\n]*/g, "").replace(/\/\*[\s\S]*?\*\//g, "");
  const reasons = [];
  for (const raw of text.split(";")) {
    const stmt = raw.replace(/\s+/g, " ").trim();
    if (!stmt) continue;
    if (/^DROP\b/i.test(stmt) || /\bDROP\s+COLUMN\b/i.test(stmt)) reasons.push(`drops: ${stmt.slice(0, 80)}`);
    else if (/\bRENAME\b/i.test(stmt)) reasons.push(`renames: ${stmt.slice(0, 80)}`);
    else if (/^ALTER\s+TABLE\b.*\bADD\b/i.test(stmt) && /\bNOT\s+NULL\b/i.test(stmt) && !/\bDEFAULT\b/i.test(stmt)) reasons.push(`adds a NOT NULL column without a default: ${stmt.slice(0, 80)}`);
  }
  return reasons;
}

/**
 * Compares the new version with the old over one window. `rows` is /admin/metrics/versions'
 * `versions`. Returns { verdict: "pass" | "regression" | "inconclusive", reasons, table }.
 */
export function canaryVerdict(rows, oldId, newId, t = CANARY_DEFAULTS) {
  const pick = (id) => rows.find((r) => r.version_id === id) ?? { version_id: id, requests: 0, errors: 0, error_rate: 0, p50_ms: null, p95_ms: null };
  const [o, n] = [pick(oldId), pick(newId)];
  const fmt = (x, d = 1) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));
  const table = [
    "version                               requests  errors  error rate  p50 ms  p95 ms",
    ...[["old", o], ["new", n]].map(([label, r]) => `${label} ${r.version_id.padEnd(36).slice(0, 36)} ${String(r.requests).padStart(8)}  ${String(r.errors).padStart(6)}  ${(fmt(100 * r.error_rate, 2) + " %").padStart(10)}  ${fmt(r.p50_ms).padStart(6)}  ${fmt(r.p95_ms).padStart(6)}`),
  ];
  const reasons = [];
  if (n.requests < t.minRequests || o.requests < t.minRequests) {
    return { verdict: "inconclusive", reasons: [`fewer than ${t.minRequests} requests on a version (old ${o.requests}, new ${n.requests})`], table };
  }
  if (n.error_rate > o.error_rate + t.maxErrorRateIncrease) {
    reasons.push(`error rate ${fmt(100 * n.error_rate, 2)} % against ${fmt(100 * o.error_rate, 2)} % (allowed +${fmt(100 * t.maxErrorRateIncrease, 2)} points)`);
  }
  if (n.p95_ms > o.p95_ms * (1 + t.maxP95Slowdown) && n.p95_ms - o.p95_ms > t.p95SlackMs) {
    reasons.push(`p95 ${fmt(n.p95_ms)} ms against ${fmt(o.p95_ms)} ms (+${fmt(100 * (n.p95_ms / o.p95_ms - 1))} %, allowed +${fmt(100 * t.maxP95Slowdown)} % and ${t.p95SlackMs} ms)`);
  }
  return { verdict: reasons.length ? "regression" : "pass", reasons, table };
}

/** What kind of release this is, and why. */
export function releaseKind(service, env) {
  if (!service) return { kind: "deploy", why: `${env.name} does not exist yet: a first deploy must be \`wrangler deploy\` (a version can only be uploaded to an existing Worker)` };
  const deployed = service.default_environment?.script?.migration_tag ?? null;
  if (env.migrationTag && deployed !== env.migrationTag) {
    const pending = env.migrationTags.slice(env.migrationTags.indexOf(deployed) + 1);
    return { kind: "deploy", why: `Durable Object migration${pending.length > 1 ? "s" : ""} ${pending.join(", ")} pending (deployed tag ${deployed ?? "none"}, wrangler.jsonc ${env.migrationTag}): class changes cannot go through \`versions upload\`, so this release is a non-versioned \`wrangler deploy\` at 100 %` };
  }
  return { kind: "versions", why: `deployed Durable Object migration tag ${deployed ?? "none"} matches wrangler.jsonc: gradual release` };
}

async function main() {
  const args = parseArgs(
    process.argv.slice(2),
    {
      values: ["--env", "--config", "--smoke-url", "--steps", "--settle-s", "--to", "--question", "--message", "--canary-window-s", "--probes", "--max-error-rate-increase", "--max-p95-slowdown", "--p95-slack-ms", "--min-requests"],
      switches: ["--dry-run", "--rollback", "--allow-destructive"],
    },
    fail,
  );
  if (!ENVIRONMENTS.includes(args.env)) fail(`--env must be one of ${ENVIRONMENTS.join(", ")}`);
  const steps = args.rollback ? [] : parseSteps(args.steps, args.env);
  const number = (name, fallback, ok = (x) => x >= 0) => {
    if (args[name] === undefined) return fallback;
    const x = Number(args[name]);
    if (!Number.isFinite(x) || !ok(x)) fail(`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be a number ≥ 0 (got ${args[name]})`);
    return x;
  };
  const thresholds = {
    maxErrorRateIncrease: number("maxErrorRateIncrease", CANARY_DEFAULTS.maxErrorRateIncrease),
    maxP95Slowdown: number("maxP95Slowdown", CANARY_DEFAULTS.maxP95Slowdown),
    p95SlackMs: number("p95SlackMs", CANARY_DEFAULTS.p95SlackMs),
    minRequests: number("minRequests", CANARY_DEFAULTS.minRequests),
  };
  const probes = number("probes", CANARY_DEFAULTS.probes);
  const windowS = number("canaryWindowS", CANARY_DEFAULTS.windowS, (x) => x > 0);
  const settleMs = number("settleS", args.env === "production" ? 60 : 5) * 1000;
  const configPath = path.resolve(args.config ?? path.join(root, "wrangler.jsonc"));
  let env;
  let api;
  try {
    env = environment(configPath, args.env);
    api = cloudflareApi();
  } catch (err) {
    fail(err.message);
  }
  const envFlag = ["--env", args.env, "--config", configPath];
  const message = args.message ?? gitDescription();
  // Writes are only printed with --dry-run; reads always run (the plan depends on them).
  const run = (argv) => wrangler(argv, { dryRun: args.dryRun, log });
  const read = (argv) => wrangler(argv, { log });
  const abort = (why) => fail(why, 1);

  // --- where the environment stands (any failure aborts) -------------------------------------
  let service;
  try {
    service = await api.find(`/workers/services/${env.name}`);
  } catch (err) {
    abort(`cannot read the state of ${env.name}: ${err.message}. Nothing was changed.`);
  }

  if (args.rollback) return rollback({ env, service, to: args.to, run, envFlag, message, abort });

  const kind = releaseKind(service, env);
  log(`${env.name}: ${kind.why}`);

  await migrateD1({ env, api, run, read, envFlag, allowDestructive: args.allowDestructive, abort });

  if (kind.kind === "deploy") {
    run(["deploy", ...envFlag, "--message", `${message} (non-versioned: ${service ? "Durable Object migrations" : "first deploy"})`]);
    if (args.dryRun) return log("dry run: nothing changed");
    if (args.smokeUrl) {
      const result = await smoke({ url: args.smokeUrl, question: args.question });
      printSmoke("100 % (wrangler deploy)", result);
      if (!result.ok) {
        abort(service
          ? `smoke test failed after a deploy that applied Durable Object migrations: Cloudflare refuses a rollback across a migration (rollbacks page). The way back is forward: fix and run this script again, or deploy the previous commit with \`wrangler deploy --env ${args.env}\` (its code must accept the migrated classes).`
          : `smoke test failed on the first deploy of ${env.name}: nothing to go back to; fix and deploy again`);
      }
    }
    return log(`${env.name}: deployed with \`wrangler deploy\` (triggers included)`);
  }

  let previous;
  try {
    previous = currentVersions(read(["deployments", "status", ...envFlag, "--json"]));
  } catch (err) {
    abort(`cannot read the current deployment of ${env.name}: ${err.message}. Nothing was uploaded.`);
  }
  if (previous.length !== 1) {
    abort(`${env.name} is split between ${previous.map((v) => `${v.id}@${v.percentage}%`).join(" and ")}: finish that rollout (\`wrangler versions deploy\`) or roll it back before releasing another`);
  }
  const old = previous[0].id;
  const uploaded = run(["versions", "upload", ...envFlag, "--message", message]);
  const next = args.dryRun ? "NEW_VERSION_ID" : uploadedVersion(uploaded);
  if (!next) abort(`could not read the new version id from wrangler's output:\n${uploaded}`);
  log(`${env.name}: version ${next} replaces ${old}; steps 0 (smoke) → ${steps.join(" → ")} %`);

  const back = (why) => {
    run(["versions", "deploy", `${old}@100%`, ...envFlag, "--message", `${why}: back to ${old}`, "-y"]);
    abort(`${why}: all traffic is back on ${old}`);
  };

  const smokeNew = async (label) => {
    if (!args.smokeUrl) return log(`${label}: no --smoke-url, not checked`);
    if (args.dryRun) return log(`${label}: would smoke-test ${args.smokeUrl} through the version override`);
    const result = await smoke({ url: args.smokeUrl, question: args.question, worker: env.name, version: next, expectVersion: next });
    printSmoke(label, result);
    if (!result.ok) back(`smoke test failed at ${label}`);
  };

  // The new version joins the deployment at 0 %: only requests naming it reach it.
  run(["versions", "deploy", `${next}@0%`, `${old}@100%`, ...envFlag, "--message", `${message} (0 %, smoke test)`, "-y"]);
  await smokeNew("0 %");

  for (const pct of steps) {
    const specs = pct === 100 ? [`${next}@100%`] : [`${next}@${pct}%`, `${old}@${100 - pct}%`];
    run(["versions", "deploy", ...specs, ...envFlag, "--message", `${message} (${pct} %)`, "-y"]);
    if (args.dryRun) continue;
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    await smokeNew(`${pct} %`);
    if (pct === 100 || !args.smokeUrl) continue;
    const verdict = await canary({ url: args.smokeUrl, name: env.name, oldId: old, newId: next, windowS, probes, thresholds, question: args.question });
    log(`${pct} % canary analysis over ${windowS} s (${verdict.verdict}):`);
    for (const line of verdict.table) log(`  ${line}`);
    for (const r of verdict.reasons) log(`  - ${r}`);
    if (verdict.verdict !== "pass") back(`canary ${verdict.verdict} at ${pct} %`);
  }
  // Cron schedules and queue consumer settings are not part of a version.
  run(["triggers", "deploy", ...envFlag]);
  log(args.dryRun ? "dry run: nothing changed" : `${env.name}: ${next} serves 100 %; triggers deployed`);
}

/** D1 migrations before any code: bookmark, refusal of non-additive SQL, apply. */
async function migrateD1({ env, api, run, read, envFlag, allowDestructive, abort }) {
  let applied;
  try {
    applied = await appliedMigrations(api, env.d1.id);
  } catch (err) {
    abort(`cannot read D1 ${env.d1.name}'s applied migrations: ${err.message}`);
  }
  const pending = migrationFiles(env.d1.migrationsDir).filter((f) => !applied.includes(f));
  if (pending.length === 0) return log(`D1 ${env.d1.name}: no pending migrations`);
  const destructive = pending.flatMap((f) => destructiveStatements(readFileSync(path.join(env.d1.migrationsDir, f), "utf8")).map((r) => `${f} ${r}`));
  if (destructive.length && !allowDestructive) {
    abort(`refusing D1 migrations that are not additive (during a split the old version runs on the new schema):\n  ${destructive.join("\n  ")}\nsplit them into additive steps, or pass --allow-destructive`);
  }
  const info = read(["d1", "time-travel", "info", env.d1.name, ...envFlag, "--json"]);
  let bookmark;
  try {
    bookmark = JSON.parse(info).bookmark;
  } catch {
    abort(`could not read the Time Travel bookmark of ${env.d1.name}: ${info.slice(0, 300)}`);
  }
  log(`D1 ${env.d1.name} before ${pending.join(", ")}: Time Travel bookmark ${bookmark}`);
  log(`  to undo: wrangler d1 time-travel restore ${env.d1.name} --bookmark ${bookmark} --env ${env.env}`);
  run(["d1", "migrations", "apply", "DB", "--remote", ...envFlag]);
}

/** Probe traffic to both versions through overrides, then the per-version comparison. */
async function canary({ url, name, oldId, newId, windowS, probes, thresholds, question }) {
  const started = Date.now();
  const base = url.replace(/\/+$/, "");
  const send = (version) =>
    fetch(`${base}/api/search`, {
      method: "POST",
      headers: { "content-type": "application/json", "cloudflare-workers-version-overrides": `${name}="${version}"` },
      body: JSON.stringify({ query: question ?? "What does the company build?" }),
      signal: AbortSignal.timeout(10_000),
    }).then((r) => r.arrayBuffer(), () => null);
  for (let i = 0; i < probes; i++) await Promise.all([send(oldId), send(newId)]);
  const rest = windowS * 1000 - (Date.now() - started);
  if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  const res = await fetch(`${base}/admin/metrics/versions?window=${Math.ceil((Date.now() - started) / 1000)}s`, {
    headers: { authorization: `Bearer ${process.env.ADMIN_TOKEN ?? ""}` },
    signal: AbortSignal.timeout(10_000),
  }).catch((e) => ({ status: 0, text: async () => e.message }));
  if (res.status !== 200) return { verdict: "inconclusive", reasons: [`/admin/metrics/versions answered ${res.status}: ${(await res.text()).slice(0, 200)} (is ADMIN_TOKEN set?)`], table: [] };
  return canaryVerdict((await res.json()).versions ?? [], oldId, newId, thresholds);
}

async function rollback({ env, service, to, run, envFlag, message, abort }) {
  if (!service) abort(`${env.name} does not exist: nothing to roll back`);
  try {
    // Without an id wrangler takes the version deployed before the current one.
    run(["rollback", ...(to ? [to] : []), ...envFlag, "--message", `rollback: ${message}`, "-y"]);
  } catch (err) {
    if (/Durable Object migration/i.test(err.output ?? err.message)) {
      abort(`Cloudflare refuses to roll ${env.name} back to ${to ?? "the previous version"}: a Durable Object migration happened since that version (rollbacks page). The way back is forward: revert the change in git and release it (\`node scripts/deploy/deploy.mjs --env ${env.env}\`), keeping the migrated classes in wrangler.jsonc.`);
    }
    abort(err.message);
  }
  log(`${env.name}: rolled back to ${to ?? "the previous version"}`);
}

function printSmoke(label, result) {
  for (const c of result.checks) log(`${label} smoke ${c.ok ? "ok  " : "FAIL"} ${c.name} (${c.status ?? "-"}, ${c.ms} ms)${c.detail ? `: ${c.detail}` : ""}`);
}

function gitDescription() {
  try {
    return execFileSync("git", ["log", "-1", "--format=%h %s"], { cwd: root, encoding: "utf8" }).trim().slice(0, 100);
  } catch {
    return "deploy";
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  await main();
}
