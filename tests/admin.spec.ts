// The admin API: bearer token, upload → R2 + queue → ready, status, listing,
// manual processing and deletion. Each request goes through the real local
// queue to the consumer, like an R2 notification would.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, ADMIN_TOKEN as TOKEN, sha256, uniqueKey, waitForStatus } from "./support";

describe("admin API", () => {
  it("refuses every route without a valid token and does nothing", async () => {
    const key = uniqueKey("acme/secret.md");
    for (const token of [null, "wrong-token", ""]) {
      for (const [method, path] of [
        ["PUT", `/admin/documents/${key}`],
        ["DELETE", `/admin/documents/${key}`],
        ["POST", `/admin/documents/${key}/process`],
        ["GET", `/admin/documents/${key}`],
        ["GET", "/admin/documents"],
        ["GET", "/admin/companies"],
        ["POST", "/admin/companies"],
        ["POST", "/admin/legacy-ids/documents"],
        ["GET", `/admin/objects/${key}`],
        ["GET", `/admin/documents/${key}/runs`],
        ["GET", "/admin/metrics"],
        ["GET", "/admin/metrics/versions"],
        ["GET", "/admin/alerts"],
        ["GET", "/admin/dead-letters"],
        ["POST", "/admin/dead-letters/1/replay"],
      ]) {
        const res = await admin(path, { method, body: method === "PUT" ? "# Secret" : undefined }, token);
        expect(res.status, `${method} ${path} with ${token}`).toBe(401);
        expect(((await res.json()) as any).error.code).toBe("unauthorized");
      }
    }
    expect(await env.DOCUMENTS.head(key)).toBeNull();
    expect(await env.DB.prepare("SELECT 1 FROM documents WHERE key = ?1").bind(key).first()).toBeNull();
  });

  it("uploads a document that becomes ready, with its status and in the listing", async () => {
    const key = uniqueKey("acme/upload.md");
    const markdown = "# Upload\n\nUploaded through the admin API.\n";
    const put = await admin(`/admin/documents/${key}`, {
      method: "PUT",
      body: markdown,
      headers: { "x-content-sha256": await sha256(markdown) },
    });
    expect(put.status).toBe(202);
    const body: any = await put.json();
    expect(body).toMatchObject({ key, sha256: await sha256(markdown), size: markdown.length, status: "queued" });
    const object = await env.DOCUMENTS.head(key);
    expect(object!.customMetadata).toEqual({ sha256: body.sha256 });

    await waitForStatus(key, ["ready"]);
    const status: any = await (await admin(`/admin/documents/${key}`)).json();
    expect(status).toMatchObject({ key, status: "ready", sha256: body.sha256, chunk_count: 1, title: "Upload" });
    expect(status.active_version).toBeGreaterThan(0);

    const listed: any = await (await admin(`/admin/documents?status=ready&prefix=${encodeURIComponent(key)}`)).json();
    expect(listed.documents.map((d: any) => d.key)).toEqual([key]);
    expect(listed.cursor).toBeNull();
  });

  it("pages the listing with a cursor", async () => {
    const prefix = uniqueKey("paging/");
    const keys = [`${prefix}a.md`, `${prefix}b.md`, `${prefix}c.md`];
    for (const key of keys) {
      expect((await admin(`/admin/documents/${key}`, { method: "PUT", body: `# ${key}` })).status).toBe(202);
    }
    const seen: string[] = [];
    let cursor = "";
    for (let page = 0; page < 5; page++) {
      const res: any = await (await admin(`/admin/documents?limit=2&prefix=${encodeURIComponent(prefix)}&cursor=${encodeURIComponent(cursor)}`)).json();
      seen.push(...res.documents.map((d: any) => d.key));
      if (!res.cursor) break;
      cursor = res.cursor;
    }
    expect(seen).toEqual(keys);
  });

  it("rejects bad uploads before storing anything", async () => {
    const key = uniqueKey("acme/bad.md");
    const binary = await admin(`/admin/documents/${key}`, { method: "PUT", body: new Uint8Array([0, 159, 146, 150]) });
    expect(binary.status).toBe(422);
    expect(((await binary.json()) as any).error.code).toBe("invalid_document");

    const mismatch = await admin(`/admin/documents/${key}`, {
      method: "PUT",
      body: "# Hello",
      headers: { "x-content-sha256": "00".repeat(32) },
    });
    expect(mismatch.status).toBe(400);
    expect(((await mismatch.json()) as any).error.code).toBe("sha256_mismatch");

    const traversal = await admin(`/admin/documents/a/..%2F..%2Fetc/passwd.md`, { method: "PUT", body: "# x" });
    expect(traversal.status).toBe(400);
    expect(((await traversal.json()) as any).error.code).toBe("bad_key");

    expect(await env.DOCUMENTS.head(key)).toBeNull();
    const badStatus = await admin("/admin/documents?status=weird");
    expect(badStatus.status).toBe(400);
  });

  it("refuses an oversized upload with 413, from its Content-Length or while reading it, storing nothing", async () => {
    const limit = 10 * 1024 * 1024;
    const declaredKey = uniqueKey("acme/too-big.md");
    const declared = await admin(`/admin/documents/${declaredKey}`, { method: "PUT", body: new Uint8Array(limit + 1).fill(65) });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).error.code).toBe("payload_too_large");
    expect(await env.DOCUMENTS.head(declaredKey)).toBeNull();

    // No Content-Length: a stream of 1 MiB chunks, cut off once over the limit.
    const streamedKey = uniqueKey("acme/too-big-stream.md");
    let sent = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent > limit + 2 * 1024 * 1024) return controller.close();
        sent += 1024 * 1024;
        controller.enqueue(new Uint8Array(1024 * 1024).fill(66));
      },
    });
    const streamed = await admin(`/admin/documents/${streamedKey}`, { method: "PUT", body, duplex: "half" } as any);
    expect(streamed.status).toBe(413);
    expect(await env.DOCUMENTS.head(streamedKey)).toBeNull();
  });

  it("re-processes on demand with force, and deletes", async () => {
    const key = uniqueKey("acme/manual.md");
    await admin(`/admin/documents/${key}`, { method: "PUT", body: "# Manual\n\nRun me again.\n" });
    const first = await waitForStatus(key, ["ready"]);

    const again = await admin(`/admin/documents/${key}/process`, { method: "POST", body: JSON.stringify({ force: true }) });
    expect(again.status).toBe(202);
    await expect.poll(async () => {
      const row: any = await env.DB.prepare("SELECT active_version FROM documents WHERE key = ?1").bind(key).first();
      return row.active_version;
    }, { timeout: 20_000 }).toBeGreaterThan(first.active_version);
    const runs: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM processing_runs WHERE document_key = ?1 AND status = 'ready'").bind(key).first();
    expect(runs.n).toBe(2);

    const del = await admin(`/admin/documents/${key}`, { method: "DELETE" });
    expect(del.status).toBe(202);
    expect(await env.DOCUMENTS.head(key)).toBeNull();
    await waitForStatus(key, ["deleted"]);
    const chunks: any = await env.DB.prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1").bind(first.id).first();
    expect(chunks.n).toBe(0);

    const missing = await admin(`/admin/documents/${key}/process`, { method: "POST" });
    expect(missing.status).toBe(404);
  });
});
