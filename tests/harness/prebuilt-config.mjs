// Derives, from wrangler.jsonc's local configuration, a config that runs the
// already-built Worker: no `build` step (wrangler dev would rebuild the wasm
// on start), no deploy environments, absolute paths (the file lives
// elsewhere). Used by the vitest projects, the benchmarks and tests that spawn
// `wrangler dev` on the build made once per test run, so none can drift.
// CLI: node tests/harness/prebuilt-config.mjs <output.json>
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { experimental_readRawConfig } from "wrangler";

const root = path.resolve(import.meta.dirname, "../..");

/**
 * Writes the derived config to `out` and returns `out`. `vars` are merged
 * into the config's vars; `drop` names top-level keys to remove as well
 * (e.g. `vectorize`, for a stand-in served under that binding name); `main`
 * runs another build than build/index.js; `extra` sets top-level keys (a binding).
 */
export function writePrebuiltConfig(out, { vars = {}, drop = [], main, extra = {} } = {}) {
  const { rawConfig } = experimental_readRawConfig({ config: path.join(root, "wrangler.jsonc") });
  const config = structuredClone(rawConfig);
  for (const key of ["build", "env", "$schema", ...drop]) delete config[key];
  // `main`: another build's entry point (a before/after benchmark).
  config.main = main ? path.resolve(main) : path.join(root, config.main);
  for (const db of config.d1_databases ?? []) {
    if (db.migrations_dir) db.migrations_dir = path.join(root, db.migrations_dir);
  }
  config.vars = { ...config.vars, ...vars };
  Object.assign(config, extra);
  mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  writeFileSync(out, JSON.stringify(config, null, 2));
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node tests/harness/prebuilt-config.mjs <output.json>");
    process.exit(2);
  }
  writePrebuiltConfig(out);
}
