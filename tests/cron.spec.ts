// The daily reconciliation cron: starts a run that walks the bucket and the
// documents table, enqueues repairs and records one summary.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { runCron, waitForStatus } from "./support";

async function latestRun(): Promise<any> {
  return env.DB.prepare("SELECT * FROM reconcile_runs ORDER BY id DESC LIMIT 1").first();
}

async function waitForDone(): Promise<any> {
  let run: any = null;
  await expect.poll(async () => (run = await latestRun())?.status, { timeout: 20_000 }).toBe("done");
  return run;
}

describe("scheduled reconciliation", () => {
  it("records a finished run with the inventory and heals what it found", async () => {
    await env.DOCUMENTS.put("companies/acme/one.md", "# One\n\nThe first document.\n");
    await env.DOCUMENTS.put("companies/acme/two.md", "# Two\n\nThe second document.\n");
    const now = Date.now();
    // A row claiming `ready` for an object version it never processed.
    await env.DB.prepare(
      "INSERT INTO documents (key, status, etag, created_at, updated_at) VALUES ('companies/acme/one.md', 'ready', 'not-the-etag', ?1, ?1)",
    ).bind(now).run();

    await runCron();

    const run = await waitForDone();
    expect(run).toMatchObject({ trigger: "cron", status: "done", objects_seen: 2, documents_seen: 1 });
    expect(run.finished_at).toBeGreaterThanOrEqual(run.started_at);
    expect(JSON.parse(run.enqueued)).toEqual({ "reconcile:changed": 1, "reconcile:missing": 1 });
    expect(JSON.parse(run.errors)).toEqual([]);
    for (const key of ["companies/acme/one.md", "companies/acme/two.md"]) {
      const doc = await waitForStatus(key, ["ready"]);
      expect(doc.active_version).toBeGreaterThan(0);
    }
  });

  it("starts nothing while another run is in progress", async () => {
    const now = Date.now();
    const running = await env.DB.prepare(
      "INSERT INTO reconcile_runs (trigger, status, started_at, updated_at) VALUES ('admin', 'running', ?1, ?1) RETURNING id",
    ).bind(now).first<{ id: number }>();
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconcile_runs").first<{ n: number }>();

    await runCron();

    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconcile_runs").first<{ n: number }>();
    expect(after!.n).toBe(before!.n);
    await env.DB.prepare("UPDATE reconcile_runs SET status = 'failed' WHERE id = ?1").bind(running!.id).run();
  });
});
