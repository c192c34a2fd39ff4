// Helpers shared by the end-to-end tests.
import {
  createExecutionContext,
  createMessageBatch,
  createScheduledController,
  env,
  getQueueResult,
  waitOnExecutionContext,
} from "cloudflare:test";
// The built Worker's entry point class (the same module the runtime runs).
import Worker from "../build/index.js";

let counter = 0;

/** A key no other test uses, so tests stay independent. */
export function uniqueKey(path: string): string {
  counter += 1;
  return `companies/t${Date.now().toString(36)}${counter}/${path}`;
}

/** An R2 event notification as R2 sends it to the queue. */
export function r2PutEvent(key: string, etag = "etag-1", size = 42) {
  return {
    account: "test-account",
    action: "PutObject",
    bucket: "portfolio-documents",
    object: { key, size, eTag: etag },
    eventTime: new Date().toISOString(),
  };
}

/** Reads the DocumentProcessor's state for `key` through its fetch interface. */
export async function processorState(key: string): Promise<any> {
  const stub = env.DOCUMENT_PROCESSOR.get(env.DOCUMENT_PROCESSOR.idFromName(key));
  const res = await stub.fetch("https://document-processor/state");
  if (res.status !== 200) throw new Error(`processor state: ${res.status} ${await res.text()}`);
  return res.json();
}

/**
 * Delivers a batch to the Worker's queue handler as the Queues runtime would
 * and returns what the handler did with each message (explicit acks, retries
 * with their delays).
 */
export async function deliverBatch(
  queue: string,
  messages: { id: string; body: unknown; attempts?: number }[],
) {
  const batch = createMessageBatch(
    queue,
    messages.map((m) => ({ id: m.id, timestamp: new Date(), attempts: m.attempts ?? 1, body: m.body })),
  );
  const ctx = createExecutionContext();
  const entrypoint: any = new (Worker as any)(ctx, env);
  await entrypoint.queue(batch);
  return getQueueResult(batch, ctx);
}

/** Runs the Worker's scheduled handler as the cron trigger would, and waits for it. */
export async function runCron(cron = "17 3 * * *") {
  const controller = createScheduledController({ cron, scheduledTime: Date.now() });
  const ctx = createExecutionContext();
  const entrypoint: any = new (Worker as any)(ctx, env);
  await entrypoint.scheduled(controller);
  await waitOnExecutionContext(ctx);
}
