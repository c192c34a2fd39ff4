// Deploy safety, read from wrangler.jsonc the way wrangler reads it: the
// top-level (local) configuration must not name a deployed Worker, so a
// `wrangler deploy` without `--env` can never replace staging or production.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { experimental_readRawConfig } from "wrangler";

const root = path.resolve(import.meta.dirname, "../..");
const { rawConfig } = experimental_readRawConfig({ config: path.join(root, "wrangler.jsonc") });

test("the top-level Worker name is none of the deployed environments' names", () => {
  const deployed = Object.entries(rawConfig.env ?? {}).map(([env, config]) => [env, config.name]);
  assert.ok(deployed.length >= 3, "dev, staging and production are configured");
  for (const [env, name] of deployed) {
    assert.ok(name, `env ${env} names its Worker`);
    assert.notEqual(rawConfig.name, name, `a deploy without --env would replace ${env}`);
  }
  assert.match(rawConfig.name, /-local$/);
});

test("every deployed environment has its own name and its own D1 database", () => {
  const envs = Object.values(rawConfig.env ?? {});
  const names = new Set(envs.map((c) => c.name));
  assert.equal(names.size, envs.length);
  const databases = new Set(envs.map((c) => c.d1_databases?.[0]?.database_id));
  assert.equal(databases.size, envs.length);
  assert.ok(!databases.has(rawConfig.d1_databases[0].database_id), "the local database is no deployed one");
});

test("staging and production bind Workers AI, so EMBEDDING_PROVIDER/CHAT_PROVIDER=workers-ai needs only vars", () => {
  for (const env of ["staging", "production"]) {
    assert.equal(rawConfig.env[env].ai?.binding, "AI", `${env} binds AI`);
  }
  // Locally AI calls would go to an account: the local configuration has no AI binding.
  assert.equal(rawConfig.ai, undefined);
});

test("staging and production rerank with Workers AI on request; plain searches stay fused", () => {
  for (const env of ["staging", "production"]) {
    const vars = rawConfig.env[env].vars;
    assert.equal(vars.RERANKER, "workers-ai", `${env} names the Workers AI reranker`);
    assert.equal(vars.SEARCH_MODE ?? "fused", "fused", `${env} does not rerank by default`);
  }
  assert.equal(rawConfig.vars.RERANKER ?? "none", "none", "locally there is no AI binding to rerank with");
});

test("the document sync workflow names the bucket production binds, and every environment knows its version", () => {
  const sync = readFileSync(path.join(root, ".github/workflows/sync-documents.yml"), "utf8");
  const named = /R2_BUCKET\s+.*?: (\S+)$/m.exec(sync)?.[1];
  assert.equal(named, rawConfig.env.production.r2_buckets[0].bucket_name);
  for (const config of [rawConfig, ...Object.values(rawConfig.env)]) {
    assert.equal(config.version_metadata?.binding, "CF_VERSION_METADATA", `${config.name}: /api/health and the canary metrics report the version`);
  }
});
