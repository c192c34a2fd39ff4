// The D1 schema as migrated: FTS kept in sync by triggers, cascades, checks.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";

async function insertDocument(key: string): Promise<number> {
  const row = await env.DB.prepare(
    "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'processing', 1, 1) RETURNING id",
  ).bind(key).first<{ id: number }>();
  return row!.id;
}

async function insertChunk(documentId: number, version: number, index: number, content: string) {
  await env.DB.prepare(
    `INSERT INTO chunks (document_id, version, chunk_index, heading_path, content, token_count,
       start_byte, end_byte, start_line, end_line, vector_id, created_at)
     VALUES (?1, ?2, ?3, 'Acme > Search', ?4, 10, 0, 10, 1, 2, ?5, 1)`,
  ).bind(documentId, version, index, content, `${documentId}:${version}:${index}`).run();
}

async function ftsMatches(query: string): Promise<string[]> {
  const rows = await env.DB.prepare(
    "SELECT c.content FROM chunks_fts f JOIN chunks c ON c.id = f.rowid WHERE chunks_fts MATCH ?1 ORDER BY bm25(chunks_fts)",
  ).bind(query).all<{ content: string }>();
  return rows.results.map((r) => r.content);
}

describe("D1 schema", () => {
  it("keeps the FTS index in sync with chunk inserts, updates and deletes", async () => {
    const id = await insertDocument("schema/fts.md");
    await insertChunk(id, 1, 0, "The Zephyrion search engine indexes invoices");
    expect(await ftsMatches("zephyrion")).toEqual(["The Zephyrion search engine indexes invoices"]);
    // Porter stemming: "invoice" finds "invoices".
    expect(await ftsMatches("invoice")).toHaveLength(1);

    await env.DB.prepare("UPDATE chunks SET content = 'Renamed to Quorvex' WHERE document_id = ?1").bind(id).run();
    expect(await ftsMatches("zephyrion")).toEqual([]);
    expect(await ftsMatches("quorvex")).toEqual(["Renamed to Quorvex"]);

    await env.DB.prepare("DELETE FROM chunks WHERE document_id = ?1").bind(id).run();
    expect(await ftsMatches("quorvex")).toEqual([]);
  });

  it("deleting a document cascades to its chunks and their FTS rows", async () => {
    await env.DB.exec("PRAGMA foreign_keys = ON");
    const id = await insertDocument("schema/cascade.md");
    await insertChunk(id, 1, 0, "Xylophonic cascade text");
    await env.DB.prepare("DELETE FROM documents WHERE id = ?1").bind(id).run();
    const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(id).first<{ n: number }>();
    expect(left!.n).toBe(0);
    expect(await ftsMatches("xylophonic")).toEqual([]);
  });

  it("keeps the tag index in step with chunk tags on insert, update, delete and cascade", async () => {
    await env.DB.exec("PRAGMA foreign_keys = ON");
    const id = await insertDocument("schema/tags.md");
    await insertChunk(id, 1, 0, "Tagged text");
    const tagsOf = async () =>
      (
        await env.DB.prepare(
          "SELECT t.tag FROM chunk_tags t JOIN chunks c ON c.id = t.chunk_id WHERE c.document_id = ?1 ORDER BY t.tag",
        ).bind(id).all<{ tag: string }>()
      ).results.map((r) => r.tag);
    expect(await tagsOf()).toEqual([]);

    const setTags = (tags: string) => env.DB.prepare("UPDATE chunks SET tags = ?2 WHERE document_id = ?1").bind(id, tags).run();
    await setTags('["search", "invoices", "search", 7]');
    expect(await tagsOf()).toEqual(["invoices", "search"]);
    await setTags('["billing"]');
    expect(await tagsOf()).toEqual(["billing"]);
    // Not JSON: no tags, and the write itself still succeeds.
    await setTags("billing");
    expect(await tagsOf()).toEqual([]);

    await setTags('["billing"]');
    await env.DB.prepare("DELETE FROM documents WHERE id = ?1").bind(id).run();
    const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunk_tags WHERE tag = 'billing'").first<{ n: number }>();
    expect(left!.n).toBe(0);
  });

  it("moves the served-rows marker on every write that changes a served chunk row, and on no other", async () => {
    await env.DB.exec("PRAGMA foreign_keys = ON");
    const marker = async () =>
      (await env.DB.prepare("SELECT generation FROM served_state WHERE id = 1").first<{ generation: number }>())!.generation;
    const moves = async (sql: string, ...params: unknown[]) => {
      const before = await marker();
      await env.DB.prepare(sql).bind(...params).run();
      return (await marker()) !== before;
    };
    const id = await insertDocument("schema/served.md");
    // A generation being written is not served: neither its chunks nor status updates move it.
    await insertChunk(id, 1, 0, "Staged text");
    expect(await moves("UPDATE documents SET status = 'processing', step = 'embed', updated_at = 2 WHERE id = ?1", id)).toBe(false);
    // The two-phase commit's flip does; so does a write into the live generation.
    expect(await moves("UPDATE documents SET active_version = 1, status = 'ready' WHERE id = ?1", id)).toBe(true);
    expect(await moves("UPDATE chunks SET content = 'Live text' WHERE document_id = ?1 AND version = 1", id)).toBe(true);
    expect(
      await moves(
        `INSERT INTO chunks (document_id, version, chunk_index, heading_path, content, token_count,
           start_byte, end_byte, start_line, end_line, vector_id, created_at)
         VALUES (?1, 1, 1, '', 'More live text', 1, 0, 1, 1, 1, ?2, 1)`,
        id,
        `${id}:1:1`,
      ),
    ).toBe(true);
    // The next generation is staged, flipped, then the previous one dropped: only the flip moves it.
    await insertChunk(id, 2, 0, "Next text");
    expect(await moves("UPDATE documents SET active_version = 2 WHERE id = ?1", id)).toBe(true);
    expect(await moves("DELETE FROM chunks WHERE document_id = ?1 AND version = 1", id)).toBe(false);
    expect(await moves("UPDATE documents SET title = 'Renamed' WHERE id = ?1", id)).toBe(true);
    const company = await env.DB.prepare(
      "INSERT INTO companies (slug, name, created_at, updated_at) VALUES ('served-co', 'Served', 1, 1) RETURNING id",
    ).first<{ id: number }>();
    expect(await moves("UPDATE documents SET company_id = ?2 WHERE id = ?1", id, company!.id)).toBe(true);
    expect(await moves("UPDATE companies SET updated_at = 5 WHERE id = ?1", company!.id)).toBe(false);
    expect(await moves("UPDATE companies SET slug = 'served-co-2' WHERE id = ?1", company!.id)).toBe(true);
    // Deletion (tombstone, or the row itself).
    expect(await moves("UPDATE documents SET status = 'deleted', active_version = NULL WHERE id = ?1", id)).toBe(true);
    expect(await moves("DELETE FROM documents WHERE id = ?1", id)).toBe(false);
  });

  it("rejects an unknown document status", async () => {
    await expect(
      env.DB.prepare("INSERT INTO documents (key, status, created_at, updated_at) VALUES ('x', 'weird', 1, 1)").run(),
    ).rejects.toThrow(/CHECK constraint failed/);
  });
});
