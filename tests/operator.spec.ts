// What the operator page reads, through the built Worker: availability
// against its objective (rolled up by the cron from the request points,
// counted live for yesterday and today, kept 30 days although the points are
// not) and readers' ratings (`POST /api/feedback`, `GET /admin/feedback`).
// Points are written straight into `metric_points` with chosen times, so a
// day's count is known exactly; the requests' own points land "now".
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, runCron } from "./support";

const DAY = 86_400_000;
const FIVE_MINUTES = "*/5 * * * *";

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

async function point(at: number, name: string, status: number) {
  await env.DB.prepare(
    "INSERT INTO metric_points (at, kind, name, outcome, duration_ms, status) VALUES (?1, 'request', ?2, ?3, 5, ?4)",
  )
    .bind(at, name, status >= 500 ? "error" : "ok", status)
    .run();
}

async function availability(): Promise<any> {
  const res = await admin("/admin/availability");
  expect(res.status).toBe(200);
  return res.json();
}

function postFeedback(body: unknown, init: RequestInit = {}) {
  return SELF.fetch("https://svc.test/api/feedback", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

describe("availability", () => {
  it("counts public requests per day without 5xx, outlives the points, and leaves admin and unrouted requests out", async () => {
    await env.DB.batch([env.DB.prepare("DELETE FROM metric_points"), env.DB.prepare("DELETE FROM availability_days")]);
    const now = Date.now();
    const twoDaysAgo = now - 2 * DAY;
    // Two days ago: 4 public requests, one 5xx; an admin 500 and an unrouted 404 that do not count.
    for (const status of [200, 200, 500, 200]) await point(twoDaysAgo, "POST /api/chat", status);
    await point(twoDaysAgo, "GET /admin/metrics", 500);
    await point(twoDaysAgo, "GET (unrouted)", 404);

    // The live count covers only yesterday and today: two days ago is not rolled up yet.
    let report = await availability();
    expect(report.per_day.find((d: any) => d.day === utcDay(twoDaysAgo))).toMatchObject({ requests: 0, errors: 0, availability: null });

    // A cron run rolls up the day it runs on (and the day before). Play a run
    // on that day: move its points to today, roll up, then relabel the day.
    await env.DB.prepare("UPDATE metric_points SET at = ?1 WHERE at = ?2").bind(now, twoDaysAgo).run();
    await runCron(FIVE_MINUTES);
    const rolled = await env.DB.prepare("SELECT day, requests, errors FROM availability_days WHERE day = ?1").bind(utcDay(now)).first<any>();
    expect(rolled).toMatchObject({ requests: 4, errors: 1 });
    // Rewrite the rolled day as two days ago and drop the points: the report still counts them.
    await env.DB.batch([
      env.DB.prepare("UPDATE availability_days SET day = ?1 WHERE day = ?2").bind(utcDay(twoDaysAgo), utcDay(now)),
      env.DB.prepare("DELETE FROM metric_points"),
    ]);
    report = await availability();
    expect(report.per_day.find((d: any) => d.day === utcDay(twoDaysAgo))).toMatchObject({ requests: 4, errors: 1, availability: 0.75, met: false });

    // Today's requests count live, before any cron run: this call's own point is written after it answers.
    for (let i = 0; i < 3; i++) expect((await SELF.fetch("https://svc.test/api/health")).status).toBe(200);
    await expect.poll(async () => (await availability()).per_day[0].requests, { timeout: 5_000 }).toBeGreaterThanOrEqual(3);
    report = await availability();
    expect(report.per_day[0]).toMatchObject({ day: utcDay(Date.now()), errors: 0, availability: 1, met: true });
    expect(report).toMatchObject({ objective_percent: 99.9, window_days: 30, errors: 1 });
    expect(report.per_day).toHaveLength(30);
    expect(report.requests).toBe(4 + report.per_day[0].requests);
    // 1 error against a budget of 0.1 % of the requests: overspent.
    expect(report.budget_errors).toBeCloseTo(report.requests * 0.001, 9);
    expect(report.budget_left).toBeLessThan(0);
    expect(report.fast_burn).toHaveLength(2);
    expect(report.fast_burn.map((r: any) => [r.long_ms / 60_000, r.short_ms / 60_000, r.rate])).toEqual([
      [60, 5, 14.4],
      [360, 30, 6],
    ]);
    expect(report.fast_burn.every((r: any) => r.holds === false)).toBe(true);
  });

  it("a roll-up never shrinks a day, and the daily run drops days beyond the 30-day window", async () => {
    const now = Date.now();
    const old = utcDay(now - 31 * DAY);
    const inside = utcDay(now - 29 * DAY);
    await env.DB.batch([
      env.DB.prepare("DELETE FROM metric_points"),
      env.DB.prepare("DELETE FROM availability_days"),
      env.DB.prepare("INSERT INTO availability_days (day, requests, errors, updated_at) VALUES (?1, 10, 0, 0), (?2, 10, 0, 0), (?3, 50, 2, 0)").bind(
        old,
        inside,
        utcDay(now),
      ),
    ]);
    // Only 1 point of today is left (the others pruned): the stored 50 stand.
    await point(now, "POST /api/search", 200);
    await runCron(FIVE_MINUTES);
    expect(await env.DB.prepare("SELECT requests, errors FROM availability_days WHERE day = ?1").bind(utcDay(now)).first()).toEqual({ requests: 50, errors: 2 });
    await runCron("17 3 * * *");
    const days = (await env.DB.prepare("SELECT day FROM availability_days ORDER BY day").all<any>()).results.map((r) => r.day);
    expect(days).not.toContain(old);
    expect(days).toContain(inside);
  });
});

describe("reader feedback", () => {
  it("stores a rating with what the reader saw and typed, and the operator lists the unhelpful ones", async () => {
    const answerId = `a${Date.now().toString(16)}`;
    const res = await postFeedback(
      {
        answer_id: answerId,
        helpful: false,
        question: "Which database does Northwind use for orders?",
        sources: ["companies/northwind/stack.md", "companies/northwind/stack.md"],
        comment: "It cited the wrong service.",
      },
      { headers: { "content-type": "application/json", "CF-Connecting-IP": "203.0.113.9", "User-Agent": "reader-browser" } },
    );
    expect(res.status).toBe(201);
    const { id } = await res.json<any>();
    expect(id).toBeGreaterThan(0);
    expect((await postFeedback({ answer_id: `${answerId}-ok`, helpful: true, question: "Who founded Acme?" })).status).toBe(201);

    const unhelpful = await (await admin("/admin/feedback?helpful=false&limit=5")).json<any>();
    const mine = unhelpful.feedback.find((f: any) => f.answer_id === answerId);
    expect(mine).toMatchObject({
      id,
      helpful: false,
      question: "Which database does Northwind use for orders?",
      sources: ["companies/northwind/stack.md"],
      comment: "It cited the wrong service.",
    });
    expect(unhelpful.feedback.every((f: any) => f.helpful === false)).toBe(true);
    const all = await (await admin("/admin/feedback")).json<any>();
    expect(all.feedback.map((f: any) => f.answer_id)).toEqual(expect.arrayContaining([answerId, `${answerId}-ok`]));
    // Nothing about the reader beyond what they typed: no address, no agent.
    const row = await env.DB.prepare("SELECT * FROM feedback WHERE id = ?1").bind(id).first<any>();
    expect(Object.keys(row).sort()).toEqual(["answer_id", "at", "comment", "helpful", "id", "question", "sources"]);
    expect(JSON.stringify(row)).not.toMatch(/203\.0\.113\.9|reader-browser/);
  });

  it("refuses bad ratings with a clear 400, an oversized one with 413, and stores none of them", async () => {
    const before = (await env.DB.prepare("SELECT COUNT(*) AS n FROM feedback").first<any>()).n;
    const cases: [unknown, string][] = [
      ["{not json", "invalid_feedback"],
      [{ answer_id: "x", helpful: "yes", question: "q" }, "invalid_feedback"],
      [{ answer_id: "x", helpful: true, question: "q", email: "reader@example.com" }, "invalid_feedback"],
      [{ answer_id: "x", helpful: true, question: "   " }, "invalid_feedback"],
      [{ answer_id: "x", helpful: true, question: "q", sources: ["../etc/passwd"] }, "invalid_feedback"],
      [{ answer_id: "x", helpful: true, question: "q", comment: "c".repeat(1_001) }, "invalid_feedback"],
    ];
    for (const [body, code] of cases) {
      const res = await postFeedback(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const error = (await res.json<any>()).error;
      expect(error.code).toBe(code);
      expect(error.message).toMatch(/feedback/);
    }
    const huge = await postFeedback({ answer_id: "x", helpful: true, question: "q", comment: "c".repeat(20_000) });
    expect(huge.status).toBe(413);
    await huge.arrayBuffer();
    const wrongMethod = await SELF.fetch("https://svc.test/api/feedback");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("Allow")).toBe("POST, OPTIONS");
    await wrongMethod.arrayBuffer();
    expect((await admin("/admin/feedback?helpful=maybe")).status).toBe(400);
    expect((await admin("/admin/feedback", {}, null)).status).toBe(401);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM feedback").first<any>()).n).toBe(before);
  });
});
