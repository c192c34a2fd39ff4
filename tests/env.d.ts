// Bindings the tests see (the Worker's, plus test-only ones from vitest.config.ts).
import type { D1Migration } from "cloudflare:test";

declare global {
  namespace Cloudflare {
    interface Env {
      DB: D1Database;
      DOCUMENTS: R2Bucket;
      INGEST_QUEUE: Queue;
      INGEST_DLQ: Queue;
      DOCUMENT_PROCESSOR: DurableObjectNamespace;
      INGEST_GATE: DurableObjectNamespace;
      ADMIN_TOKEN: string;
      VECTOR_INDEX: string;
      /** Only in the `vectorize` test project: the local Vectorize stand-in (JS RPC). */
      VECTORIZE?: any;
      TEST_MIGRATIONS: D1Migration[];
      /** Only in the `providers` test project: base URL of the provider stand-in. */
      STANDIN_URL?: string;
      /** Only in the `alerts` project: base URL of the webhook receiver. */
      RECEIVER_URL?: string;
      /** Only in the `rollout` project: base URL of the old chat endpoint's stand-in (its control API). */
      LEGACY_STANDIN_URL?: string;
      /** Only in the `rollout` project: the stand-in's endpoint port, which LEGACY_CHAT_URL names. */
      LEGACY_ENDPOINT_URL?: string;
      /** Only in the `bulk` project: the provider stand-in's latency and capacity. */
      BULK_LATENCY_MS?: string;
      BULK_CONCURRENCY?: string;
      /** Only in the `analytics-engine` projects: the Analytics Engine stand-in (JS RPC: the
       * dataset's writeDataPoint, and test controls). */
      METRICS?: any;
    }
  }
}
export {};
