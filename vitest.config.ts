// End-to-end tests: the built Worker (build/index.js + wasm) runs in workerd
// through Miniflare with real local D1 (migrations applied), R2, Queues,
// Durable Objects and cron. Build first: `bash scripts/build-worker.sh`.
//
// Six projects share that one build:
// - `d1`: the local configuration as is (`VECTOR_INDEX=d1`, offline providers),
//   every spec file but the provider ones.
// - `vectorize`: the same Worker with `VECTOR_INDEX=vectorize`, its `VECTORIZE`
//   binding served by the local stand-in (tests/standins/vectorize.js) through a
//   service binding, running every spec whose flow writes or reads vectors
//   (VECTORIZE_SPECS below, with the exclusions and why). Its setup creates the
//   metadata indexes first, as docs/going-live.md's deploy steps do.
// - `workers-ai`: the same Worker with `EMBEDDING_PROVIDER=workers-ai` and
//   `CHAT_PROVIDER=workers-ai`, its `AI` binding served by the Workers AI stand-in
//   (tests/standins/workers-ai.js) through a service binding.
// - `providers`: the same Worker with `EMBEDDING_PROVIDER=openai` and
//   `CHAT_PROVIDER=openai` against the provider stand-in
//   (tests/standins/provider.mjs, a real HTTP server started here), with short
//   time limits and backoffs so injected faults play out within a test.
// - `alerts`: the Worker with its chat provider on the provider stand-in, low
//   alert thresholds, and ALERT_WEBHOOK_URL on a local webhook receiver
//   (tests/standins/webhook.mjs, a real HTTP server started here), so the
//   Worker's own fetch delivers the notices.
// - `bulk`: the Worker with EMBEDDING_PROVIDER=openai on a second provider
//   stand-in that computes 2 requests at a time with 100 ms each (latency grows
//   with load), a 1 s request limit and INGEST_PROVIDER_CONCURRENCY=2, for bulk
//   ingestion through the provider gate.
// - `analytics-engine`: the Worker with METRICS_SINK=analytics-engine (production's sink): its
//   `METRICS` binding and the Analytics Engine SQL API are both the stand-in
//   tests/standins/analytics-engine.js (a service binding for the points; Miniflare's
//   `outboundService` for the Worker's fetch, which the stand-in answers for the SQL API's address
//   and passes on otherwise), so /admin/metrics and the alerts read back what the Worker wrote. Its
//   chat provider is the provider stand-in, so a refused key can make alerts fire.
//   `analytics-engine-unconfigured`: the same without the API token.
// - `metrics-buffer`: the local sink (D1) with its per-isolate buffer as deployed code runs it
//   (5 points, 1 s); every other project writes each invocation's points at once
//   (METRICS_BUFFER_POINTS=1), so their tests can wait for stored rows without a reader's flush.
// - `rollout`: the Worker with LEGACY_CHAT_URL on a local stand-in of the old
//   chat endpoint (tests/standins/legacy-chat.mjs, a real HTTP server started
//   here; its endpoint port can be taken down), ROLLOUT_PERCENT=80 and a 1 s
//   LEGACY_FIRST_BYTE_TIMEOUT_MS, for the cut-over's split, proxy, shadow and
//   failover.
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { writePrebuiltConfig } from "./tests/harness/prebuilt-config.mjs";
import { startProviderStandin } from "./tests/standins/provider.mjs";
import { startWebhookReceiver } from "./tests/standins/webhook.mjs";
import { startLegacyChatStandin } from "./tests/standins/legacy-chat.mjs";

const root = import.meta.dirname;

/**
 * The `vectorize` project's wrangler config, derived from wrangler.jsonc so
 * the two cannot drift: the same bindings minus the real (remote-only)
 * `vectorize` one, whose name the stand-in's service binding takes.
 */
function writeVectorizeTestConfig(): string {
  return writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.vectorize.json"), {
    vars: { VECTOR_INDEX: "vectorize" },
    drop: ["vectorize"],
  });
}

/** Provider vars of the `providers` project: the stand-in, and limits short enough for tests. */
const PROVIDER_TEST_VARS = {
  EMBEDDING_PROVIDER: "openai",
  CHAT_PROVIDER: "openai",
  RERANKER: "http",
  PROVIDER_TIMEOUT_MS: "1000",
  PROVIDER_RETRY_BASE_MS: "50",
  INGEST_RETRY_BASE_MS: "200",
  INGEST_OVERLOAD_BASE_MS: "200",
  INGEST_OVERLOAD_GIVE_UP_MS: "4000",
};
const PROVIDER_SPECS = ["tests/provider_*.spec.ts"];
/** Specs only the `workers-ai` project runs (they need the AI binding's stand-in). */
const WORKERS_AI_SPECS = ["tests/workers_ai.spec.ts"];
/** Vars of the `workers-ai` project: Workers AI for both roles, bge-base's 768 dimensions. */
const WORKERS_AI_TEST_VARS = {
  EMBEDDING_PROVIDER: "workers-ai",
  CHAT_PROVIDER: "workers-ai",
  RERANKER: "workers-ai",
  EMBEDDING_DIMENSIONS: "768",
  PROVIDER_TIMEOUT_MS: "2000",
  PROVIDER_RETRY_BASE_MS: "50",
  INGEST_RETRY_BASE_MS: "200",
};
const ALERT_SPECS = ["tests/alerts.spec.ts"];
/** Thresholds of the `alerts` project: low enough for a test to cross them quickly. */
const ALERT_TEST_VARS = {
  EMBEDDING_PROVIDER: "offline",
  CHAT_PROVIDER: "openai",
  PROVIDER_TIMEOUT_MS: "3000",
  PROVIDER_RETRY_BASE_MS: "50",
  ALERT_MIN_REQUESTS: "5",
  ALERT_P95_MS: "1000",
  ALERT_STUCK_MINUTES: "30",
  ALERT_DEAD_LETTERS: "0",
  ALERT_RECONCILE_ENQUEUED: "2",
};
const ROLLOUT_SPECS = ["tests/rollout.spec.ts"];
const ANALYTICS_SPECS = ["tests/analytics_engine.spec.ts"];
const ANALYTICS_UNCONFIGURED_SPECS = ["tests/analytics_engine_unconfigured.spec.ts"];
const BUFFER_SPECS = ["tests/metrics_buffer.spec.ts"];
/** The `analytics-engine` project's account and dataset (test values), and its thresholds. */
const ANALYTICS = {
  account: "0123456789abcdef0123456789abcdef",
  dataset: "portfolio_metrics_test",
  // Not a secret: the stand-in's own token, so a request without it gets a 401.
  token: "standin-analytics-token",
};
const ANALYTICS_TEST_VARS = {
  METRICS_SINK: "analytics-engine",
  ANALYTICS_ENGINE_ACCOUNT_ID: ANALYTICS.account,
  METRICS_DATASET: ANALYTICS.dataset,
  EMBEDDING_PROVIDER: "offline",
  CHAT_PROVIDER: "openai",
  PROVIDER_TIMEOUT_MS: "3000",
  PROVIDER_RETRY_BASE_MS: "50",
  ALERT_MIN_REQUESTS: "5",
};
const BULK_SPECS = ["tests/bulk_ingest.spec.ts"];
/** The `bulk` project's provider: 2 requests computed at a time, 100 ms each. */
const BULK_PROVIDER = { latencyMs: 100, concurrency: 2 };
const BULK_TEST_VARS = {
  EMBEDDING_PROVIDER: "openai",
  CHAT_PROVIDER: "offline",
  PROVIDER_TIMEOUT_MS: "1000",
  PROVIDER_RETRY_BASE_MS: "50",
  INGEST_PROVIDER_CONCURRENCY: String(BULK_PROVIDER.concurrency),
};

/** Specs only the `vectorize` project runs (they need VECTOR_INDEX=vectorize). */
const VECTORIZE_ONLY_SPECS = ["tests/reconcile_vectorize.spec.ts", "tests/vectorize_*.spec.ts"];
/**
 * Specs the `vectorize` project runs besides its own: every flow that writes or
 * reads vectors, so the Worker is proven on Vectorize's asynchronous writes,
 * metadata indexes and limits, not only on the synchronous D1 index. Not run
 * there, and why:
 * - vector_cache.spec.ts: the D1-exact index's per-isolate cache (its change
 *   log, triggers, quantized column); Vectorize has no such thing.
 * - schema.spec.ts: D1 triggers (FTS, chunk tags); no vector is involved.
 * - security.spec.ts: the admin auth matrix; every request is refused (or
 *   answered) before any index is built, so the index cannot change the result.
 * - provider_*.spec.ts: the `providers` project (provider faults, D1 index).
 */
const VECTORIZE_SPECS = [
  "tests/admin.spec.ts",
  "tests/cron.spec.ts",
  "tests/health.spec.ts",
  "tests/hostile_inputs.spec.ts",
  "tests/ingest.spec.ts",
  "tests/processor.spec.ts",
  "tests/query.spec.ts",
  "tests/queue.spec.ts",
  "tests/races.spec.ts",
  "tests/reconcile.spec.ts",
  "tests/vector_index.spec.ts",
];

export default defineConfig(async () => {
  const migrations = await readD1Migrations("migrations");
  // METRICS_MAX_ROWS at its minimum, so the retention test stays small.
  // METRICS_BUFFER_POINTS=1: each invocation writes its own points (see `metrics-buffer` above).
  const bindings = { TEST_MIGRATIONS: migrations, ADMIN_TOKEN: "test-admin-token-not-a-secret-0001", METRICS_MAX_ROWS: "1000", METRICS_BUFFER_POINTS: "1" };
  const shared = { setupFiles: ["./tests/setup.ts"], testTimeout: 30_000 };
  // Not a secret: the stand-in's own key, so a request without it gets a 401.
  const standinKey = "standin-test-key";
  const standin = await startProviderStandin({ apiKey: standinKey });
  const receiver = await startWebhookReceiver();
  const bulkStandin = await startProviderStandin({ apiKey: standinKey, ...BULK_PROVIDER });
  const bulkConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.bulk.json"), {
    vars: { ...BULK_TEST_VARS, OPENAI_BASE_URL: bulkStandin.url },
  });
  const legacyChat = await startLegacyChatStandin();
  const rolloutConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.rollout.json"), {
    // A query string on the old endpoint's URL, as a Supabase function URL may carry: proxied as is.
    // The endpoint's own port, so a test can take it down (connections refused); 1 s before a
    // failover keeps the slow cases short and is still far above the stand-in's healthy answers.
    vars: {
      ROLLOUT_PERCENT: "80",
      LEGACY_CHAT_URL: `${legacyChat.endpointUrl}/functions/v1/chat?v=1`,
      LEGACY_FIRST_BYTE_TIMEOUT_MS: "1000",
    },
  });
  const alertsConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.alerts.json"), {
    vars: { ...ALERT_TEST_VARS, OPENAI_BASE_URL: standin.url, ALERT_WEBHOOK_URL: `${receiver.url}/hooks/alerts-test` },
  });
  const analyticsConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.analytics.json"), {
    vars: { ...ANALYTICS_TEST_VARS, OPENAI_BASE_URL: standin.url },
  });
  const bufferConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.buffer.json"), {
    vars: { METRICS_SINK: "d1" },
  });
  /** The Analytics Engine stand-in as a Miniflare worker (see the `analytics-engine` project). */
  const analyticsStandin = {
    name: "analytics-engine-standin",
    modules: true,
    modulesRoot: root,
    scriptPath: path.join(root, "tests/standins/analytics-engine.js"),
    compatibilityDate: "2026-11-01",
    bindings: {
      API_ORIGIN: "https://api.cloudflare.com",
      API_TOKEN: ANALYTICS.token,
      ACCOUNT_ID: ANALYTICS.account,
      DATASET: ANALYTICS.dataset,
    },
  };
  const analyticsMiniflare = (secrets: Record<string, string>) => ({
    bindings: { ...bindings, OPENAI_API_KEY: standinKey, STANDIN_URL: standin.url, ...secrets },
    serviceBindings: { METRICS: { name: "analytics-engine-standin", entrypoint: "AnalyticsEngineStandin" } },
    outboundService: "analytics-engine-standin",
    workers: [analyticsStandin],
  });
  const providersConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.providers.json"), {
    vars: { ...PROVIDER_TEST_VARS, OPENAI_BASE_URL: standin.url, RERANK_URL: standin.url },
  });
  const workersAiConfig = writePrebuiltConfig(path.join(root, ".wrangler", "vitest", "wrangler.workers-ai.json"), {
    vars: WORKERS_AI_TEST_VARS,
  });
  return {
    test: {
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.jsonc" },
              miniflare: { bindings },
            }),
          ],
          test: {
            name: "d1",
            include: ["tests/**/*.spec.ts"],
            exclude: [
              ...PROVIDER_SPECS,
              ...VECTORIZE_ONLY_SPECS,
              ...WORKERS_AI_SPECS,
              ...ALERT_SPECS,
              ...ROLLOUT_SPECS,
              ...BULK_SPECS,
              ...ANALYTICS_SPECS,
              ...ANALYTICS_UNCONFIGURED_SPECS,
              ...BUFFER_SPECS,
            ],
            ...shared,
          },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: writeVectorizeTestConfig() },
              miniflare: {
                bindings,
                serviceBindings: {
                  VECTORIZE: { name: "vectorize-standin", entrypoint: "VectorizeStandin" },
                },
                workers: [
                  {
                    name: "vectorize-standin",
                    modules: true,
                    modulesRoot: root,
                    scriptPath: path.join(root, "tests/standins/vectorize.js"),
                    compatibilityDate: "2026-11-01",
                    // Writes land 20 ms after the call (Vectorize: "a few seconds"); a test
                    // that needs a longer window sets it with `configure()`.
                    bindings: { DIMENSIONS: 1536, MUTATION_DELAY_MS: 20 },
                  },
                ],
              },
            }),
          ],
          test: {
            name: "vectorize",
            include: [...VECTORIZE_SPECS, ...VECTORIZE_ONLY_SPECS],
            ...shared,
            // Metadata indexes before any vector, as docs/going-live.md's deploy steps say.
            setupFiles: [...shared.setupFiles, "./tests/setup.vectorize.ts"],
          },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: providersConfig },
              miniflare: { bindings: { ...bindings, OPENAI_API_KEY: standinKey, RERANK_API_KEY: standinKey, STANDIN_URL: standin.url } },
            }),
          ],
          test: { name: "providers", include: PROVIDER_SPECS, ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: workersAiConfig },
              miniflare: {
                bindings,
                serviceBindings: {
                  AI: { name: "workers-ai-standin", entrypoint: "WorkersAiStandin" },
                },
                workers: [
                  {
                    name: "workers-ai-standin",
                    modulesRoot: root,
                    // Listed: Miniflare does not follow the stand-in's import of the shared answers.
                    modules: [
                      { type: "ESModule", path: path.join(root, "tests/standins/workers-ai.js") },
                      { type: "ESModule", path: path.join(root, "tests/standins/answers.mjs") },
                    ],
                    compatibilityDate: "2026-11-01",
                  },
                ],
              },
            }),
          ],
          test: { name: "workers-ai", include: [...WORKERS_AI_SPECS, "tests/ingest.spec.ts", "tests/query.spec.ts"], ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: alertsConfig },
              miniflare: {
                bindings: { ...bindings, OPENAI_API_KEY: standinKey, STANDIN_URL: standin.url, RECEIVER_URL: receiver.url },
              },
            }),
          ],
          test: { name: "alerts", include: ALERT_SPECS, ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: analyticsConfig },
              miniflare: analyticsMiniflare({ ANALYTICS_ENGINE_API_TOKEN: ANALYTICS.token }),
            }),
          ],
          test: { name: "analytics-engine", include: ANALYTICS_SPECS, ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: analyticsConfig },
              miniflare: analyticsMiniflare({}),
            }),
          ],
          test: { name: "analytics-engine-unconfigured", include: ANALYTICS_UNCONFIGURED_SPECS, ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: bufferConfig },
              miniflare: { bindings: { ...bindings, METRICS_BUFFER_POINTS: "5", METRICS_BUFFER_SECONDS: "1" } },
            }),
          ],
          test: { name: "metrics-buffer", include: BUFFER_SPECS, ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: rolloutConfig },
              miniflare: { bindings: { ...bindings, LEGACY_STANDIN_URL: legacyChat.url, LEGACY_ENDPOINT_URL: legacyChat.endpointUrl } },
            }),
          ],
          test: { name: "rollout", include: ROLLOUT_SPECS, ...shared },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: bulkConfig },
              miniflare: {
                bindings: {
                  ...bindings,
                  OPENAI_API_KEY: standinKey,
                  STANDIN_URL: bulkStandin.url,
                  BULK_LATENCY_MS: String(BULK_PROVIDER.latencyMs),
                  BULK_CONCURRENCY: String(BULK_PROVIDER.concurrency),
                },
              },
            }),
          ],
          test: { name: "bulk", include: BULK_SPECS, ...shared },
        },
      ],
    },
  };
});
