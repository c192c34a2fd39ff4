// A stand-in for Cloudflare's control plane (the REST API under /client/v4 that wrangler
// calls) and for its edge (the deployed Worker's public URL), so the real wrangler can
// provision an account and release versions here. wrangler reads CLOUDFLARE_API_BASE_URL
// (wrangler-dist/cli.js: getCloudflareApiBaseUrl), so pointing it at `api` below is enough.
//
// Owns: the state of one account (D1 databases with real SQLite behind them, R2 buckets and
// their event notifications, queues and consumers, Vectorize indexes and metadata indexes,
// Worker scripts with versions, deployments, secrets, schedules), a log of every call, and
// the documented rules below. Each rule names the page it comes from; none is inferred from
// what our scripts do. Must never invent a rule a page does not state: where a page is silent
// the stand-in accepts.
//
//   [first]      https://developers.cloudflare.com/workers/versions-and-deployments/
//                ("wrangler versions upload" creates a version of an existing Worker; a Worker
//                is created by `wrangler deploy`; wrangler prints "run wrangler deploy first")
//   [do]         https://developers.cloudflare.com/workers/versions-and-deployments/gradual-deployments/with-durable-objects/
//                (Durable Object migrations — new, renamed, deleted classes — cannot be uploaded
//                as a version: API error 10211; they need a non-versioned deploy)
//   [triggers]   https://developers.cloudflare.com/workers/versions-and-deployments/deployment-management/
//                ("To apply changes to a Worker's triggers … use `wrangler triggers deploy`":
//                versions upload/deploy never change cron schedules, queue consumers, routes)
//   [gradual]    https://developers.cloudflare.com/workers/versions-and-deployments/gradual-deployments/
//                (a deployment holds one or two versions; percentages sum to 100; the
//                `Cloudflare-Workers-Version-Overrides: <name>="<version id>"` header routes a
//                request to a version of the active deployment, else it is ignored)
//   [rollbacks]  https://developers.cloudflare.com/workers/versions-and-deployments/rollbacks/
//                ("rollbacks will not be allowed if: A Durable Object migration has occurred
//                between the version in the active deployment and the version selected")
//   [secrets]    https://developers.cloudflare.com/workers/configuration/secrets/
//                (`wrangler secret put` creates and deploys a new version: refused with API error
//                10215 while the latest version is not the one fully deployed; `wrangler versions
//                secret put` uploads a new version with the secret, deploying nothing)
//   [r2-events]  https://developers.cloudflare.com/r2/buckets/event-notifications/
//                (prerequisites: a queue *with a consumer Worker*; rules name actions
//                PutObject/CopyObject/CompleteMultipartUpload/DeleteObject/LifecycleDeletion)
//   [time-travel] https://developers.cloudflare.com/d1/reference/time-travel/
//                (a bookmark names a point in time; `wrangler d1 time-travel info` prints the
//                current one, `restore --bookmark` goes back to it)
//   [vectorize]  https://developers.cloudflare.com/vectorize/reference/metadata-filtering/
//                (at most 10 metadata indexes; types string, number, boolean)
//
// The edge: `edge` serves the Worker named `edgeScript` as Cloudflare would route it: each
// request goes to one version of the active deployment (by its percentage, or by the version
// override header [gradual]) and is forwarded to `upstream` (the real Worker under `wrangler
// dev`; locally every version is that one build). The edge plays what the platform adds per
// version: `/api/health`'s `version.id` is the routed version (what the version_metadata
// binding reports in production), and `/admin/metrics/versions` answers from the requests
// the edge routed (locally one Worker cannot tell versions apart). Tests make a version slow
// or failing with `faults(versionId, { latencyMs, errorRate })` or `faultNextVersion(…)`.
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { DatabaseSync } from "node:sqlite";

const MAX_METADATA_INDEXES = 10; // [vectorize]
const METADATA_INDEX_TYPES = new Set(["string", "number", "boolean"]); // [vectorize]
const R2_EVENT_ACTIONS = new Set(["PutObject", "CopyObject", "CompleteMultipartUpload", "DeleteObject", "LifecycleDeletion"]); // [r2-events]

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const notFound = (what) => new ApiError(404, 10007, `${what} not found`);

/** Starts the stand-in; resolves to its handles. `upstream` is the real Worker's base URL. */
export async function startCloudflareApi({ accountId = "0123456789abcdef0123456789abcdef", token = "standin-api-token", upstream = null, edgeScript = null, adminToken = null } = {}) {
  const state = {
    d1: new Map(), // uuid -> { uuid, name, created_at, sqlite, bookmarks: [] }
    buckets: new Map(), // name -> { name, creation_date, notifications: Map(queueId -> rules) }
    queues: new Map(), // id -> { queue_id, queue_name, created_on, consumers: [] }
    vectorize: new Map(), // name -> { name, config, created_on, metadataIndexes: [] }
    scripts: new Map(), // name -> script (below)
    subdomain: null,
  };
  const calls = [];
  const faults = new Map(); // version id -> { latencyMs, errorRate }
  const routed = []; // { at, version, path, status, ms }
  let failNext = []; // [{ method, pattern, status, code, message }] injected API failures
  let nextVersionFault = null; // the fault of the next version uploaded

  const api = createServer((req, res) => handleApi(req, res).catch((e) => send(res, 500, envelope(null, [{ code: 10000, message: String(e?.stack ?? e) }]))));
  const edge = createServer((req, res) => handleEdge(req, res).catch((e) => {
    res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "edge", message: String(e?.message ?? e) } }));
  }));
  await Promise.all([api, edge].map((s) => new Promise((r) => s.listen(0, "127.0.0.1", r))));

  function envelope(result, errors = [], extra = {}) {
    return { success: errors.length === 0, errors, messages: [], result, ...extra };
  }
  function send(res, status, body) {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  async function readBody(req) {
    const parts = [];
    for await (const c of req) parts.push(c);
    return Buffer.concat(parts);
  }

  async function handleApi(req, res) {
    const url = new URL(req.url, "http://x");
    const body = await readBody(req);
    const path = url.pathname.replace(/^\/client\/v4/, "");
    const call = { method: req.method, path, query: url.search, at: Date.now() };
    calls.push(call);
    if (req.headers.authorization !== `Bearer ${token}`) {
      return send(res, 403, envelope(null, [{ code: 10000, message: "Authentication error" }]));
    }
    const injected = failNext.findIndex((f) => f.method === req.method && f.pattern.test(path));
    if (injected >= 0) {
      const [f] = failNext.splice(injected, 1);
      call.failed = f.code;
      return send(res, f.status, envelope(null, [{ code: f.code, message: f.message }]));
    }
    try {
      const answer = await route(req.method, path, url.searchParams, body, req.headers["content-type"] ?? "", call);
      if (answer?.raw) return send(res, 200, answer.raw);
      send(res, 200, envelope(answer?.result ?? answer ?? null, [], answer?.result_info ? { result_info: answer.result_info } : {}));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      call.failed = e.code;
      send(res, e.status, envelope(null, [{ code: e.code, message: e.message }]));
    }
  }

  const json = (body) => (body.length ? JSON.parse(body.toString("utf8")) : {});
  const paged = (items, params) => {
    const perPage = Number(params.get("per_page") ?? 1000);
    const page = Number(params.get("page") ?? 1);
    const slice = items.slice((page - 1) * perPage, page * perPage);
    return { result: slice, result_info: { page, per_page: perPage, count: slice.length, total_count: items.length, total_pages: Math.max(1, Math.ceil(items.length / perPage)) } };
  };

  async function route(method, path, params, body, contentType, call) {
    let g;
    const acct = `/accounts/${accountId}`;
    if (!path.startsWith(acct)) {
      if (path === "/user") return { id: "standin", email: "ci@example.com" };
      if (path === "/user/tokens/verify") return { id: "standin", status: "active" };
      if (path === "/memberships") return [{ account: { id: accountId, name: "stand-in" } }];
      if (path === "/accounts") return [{ id: accountId, name: "stand-in" }];
      throw notFound(path);
    }
    const p = path.slice(acct.length);
    const m = (re) => re.exec(p);

    // ---- D1 ---------------------------------------------------------------------------------
    if (p === "/d1/database" && method === "GET") {
      const name = params.get("name");
      const all = [...state.d1.values()].filter((d) => !name || d.name === name).map(d1Info);
      return paged(all, params);
    }
    if (p === "/d1/database" && method === "POST") {
      const { name } = json(body);
      if ([...state.d1.values()].some((d) => d.name === name)) throw new ApiError(400, 7502, `A database with that name already exists: ${name}`);
      const db = { uuid: randomUUID(), name, created_at: new Date().toISOString(), sqlite: new DatabaseSync(":memory:"), bookmarks: [] };
      state.d1.set(db.uuid, db);
      call.created = { d1: name };
      return d1Info(db);
    }
    if ((g = m(/^\/d1\/database\/([^/]+)$/)) && method === "GET") return d1Info(findD1(g[1]));
    if ((g = m(/^\/d1\/database\/([^/]+)\/(query|raw)$/)) && method === "POST") {
      const db = findD1(g[1]);
      const { sql, params: binds = [] } = json(body);
      call.sql = sql.slice(0, 200);
      return runSql(db, sql, binds, g[2] === "raw");
    }
    if ((g = m(/^\/d1\/database\/([^/]+)\/time_travel\/bookmark$/)) && method === "GET") {
      const db = findD1(g[1]);
      return { bookmark: bookmarkOf(db) };
    }
    if ((g = m(/^\/d1\/database\/([^/]+)\/time_travel\/restore$/)) && method === "POST") {
      const db = findD1(g[1]);
      const bookmark = params.get("bookmark");
      const known = db.bookmarks.find((b) => b.bookmark === bookmark);
      if (!known) throw new ApiError(400, 7500, `unknown bookmark ${bookmark}`);
      db.sqlite = new DatabaseSync(":memory:");
      db.sqlite.exec(known.dump);
      return { bookmark, previous_bookmark: bookmarkOf(db), message: "Restored" };
    }

    // ---- R2 ---------------------------------------------------------------------------------
    if (p === "/r2/buckets" && method === "GET") return { buckets: [...state.buckets.values()].map(({ name, creation_date }) => ({ name, creation_date })) };
    if (p === "/r2/buckets" && method === "POST") {
      const { name } = json(body);
      if (state.buckets.has(name)) throw new ApiError(409, 10004, "The bucket you tried to create already exists, and you own it.");
      state.buckets.set(name, { name, creation_date: new Date().toISOString(), notifications: new Map() });
      call.created = { bucket: name };
      return { name };
    }
    if ((g = m(/^\/r2\/buckets\/([^/]+)$/)) && method === "GET") {
      const b = state.buckets.get(decodeURIComponent(g[1]));
      if (!b) throw new ApiError(404, 10006, "The specified bucket does not exist.");
      return { name: b.name, creation_date: b.creation_date };
    }
    if ((g = m(/^\/event_notifications\/r2\/([^/]+)\/configuration$/)) && method === "GET") {
      const b = bucket(g[1]);
      return {
        bucketName: b.name,
        queues: [...b.notifications.entries()].map(([queueId, rules]) => ({ queueId, queueName: state.queues.get(queueId)?.queue_name, rules })),
      };
    }
    if ((g = m(/^\/event_notifications\/r2\/([^/]+)\/configuration\/queues\/([^/]+)$/)) && method === "PUT") {
      const b = bucket(g[1]);
      const q = state.queues.get(g[2]);
      if (!q) throw new ApiError(404, 11000, `queue ${g[2]} does not exist`);
      // [r2-events] prerequisite: the queue has a consumer Worker.
      if (q.consumers.length === 0) throw new ApiError(400, 11015, `queue ${q.queue_name} has no consumer: event notifications need a consumer Worker on the queue first`);
      const { rules = [] } = json(body);
      for (const rule of rules) {
        for (const a of rule.actions ?? []) if (!R2_EVENT_ACTIONS.has(a)) throw new ApiError(400, 11016, `unknown action ${a}`);
      }
      const old = b.notifications.get(q.queue_id) ?? [];
      b.notifications.set(q.queue_id, [...old, ...rules.map((r) => ({ ...r, ruleId: randomUUID(), createdAt: new Date().toISOString() }))]);
      call.created = { notification: `${b.name} -> ${q.queue_name}` };
      return {};
    }

    // ---- Queues -----------------------------------------------------------------------------
    if (p === "/queues" && method === "GET") {
      const names = params.getAll("name");
      const all = [...state.queues.values()].filter((q) => names.length === 0 || names.includes(q.queue_name)).map(queueInfo);
      return paged(all, params);
    }
    if (p === "/queues" && method === "POST") {
      const { queue_name } = json(body);
      if ([...state.queues.values()].some((q) => q.queue_name === queue_name)) throw new ApiError(409, 11009, `A queue with this name already exists: ${queue_name}`);
      const q = { queue_id: randomUUID().replaceAll("-", ""), queue_name, created_on: new Date().toISOString(), consumers: [] };
      state.queues.set(q.queue_id, q);
      call.created = { queue: queue_name };
      return queueInfo(q);
    }
    if ((g = m(/^\/queues\/([^/]+)$/)) && method === "GET") return queueInfo(queueById(g[1]));
    if ((g = m(/^\/queues\/([^/]+)\/consumers$/)) && method === "GET") return queueById(g[1]).consumers;
    if ((g = m(/^\/queues\/([^/]+)\/consumers$/)) && method === "POST") {
      const q = queueById(g[1]);
      const c = json(body);
      const script = c.script_name ?? c.script;
      if (script && !state.scripts.has(script)) throw notFound(`Worker ${script}`);
      if (q.consumers.some((x) => x.script === script)) throw new ApiError(400, 11004, `Queue ${q.queue_name} already has a consumer ${script}`);
      // The API answers with the Worker's name as `script` (wrangler matches on it).
      const { script_name: _, ...rest } = c;
      const consumer = { ...rest, script, consumer_id: randomUUID().replaceAll("-", ""), queue_name: q.queue_name, created_on: new Date().toISOString() };
      q.consumers.push(consumer);
      return consumer;
    }
    if ((g = m(/^\/queues\/([^/]+)\/consumers\/([^/]+)$/)) && method === "PUT") {
      const q = queueById(g[1]);
      const i = q.consumers.findIndex((c) => c.consumer_id === g[2] || c.script === g[2]);
      if (i < 0) throw notFound(`consumer ${g[2]}`);
      const { script_name: _, ...rest } = json(body);
      q.consumers[i] = { ...q.consumers[i], ...rest };
      return q.consumers[i];
    }
    if ((g = m(/^\/queues\/([^/]+)\/consumers\/([^/]+)$/)) && method === "DELETE") {
      const q = queueById(g[1]);
      q.consumers = q.consumers.filter((c) => c.consumer_id !== g[2] && c.script !== g[2]);
      return {};
    }

    // ---- Vectorize --------------------------------------------------------------------------
    if (p === "/vectorize/v2/indexes" && method === "GET") return [...state.vectorize.values()].map(indexInfo);
    if (p === "/vectorize/v2/indexes" && method === "POST") {
      const { name, config, description } = json(body);
      if (state.vectorize.has(name)) throw new ApiError(409, 3002, `vectorize.index.duplicate_name: ${name}`);
      if (!config?.dimensions || !config?.metric) throw new ApiError(400, 1005, "config.dimensions and config.metric are required");
      state.vectorize.set(name, { name, description: description ?? "", config, created_on: new Date().toISOString(), modified_on: new Date().toISOString(), metadataIndexes: [] });
      call.created = { vectorize: name };
      return indexInfo(state.vectorize.get(name));
    }
    if ((g = m(/^\/vectorize\/v2\/indexes\/([^/]+)$/)) && method === "GET") return indexInfo(vindex(g[1]));
    if ((g = m(/^\/vectorize\/v2\/indexes\/([^/]+)\/metadata_index\/list$/)) && method === "GET") return { metadataIndexes: vindex(g[1]).metadataIndexes };
    if ((g = m(/^\/vectorize\/v2\/indexes\/([^/]+)\/metadata_index\/create$/)) && method === "POST") {
      const ix = vindex(g[1]);
      const { propertyName, indexType } = json(body);
      if (!METADATA_INDEX_TYPES.has(indexType)) throw new ApiError(400, 1005, `indexType must be string, number or boolean`);
      if (ix.metadataIndexes.some((x) => x.propertyName === propertyName)) throw new ApiError(409, 3004, `metadata index on ${propertyName} already exists`);
      if (ix.metadataIndexes.length >= MAX_METADATA_INDEXES) throw new ApiError(400, 3005, "at most 10 metadata indexes per index");
      ix.metadataIndexes.push({ propertyName, indexType });
      call.created = { metadataIndex: `${ix.name}.${propertyName}` };
      return { mutationId: randomUUID() };
    }

    // ---- Workers ----------------------------------------------------------------------------
    if (p === "/workers/subdomain" && method === "GET") {
      if (!state.subdomain) throw new ApiError(404, 10007, "workers.api.error.subdomain_not_found");
      return { subdomain: state.subdomain };
    }
    if (p === "/workers/subdomain" && method === "PUT") {
      state.subdomain = json(body).subdomain;
      return { subdomain: state.subdomain };
    }
    if ((g = m(/^\/workers\/services\/([^/]+)$/)) && method === "GET") {
      const s = script(g[1]);
      return { id: s.name, default_environment: { environment: "production", script: scriptInfo(s) }, created_on: s.created_on, modified_on: s.modified_on, environments: [] };
    }
    if ((g = m(/^\/workers\/workers\/([^/]+)$/)) && method === "GET") {
      const s = script(g[1]);
      return { id: s.tag, name: s.name, created_on: s.created_on, updated_on: s.modified_on, subdomain: s.subdomain, tags: [], observability: { enabled: true } };
    }
    if ((g = m(/^\/workers\/workers\/([^/]+)\/versions\/latest$/)) && method === "PATCH") {
      // [secrets] `wrangler versions secret put`: a new version from the latest one with the
      // secrets changed; nothing is deployed.
      const s = script(g[1]);
      const latest = latestVersion(s);
      if (!latest) throw new ApiError(400, 10222, "There are no versions of this Worker");
      const { env = {}, annotations = {} } = json(body);
      const secrets = new Map(latest.secrets);
      for (const [name, value] of Object.entries(env)) {
        if (value === null) secrets.delete(name);
        else secrets.set(name, value.text);
      }
      const v = newVersion(s, { from: latest, source: "secret", annotations, secrets });
      return versionInfo(v);
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)$/)) && method === "PUT") return uploadScript(decodeURIComponent(g[1]), body, contentType, call);
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/settings$/)) && method === "GET") return scriptSettings(script(g[1]));
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/script-settings$/)) && (method === "GET" || method === "PATCH")) {
      const s = script(g[1]);
      if (method === "PATCH") Object.assign(s.scriptSettings, json(body));
      return s.scriptSettings;
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/subdomain$/))) {
      const s = script(g[1]);
      if (method === "POST") Object.assign(s.subdomain, json(body));
      return s.subdomain;
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/schedules$/))) {
      const s = script(g[1]);
      if (method === "PUT") {
        s.schedules = json(body).map((x) => ({ cron: x.cron, created_on: new Date().toISOString() }));
        call.triggers = { schedules: s.schedules.map((x) => x.cron) };
      }
      return { schedules: s.schedules };
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/routes$/))) {
      const s = script(g[1]);
      if (method === "PUT") s.routes = json(body);
      return s.routes;
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/domains\/records$/))) return [];
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/tails$/))) return [];
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/secrets$/)) && method === "GET") {
      const s = script(g[1]);
      return [...latestVersion(s).secrets.keys()].map((name) => ({ name, type: "secret_text" }));
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/secrets$/)) && method === "PUT") {
      const s = script(g[1]);
      // [secrets] a secret edit deploys a new version at once: refused while the latest version
      // is not the only one serving.
      const active = activeDeployment(s);
      const latest = latestVersion(s);
      if (!active || active.versions.length !== 1 || active.versions[0].version_id !== latest.id) {
        throw new ApiError(400, 10215, "Secret edit failed: the latest version of this Worker is not fully deployed");
      }
      const { name, text } = json(body);
      const version = newVersion(s, { from: latest, source: "secret", secrets: new Map([...latest.secrets, [name, text]]) });
      deploy(s, [{ version_id: version.id, percentage: 100 }], { "workers/triggered_by": "secret" });
      return { name, type: "secret_text" };
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/versions$/)) && method === "GET") {
      const s = script(g[1]);
      const items = [...s.versions].reverse().map(versionInfo);
      return { items, latest: items[0] ?? null };
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/versions$/)) && method === "POST") return uploadVersion(decodeURIComponent(g[1]), body, contentType, call);
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/versions\/([^/]+)$/)) && method === "GET") {
      const s = script(g[1]);
      const v = s.versions.find((x) => x.id === g[2]);
      if (!v) throw new ApiError(404, 10218, `version ${g[2]} not found`);
      return versionInfo(v);
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/deployments$/)) && method === "GET") {
      const s = script(g[1]);
      return { deployments: [...s.deployments].reverse() };
    }
    if ((g = m(/^\/workers\/scripts\/([^/]+)\/deployments$/)) && method === "POST") {
      const s = script(g[1]);
      const { strategy, versions, annotations = {} } = json(body);
      if (strategy !== "percentage") throw new ApiError(400, 10000, `unknown strategy ${strategy}`);
      // [gradual] one or two versions whose percentages sum to 100.
      if (!Array.isArray(versions) || versions.length < 1 || versions.length > 2) throw new ApiError(400, 10213, "a deployment holds one or two versions");
      const sum = versions.reduce((a, v) => a + Number(v.percentage), 0);
      if (Math.abs(sum - 100) > 1e-9) throw new ApiError(400, 10214, `percentages must sum to 100 (got ${sum})`);
      for (const v of versions) if (!s.versions.some((x) => x.id === v.version_id)) throw new ApiError(404, 10218, `version ${v.version_id} not found`);
      // [rollbacks] no deployment may bring back a version from before a Durable Object
      // migration that has happened since.
      for (const v of versions) {
        const version = s.versions.find((x) => x.id === v.version_id);
        if (v.percentage > 0 && version.migration_tag !== s.migration_tag) {
          throw new ApiError(400, 10220, `version ${version.id} predates Durable Object migration ${s.migration_tag} (it was built for ${version.migration_tag ?? "none"}); a rollback across a Durable Object migration is not allowed`);
        }
      }
      call.deployment = versions.map((v) => `${v.version_id}@${v.percentage}%`).join(" ");
      return deploy(s, versions, annotations);
    }
    throw notFound(`${method} ${path}`);
  }

  // ---- D1 helpers ----------------------------------------------------------------------------
  function d1Info(d) {
    return { uuid: d.uuid, name: d.name, created_at: d.created_at, version: "production", num_tables: 0, file_size: 0, running_in_region: "WEUR" };
  }
  function findD1(idOrName) {
    const key = decodeURIComponent(idOrName);
    const d = state.d1.get(key) ?? [...state.d1.values()].find((x) => x.name === key);
    if (!d) throw new ApiError(404, 7404, `The database ${key} could not be found`);
    return d;
  }
  function bookmarkOf(db) {
    // [time-travel] a bookmark names the database as it is now; the stand-in keeps its dump.
    const dump = dumpSql(db.sqlite);
    const last = db.bookmarks.at(-1);
    if (last && last.dump === dump) return last.bookmark;
    const bookmark = `${String(db.bookmarks.length + 1).padStart(8, "0")}-00000000-00004f6d-${randomUUID().replaceAll("-", "").slice(0, 32)}`;
    db.bookmarks.push({ bookmark, dump, at: Date.now() });
    return bookmark;
  }
  function runSql(db, sql, binds, raw) {
    const started = Date.now();
    const single = sql.trim().replace(/;\s*$/, "");
    const meta = (changes = 0, last_row_id = 0) => ({ duration: Date.now() - started, changes, last_row_id, rows_read: 0, rows_written: changes });
    if (/^\s*(select|pragma|with)\b/i.test(single) && !single.includes(";")) {
      const rows = db.sqlite.prepare(single).all(...binds);
      return [raw ? { results: { columns: rows[0] ? Object.keys(rows[0]) : [], rows: rows.map((r) => Object.values(r)) }, success: true, meta: meta() } : { results: rows, success: true, meta: meta() }];
    }
    if (binds.length) {
      const info = db.sqlite.prepare(single).run(...binds);
      return [{ results: [], success: true, meta: meta(Number(info.changes), Number(info.lastInsertRowid)) }];
    }
    // A script (a migration file): SQLite runs it statement by statement, as D1 does.
    const before = db.sqlite.prepare("SELECT total_changes() AS n").get().n;
    db.sqlite.exec(sql);
    return [{ results: [], success: true, meta: meta(db.sqlite.prepare("SELECT total_changes() AS n").get().n - before) }];
  }

  // ---- R2, queues, Vectorize helpers -----------------------------------------------------------
  function bucket(name) {
    const b = state.buckets.get(decodeURIComponent(name));
    if (!b) throw new ApiError(404, 10006, "The specified bucket does not exist.");
    return b;
  }
  function queueInfo(q) {
    return { queue_id: q.queue_id, queue_name: q.queue_name, created_on: q.created_on, modified_on: q.created_on, producers: [], producers_total_count: 0, consumers: q.consumers, consumers_total_count: q.consumers.length };
  }
  function queueById(id) {
    const q = state.queues.get(id) ?? [...state.queues.values()].find((x) => x.queue_name === decodeURIComponent(id));
    if (!q) throw new ApiError(404, 11000, `Queue ${id} does not exist`);
    return q;
  }
  function indexInfo(ix) {
    return { name: ix.name, description: ix.description, config: ix.config, created_on: ix.created_on, modified_on: ix.modified_on };
  }
  function vindex(name) {
    const ix = state.vectorize.get(decodeURIComponent(name));
    if (!ix) throw new ApiError(404, 3000, `vectorize.index.not_found: ${name}`);
    return ix;
  }

  // ---- Worker helpers ---------------------------------------------------------------------------
  function script(name) {
    const s = state.scripts.get(decodeURIComponent(name));
    // The code wrangler reads as "this Worker does not exist" (deploy-helpers: WORKER_NOT_FOUND_ERR_CODE).
    if (!s) throw new ApiError(404, 10007, "This Worker does not exist on your account.");
    return s;
  }
  function scriptInfo(s) {
    return { id: s.name, tag: s.tag, etag: s.versions.at(-1)?.id ?? "", created_on: s.created_on, modified_on: s.modified_on, migration_tag: s.migration_tag, handlers: ["fetch", "queue", "scheduled"], compatibility_date: s.compatibility_date, tags: [], usage_model: "standard" };
  }
  function scriptSettings(s) {
    const v = latestVersion(s);
    return { bindings: v?.bindings ?? [], compatibility_date: s.compatibility_date, compatibility_flags: [], placement: {}, tags: [], tail_consumers: [], observability: { enabled: true }, logpush: false, usage_model: "standard", migrations: undefined };
  }
  function latestVersion(s) {
    return s.versions.at(-1);
  }
  function activeDeployment(s) {
    return s.deployments.at(-1) ?? null;
  }
  function versionInfo(v) {
    return {
      id: v.id,
      number: v.number,
      metadata: { author_email: "ci@example.com", author_id: "standin", created_on: v.created_on, modified_on: v.created_on, source: v.source, hasPreview: false },
      annotations: v.annotations,
      resources: { bindings: v.bindings, script: { etag: v.id, handlers: ["fetch", "queue", "scheduled"] }, script_runtime: { compatibility_date: v.compatibility_date, compatibility_flags: [], usage_model: "standard" } },
      startup_time_ms: 5,
    };
  }
  function newVersion(s, { from = null, source, metadata = null, annotations = {}, secrets = null }) {
    const v = {
      id: randomUUID(),
      number: s.versions.length + 1,
      created_on: new Date().toISOString(),
      source,
      annotations,
      bindings: (metadata?.bindings ?? from?.bindings ?? []).filter((b) => b.type !== "secret_text" && b.type !== "inherit"),
      compatibility_date: metadata?.compatibility_date ?? from?.compatibility_date ?? s.compatibility_date,
      // The Durable Object migration state this version was built for.
      migration_tag: s.migration_tag,
      secrets: new Map(secrets ?? from?.secrets ?? []),
    };
    for (const b of metadata?.bindings ?? []) if (b.type === "secret_text") v.secrets.set(b.name, b.text);
    s.versions.push(v);
    s.modified_on = v.created_on;
    return v;
  }
  function deploy(s, versions, annotations) {
    const d = { id: randomUUID(), source: "api", strategy: "percentage", author_email: "ci@example.com", created_on: new Date().toISOString(), annotations, versions: versions.map((v) => ({ version_id: v.version_id, percentage: Number(v.percentage) })) };
    s.deployments.push(d);
    return d;
  }
  async function multipartMetadata(body, contentType) {
    const form = await new Request("http://x", { method: "POST", headers: { "content-type": contentType }, body }).formData();
    const part = form.get("metadata");
    const metadata = JSON.parse(typeof part === "string" ? part : await part.text());
    const modules = [...form.keys()].filter((k) => k !== "metadata");
    return { metadata, modules };
  }
  function applyMigrations(s, migrations) {
    if (!migrations) return;
    // wrangler sends { old_tag?, new_tag, steps }: the old tag must be the script's current one.
    if ((migrations.old_tag ?? null) !== (s.migration_tag ?? null)) {
      throw new ApiError(400, 10079, `migration old_tag ${migrations.old_tag ?? "(none)"} does not match the script's ${s.migration_tag ?? "(none)"}`);
    }
    s.migration_tag = migrations.new_tag;
    s.migrationHistory.push(migrations.new_tag);
  }
  async function uploadScript(name, body, contentType, call) {
    const { metadata, modules } = await multipartMetadata(body, contentType);
    let s = state.scripts.get(name);
    const created = !s;
    if (!s) {
      s = { name, tag: randomUUID().replaceAll("-", ""), created_on: new Date().toISOString(), modified_on: null, migration_tag: null, migrationHistory: [], versions: [], deployments: [], schedules: [], routes: [], subdomain: { enabled: false, previews_enabled: false }, scriptSettings: {}, compatibility_date: metadata.compatibility_date };
    }
    applyMigrations(s, metadata.migrations);
    if (created) state.scripts.set(name, s);
    s.compatibility_date = metadata.compatibility_date;
    const v = newVersion(s, { from: latestVersion(s), source: "wrangler", metadata, annotations: metadata.annotations ?? {} });
    // `wrangler deploy` keeps the secrets of the running Worker (bindings of type inherit).
    const d = deploy(s, [{ version_id: v.id, percentage: 100 }], metadata.annotations ?? {});
    call.uploaded = { script: name, version: v.id, created, migrations: metadata.migrations ?? null, modules };
    return { ...scriptInfo(s), deployment_id: d.id, startup_time_ms: 5, entry_point: metadata.main_module };
  }
  async function uploadVersion(name, body, contentType, call) {
    const s = script(name); // [first] no version of a Worker that does not exist
    const { metadata, modules } = await multipartMetadata(body, contentType);
    // [do] Durable Object class changes cannot go through a version upload.
    if (metadata.migrations) {
      throw new ApiError(400, 10211, "Version upload failed. You attempted to upload a version of a Worker that includes a Durable Object migration, but migrations must be fully applied by running \"wrangler deploy\".");
    }
    const v = newVersion(s, { from: latestVersion(s), source: "wrangler", metadata, annotations: metadata.annotations ?? {} });
    if (nextVersionFault) faults.set(v.id, nextVersionFault);
    nextVersionFault = null;
    call.uploaded = { script: name, version: v.id, modules };
    return versionInfo(v);
  }

  // ---- the edge -------------------------------------------------------------------------------
  function pickVersion(s, overrideHeader) {
    const d = activeDeployment(s);
    if (!d) return null;
    // [gradual] `Cloudflare-Workers-Version-Overrides: name="id"` reaches a version of the active
    // deployment (any percentage, 0 % included); otherwise the header is ignored.
    const o = overrideHeader && /^\s*([^=\s]+)\s*=\s*"([^"]+)"\s*$/.exec(overrideHeader);
    if (o && o[1] === s.name && d.versions.some((v) => v.version_id === o[2])) return { version: o[2], override: true };
    let r = Math.random() * 100;
    for (const v of d.versions) {
      if (r < v.percentage) return { version: v.version_id, override: false };
      r -= v.percentage;
    }
    return { version: (d.versions.find((v) => v.percentage > 0) ?? d.versions[0]).version_id, override: false };
  }

  async function handleEdge(req, res) {
    const url = new URL(req.url, "http://x");
    const s = state.scripts.get(edgeScript);
    if (!s || !activeDeployment(s) || !upstream) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("no Worker is deployed here");
    }
    if (url.pathname === "/admin/metrics/versions") return metricsByVersion(req, res, url);
    const { version, override } = pickVersion(s, req.headers["cloudflare-workers-version-overrides"]);
    const started = Date.now();
    const fault = faults.get(version) ?? {};
    const body = await readBody(req);
    let status;
    let out;
    let headers = { "content-type": "application/json" };
    if (fault.latencyMs) await new Promise((r) => setTimeout(r, fault.latencyMs));
    if (fault.errorRate && Math.random() < fault.errorRate) {
      status = 500;
      out = JSON.stringify({ error: { code: "internal", message: `version ${version} failed (stand-in fault)` } });
    } else {
      const forwarded = await fetch(`${upstream}${url.pathname}${url.search}`, {
        method: req.method,
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !["host", "connection", "content-length"].includes(k))),
        body: body.length ? body : undefined,
      });
      status = forwarded.status;
      headers = { "content-type": forwarded.headers.get("content-type") ?? "application/octet-stream" };
      out = Buffer.from(await forwarded.arrayBuffer());
      if (url.pathname === "/api/health" && headers["content-type"].includes("json")) {
        // What the version_metadata binding reports on the version that answered.
        const health = JSON.parse(out.toString("utf8"));
        health.version = { ...(health.version ?? {}), id: version };
        out = JSON.stringify(health);
      }
    }
    res.writeHead(status, headers);
    res.end(out);
    routed.push({ at: Date.now(), version, override, path: url.pathname, status, ms: Date.now() - started });
  }

  function metricsByVersion(req, res, url) {
    if (adminToken && req.headers.authorization !== `Bearer ${adminToken}`) {
      res.writeHead(401, { "content-type": "application/json" });
      return res.end(JSON.stringify({ error: { code: "unauthorized", message: "admin token required" } }));
    }
    const windowMs = parseWindow(url.searchParams.get("window") ?? "15m");
    const since = Date.now() - windowMs;
    const byVersion = new Map();
    for (const r of routed) {
      if (r.at < since || !r.path.startsWith("/api/")) continue;
      if (!byVersion.has(r.version)) byVersion.set(r.version, []);
      byVersion.get(r.version).push(r);
    }
    const versions = [...byVersion.entries()].map(([version_id, rs]) => {
      const ms = rs.map((r) => r.ms).sort((a, b) => a - b);
      const q = (p) => ms[Math.min(ms.length - 1, Math.ceil(p * ms.length) - 1)];
      const errors = rs.filter((r) => r.status >= 500).length;
      return { version_id, requests: rs.length, errors, error_rate: errors / rs.length, p50_ms: q(0.5), p95_ms: q(0.95) };
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ window_ms: windowMs, since_ms: since, versions }));
  }

  return {
    api: `http://127.0.0.1:${api.address().port}/client/v4`,
    edge: `http://127.0.0.1:${edge.address().port}`,
    accountId,
    token,
    state,
    calls,
    routed,
    /** Makes a version slow and/or failing on the edge. */
    faults(versionId, fault) {
      faults.set(versionId, fault);
    },
    /** Makes the next uploaded version slow and/or failing (a bad release). */
    faultNextVersion(fault) {
      nextVersionFault = fault;
    },
    /** The next matching API call fails with this status and code (e.g. a 500, an auth error). */
    failNext(method, pattern, { status = 500, code = 10013, message = "An unknown error has occurred" } = {}) {
      failNext.push({ method, pattern, status, code, message });
    },
    clearFaults() {
      faults.clear();
      failNext = [];
      nextVersionFault = null;
    },
    close() {
      for (const s of [api, edge]) s.closeAllConnections?.();
      return Promise.all([api, edge].map((s) => new Promise((r) => s.close(r))));
    },
  };
}

function parseWindow(text) {
  const m = /^(\d+)(s|m|h)$/.exec(text);
  if (!m) return 15 * 60_000;
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

/** The schema and rows of a database as SQL (a Time Travel point). */
function dumpSql(db) {
  const parts = [];
  const objects = db.prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid").all();
  const shadow = new Set();
  for (const o of objects) if (/CREATE VIRTUAL TABLE/i.test(o.sql)) for (const suffix of ["_data", "_idx", "_content", "_docsize", "_config"]) shadow.add(o.name + suffix);
  // Tables and indexes, then rows, then triggers (so restoring rows fires none).
  for (const o of objects) if (!shadow.has(o.name) && o.type !== "trigger") parts.push(`${o.sql};`);
  for (const o of objects) {
    if (o.type !== "table" || shadow.has(o.name) || /CREATE VIRTUAL TABLE/i.test(o.sql)) continue;
    for (const row of db.prepare(`SELECT * FROM "${o.name}"`).all()) {
      const values = Object.values(row).map((v) => (v === null ? "NULL" : typeof v === "number" || typeof v === "bigint" ? String(v) : `'${String(v).replaceAll("'", "''")}'`));
      parts.push(`INSERT INTO "${o.name}" VALUES (${values.join(", ")});`);
    }
  }
  for (const o of objects) if (o.type === "trigger") parts.push(`${o.sql};`);
  return parts.join("\n");
}
