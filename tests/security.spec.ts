// Security suite, part 1 — the admin auth matrix: every admin route × every
// method × missing, wrong and near-miss credentials, plus path tricks that
// try to reach an admin route around the prefix check. Nothing may answer
// 2xx, nothing may change (D1 row counts, R2 objects), and no admin answer
// may carry CORS headers. The number of cases is printed.
import { env, SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, ingestReady, uniqueKey } from "./support";

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/** A credential a client might send: an Authorization header and/or a query string. */
interface Credential {
  name: string;
  header?: string;
  query?: string;
}

const oneCharOff = ADMIN_TOKEN.slice(0, -1) + (ADMIN_TOKEN.endsWith("1") ? "2" : "1");

/** Everything but the exact `Bearer <token>` form. */
const BAD_CREDENTIALS: Credential[] = [
  { name: "none" },
  { name: "empty header", header: "" },
  { name: "wrong token", header: "Bearer wrong-token" },
  { name: "empty bearer", header: "Bearer " },
  { name: "scheme only", header: "Bearer" },
  { name: "one char off", header: `Bearer ${oneCharOff}` },
  { name: "one char short", header: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` },
  { name: "one char extra", header: `Bearer ${ADMIN_TOKEN}x` },
  { name: "token prefix", header: `Bearer ${ADMIN_TOKEN.slice(0, 8)}` },
  { name: "token upper-cased", header: `Bearer ${ADMIN_TOKEN.toUpperCase()}` },
  { name: "lower-case scheme", header: `bearer ${ADMIN_TOKEN}` },
  { name: "upper-case scheme", header: `BEARER ${ADMIN_TOKEN}` },
  { name: "two spaces", header: `Bearer  ${ADMIN_TOKEN}` },
  { name: "tab separator", header: `Bearer\t${ADMIN_TOKEN}` },
  { name: "space inside token", header: `Bearer ${ADMIN_TOKEN.slice(0, 5)} ${ADMIN_TOKEN.slice(5)}` },
  { name: "no scheme", header: ADMIN_TOKEN },
  { name: "token twice", header: `Bearer ${ADMIN_TOKEN} ${ADMIN_TOKEN}` },
  { name: "basic user:token", header: `Basic ${btoa(`admin:${ADMIN_TOKEN}`)}` },
  { name: "basic token", header: `Basic ${btoa(ADMIN_TOKEN)}` },
  { name: "token scheme", header: `Token ${ADMIN_TOKEN}` },
  { name: "query token", query: `token=${ADMIN_TOKEN}` },
  { name: "query access_token", query: `access_token=${ADMIN_TOKEN}` },
  { name: "query authorization", query: `authorization=${encodeURIComponent(`Bearer ${ADMIN_TOKEN}`)}` },
];

/**
 * Counts of every D1 table (FTS shadow tables follow `chunks`) and R2's
 * objects. `metric_points` is left out: every request, refused or not,
 * records its own data point by design.
 */
async function snapshot(): Promise<Record<string, unknown>> {
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%' AND name NOT LIKE 'chunks_fts%' AND name != 'metric_points' ORDER BY name",
  ).all<{ name: string }>();
  const state: Record<string, unknown> = {};
  for (const { name } of tables.results) {
    const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM "${name}"`).first<{ n: number }>();
    state[name] = row!.n;
  }
  const docs = await env.DB.prepare("SELECT key, status, sha256, active_version FROM documents ORDER BY key").all();
  state.documents_rows = docs.results;
  const objects = await env.DOCUMENTS.list();
  state.r2 = objects.objects.map((o) => `${o.key}@${o.etag}`).sort();
  return state;
}

function send(path: string, method: string, credential: Credential): Promise<Response> {
  const headers = new Headers({ origin: "https://evil.example", "content-type": "application/json" });
  if (credential.header !== undefined) headers.set("authorization", credential.header);
  const url = `https://svc.test${path}${credential.query ? (path.includes("?") ? "&" : "?") + credential.query : ""}`;
  const body = ["POST", "PUT", "PATCH", "DELETE"].includes(method)
    ? JSON.stringify({ ids: ["1:1:0"], vectors: [], vector: [0.1], top_k: 1, text: "# Injected\n\nowned" })
    : undefined;
  return SELF.fetch(url, { method, headers, body, redirect: "manual" });
}

/**
 * Status and CORS check shared by every case; returns a failure line or null.
 * A path that the URL parser leaves under `/api/` (`/api/admin/x`) is a
 * public 404 or a CORS preflight, which carry CORS headers like any public
 * answer; anything else must not.
 */
async function check(what: string, path: string, res: Response, allowed: (status: number) => boolean): Promise<string | null> {
  const status = res.status;
  const cors = res.headers.get("access-control-allow-origin");
  await res.body?.cancel();
  const publicPrefix = new URL(`https://svc.test${path}`).pathname.startsWith("/api/");
  if (publicPrefix && what.startsWith("OPTIONS ") && status === 204) return null;
  if (status >= 200 && status < 300) return `${what}: ${status} (2xx)`;
  if (status >= 500) return `${what}: ${status} (5xx)`;
  if (!allowed(status)) return `${what}: unexpected ${status}`;
  if (cors !== null && !publicPrefix) return `${what}: Access-Control-Allow-Origin ${cors} on an admin answer`;
  return null;
}

describe("admin auth matrix", () => {
  let key: string;
  let routes: string[];

  beforeAll(async () => {
    // A real document, so that DELETE, PUT and process would have something to change.
    key = uniqueKey("secure/target.md");
    await ingestReady(key, "---\ncompany: secure\n---\n# Target\n\nA document the matrix must not touch.\n");
    // The admin routes as the Worker declares them (its one route table),
    // parameters filled with real values; plus a key with no document and a
    // path no route has.
    const listing = await SELF.fetch("https://svc.test/admin", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(listing.status).toBe(200);
    const table = ((await listing.json()) as { routes: { method: string; path: string; access: string }[] }).routes;
    const declared = table
      .filter((r) => r.access === "admin")
      .map((r) => r.path.replace("{key}", key).replace("{id}", "1"));
    expect(declared.length).toBeGreaterThanOrEqual(20);
    routes = [...new Set([...declared, "/admin/documents/companies/nobody/new.md", "/admin/x"])];
  }, 60_000);

  it("refuses every route × method × bad credential with 401 and changes nothing", async () => {
    const before = await snapshot();
    const failures: string[] = [];
    let cases = 0;
    for (const route of routes) {
      for (const method of METHODS) {
        for (const credential of BAD_CREDENTIALS) {
          cases += 1;
          const res = await send(route, method, credential);
          const failure = await check(`${method} ${route} [${credential.name}]`, route, res, (s) => s === 401);
          if (failure) failures.push(failure);
        }
      }
    }
    console.log(`[security] auth matrix: ${cases} cases (${routes.length} routes × ${METHODS.length} methods × ${BAD_CREDENTIALS.length} credentials)`);
    expect(failures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  }, 120_000);

  it("path tricks never reach an admin handler without the exact token, and never answer 2xx", async () => {
    const tricks = (route: string) => {
      const rest = route.slice("/admin".length);
      return [
        `/${route}`,
        `//admin${rest}`,
        `/ADMIN${rest}`,
        `/Admin${rest}`,
        `/admin%2F${rest.slice(1)}`,
        `/admin%2f${rest.slice(1)}`,
        `/%61dmin${rest}`,
        `/api/%2e%2e${route}`,
        `/api/%2E%2E${route}`,
        `/api/..${route}`,
        `/api/./..${route}`,
        `/api${route}`,
        `${route}/`,
        `${route}//`,
        `${route}/.`,
        `${route}%00`,
        `${route};x=1`,
        `/admin/./${rest.slice(1)}`,
        `/admin\\${rest.slice(1)}`,
      ];
    };
    const credentials: Credential[] = [
      { name: "none" },
      { name: "one char off", header: `Bearer ${oneCharOff}` },
      { name: "query token", query: `token=${ADMIN_TOKEN}` },
    ];
    const before = await snapshot();
    const failures: string[] = [];
    let cases = 0;
    for (const route of routes.filter((r) => r !== "/admin")) {
      for (const path of tricks(route)) {
        for (const method of METHODS) {
          for (const credential of credentials) {
            cases += 1;
            const res = await send(path, method, credential);
            // 401 when the URL normalises to an admin path, 404/405 otherwise;
            // OPTIONS under /api/ is a CORS preflight (204 would be 2xx: not allowed
            // unless it names no admin route, which `check` would flag).
            const failure = await check(`${method} ${path} [${credential.name}]`, path, res, (s) => [400, 401, 404, 405].includes(s));
            if (failure) failures.push(failure);
          }
        }
      }
    }
    console.log(`[security] path tricks: ${cases} cases`);
    expect(failures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  }, 120_000);

  it("with the valid token, tricks that do not normalise to an admin path are not admin routes", async () => {
    const valid: Credential = { name: "valid", header: `Bearer ${ADMIN_TOKEN}` };
    const failures: string[] = [];
    let cases = 0;
    const before = await snapshot();
    for (const path of ["//admin/documents", "/ADMIN/documents", "/admin%2Fdocuments", "/api/admin/documents", "/Admin/reconcile/runs", "//admin/index"]) {
      for (const method of ["GET", "POST", "PUT", "DELETE"]) {
        cases += 1;
        const res = await send(path, method, valid);
        const failure = await check(`${method} ${path} [valid token]`, path, res, (s) => [404, 405].includes(s));
        if (failure) failures.push(failure);
      }
    }
    console.log(`[security] valid-token non-admin paths: ${cases} cases`);
    expect(failures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  it("the exact token still works (the matrix is not vacuous)", async () => {
    const res = await SELF.fetch(`https://svc.test/admin/documents/${key}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, origin: "https://evil.example" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(((await res.json()) as any).key).toBe(key);
  });
});
