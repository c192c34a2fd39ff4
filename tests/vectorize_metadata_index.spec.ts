// Why the deploy steps create Vectorize metadata indexes before the first
// vector is written: a filter only sees properties with a metadata index, and
// only vectors written after it. Runs in the `vectorize` project only; its
// setup created the indexes, which this file removes to play a deployment that
// skipped the step.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, ingestReady, poll, uniqueKey } from "./support";

const standin: any = (env as any).VECTORIZE;

async function search(query: string, company: string): Promise<any[]> {
  const res = await SELF.fetch("https://svc.test/api/search", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, company, top_k: 5 }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as any).results;
}

/** Results the vector source found (the keyword source may still find the document). */
const byVector = (results: any[]) => results.filter((r) => r.scores.vector !== null);

async function filterCheck(): Promise<any> {
  const res = await admin("/admin/index/check");
  const body: any = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body;
}

const status = (check: any, property: string) => check.properties.find((p: any) => p.property === property);

async function dropIndex(property: string) {
  await standin.deleteMetadataIndex(property);
  await standin.drainMutations();
  expect((await standin.listMetadataIndexes()).map((i: any) => i.propertyName)).not.toContain(property);
}

describe("Vectorize metadata indexes", () => {
  it("without one on company_id, company-filtered search finds nothing through Vectorize; with it (and a re-ingest), it finds the document", async () => {
    await dropIndex("company_id");
    const company = `meta${Date.now().toString(36)}`;
    const key = uniqueKey("meta/harbor.md");
    const doc = await ingestReady(key, `---\ncompany: ${company}\n---\n# Harbor\n\nThe saltmarsh crane unloads containers at night.\n`);
    const question = "saltmarsh crane containers";

    // The vectors are there, and an unfiltered query finds them...
    expect(await standin.listIds(`${doc.id}:${doc.active_version}:`)).toHaveLength(doc.chunk_count);
    // ...but the company filter matches nothing: search falls back on keywords alone.
    const before = await search(question, company);
    expect(before[0]?.key).toBe(key);
    expect(byVector(before)).toEqual([]);
    const log = await standin.filterLog();
    expect(log.at(-1)).toMatchObject({ kind: "no_metadata_index", property: "company_id" });
    // The service notices: the check names the property and the command.
    let check = await filterCheck();
    expect(check).toMatchObject({ implementation: "vectorize", verdict: "broken", sample: `${doc.id}:${doc.active_version}:0` });
    expect(status(check, "company_id").status).toBe("not_filterable");
    expect(status(check, "company_id").fix).toContain("create-metadata-index <index> --property-name=company_id --type=number");
    expect(status(check, "document_id").status).toBe("filterable");

    // Creating the index afterwards is not enough: vectors written before it stay out of it.
    await standin.createMetadataIndex("company_id", "number");
    await standin.drainMutations();
    expect(byVector(await search(question, company))).toEqual([]);
    expect((await standin.filterLog()).at(-1)).toMatchObject({ kind: "vectors_not_indexed", property: "company_id", vectors: doc.chunk_count });
    expect((await filterCheck()).verdict).toBe("broken");

    // Re-ingesting writes the vectors again, now into the index.
    const res = await admin(`/admin/documents/${key}/process`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ force: true }),
    });
    expect(res.status).toBe(202);
    await poll(
      () => env.DB.prepare("SELECT status, active_version FROM documents WHERE key = ?1").bind(key).first<any>(),
      (row) => row.status === "ready" && row.active_version > doc.active_version,
      "the re-ingest never went live",
    );
    const after = await search(question, company);
    expect(after[0].key).toBe(key);
    expect(after[0].scores.vector).toBeGreaterThan(0);
    check = await filterCheck();
    expect(check.verdict).toBe("ok");
    expect(check.properties.map((p: any) => [p.property, p.status])).toEqual([
      ["company_id", "filterable"],
      ["document_id", "filterable"],
      ["version", "filterable"],
    ]);
  });

  it("an index of the wrong type does not index the numbers the service writes", async () => {
    // `--type=string` on company_id: the Worker writes numbers, which a string index skips.
    await dropIndex("company_id");
    await standin.createMetadataIndex("company_id", "string");
    await standin.drainMutations();
    const company = `typ${Date.now().toString(36)}`;
    const key = uniqueKey("meta/typed.md");
    await ingestReady(key, `---\ncompany: ${company}\n---\n# Typed\n\nThe amberline ferry crosses the sound.\n`);
    expect(byVector(await search("amberline ferry sound", company))).toEqual([]);
    const check = await filterCheck();
    expect(check.verdict).toBe("broken");
    expect(status(check, "company_id").status).toBe("not_filterable");
    expect(status(check, "company_id").fix).toContain("--type=number");
  });
});
