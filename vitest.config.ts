// End-to-end tests: the built Worker (build/index.js + wasm) runs in workerd
// through Miniflare with real local D1 (migrations applied), R2, Queues,
// Durable Objects and cron. Build first: `bash scripts/build-worker.sh`.
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations("migrations");
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.jsonc" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            ADMIN_TOKEN: "test-admin-token",
          },
        },
      }),
    ],
    test: {
      include: ["tests/**/*.spec.ts"],
      setupFiles: ["./tests/setup.ts"],
      testTimeout: 30_000,
    },
  };
});
