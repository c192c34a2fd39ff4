// The whole chain in one piece: the real r2-sync binary pushes a folder over the S3 API to the
// local stack's R2 (tests/standins/r2-s3.js, a second Worker in the service's `wrangler dev`),
// which emits R2 event notifications in Cloudflare's documented format onto the service's own
// ingest queue; the queue consumer hands each document to its processor, and /api/chat answers
// from it. No synthetic queue message and no admin API on the way in. Covers PutObject,
// DeleteObject (push --delete), a rename (delete + put), CompleteMultipartUpload (r2-sync's
// multipart path), CopyObject and LifecycleDeletion (sent by an S3 request of our own: r2-sync
// never copies, and lifecycle rules are R2's), a wrong secret refused by the signature check, and
// every message sent checked against the documented shape. Prints the time from `r2-sync push`
// to the first answer citing the pushed document.
// Run: node_modules/.bin/node --test tests/local/whole_chain.test.mjs (after scripts/build-worker.sh;
// builds r2-sync's debug binary with cargo).
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { localS3Endpoint, startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";
import { s3Request } from "../standins/r2-s3-setup.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const TOKEN = "whole-chain-test-token-not-a-secret-01";
const auth = { authorization: `Bearer ${TOKEN}` };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let base;
let s3;
let r2Sync;
let work;

/** r2-sync's debug binary, built (or found up to date) by cargo; its path from cargo's own report. */
function buildR2Sync() {
  const out = execFileSync("cargo", ["build", "-p", "r2-sync", "--bin", "r2-sync", "--message-format=json-render-diagnostics"], {
    cwd: root,
    env: { ...process.env, PATH: `${process.env.HOME}/.cargo/bin:${process.env.PATH}` },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024,
  });
  const artifact = out
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line))
    .find((m) => m.reason === "compiler-artifact" && m.target?.name === "r2-sync" && m.executable);
  assert.ok(artifact, "cargo reported no r2-sync executable");
  return artifact.executable;
}

/** `r2-sync push <dir> --target s3 …` against the local endpoint; its JSON report. */
function push(dir, extra = [], { secret = s3.secretAccessKey, expectCode = 0 } = {}) {
  // Only our credentials: an R2_PREFIX or AWS_* in the caller's environment must not leak in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(R2_|AWS_)/.test(k)));
  const run = spawnSync(
    r2Sync,
    ["push", dir, "--target", "s3", "--endpoint", s3.endpoint, "--bucket", s3.bucket, "--yes", "--json", ...extra],
    { env: { ...env, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: secret }, encoding: "utf8" },
  );
  assert.equal(run.status, expectCode, `r2-sync exited ${run.status}\n${run.stdout}\n${run.stderr}`);
  return { report: JSON.parse(run.stdout) };
}

/** A folder of markdown files (relative path → text) in a fresh temporary directory. */
function folder(files) {
  const dir = mkdtempSync(path.join(work, "docs-"));
  for (const [rel, text] of Object.entries(files)) write(dir, rel, text);
  return dir;
}

function write(dir, rel, text) {
  mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  writeFileSync(path.join(dir, rel), text);
}

/** key → row of every listed (not deleted) document under `prefix`. */
async function documents(prefix = "") {
  const res = await fetch(`${base}/admin/documents?limit=200&prefix=${encodeURIComponent(prefix)}`, { headers: auth });
  assert.equal(res.status, 200);
  return new Map((await res.json()).documents.map((d) => [d.key, d]));
}

/** Polls `check` until it returns something truthy; `seen()` says what was last seen. */
async function waitFor(what, check, { timeoutMs = 90_000, seen = () => "" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result) return result;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}; last seen: ${seen()}`);
    await sleep(100);
  }
}

/** Resolves once exactly `keys` are listed under `prefix`, all ready. */
function readyExactly(prefix, keys) {
  let last = [];
  return waitFor(
    `${keys.join(", ")} ready under ${prefix || "/"}`,
    async () => {
      const docs = await documents(prefix);
      last = [...docs.values()].map((d) => `${d.key}: ${d.status}`);
      for (const row of docs.values()) assert.notEqual(row.status, "failed", JSON.stringify(row));
      const listed = [...docs.keys()].sort();
      return JSON.stringify(listed) === JSON.stringify([...keys].sort()) && listed.every((k) => docs.get(k).status === "ready") ? docs : null;
    },
    { seen: () => JSON.stringify(last) },
  );
}

async function chat(question) {
  const res = await fetch(`${base}/api/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ question }) });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.sources.map((s) => s.key);
}

/** The document's latest run came from an R2 event notification, not the admin API. */
async function lastRunReason(key) {
  const encoded = key.split("/").map(encodeURIComponent).join("/");
  const res = await fetch(`${base}/admin/documents/${encoded}/runs?limit=1`, { headers: auth });
  assert.equal(res.status, 200);
  return (await res.json()).runs[0]?.reason;
}

before(async () => {
  r2Sync = buildR2Sync();
  work = mkdtempSync(path.join(tmpdir(), "whole-chain-"));
  base = await startLocalStack({ name: "whole-chain", adminToken: TOKEN, s3: true });
  s3 = localS3Endpoint();
});

after(() => {
  stopLocalStack();
  if (work) rmSync(work, { recursive: true, force: true });
});

const ZEPHYR = "companies/zephyr-freight/barge fleet ü.md";
const ZEPHYR_TEXT = "---\ncompany: zephyr-freight\n---\n# Zephyr Freight barges\n\nZephyr Freight schedules its river barges with the Quokka tide planner, written in OCaml.\n";
const ZEPHYR_QUESTION = "Which planner does Zephyr Freight use to schedule its river barges?";

test("r2-sync push over S3: PutObject events make every document ready, and the answer cites the pushed one", async () => {
  const corpus = mkdtempSync(path.join(work, "corpus-"));
  cpSync(path.join(root, "samples"), corpus, { recursive: true });
  write(corpus, ZEPHYR, ZEPHYR_TEXT);

  const start = performance.now();
  const { report } = push(corpus);
  const pushed = performance.now();
  const keys = report.results.map((r) => r.key);
  assert.equal(report.totals.upload, keys.length, JSON.stringify(report.totals));
  assert.ok(keys.includes(ZEPHYR) && keys.length >= 6, JSON.stringify(keys));
  await readyExactly("companies/", keys);
  const ready = performance.now();
  const sources = await waitFor("an answer citing the pushed document", async () => ((await chat(ZEPHYR_QUESTION)).includes(ZEPHYR) ? true : null), { timeoutMs: 30_000 });
  const answered = performance.now();
  assert.ok(sources);
  console.log(
    `[whole-chain] ${keys.length} documents: r2-sync push → first answer citing ${JSON.stringify(ZEPHYR)}: ${Math.round(answered - start)} ms ` +
      `(push ${Math.round(pushed - start)} ms, all ready ${Math.round(ready - start)} ms)`,
  );
  assert.equal(await lastRunReason(ZEPHYR), "object_event");

  // A second push changes nothing: R2 holds what r2-sync sent, with its sha256 metadata.
  const again = push(corpus).report;
  assert.equal(again.totals.unchanged, keys.length, JSON.stringify(again.totals));
  assert.equal(again.totals.upload + again.totals.update, 0);
});

test("push --delete after removing a file: DeleteObject removes the document from the list and from answers", async () => {
  const prefix = "companies/delete-co/";
  const dir = folder({
    "keep-a.md": "# Keep A\n\nDelete Co keeps its ledgers in Fortran.\n",
    "keep-b.md": "# Keep B\n\nDelete Co ships tinned sardines.\n",
    "gone.md": "# Gone\n\nDelete Co once ran a zeppelin shuttle to Brindisi.\n",
  });
  push(dir, ["--prefix", prefix]);
  await readyExactly(prefix, [`${prefix}gone.md`, `${prefix}keep-a.md`, `${prefix}keep-b.md`]);
  assert.ok((await chat("Where did the Delete Co zeppelin shuttle go?")).includes(`${prefix}gone.md`));

  unlinkSync(path.join(dir, "gone.md"));
  const { report } = push(dir, ["--prefix", prefix, "--delete"]);
  assert.equal(report.totals.delete, 1, JSON.stringify(report.totals));
  await readyExactly(prefix, [`${prefix}keep-a.md`, `${prefix}keep-b.md`]);
  assert.ok(!(await chat("Where did the Delete Co zeppelin shuttle go?")).includes(`${prefix}gone.md`));
});

test("a rename (move a file, push --delete): the old key is gone, the new key ready, no duplicate", async () => {
  const prefix = "companies/rename-co/";
  const text = "# Kilns\n\nRename Co fires its porcelain in a wood-burning anagama kiln.\n";
  const dir = folder({ "old/kilns.md": text, "glaze.md": "# Glaze\n\nRename Co mixes celadon glazes.\n", "clay.md": "# Clay\n\nRename Co digs its own clay.\n" });
  push(dir, ["--prefix", prefix]);
  await readyExactly(prefix, [`${prefix}clay.md`, `${prefix}glaze.md`, `${prefix}old/kilns.md`]);

  mkdirSync(path.join(dir, "new"));
  renameSync(path.join(dir, "old/kilns.md"), path.join(dir, "new/kilns.md"));
  const { report } = push(dir, ["--prefix", prefix, "--delete"]);
  assert.equal(report.totals.upload, 1, JSON.stringify(report.totals));
  assert.equal(report.totals.delete, 1, JSON.stringify(report.totals));
  const docs = await readyExactly(prefix, [`${prefix}clay.md`, `${prefix}glaze.md`, `${prefix}new/kilns.md`]);
  const sha = docs.get(`${prefix}new/kilns.md`).sha256;
  assert.equal([...(await documents()).values()].filter((d) => d.sha256 === sha).length, 1, "one document holds the moved text");
  const sources = await chat("What kind of kiln does Rename Co fire its porcelain in?");
  assert.ok(sources.includes(`${prefix}new/kilns.md`), JSON.stringify(sources));
  assert.ok(!sources.includes(`${prefix}old/kilns.md`), JSON.stringify(sources));
});

test("a file above --multipart-threshold goes up in parts: CompleteMultipartUpload makes it ready", async () => {
  const prefix = "companies/multipart-co/";
  const lines = Array.from({ length: 60 }, (_, i) => `Shift ${i + 1}: the Multipart Co foundry casts bronze bells for harbour buoys.`);
  const dir = folder({ "foundry.md": `# Foundry\n\n${lines.join("\n")}\n` });
  const { report } = push(dir, ["--prefix", prefix, "--multipart-threshold", "1024"]);
  assert.deepEqual(
    report.results.map((r) => [r.key, r.status, r.multipart]),
    [[`${prefix}foundry.md`, "ok", true]],
  );
  const docs = await readyExactly(prefix, [`${prefix}foundry.md`]);
  // R2's etag of a multipart object is `<md5 of the part md5s>-<parts>`, not the content's md5.
  assert.match(docs.get(`${prefix}foundry.md`).etag, /-1$/);
  assert.equal(await lastRunReason(`${prefix}foundry.md`), "object_event");
  assert.ok((await chat("What does the Multipart Co foundry cast for harbour buoys?")).includes(`${prefix}foundry.md`));
});

test("CopyObject (an S3 request of our own: r2-sync never copies) makes the copy a ready document; LifecycleDeletion removes it", async () => {
  const prefix = "companies/copy-co/";
  const dir = folder({ "source.md": "# Source\n\nCopy Co presses olive oil in Jaén.\n" });
  push(dir, ["--prefix", prefix]);
  const original = await readyExactly(prefix, [`${prefix}source.md`]);

  const target = `${prefix}copies/pressed.md`;
  const copy = await s3Request(s3, "PUT", target, { headers: { "x-amz-copy-source": `${s3.bucket}/${encodeURIComponent(`${prefix}source.md`)}` } });
  assert.equal(copy.status, 200, await copy.text());
  const docs = await readyExactly(prefix, [`${prefix}source.md`, target]);
  assert.equal(docs.get(target).sha256, original.get(`${prefix}source.md`).sha256);
  assert.equal(await lastRunReason(target), "object_event");

  // R2 runs lifecycle rules on its own; the stand-in's control route plays that part.
  const expire = await s3Request({ ...s3, bucket: "__standin" }, "POST", "lifecycle-expire", { query: { key: target } });
  assert.equal(expire.status, 204, await expire.text());
  await readyExactly(prefix, [`${prefix}source.md`]);
});

test("a wrong secret is refused by the signature check and changes nothing", async () => {
  const prefix = "companies/wrong-secret-co/";
  const dir = folder({ "a.md": "# A\n\nNever stored.\n" });
  const { report } = push(dir, ["--prefix", prefix], { secret: "not-the-secret", expectCode: 1 });
  assert.match(JSON.stringify(report.errors), /SignatureDoesNotMatch/);
  const list = await s3Request(s3, "GET", "", { query: { "list-type": 2, prefix } });
  assert.equal(list.status, 200);
  assert.doesNotMatch(await list.text(), /<Key>/);
  assert.equal((await documents(prefix)).size, 0);
});

test("every message the S3 endpoint sent has the documented R2 event-notification shape", async () => {
  // https://developers.cloudflare.com/r2/buckets/event-notifications/ ("Message format"):
  // { account, action, bucket, object: { key, size, eTag }, eventTime, copySource? }; size and
  // eTag are not present for object-delete events; copySource only for CopyObject.
  const res = await s3Request({ ...s3, bucket: "__standin" }, "GET", "events");
  assert.equal(res.status, 200);
  const messages = await res.json();
  const seen = new Set(messages.map((m) => m.action));
  assert.deepEqual([...seen].sort(), ["CompleteMultipartUpload", "CopyObject", "DeleteObject", "LifecycleDeletion", "PutObject"]);
  for (const m of messages) {
    const deletion = m.action === "DeleteObject" || m.action === "LifecycleDeletion";
    const fields = ["account", "action", "bucket", "eventTime", "object", ...(m.action === "CopyObject" ? ["copySource"] : [])];
    assert.deepEqual(Object.keys(m).sort(), fields.sort(), JSON.stringify(m));
    assert.deepEqual(Object.keys(m.object).sort(), deletion ? ["key"] : ["eTag", "key", "size"], JSON.stringify(m));
    assert.equal(m.bucket, s3.bucket);
    assert.match(m.account, /^[0-9a-f]{32}$/);
    assert.equal(new Date(m.eventTime).toISOString(), m.eventTime);
    if (!deletion) assert.ok(Number.isInteger(m.object.size) && /^[0-9a-f]{32}(-\d+)?$/.test(m.object.eTag), JSON.stringify(m));
    if (m.action === "CopyObject") assert.deepEqual(m.copySource, { bucket: s3.bucket, object: "companies/copy-co/source.md" });
  }
});
