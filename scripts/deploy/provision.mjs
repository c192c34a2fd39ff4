// From an empty Cloudflare account to a serving environment, idempotently:
//
//   node scripts/deploy/provision.mjs --env staging [--dry-run] [--config wrangler.jsonc] [--workers-subdomain NAME]
//
// Reads what exists (Cloudflare's REST API, the endpoints wrangler uses), prints the plan,
// then creates only what is missing, in the order the platform needs: the D1 database (its
// id written into the config's `database_id`, where every later wrangler command reads it)
// and its migrations (--remote), the R2 bucket, the queues (ingest, dead-letter), the
// Vectorize index and every metadata index the service filters on, the Worker's first
// `wrangler deploy` (a Worker that does not exist yet cannot get a version upload), its
// secrets, then the R2 event notifications (their queue's consumer now exists), and the
// triggers (cron schedules, queue consumer settings). A second run finds everything and says
// "nothing to do". --dry-run prints the plan and changes nothing.
//
// Credentials: CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID (docs/going-live.md lists the
// token's rights). Secrets come from the environment variables of the same name: ADMIN_TOKEN
// always, OPENAI_API_KEY when a provider is `openai`, ANALYTICS_ENGINE_API_TOKEN when
// METRICS_SINK=analytics-engine (the SQL API token the metrics readers use), RERANK_API_KEY, ALERT_WEBHOOK_URL and
// PUBLIC_API_KEYS when set. Their values are never printed. Exit 0 done (or nothing to do), 1 a step failed, 2 bad
// arguments or a missing credential/secret.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { appliedMigrations, cloudflareApi, ENVIRONMENTS, environment, migrationFiles, parseArgs, root, wrangler } from "./cloudflare.mjs";

/** Vectorize metadata indexes the service filters on (portfolio_core::index::FILTERED_PROPERTIES). */
export const METADATA_INDEXES = [
  { property: "company_id", type: "number" },
  { property: "document_id", type: "number" },
  { property: "version", type: "number" },
];
/** R2 events the ingest consumer handles: an object written or removed. */
const R2_EVENT_TYPES = ["object-create", "object-delete"];
/** The R2 actions those event types stand for (r2/buckets/event-notifications). */
const R2_ACTIONS = { "object-create": ["PutObject", "CopyObject", "CompleteMultipartUpload"], "object-delete": ["DeleteObject", "LifecycleDeletion"] };
const PLACEHOLDER_ID = /^0{8}-0{4}-0{4}-0{4}-0{11}\d$/;

function fail(message, code = 2) {
  console.error(`[provision] ${message}`);
  process.exit(code);
}
const log = (line) => console.log(`[provision] ${line}`);

/** The secrets this environment needs, and which of them the caller's environment holds. */
export function secretsFor(vars, processEnv = process.env) {
  const required = ["ADMIN_TOKEN"];
  if ([vars.EMBEDDING_PROVIDER, vars.CHAT_PROVIDER].includes("openai")) required.push("OPENAI_API_KEY");
  if (vars.METRICS_SINK === "analytics-engine") required.push("ANALYTICS_ENGINE_API_TOKEN");
  const optional = ["RERANK_API_KEY", "ALERT_WEBHOOK_URL", "PUBLIC_API_KEYS"].filter((name) => processEnv[name]);
  return { required, present: [...required, ...optional].filter((name) => processEnv[name]), missing: required.filter((name) => !processEnv[name]) };
}

/** Writes a D1 database id into the config (a JSONC file: only that value changes). */
export function writeDatabaseId(configPath, databaseName, id) {
  const text = readFileSync(configPath, "utf8");
  const re = new RegExp(`("database_name"\\s*:\\s*"${databaseName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"\\s*,\\s*"database_id"\\s*:\\s*")([^"]*)(")`);
  if (!re.test(text)) throw new Error(`${configPath}: no "database_name": "${databaseName}" followed by "database_id"`);
  writeFileSync(configPath, text.replace(re, `$1${id}$3`));
}

/** Reads what exists for the environment: the account's side of the plan. */
async function survey(api, e) {
  const databases = (await api.call("GET", `/d1/database?name=${encodeURIComponent(e.d1.name)}&per_page=100`)) ?? [];
  const db = databases.find((d) => d.name === e.d1.name) ?? null;
  const applied = db ? await appliedMigrations(api, db.uuid) : null;
  const buckets = (await api.call("GET", "/r2/buckets")).buckets.map((b) => b.name);
  const queues = await api.call("GET", "/queues?per_page=1000");
  const indexes = e.vectorize ? await api.call("GET", "/vectorize/v2/indexes") : [];
  const index = indexes.find((i) => i.name === e.vectorize) ?? null;
  const metadataIndexes = index ? (await api.call("GET", `/vectorize/v2/indexes/${e.vectorize}/metadata_index/list`)).metadataIndexes : [];
  const service = await api.find(`/workers/services/${e.name}`);
  let secrets = [];
  let schedules = [];
  if (service) {
    secrets = (await api.call("GET", `/workers/scripts/${e.name}/secrets`)).map((s) => s.name);
    schedules = (await api.call("GET", `/workers/scripts/${e.name}/schedules`)).schedules.map((s) => s.cron);
  }
  const notifications = e.bucket && buckets.includes(e.bucket) ? await api.find(`/event_notifications/r2/${e.bucket}/configuration`) : null;
  const subdomain = (await api.find("/workers/subdomain"))?.subdomain ?? null;
  return { db, appliedMigrations: applied, buckets, queues, index, metadataIndexes, service, secrets, schedules, notifications, subdomain };
}

/** What must change, in order; each step says what it does and why. */
export function plan(e, found, secrets, subdomainName = "SUBDOMAIN") {
  const steps = [];
  const queue = (name) => found.queues.find((q) => q.queue_name === name);
  if (!found.db) steps.push({ id: "d1", what: `create D1 database ${e.d1.name} and write its id into the config` });
  else if (found.db.uuid !== e.d1.id) steps.push({ id: "d1-id", what: `write D1 database ${e.d1.name}'s id ${found.db.uuid} into the config (it has ${e.d1.id})` });
  const files = migrationFiles(e.d1.migrationsDir);
  const pending = files.filter((f) => !(found.appliedMigrations ?? []).includes(f));
  if (pending.length) steps.push({ id: "migrations", what: `apply ${pending.length} D1 migration(s) --remote: ${pending.join(", ")}` });
  if (e.bucket && !found.buckets.includes(e.bucket)) steps.push({ id: "bucket", what: `create R2 bucket ${e.bucket}` });
  for (const name of e.queues) if (!queue(name)) steps.push({ id: `queue:${name}`, what: `create queue ${name}` });
  if (e.vectorize) {
    const dims = Number(e.vars.EMBEDDING_DIMENSIONS ?? 1536);
    if (!found.index) steps.push({ id: "vectorize", what: `create Vectorize index ${e.vectorize} (${dims} dimensions, cosine)` });
    else if (Number(found.index.config?.dimensions) !== dims) {
      steps.push({ id: "vectorize-mismatch", what: `Vectorize index ${e.vectorize} has ${found.index.config?.dimensions} dimensions, the configuration says ${dims}: an index's dimensions cannot change; create a new index and point the config at it`, blocking: true });
    }
    for (const m of METADATA_INDEXES) {
      const have = found.metadataIndexes.find((x) => x.propertyName === m.property);
      if (!have) steps.push({ id: `metadata:${m.property}`, what: `create metadata index ${e.vectorize}.${m.property} (${m.type}) before the first vector is written` });
      else if (have.indexType !== m.type) steps.push({ id: `metadata-mismatch:${m.property}`, what: `metadata index ${m.property} is ${have.indexType}, the service writes ${m.type}: delete it and create it again, then re-ingest`, blocking: true });
    }
  }
  // A Worker without routes is served on workers.dev: an account without a workers.dev
  // subdomain fails its first `wrangler deploy` ("register a workers.dev subdomain"); the
  // subdomain is one per account (https://developers.cloudflare.com/workers/configuration/routing/workers-dev/).
  if (!found.service && !e.routes.length && !found.subdomain) steps.push({ id: "subdomain", what: `register the account's workers.dev subdomain ${subdomainName} (the Worker has no routes; wrangler deploy fails without one)` });
  if (!found.service) steps.push({ id: "worker", what: `first deploy of Worker ${e.name} (wrangler deploy: creates it, applies Durable Object migrations ${e.migrationTags.join(", ")}, cron schedules and queue consumers)` });
  for (const name of secrets.present) if (!found.secrets.includes(name)) steps.push({ id: `secret:${name}`, what: `set secret ${name}` });
  if (e.bucket && e.ingestQueue) {
    const configured = found.notifications?.queues?.find((q) => q.queueName === e.ingestQueue)?.rules ?? [];
    const actions = new Set(configured.flatMap((r) => r.actions ?? []));
    for (const type of R2_EVENT_TYPES) {
      if (!R2_ACTIONS[type].every((a) => actions.has(a))) steps.push({ id: `notification:${type}`, what: `send R2 ${type} events of ${e.bucket} to queue ${e.ingestQueue}` });
    }
  }
  const crons = [...e.crons].sort().join(",");
  if (found.service && [...found.schedules].sort().join(",") !== crons) steps.push({ id: "triggers", what: `deploy triggers: cron ${e.crons.join(" | ")} and queue consumer settings (wrangler triggers deploy)` });
  return steps;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), { values: ["--env", "--config", "--workers-subdomain"], switches: ["--dry-run"] }, fail);
  if (!ENVIRONMENTS.includes(args.env)) fail(`--env must be one of ${ENVIRONMENTS.join(", ")}`);
  const configPath = path.resolve(args.config ?? path.join(root, "wrangler.jsonc"));
  let e;
  let api;
  try {
    e = environment(configPath, args.env);
    api = cloudflareApi();
  } catch (err) {
    fail(err.message);
  }
  const secrets = secretsFor(e.vars);
  if (secrets.missing.length && !args.dryRun) fail(`set ${secrets.missing.join(", ")} in the environment: the Worker needs ${secrets.missing.length > 1 ? "them" : "it"} (values are never printed)`);

  log(`${e.name} (env ${e.env}) in account ${api.accountId}: reading what exists`);
  let found;
  try {
    found = await survey(api, e);
  } catch (err) {
    fail(`could not read the account: ${err.message}`, 1);
  }
  // workers.dev subdomains are global: by default one derived from the account id.
  const subdomainName = args.workersSubdomain ?? `portfolio-${api.accountId.slice(0, 8)}`;
  const steps = plan(e, found, secrets, subdomainName);
  if (steps.length === 0) {
    log("nothing to do: every resource, secret, notification and trigger is in place");
    return;
  }
  log(`plan (${steps.length} step${steps.length > 1 ? "s" : ""}):`);
  steps.forEach((s, i) => log(`  ${String(i + 1).padStart(2)}. ${s.what}`));
  if (secrets.missing.length) log(`missing from the environment: ${secrets.missing.join(", ")} (needed by a real run)`);
  const blocking = steps.filter((s) => s.blocking);
  if (blocking.length) fail(`cannot continue: ${blocking.map((s) => s.what).join("; ")}`, 1);
  if (args.dryRun) {
    log("dry run: nothing changed");
    return;
  }

  const envFlag = ["--env", e.env, "--config", configPath];
  const run = (argv, options) => wrangler(argv, { log: (l) => log(l), ...options });
  try {
    for (const step of steps) {
      const [kind, arg] = step.id.split(":");
      if (kind === "d1") {
        run(["d1", "create", e.d1.name]);
        const created = (await api.call("GET", `/d1/database?name=${encodeURIComponent(e.d1.name)}`)).find((d) => d.name === e.d1.name);
        if (!created) throw new Error(`D1 database ${e.d1.name} is not listed after its creation`);
        writeDatabaseId(configPath, e.d1.name, created.uuid);
        log(`wrote database_id ${created.uuid} for ${e.d1.name} into ${path.relative(root, configPath) || configPath}: commit it`);
      } else if (kind === "d1-id") {
        writeDatabaseId(configPath, e.d1.name, found.db.uuid);
        log(`wrote database_id ${found.db.uuid} for ${e.d1.name} into ${configPath}: commit it`);
      } else if (kind === "migrations") run(["d1", "migrations", "apply", "DB", "--remote", ...envFlag]);
      else if (kind === "subdomain") {
        // wrangler only registers a subdomain interactively; this is the API call it makes.
        log(`run: PUT /accounts/${api.accountId}/workers/subdomain {"subdomain":"${subdomainName}"}`);
        await api.call("PUT", "/workers/subdomain", { subdomain: subdomainName });
      } else if (kind === "bucket") run(["r2", "bucket", "create", e.bucket]);
      else if (kind === "queue") run(["queues", "create", arg]);
      else if (kind === "vectorize") run(["vectorize", "create", e.vectorize, "--dimensions", String(Number(e.vars.EMBEDDING_DIMENSIONS ?? 1536)), "--metric", "cosine"]);
      else if (kind === "metadata") {
        const m = METADATA_INDEXES.find((x) => x.property === arg);
        run(["vectorize", "create-metadata-index", e.vectorize, "--property-name", m.property, "--type", m.type]);
      } else if (kind === "worker") run(["deploy", ...envFlag, "--message", "provision: first deploy"]);
      else if (kind === "secret") run(["secret", "put", arg, ...envFlag], { input: process.env[arg] });
      else if (kind === "notification") run(["r2", "bucket", "notification", "create", e.bucket, "--event-type", arg, "--queue", e.ingestQueue]);
      else if (kind === "triggers") run(["triggers", "deploy", ...envFlag]);
      else throw new Error(`unknown step ${step.id}`);
    }
  } catch (err) {
    fail(err.message, 1);
  }
  log(`${e.name} provisioned: ${steps.length} step${steps.length > 1 ? "s" : ""} done; run it again to check (it should say nothing to do)`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  await main();
}
