// The daily reconciliation cron: runs, takes inventory, records its run.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { runCron } from "./support";

async function countObjects(): Promise<number> {
  let n = 0;
  let cursor: string | undefined;
  do {
    const page = await env.DOCUMENTS.list({ cursor });
    n += page.objects.length;
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return n;
}

describe("scheduled reconciliation", () => {
  it("records a finished run with the bucket and document inventory", async () => {
    await env.DOCUMENTS.put("companies/acme/one.md", "# One");
    await env.DOCUMENTS.put("companies/acme/two.md", "# Two");
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO documents (key, status, created_at, updated_at) VALUES ('companies/acme/one.md', 'ready', ?1, ?1)",
    ).bind(now).run();

    await runCron();

    const run = await env.DB.prepare(
      "SELECT trigger, status, objects_seen, documents_seen, finished_at >= started_at AS ordered FROM reconcile_runs ORDER BY id DESC LIMIT 1",
    ).first();
    expect(run).toEqual({ trigger: "cron", status: "done", objects_seen: 2, documents_seen: 1, ordered: 1 });
  });

  it("pages through a bucket larger than one R2 list page", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconcile_runs").first<{ n: number }>();
    const existing = await countObjects();
    const puts = [];
    for (let i = 0; i < 1005; i++) puts.push(env.DOCUMENTS.put(`bulk/doc-${i}.md`, `# ${i}`));
    await Promise.all(puts);

    await runCron();

    const run = await env.DB.prepare("SELECT status, objects_seen FROM reconcile_runs ORDER BY id DESC LIMIT 1").first();
    expect(run).toEqual({ status: "done", objects_seen: existing + 1005 });
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconcile_runs").first<{ n: number }>();
    expect(after!.n).toBe(before!.n + 1);
  });
});
