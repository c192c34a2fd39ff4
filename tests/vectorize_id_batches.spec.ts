// Vectorize refuses a `getByIds` / `deleteByIds` call of more than 100 ids as
// a whole ("too many ids in payload; max id count is 100, got 173"), although
// its limits page names no id limit (issue 25). A document of more than 100
// chunks is where that bites: the commit counts its vectors with getByIds, an
// update deletes the old generation's, a delete removes them all. The stand-in
// refuses such calls as the binding does and records every call, refused or
// not. Runs in the `vectorize` project only.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { count, deliverBatch, ingest, INGEST, ingestReady, poll, uniqueKey, waitForStatus } from "./support";
import { storedVectorCount, storedVectorIds } from "./vector_state";

const standin: any = (env as any).VECTORIZE;
/** portfolio_core::index::VECTORIZE_MAX_IDS_PER_CALL, the binding's "max id count". */
const MAX_IDS_PER_CALL = 100;
const CHUNKS = 260;

/** A document of `sections` chunks: every section is a heading plus ~950 bytes, one chunk each. */
function handbook(sections: number, edition: string): string {
  const parts = [`# Handbook, ${edition} edition\n`];
  for (let i = 0; i < sections; i++) {
    const sentence = `The ${edition} edition, section ${i}, sets out procedure ${i} for the night shift. `;
    parts.push(`## Procedure ${i}\n\n${sentence.repeat(12)}\n`);
  }
  return parts.join("\n");
}

/** The vector ids a generation of `chunks` chunks has, sorted as the stand-in lists them. */
function generationIds(documentId: number, version: number, chunks: number): string[] {
  return Array.from({ length: chunks }, (_, i) => `${documentId}:${version}:${i}`).sort();
}

/** The getByIds / deleteByIds calls recorded since `from` (refused ones carry `rejected`). */
async function idCalls(from: number): Promise<any[]> {
  const calls: any[] = await standin.recordedCalls();
  return calls.slice(from).filter((c) => c.method === "getByIds" || c.method === "deleteByIds");
}

/** Every id the calls of `method` carried. */
function idsSent(calls: any[], method: string): Set<string> {
  return new Set(calls.filter((c) => c.method === method).flatMap((c) => c.ids ?? []));
}

describe("id batches on Vectorize (at most 100 ids per call)", () => {
  it("ingests, re-ingests and deletes a document of 250+ chunks, never sending more than 100 ids in one call", async () => {
    const from = (await standin.recordedCalls()).length;
    const key = uniqueKey("batches/handbook.md");

    // Ingest: the commit counts the generation's vectors with getByIds before it goes live.
    const first = await ingestReady(key, handbook(CHUNKS, "first"), 120_000);
    expect(first.chunk_count).toBeGreaterThanOrEqual(250);
    const v1 = first.active_version;
    const v1Ids = generationIds(first.id, v1, first.chunk_count);
    expect(await count("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2", first.id, v1)).toBe(first.chunk_count);
    expect(await storedVectorIds(first.id, v1)).toEqual(v1Ids);

    // Re-ingest a changed version: the new generation goes live, the old one's vectors go.
    await ingest(key, handbook(CHUNKS + 10, "second"));
    const second = await poll(
      () => env.DB.prepare("SELECT * FROM documents WHERE key = ?1").bind(key).first<any>(),
      (row) => row.status === "failed" || (row.status === "ready" && row.active_version > v1),
      "the second version never went live",
      120_000,
    );
    expect(second.status, second.last_error ?? "").toBe("ready");
    expect(second.chunk_count).toBeGreaterThanOrEqual(250);
    const v2 = second.active_version;
    const v2Ids = generationIds(second.id, v2, second.chunk_count);
    await poll(
      async () => [
        await count("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2", first.id, v1),
        await storedVectorCount(first.id, v1),
      ],
      ([rows, vectors]) => rows === 0 && vectors === 0,
      "the first generation's chunk rows and vectors were never deleted",
      60_000,
    );
    expect(await count("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2", second.id, v2)).toBe(second.chunk_count);
    expect(await storedVectorIds(second.id, v2)).toEqual(v2Ids);
    expect(await storedVectorIds(second.id)).toEqual(v2Ids);

    // Delete: every vector and chunk row goes, a tombstone stays.
    await env.DOCUMENTS.delete(key);
    const id = `del-${key}`;
    const result = await deliverBatch(INGEST, [{ id, body: { action: "DeleteObject", bucket: "b", object: { key }, eventTime: new Date().toISOString() } }]);
    expect(result.explicitAcks).toEqual([id]);
    const gone = await waitForStatus(key, ["deleted", "failed"], 60_000);
    expect(gone.status, gone.last_error ?? "").toBe("deleted");
    expect(gone.active_version).toBeNull();
    expect(await count("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1", first.id)).toBe(0);
    expect(await storedVectorIds(first.id)).toEqual([]);

    // No call carried more than the binding accepts, and none was refused.
    const calls = await idCalls(from);
    expect(calls.filter((c) => c.rejected)).toEqual([]);
    expect(Math.max(...calls.map((c) => c.count))).toBeLessThanOrEqual(MAX_IDS_PER_CALL);
    // The split really happened: each generation's ids went out in several calls, all of them.
    const looked = idsSent(calls, "getByIds");
    const deleted = idsSent(calls, "deleteByIds");
    expect([...v1Ids, ...v2Ids].filter((v) => !looked.has(v))).toEqual([]);
    expect([...v1Ids, ...v2Ids].filter((v) => !deleted.has(v))).toEqual([]);
    const ofGeneration = (method: string, version: number) =>
      calls.filter((c) => c.method === method && c.ids?.[0]?.startsWith(`${first.id}:${version}:`)).length;
    expect(ofGeneration("getByIds", v1)).toBeGreaterThanOrEqual(Math.ceil(v1Ids.length / MAX_IDS_PER_CALL));
    expect(ofGeneration("deleteByIds", v1)).toBeGreaterThanOrEqual(Math.ceil(v1Ids.length / MAX_IDS_PER_CALL));
    expect(ofGeneration("deleteByIds", v2)).toBeGreaterThanOrEqual(Math.ceil(v2Ids.length / MAX_IDS_PER_CALL));
  }, 300_000);
});
