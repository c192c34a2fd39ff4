// Writes a copy of wrangler.jsonc's local configuration that runs the
// already-built Worker: no `build` step (wrangler dev would rebuild the wasm
// on start), no deploy environments, absolute paths. Used by tests that spawn
// `wrangler dev` on a build made once per test run.
// Usage: node scripts/prebuilt-config.mjs <output.json>
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { experimental_readRawConfig } from "wrangler";

const root = path.resolve(import.meta.dirname, "..");
const out = process.argv[2];
if (!out) {
  console.error("usage: node scripts/prebuilt-config.mjs <output.json>");
  process.exit(2);
}
const { rawConfig } = experimental_readRawConfig({ config: path.join(root, "wrangler.jsonc") });
const config = structuredClone(rawConfig);
delete config.build;
delete config.env;
delete config.$schema;
config.main = path.join(root, config.main);
for (const db of config.d1_databases ?? []) {
  if (db.migrations_dir) db.migrations_dir = path.join(root, db.migrations_dir);
}
mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
writeFileSync(out, JSON.stringify(config, null, 2));
