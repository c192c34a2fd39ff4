// End to end: a markdown file put into R2 plus its notification becomes
// searchable (chunks, vectors, FTS rows of the active generation only).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { deliverBatch, ingest, INGEST, poll, processorState, putDocument, uniqueKey, waitForStatus } from "./support";
import { fetchVectors, IMPL, storedVectorCount, storedVectorIds, storedVectorVersions } from "./vector_state";

const ACME = `---
title: Acme Robotics
company: acme
tags: [robotics, warehouses]
---
# Acme Robotics

Acme builds autonomous forklifts for cold-storage warehouses.

## Projects

### Frostbite

Frostbite is a picking robot that works at minus thirty degrees.

### Ledger

Ledger reconciles pallet inventories every night.
`;


describe("ingestion pipeline", () => {
  it("turns a put object into a ready document with chunks, vectors and FTS rows", async () => {
    const key = uniqueKey("acme/overview.md");
    await ingest(key, ACME);
    const doc = await waitForStatus(key, ["ready", "failed"]);
    expect(doc.status).toBe("ready");
    expect(doc.title).toBe("Acme Robotics");
    expect(doc.active_version).toBeGreaterThan(0);
    expect(doc.chunk_count).toBeGreaterThan(0);
    expect(JSON.parse(doc.tags)).toEqual(["robotics", "warehouses"]);

    const company = await env.DB.prepare("SELECT slug FROM companies WHERE id = ?1").bind(doc.company_id).first();
    expect(company).toEqual({ slug: "acme" });

    const chunks = await env.DB.prepare(
      "SELECT version, chunk_index, heading_path, content, vector_id, tags FROM chunks WHERE document_id = ?1 ORDER BY chunk_index",
    ).bind(doc.id).all<any>();
    expect(chunks.results).toHaveLength(doc.chunk_count);
    expect(chunks.results.every((c) => c.version === doc.active_version)).toBe(true);
    expect(chunks.results.map((c) => c.chunk_index)).toEqual([...Array(doc.chunk_count).keys()]);
    expect(chunks.results.some((c) => c.heading_path.includes("Frostbite"))).toBe(true);
    expect(chunks.results.every((c) => c.vector_id === `${doc.id}:${doc.active_version}:${c.chunk_index}`)).toBe(true);
    expect(chunks.results.every((c) => JSON.parse(c.tags).length > 0)).toBe(true);

    const vectorIds = await storedVectorIds(doc.id);
    expect(vectorIds).toEqual(chunks.results.map((c) => c.vector_id).sort());
    const vectors = await fetchVectors(vectorIds);
    const dims = Number((env as any).EMBEDDING_DIMENSIONS ?? 1536);
    expect(vectors.every((v) => v.values.length === dims && v.metadata.version === doc.active_version)).toBe(true);
    expect(vectors.every((v) => v.metadata.document_id === doc.id && v.metadata.company_id === doc.company_id)).toBe(true);
    if (IMPL === "vectorize") {
      // What the Worker wrote: the filtered fields and nothing else (no empty `tags`).
      const raw = await (env as any).VECTORIZE.getByIds(vectorIds);
      expect(raw.map((v: any) => Object.keys(v.metadata).sort())).toEqual(vectorIds.map(() => ["company_id", "document_id", "version"]));
    }

    const fts = await env.DB.prepare(
      "SELECT c.chunk_index FROM chunks_fts f JOIN chunks c ON c.id = f.rowid WHERE chunks_fts MATCH 'frostbite' AND c.document_id = ?1",
    ).bind(doc.id).all();
    expect(fts.results.length).toBeGreaterThan(0);

    const status = await processorState(key);
    expect(status).toMatchObject({ key, status: "ready", active_version: doc.active_version, chunk_count: doc.chunk_count });

    const runs = await env.DB.prepare("SELECT status, chunk_count, steps FROM processing_runs WHERE document_key = ?1").bind(key).all<any>();
    expect(runs.results).toHaveLength(1);
    expect(runs.results[0].status).toBe("ready");
    const steps = JSON.parse(runs.results[0].steps).map((s: any) => s.step);
    expect(steps).toEqual(expect.arrayContaining(["download", "chunk", "embed", "tag", "commit"]));
  });

  it("replaces the old generation on update and serves only the new one", async () => {
    const key = uniqueKey("acme/update.md");
    await ingest(key, "# Old\n\nThe zorblax module is deprecated.\n");
    const first = await waitForStatus(key, ["ready"]);
    await ingest(key, "# New\n\nThe quintessor module replaced it.\n");
    await expect.poll(async () => {
      const row: any = await env.DB.prepare("SELECT active_version FROM documents WHERE key = ?1").bind(key).first();
      return row.active_version;
    }, { timeout: 20_000 }).toBeGreaterThan(first.active_version);
    const doc = await waitForStatus(key, ["ready"]);

    const versions = await env.DB.prepare("SELECT DISTINCT version FROM chunks WHERE document_id = ?1").bind(doc.id).all<any>();
    expect(versions.results).toEqual([{ version: doc.active_version }]);
    expect(await storedVectorVersions(doc.id)).toEqual([doc.active_version]);
    const old = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'zorblax'").first<any>();
    expect(old.n).toBe(0);
    expect(doc.title).toBe("New");
  });

  it("treats a duplicate delivery of the same object version as a no-op", async () => {
    const key = uniqueKey("acme/dup.md");
    const event = await ingest(key, "# Dup\n\nSame content twice.\n");
    const first = await waitForStatus(key, ["ready"]);
    const again = await deliverBatch(INGEST, [{ id: "dup-2", body: event }]);
    expect(again.explicitAcks).toEqual(["dup-2"]);
    const doc = await waitForStatus(key, ["ready"]);
    expect(doc.active_version).toBe(first.active_version);
    const runs = await env.DB.prepare("SELECT COUNT(*) AS n FROM processing_runs WHERE document_key = ?1").bind(key).first<any>();
    expect(runs.n).toBe(1);
  });

  it("deletes the document, its chunks and its vectors on a delete notification", async () => {
    const key = uniqueKey("acme/gone.md");
    await ingest(key, "# Gone\n\nThis will be removed.\n");
    const doc = await waitForStatus(key, ["ready"]);
    await env.DOCUMENTS.delete(key);
    await deliverBatch(INGEST, [{ id: "del-1", body: { action: "DeleteObject", bucket: "b", object: { key }, eventTime: new Date().toISOString() } }]);
    const gone = await waitForStatus(key, ["deleted"]);
    expect(gone.active_version).toBeNull();
    const chunks = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(doc.id).first<any>();
    expect([chunks.n, await storedVectorCount(doc.id)]).toEqual([0, 0]);
    expect((await processorState(key)).status).toBe("deleted");
  });

  it("fails permanently on a binary object and records the error", async () => {
    const key = uniqueKey("acme/binary.md");
    const object = await env.DOCUMENTS.put(key, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff, 0xfe]));
    await deliverBatch(INGEST, [{ id: "bin-1", body: { action: "PutObject", object: { key, size: object!.size, eTag: object!.etag }, eventTime: new Date().toISOString() } }]);
    const doc = await waitForStatus(key, ["failed"]);
    expect(doc.last_error).toMatch(/UTF-8|binary|NUL/i);
    expect(doc.active_version).toBeNull();
    const status = await processorState(key);
    expect(status).toMatchObject({ status: "failed", step: "chunk" });
  });
});

describe("invalid text", () => {
  it("fails a document that is not valid UTF-8 with the offending offset, writing nothing", async () => {
    const key = uniqueKey("acme/latin1.md");
    // "# Caf\xe9\n": Latin-1, not UTF-8; the bad byte is at offset 5.
    const bytes = new Uint8Array([0x23, 0x20, 0x43, 0x61, 0x66, 0xe9, 0x0a]);
    const object = await env.DOCUMENTS.put(key, bytes);
    await deliverBatch(INGEST, [{ id: "latin1-1", body: { action: "PutObject", object: { key, size: object!.size, eTag: object!.etag }, eventTime: new Date().toISOString() } }]);
    const doc = await waitForStatus(key, ["failed"]);
    expect(doc.last_error).toContain("not valid UTF-8: invalid byte sequence at byte offset 5");
    expect(doc.active_version).toBeNull();
    const chunks = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(doc.id).first<any>();
    expect(chunks.n).toBe(0);
  });
});

describe("large documents", () => {
  it("processes a document of 1,000+ chunks across many alarms", async () => {
    const key = uniqueKey("big/handbook.md");
    // Every section is a heading plus ~950 bytes (~240 tokens): one chunk each.
    const sections: string[] = ["# Handbook\n"];
    for (let i = 0; i < 1_050; i++) {
      const sentence = `Section ${i} explains procedure number ${i} in careful detail for operators. `;
      sections.push(`## Procedure ${i}\n\n${sentence.repeat(12)}\n`);
    }
    const markdown = sections.join("\n");
    const started = Date.now();
    const event = await putDocument(key, markdown);
    await deliverBatch("portfolio-ingest", [{ id: "big-1", body: event }]);
    const doc = await waitForStatus(key, ["ready", "failed"], 120_000);
    expect(doc.status).toBe("ready");
    expect(doc.chunk_count).toBeGreaterThanOrEqual(1_050);

    const counts: any = await env.DB.prepare(
      `SELECT (SELECT COUNT(*) FROM chunks WHERE document_id = ?1 AND version = ?2) AS chunks,
              (SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'procedure') AS fts`,
    ).bind(doc.id, doc.active_version).first();
    expect(counts.chunks).toBe(doc.chunk_count);
    expect(await storedVectorCount(doc.id, doc.active_version)).toBe(doc.chunk_count);
    expect(counts.fts).toBeGreaterThanOrEqual(doc.chunk_count);

    const status = await processorState(key);
    expect(status).toMatchObject({ status: "ready", chunk_count: doc.chunk_count });
    console.log(JSON.stringify({ large_document: { bytes: markdown.length, chunks: doc.chunk_count, ms: Date.now() - started } }));
  }, 180_000);
});

describe("bad input on the notification path", () => {
  async function notify(key: string, body: string | Uint8Array) {
    const object = await env.DOCUMENTS.put(key, body);
    const result = await deliverBatch("portfolio-ingest", [
      { id: `bad-${key}`, body: { action: "PutObject", object: { key, size: object!.size, eTag: object!.etag }, eventTime: new Date().toISOString() } },
    ]);
    expect(result.explicitAcks).toEqual([`bad-${key}`]);
  }

  it("an empty document is ready with zero chunks", async () => {
    const key = uniqueKey("edge/empty.md");
    await notify(key, "---\ntitle: Nothing yet\n---\n");
    const doc = await waitForStatus(key, ["ready", "failed"]);
    expect(doc).toMatchObject({ status: "ready", chunk_count: 0, title: "Nothing yet" });
    const chunks: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(doc.id).first();
    expect(chunks.n).toBe(0);
  });

  it("an oversized object fails with a clear error and writes nothing", async () => {
    const key = uniqueKey("edge/huge.md");
    await notify(key, `# Huge\n\n${"word ".repeat(2_200_000)}`);
    const doc = await waitForStatus(key, ["failed", "ready"], 60_000);
    expect(doc.status).toBe("failed");
    expect(doc.last_error).toMatch(/limit is 10485760/);
    const chunks: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(doc.id).first();
    expect(chunks.n).toBe(0);
  });

  it("hostile and non-normal keys are dead-lettered with the reason, without a document row", async () => {
    // `a//b.md` and `./x.md` are stored by R2 as written, but the service
    // addresses documents by their normal form: such an event must not create
    // a row the admin API cannot reach (issue 11, case 7).
    const cases: [string, RegExp][] = [
      ["a/../../etc/passwd.md", /'\.\.' segment/],
      ["evil\\path.md", /backslash/],
      [`${uniqueKey("odd")}//double.md`, /not in normal form/],
      [`./${uniqueKey("dot")}.md`, /not in normal form/],
    ];
    for (const [key, why] of cases) {
      await notify(key, "# Hostile\n\nShould never be indexed.\n");
      const letter: any = await poll(
        () => env.DB.prepare("SELECT error FROM dead_letters WHERE message_id = ?1").bind(`bad-${key}`).first(),
        (row) => row !== null,
        `no dead letter for ${key}`,
      );
      expect(letter.error, key).toMatch(/invalid object key/);
      expect(letter.error, key).toMatch(why);
      const row = await env.DB.prepare("SELECT id FROM documents WHERE key = ?1").bind(key).first();
      expect(row, key).toBeNull();
    }
  });
});
