// Vectors for the index specs (vector_index, vector_cache): unique ids, sparse
// vectors, records as the admin index API takes them, and the exact cosine.

/** Dimensions of the local index (EMBEDDING_DIMENSIONS). */
export const DIMS = 1536;

let counter = 0;

/** Ids and company ids no other test uses (an index may live for the whole run). */
export function scope(prefix = "") {
  counter += 1;
  const tag = `${prefix}${Date.now().toString(36)}${counter}`;
  const company = Math.floor(Math.random() * 1e9) + counter;
  return { id: (name: string) => `${tag}:${name}`, company };
}

/** A DIMS-dim vector with the given non-zero coordinates. */
export function vec(coords: Record<number, number>): number[] {
  const v = new Array(DIMS).fill(0);
  for (const [i, x] of Object.entries(coords)) v[Number(i)] = x;
  return v;
}

export function cosine(a: number[], b: number[]): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

/** A record for /admin/index/upsert; a `null` company leaves `company_id` out. */
export function record(id: string, values: number[], company: number | null, document_id = 1) {
  const metadata: any = { document_id, version: 1 };
  if (company !== null) metadata.company_id = company;
  return { id, values, metadata };
}
