import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { IMPL } from "./vector_state";

describe("GET /api/health", () => {
  it("reports every required binding present and the offline providers", async () => {
    const res = await SELF.fetch("https://svc.test/api/health");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body: any = await res.json();
    expect(body.status).toBe("ok");
    expect(body.environment).toBe("local");
    const names = body.bindings.map((b: any) => b.name);
    for (const name of ["DB", "DOCUMENTS", "INGEST_QUEUE", "INGEST_DLQ", "DOCUMENT_PROCESSOR"]) {
      expect(names).toContain(name);
    }
    expect(body.bindings.every((b: any) => b.present)).toBe(true);
    expect(body.providers).toEqual({
      embedding: "offline",
      chat: "offline",
      vector_index: IMPL,
      dimensions: 1536,
    });
  });

  it("names the Worker version answering, from the version_metadata binding", async () => {
    const body: any = await (await SELF.fetch("https://svc.test/api/health")).json();
    // Locally the runtime makes up a version: a random UUID, no tag, its start time.
    expect(body.version.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(body.version.tag).toBeNull();
    expect(Date.parse(body.version.timestamp)).toBeLessThanOrEqual(Date.now());
    expect(body.bindings).toContainEqual({ name: "CF_VERSION_METADATA", kind: "version_metadata", present: true });
    // The same version answers the next request.
    const again: any = await (await SELF.fetch("https://svc.test/api/health")).json();
    expect(again.version).toEqual(body.version);
    // The crate version, the same in every upload of one build.
    expect(body.service_version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("answers other methods with a JSON 405", async () => {
    const res = await SELF.fetch("https://svc.test/api/health", { method: "POST" });
    expect(res.status).toBe(405);
    const body: any = await res.json();
    expect(body.error.code).toBe("method_not_allowed");
  });

  it("answers unknown routes with a JSON 404", async () => {
    const res = await SELF.fetch("https://svc.test/nope");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: { code: "not_found", message: "no route for GET /nope" },
    });
  });
});
