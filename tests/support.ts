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

/** Reads the DocumentProcessor's status for `key` through its fetch interface. */
export async function processorState(key: string): Promise<any> {
  const stub = env.DOCUMENT_PROCESSOR.get(env.DOCUMENT_PROCESSOR.idFromName(key));
  const res = await stub.fetch("https://document-processor/status");
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

/** Polls the document row until its status is one of `statuses` (or fails after `timeout` ms). */
export async function waitForStatus(key: string, statuses: string[], timeout = 20_000): Promise<any> {
  const deadline = Date.now() + timeout;
  let last: any = null;
  while (Date.now() < deadline) {
    last = await env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first();
    if (last && statuses.includes(last.status)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`document ${key} did not reach ${statuses.join("/")}: last row ${JSON.stringify(last)}`);
}

/** Puts a markdown document into R2 and returns its R2 event notification. */
export async function putDocument(key: string, markdown: string) {
  const object = await env.DOCUMENTS.put(key, markdown);
  return {
    account: "test-account",
    action: "PutObject",
    bucket: "portfolio-documents",
    object: { key, size: object!.size, eTag: object!.etag },
    eventTime: new Date().toISOString(),
  };
}
