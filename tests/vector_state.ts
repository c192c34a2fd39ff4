// What the vector index holds, read the same way whichever index the Worker
// uses: the D1-exact table, or the Vectorize stand-in once every write queued
// so far has landed (Vectorize applies writes asynchronously). Assertions on
// index contents go through here, never through one implementation's storage.
import { env } from "cloudflare:test";
import { admin } from "./support";

/** The index implementation of the project running the spec. */
export const IMPL: "d1" | "vectorize" = (env as any).VECTOR_INDEX === "vectorize" ? "vectorize" : "d1";

/**
 * The metadata indexes the service needs on Vectorize: `company_id` is what
 * search filters on; `document_id` and `version` are what the operator's
 * `/admin/index/query` filters accept. Keep in step with docs/going-live.md's deploy
 * steps and `portfolio_core::index::FILTERED_PROPERTIES`.
 */
export const METADATA_INDEXES = [
  { propertyName: "company_id", indexType: "number" },
  { propertyName: "document_id", indexType: "number" },
  { propertyName: "version", indexType: "number" },
] as const;

/** Creates the metadata indexes on the stand-in and waits until they are in effect. */
export async function createMetadataIndexes(standin: any) {
  for (const { propertyName, indexType } of METADATA_INDEXES) {
    await standin.createMetadataIndex(propertyName, indexType);
  }
  await standin.drainMutations();
}

function standin(): any {
  return (env as any).VECTORIZE;
}

/** Waits until every write queued so far is visible (a no-op for the synchronous D1 index). */
export async function settleIndex() {
  if (IMPL === "vectorize") await standin().drainMutations();
}

/** The ids of a document's vectors (of one generation, if given), sorted, once writes have landed. */
export async function storedVectorIds(documentId: number, version?: number): Promise<string[]> {
  if (IMPL === "vectorize") {
    await settleIndex();
    return standin().listIds(version === undefined ? `${documentId}:` : `${documentId}:${version}:`);
  }
  const sql =
    version === undefined
      ? env.DB.prepare("SELECT id FROM vector_index WHERE document_id = ?1").bind(documentId)
      : env.DB.prepare("SELECT id FROM vector_index WHERE document_id = ?1 AND version = ?2").bind(documentId, version);
  const rows = await sql.all<{ id: string }>();
  return rows.results.map((r) => r.id).sort();
}

/** How many vectors a document has (in one generation, if given). */
export async function storedVectorCount(documentId: number, version?: number): Promise<number> {
  return (await storedVectorIds(documentId, version)).length;
}

/** The generations a document has vectors of, ascending. */
export async function storedVectorVersions(documentId: number): Promise<number[]> {
  const versions = new Set((await storedVectorIds(documentId)).map((id) => Number(id.split(":")[1])));
  return [...versions].sort((a, b) => a - b);
}

/** The stored vectors among `ids` through the Worker's `/admin/index/get` (either index). */
export async function fetchVectors(ids: string[]): Promise<any[]> {
  const found: any[] = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const res = await admin("/admin/index/get", jsonBody({ ids: ids.slice(i, i + 1000) }));
    const body: any = await res.json();
    if (res.status !== 200) throw new Error(`/admin/index/get: ${res.status} ${JSON.stringify(body)}`);
    found.push(...body.vectors);
  }
  return found;
}

/** Writes vectors through the Worker's `/admin/index/upsert` and waits until they are visible. */
export async function plantVectors(vectors: unknown[]) {
  const res = await admin("/admin/index/upsert", jsonBody({ vectors }));
  const body: any = await res.json();
  if (res.status !== 200) throw new Error(`/admin/index/upsert: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  await settleIndex();
}

/** Deletes vectors through the Worker's `/admin/index/delete` and waits until they are gone. */
export async function removeVectors(ids: string[]) {
  const res = await admin("/admin/index/delete", jsonBody({ ids }));
  const body: any = await res.json();
  if (res.status !== 200) throw new Error(`/admin/index/delete: ${res.status} ${JSON.stringify(body)}`);
  await settleIndex();
}

function jsonBody(value: unknown): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(value) };
}
