// A stand-in for Workers Analytics Engine, both halves, for the tests (Analytics Engine has no
// local store that can be queried: Miniflare's own binding drops the points):
// - the dataset binding: the Worker's `METRICS` binding is a service binding to
//   `AnalyticsEngineStandin`, whose `writeDataPoint(point)` it calls exactly as it calls the real
//   binding (workers-rs' `AnalyticsEngineDataset` takes any object with that method); every point
//   is kept with the time it arrived, as the real dataset stamps `timestamp`;
// - the SQL API: the Worker's outbound `fetch` is routed here (Miniflare `outboundService`);
//   `POST /client/v4/accounts/<account>/analytics_engine/sql` answers the SQL over the kept
//   points, every other request goes on to the network untouched.
//
// Rules, each from Cloudflare's pages under https://developers.cloudflare.com/analytics/analytics-engine/ (read 2026-12):
//   [api]    sql-api/ — the address, `Authorization: Bearer <token>`,
//            the query text as the POST body, the columns (timestamp, _sample_interval, index1,
//            blob1..20, double1..20), counts as sum(_sample_interval)
//   [stmt]   sql-reference/statements/ — SELECT … FROM … WHERE …
//            GROUP BY … FORMAT JSON; the JSON answer `{ meta, data, rows }`
//   [agg]    sql-reference/aggregate-functions/ — sum, argMax,
//            quantileExactWeighted(q)(x, _sample_interval)
//   [time]   sql-reference/date-time-functions/ — toDateTime(unix s),
//            toUnixTimestamp, formatDateTime
//   [limits] limits/ — ≤ 20 blobs, ≤ 20 doubles, one index of ≤ 96
//            bytes, blobs ≤ 16 KB per point
//
// It parses only the statement shapes the Worker's reader sends
// (crates/core/src/operations/metrics/analytics_sql/query.rs) and answers anything else with a
// 400 naming what it could not read, recorded in `rejected()`: a reader that changes its SQL fails
// the tests until this stand-in learns the new shape. Sampling is played with
// `configure({ sampleInterval: n })`: one point in n is kept, standing for n (`_sample_interval`).
// A quantile is ClickHouse's quantileExactWeighted: the smallest value whose cumulative weight
// reaches ceil(level × total weight). 64-bit integer results come quoted, as ClickHouse's JSON
// output writes them.
import { WorkerEntrypoint } from "cloudflare:workers";

const MAX_BLOBS = 20; // [limits]
const MAX_DOUBLES = 20; // [limits]
const MAX_INDEX_BYTES = 96; // [limits]
const MAX_BLOB_BYTES = 16 * 1024; // [limits]

const state = {
  points: [],
  written: 0,
  sampleInterval: 1,
  queries: [],
  rejected: [],
  rejectedWrites: [],
  failNext: [],
};

const bytes = (s) => new TextEncoder().encode(String(s)).length;

function write(point) {
  const blobs = point?.blobs ?? [];
  const doubles = point?.doubles ?? [];
  const indexes = point?.indexes ?? [];
  const problem =
    blobs.length > MAX_BLOBS ? `${blobs.length} blobs (max ${MAX_BLOBS})`
    : doubles.length > MAX_DOUBLES ? `${doubles.length} doubles (max ${MAX_DOUBLES})`
    : indexes.length > 1 ? `${indexes.length} indexes (max 1)`
    : indexes.length === 1 && bytes(indexes[0]) > MAX_INDEX_BYTES ? `index of ${bytes(indexes[0])} bytes (max ${MAX_INDEX_BYTES})`
    : blobs.reduce((n, b) => n + bytes(b), 0) > MAX_BLOB_BYTES ? "blobs over 16 KB"
    : null;
  if (problem) {
    state.rejectedWrites.push(problem);
    throw new Error(`writeDataPoint: ${problem}`);
  }
  const n = state.written++;
  if (n % state.sampleInterval !== 0) return;
  const row = { timestamp: Date.now(), _sample_interval: state.sampleInterval, index1: String(indexes[0] ?? "") };
  for (let i = 1; i <= MAX_BLOBS; i++) row[`blob${i}`] = blobs[i - 1] === undefined || blobs[i - 1] === null ? "" : String(blobs[i - 1]);
  for (let i = 1; i <= MAX_DOUBLES; i++) row[`double${i}`] = Number(doubles[i - 1] ?? 0);
  state.points.push(row);
}

export class AnalyticsEngineStandin extends WorkerEntrypoint {
  /** The binding's one method [api]. */
  writeDataPoint(point) {
    write(point);
  }
  /** Test controls. */
  configure({ sampleInterval = 1 } = {}) {
    state.sampleInterval = sampleInterval;
    state.written = 0;
  }
  reset() {
    Object.assign(state, { points: [], written: 0, sampleInterval: 1, queries: [], rejected: [], rejectedWrites: [], failNext: [] });
  }
  points() {
    return state.points;
  }
  queries() {
    return state.queries;
  }
  rejected() {
    return { sql: state.rejected, writes: state.rejectedWrites };
  }
  /** The next SQL API call answers `status` with `body`. */
  failNext(status, body) {
    state.failNext.push({ status, body });
  }
  /** Moves every kept point `ms` into the past (the passing of time, for alert windows). */
  age(ms) {
    for (const p of state.points) p.timestamp -= ms;
  }
}

// ---- the SQL subset -------------------------------------------------------------------------

class Unsupported extends Error {}

function tokenize(sql) {
  const tokens = [];
  const re = /\s*(?:('(?:\\.|[^'\\])*')|(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|[(),*=]))/y;
  let at = 0;
  while (at < sql.length) {
    if (/^\s*$/.test(sql.slice(at))) break;
    re.lastIndex = at;
    const m = re.exec(sql);
    if (!m) throw new Unsupported(`cannot read ${JSON.stringify(sql.slice(at, at + 20))}`);
    at = re.lastIndex;
    if (m[1] !== undefined) tokens.push({ k: "str", v: m[1].slice(1, -1).replace(/\\(.)/g, "$1") });
    else if (m[2] !== undefined) tokens.push({ k: "num", v: Number(m[2]), raw: m[2] });
    else if (m[3] !== undefined) tokens.push({ k: "id", v: m[3] });
    else tokens.push({ k: "op", v: m[4] });
  }
  return tokens;
}

function parse(sql) {
  const t = tokenize(sql);
  let i = 0;
  const peek = () => t[i];
  const fail = (what) => {
    throw new Unsupported(`expected ${what} at token ${i} (${JSON.stringify(t[i]?.v ?? "end")})`);
  };
  const word = (w) => (peek()?.k === "id" && peek().v === w ? (i++, true) : false);
  const expectWord = (w) => word(w) || fail(w);
  const op = (o) => (peek()?.k === "op" && peek().v === o ? (i++, true) : false);
  const expectOp = (o) => op(o) || fail(`'${o}'`);
  const ident = () => (peek()?.k === "id" ? t[i++].v : fail("a name"));
  const column = () => {
    const c = ident();
    if (!/^(index1|blob([1-9]|1\d|20)|double([1-9]|1\d|20)|timestamp)$/.test(c)) throw new Unsupported(`unknown column ${c}`);
    return c;
  };
  const number = () => (peek()?.k === "num" ? t[i++] : fail("a number"));
  const string = () => (peek()?.k === "str" ? t[i++].v : fail("a string"));

  const value = () => {
    if (word("toDateTime")) {
      expectOp("(");
      const s = number().v;
      expectOp(")");
      return { time: s };
    }
    if (peek()?.k === "num") return number().v;
    return string();
  };
  const atom = () => {
    const c = column();
    if (word("IN")) {
      expectOp("(");
      const list = [string()];
      while (op(",")) list.push(string());
      expectOp(")");
      return { in: c, list };
    }
    const cmp = op("=") ? "=" : op(">=") ? ">=" : op("<=") ? "<=" : fail("= >= <= or IN");
    return { c, cmp, v: value() };
  };
  const cond = () => {
    const all = [atom()];
    while (word("AND")) all.push(atom());
    return all;
  };
  const expr = () => {
    if (word("sum")) {
      expectOp("(");
      let e;
      if (word("if")) {
        expectOp("(");
        const c = cond();
        expectOp(",");
        expectWord("_sample_interval");
        expectOp(",");
        if (number().v !== 0) fail("0");
        expectOp(")");
        e = { sumIf: c };
      } else {
        expectWord("_sample_interval");
        e = op("*") ? { sumOf: column() } : { count: true };
      }
      expectOp(")");
      return e;
    }
    if (word("quantileExactWeighted")) {
      expectOp("(");
      const level = number();
      if (!level.raw.includes(".")) fail("a level with a point");
      expectOp(")");
      expectOp("(");
      const c = column();
      expectOp(",");
      expectWord("_sample_interval");
      expectOp(")");
      return { quantile: level.v, c };
    }
    if (word("argMax")) {
      expectOp("(");
      const c = column();
      expectOp(",");
      expectWord("timestamp");
      expectOp(")");
      return { argMax: c };
    }
    if (word("toUnixTimestamp")) {
      expectOp("(");
      expectWord("max");
      expectOp("(");
      expectWord("timestamp");
      expectOp(")");
      expectOp(")");
      return { maxTime: true };
    }
    if (word("formatDateTime")) {
      expectOp("(");
      expectWord("timestamp");
      expectOp(",");
      if (string() !== "%Y-%m-%d") fail("'%Y-%m-%d'");
      expectOp(")");
      return { day: true };
    }
    return { col: column() };
  };

  expectWord("SELECT");
  const items = [];
  do {
    const e = expr();
    expectWord("AS");
    items.push({ ...e, as: ident() });
  } while (op(","));
  expectWord("FROM");
  const table = ident();
  expectWord("WHERE");
  const where = cond();
  const groupBy = [];
  if (word("GROUP")) {
    expectWord("BY");
    do groupBy.push(ident());
    while (op(","));
  }
  expectWord("FORMAT");
  expectWord("JSON");
  if (i !== t.length) fail("the end");
  for (const g of groupBy) {
    const item = items.find((it) => it.as === g);
    if (!item || !(item.col || item.day)) throw new Unsupported(`GROUP BY ${g} names no selected column`);
  }
  for (const it of items) {
    if ((it.col || it.day) && !groupBy.includes(it.as)) throw new Unsupported(`${it.as} is neither grouped nor aggregated`);
  }
  return { items, table, where, groupBy };
}

const seconds = (ms) => Math.floor(ms / 1000);

function holds(row, conds) {
  return conds.every((a) => {
    if (a.in) return a.list.includes(row[a.in]);
    let left = row[a.c];
    let right = a.v;
    if (a.c === "timestamp") {
      if (typeof right !== "object") throw new Unsupported("timestamp compared with something other than toDateTime(…)");
      left = seconds(left);
      right = right.time;
    } else if (typeof right === "object") {
      throw new Unsupported(`${a.c} compared with a time`);
    }
    return a.cmp === "=" ? left === right : a.cmp === ">=" ? left >= right : left <= right;
  });
}

function day(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function aggregate(item, rows) {
  if (item.count) return String(rows.reduce((n, r) => n + r._sample_interval, 0));
  if (item.sumIf) return String(rows.reduce((n, r) => n + (holds(r, item.sumIf) ? r._sample_interval : 0), 0));
  if (item.sumOf) return rows.reduce((n, r) => n + r._sample_interval * r[item.sumOf], 0);
  if (item.quantile !== undefined) {
    if (rows.length === 0) return 0;
    const sorted = [...rows].sort((a, b) => a[item.c] - b[item.c]);
    const total = sorted.reduce((n, r) => n + r._sample_interval, 0);
    const threshold = Math.ceil(total * item.quantile);
    let seen = 0;
    for (const r of sorted) {
      seen += r._sample_interval;
      if (seen >= threshold) return r[item.c];
    }
    return sorted[sorted.length - 1][item.c];
  }
  if (item.argMax) return rows.length ? rows.reduce((a, b) => (b.timestamp >= a.timestamp ? b : a))[item.argMax] : 0;
  if (item.maxTime) return rows.length ? seconds(Math.max(...rows.map((r) => r.timestamp))) : 0;
  throw new Unsupported("an aggregate it does not know");
}

function run(query) {
  const rows = state.points.filter((r) => holds(r, query.where));
  const key = (r) => query.groupBy.map((g) => {
    const item = query.items.find((it) => it.as === g);
    return item.day ? day(r.timestamp) : r[item.col];
  });
  const groups = new Map();
  if (query.groupBy.length === 0) groups.set("", { rows, sample: rows[0] });
  for (const r of query.groupBy.length ? rows : []) {
    const k = JSON.stringify(key(r));
    if (!groups.has(k)) groups.set(k, { rows: [], sample: r });
    groups.get(k).rows.push(r);
  }
  const data = [...groups.values()].map(({ rows: members, sample }) => {
    const out = {};
    for (const item of query.items) {
      if (item.col) out[item.as] = sample[item.col];
      else if (item.day) out[item.as] = day(sample.timestamp);
      else out[item.as] = aggregate(item, members);
    }
    return out;
  });
  return {
    meta: query.items.map((it) => ({ name: it.as, type: it.count || it.sumIf ? "UInt64" : it.col?.startsWith("blob") || it.day ? "String" : "Float64" })),
    data,
    rows: data.length,
  };
}

const SQL_PATH = /^\/client\/v4\/accounts\/([^/]+)\/analytics_engine\/sql$/;

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const match = SQL_PATH.exec(url.pathname);
    if (!match || url.origin !== env.API_ORIGIN) return fetch(request);
    const apiError = (status, code, message) =>
      Response.json({ success: false, errors: [{ code, message }], messages: [], result: null }, { status });
    if (request.method !== "POST") return apiError(405, 10000, "method not allowed");
    if (request.headers.get("authorization") !== `Bearer ${env.API_TOKEN}`) return apiError(401, 10000, "Authentication error");
    if (match[1] !== env.ACCOUNT_ID) return apiError(403, 10000, "Authentication error");
    const sql = await request.text();
    state.queries.push(sql);
    const fault = state.failNext.shift();
    if (fault) return new Response(fault.body, { status: fault.status });
    try {
      const query = parse(sql);
      if (query.table !== env.DATASET) return new Response(`unknown table ${query.table}`, { status: 422 });
      return Response.json(run(query));
    } catch (e) {
      if (!(e instanceof Unsupported)) throw e;
      state.rejected.push({ sql, why: e.message });
      console.error(`analytics-engine stand-in: unsupported SQL (${e.message}): ${sql}`);
      return new Response(`stand-in: unsupported SQL: ${e.message}`, { status: 400 });
    }
  },
};
