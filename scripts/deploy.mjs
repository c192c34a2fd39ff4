// Deploys the built Worker to an environment the safe way, or rolls it back:
//
//   node scripts/deploy.mjs --env staging    --smoke-url https://staging.example.com
//   node scripts/deploy.mjs --env production --smoke-url https://www.example.com [--steps 10,50,100] [--settle-s 60]
//   node scripts/deploy.mjs --env production --rollback [--to VERSION_ID]
//   … --dry-run     prints the wrangler commands instead of running them, assuming a
//                   current version (the smoke test still runs when --smoke-url is given)
//
// A deploy: (1) applies D1 migrations first (they are additive, so the running
// version keeps working on the new schema); (2) reads the current deployment;
// (3) uploads the build as a new version (`wrangler versions upload`, no
// traffic yet); (4) moves traffic to it in steps (`wrangler versions deploy
// NEW@p% OLD@(100-p)%`; staging defaults to one step of 100 %, production to
// 10, 50, 100), waiting `--settle-s` after each and running the smoke test
// (scripts/smoke.mjs) against the new version (version-override header);
// (5) if a smoke test fails, puts 100 % back on the previous version and exits
// 1. A rollback is `wrangler rollback [VERSION]`: the previous (or given)
// version takes all traffic at once. Credentials come from wrangler's own
// environment (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID); `WRANGLER`
// names another wrangler executable (the tests use a recording stand-in).
import { execFileSync } from "node:child_process";
import path from "node:path";
import { experimental_readRawConfig } from "wrangler";
import { smoke } from "./smoke.mjs";

const root = path.resolve(import.meta.dirname, "..");
const ENVIRONMENTS = ["dev", "staging", "production"];
const DEFAULT_STEPS = { dev: [100], staging: [100], production: [10, 50, 100] };

function fail(message, code = 2) {
  console.error(`[deploy] ${message}`);
  process.exit(code);
}

function parseArgs(argv) {
  const args = { dryRun: false, rollback: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--dry-run") args.dryRun = true;
    else if (arg === "--rollback") args.rollback = true;
    else if (["--env", "--smoke-url", "--steps", "--settle-s", "--to", "--question", "--message"].includes(arg)) {
      const value = argv[++i];
      if (value === undefined) fail(`${arg} needs a value`);
      args[arg.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
    } else fail(`unknown argument ${arg}`);
  }
  if (!ENVIRONMENTS.includes(args.env)) fail(`--env must be one of ${ENVIRONMENTS.join(", ")}`);
  return args;
}

/** The Worker name of an environment, from wrangler.jsonc (comments allowed). */
function workerName(env) {
  const { rawConfig } = experimental_readRawConfig({ config: path.join(root, "wrangler.jsonc") });
  return rawConfig.env?.[env]?.name ?? fail(`wrangler.jsonc has no env.${env}.name`);
}

export function parseSteps(text, env) {
  if (text === undefined) return DEFAULT_STEPS[env];
  const steps = text.split(",").map((s) => Number(s.trim()));
  const valid = steps.length > 0 && steps.every((p, i) => Number.isInteger(p) && p > 0 && p <= 100 && (i === 0 || p > steps[i - 1]));
  if (!valid || steps.at(-1) !== 100) fail(`--steps must rise to 100, e.g. 10,50,100 (got ${text})`);
  return steps;
}

/** The version ids and shares of the current deployment (empty before the first). */
export function currentVersions(statusJson) {
  try {
    const status = JSON.parse(statusJson);
    return (status?.versions ?? []).map((v) => ({ id: v.version_id, percentage: v.percentage }));
  } catch {
    return [];
  }
}

/** The id `wrangler versions upload` printed. */
export function uploadedVersion(output) {
  const m = /Worker Version ID:\s*([0-9a-f-]{8,})/i.exec(output);
  return m ? m[1] : null;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const wrangler = process.env.WRANGLER ?? path.join(root, "node_modules", ".bin", "wrangler");
  const envFlag = ["--env", args.env];
  const message = args.message ?? gitDescription();

  /** Runs wrangler, or prints it with --dry-run. */
  function run(argv) {
    console.log(`[deploy] ${args.dryRun ? "would run" : "run"}: wrangler ${argv.join(" ")}`);
    if (args.dryRun) return "";
    return execFileSync(wrangler, argv, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  }

  if (args.rollback) {
    run(["rollback", ...(args.to ? [args.to] : []), ...envFlag, "--message", `rollback: ${message}`, "-y"]);
    console.log(`[deploy] ${args.env}: rolled back${args.to ? ` to ${args.to}` : " to the previous version"}`);
    return;
  }

  const steps = parseSteps(args.steps, args.env);
  const settleMs = Number(args.settleS ?? (args.env === "production" ? 60 : 5)) * 1000;
  const name = workerName(args.env);

  run(["d1", "migrations", "apply", "DB", "--remote", ...envFlag]);
  let previous = [];
  if (args.dryRun) {
    run(["deployments", "status", ...envFlag, "--json"]);
    previous = [{ id: "CURRENT_VERSION_ID", percentage: 100 }];
  } else {
    try {
      previous = currentVersions(run(["deployments", "status", ...envFlag, "--json"]));
    } catch {
      console.log("[deploy] no current deployment (first deploy): all traffic goes to the new version at once");
    }
  }
  const uploaded = run(["versions", "upload", ...envFlag, "--message", message]);
  const next = args.dryRun ? "NEW_VERSION_ID" : uploadedVersion(uploaded);
  if (!next) fail(`could not read the new version id from wrangler's output:\n${uploaded}`, 1);
  const old = previous.find((v) => v.percentage === 100)?.id ?? previous[0]?.id ?? null;
  console.log(`[deploy] ${args.env}: ${name} version ${next}${old ? ` replaces ${old}` : ""}; steps ${steps.join(" → ")} %`);

  for (const pct of old ? steps : [100]) {
    const specs = pct === 100 || !old ? [`${next}@100%`] : [`${next}@${pct}%`, `${old}@${100 - pct}%`];
    run(["versions", "deploy", ...specs, ...envFlag, "--message", `${message} (${pct} %)`, "-y"]);
    if (settleMs > 0 && !args.dryRun) await new Promise((r) => setTimeout(r, settleMs));
    if (!args.smokeUrl) {
      console.log(`[deploy] ${pct} %: no --smoke-url, not checked`);
      continue;
    }
    const result = await smoke({ url: args.smokeUrl, question: args.question, worker: name, version: next });
    for (const c of result.checks) {
      console.log(`[deploy] ${pct} % smoke ${c.ok ? "ok  " : "FAIL"} ${c.name} (${c.status ?? "-"}, ${c.ms} ms)${c.detail ? `: ${c.detail}` : ""}`);
    }
    if (!result.ok) {
      if (old) {
        run(["versions", "deploy", `${old}@100%`, ...envFlag, "--message", `smoke test failed at ${pct} %: back to ${old}`, "-y"]);
        fail(`smoke test failed at ${pct} %: all traffic is back on ${old}`, 1);
      }
      fail(`smoke test failed on the first deploy of ${name}: nothing to go back to; fix and deploy again`, 1);
    }
  }
  console.log(`[deploy] ${args.env}: ${next} serves 100 %`);
}

function gitDescription() {
  try {
    return execFileSync("git", ["log", "-1", "--format=%h"], { cwd: root, encoding: "utf8" }).trim();
  } catch {
    return "deploy";
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.join(root, "scripts", "deploy.mjs")) {
  await main();
}
