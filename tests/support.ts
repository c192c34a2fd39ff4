// Helpers shared by the end-to-end tests.
import {
  createExecutionContext,
  createMessageBatch,
  createScheduledController,
  env,
  getQueueResult,
  SELF,
  waitOnExecutionContext,
} from "cloudflare:test";
import { expect } from "vitest";
// The built Worker's entry point class (the same module the runtime runs).
import Worker from "../build/index.js";

/** The admin token the vitest config gives the Worker (a test value, not a secret). */
export const ADMIN_TOKEN = "test-admin-token-not-a-secret-0001";
/** The ingest queue's name in the local config. */
export const INGEST = "portfolio-ingest";

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

/**
 * Calls `read` until `done` accepts its value (or fails after `timeout` ms,
 * naming `what` and the last value read).
 */
export async function poll<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  what: string,
  timeout = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeout;
  let last = await read();
  while (!done(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 50));
    last = await read();
  }
  return last;
}

/** Polls the document row until its status is one of `statuses` (or fails after `timeout` ms). */
export async function waitForStatus(key: string, statuses: string[], timeout = 20_000): Promise<any> {
  return poll(
    () => env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first<any>(),
    (row) => row !== null && statuses.includes(row.status),
    `document ${key} did not reach ${statuses.join("/")}`,
    timeout,
  );
}

/** A request to the Worker with the admin token (`token: null` sends none). */
export function admin(path: string, init: RequestInit = {}, token: string | null = ADMIN_TOKEN) {
  const headers = new Headers(init.headers);
  if (token !== null) headers.set("Authorization", `Bearer ${token}`);
  return SELF.fetch(`https://svc.test${path}`, { ...init, headers });
}

/** Hex SHA-256 of `text`'s UTF-8 bytes. */
export async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Puts `markdown` into R2 and delivers its notification; returns the event. */
export async function ingest(key: string, markdown: string) {
  const event = await putDocument(key, markdown);
  const id = `m-${key}-${Date.now()}`;
  const result = await deliverBatch(INGEST, [{ id, body: event }]);
  expect(result.explicitAcks).toEqual([id]);
  return event;
}

/** Ingests `markdown` under `key` and waits for it to be ready; returns its document row. */
export async function ingestReady(key: string, markdown: string, timeout = 25_000): Promise<any> {
  await ingest(key, markdown);
  const doc = await waitForStatus(key, ["ready", "failed"], timeout);
  expect(doc.status, doc.last_error ?? "").toBe("ready");
  return doc;
}

/** The `n` of a `SELECT COUNT(*) AS n …` statement. */
export async function count(sql: string, ...params: unknown[]): Promise<number> {
  const row = await env.DB.prepare(sql).bind(...params).first<{ n: number }>();
  return row!.n;
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
