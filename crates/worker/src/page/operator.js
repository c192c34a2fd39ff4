// The operator page: every figure comes from an existing admin API call made
// with the bearer token, which lives in this tab's session storage only (never
// a cookie, a URL or local storage). Charts are inline SVG drawn here; nothing
// is loaded from elsewhere. Data is written with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "portfolio-admin-token";
const REFRESH_MS = 30_000;
const STUCK_MS = 30 * 60_000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    cache: "no-store",
    headers: { ...(init.headers || {}), authorization: `Bearer ${token()}` },
  });
  if (res.status === 401) throw new Unauthorized("the token was refused");
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message || `HTTP ${res.status}`);
  return body;
}

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

const fmt = {
  int: (n) => (n ?? 0).toLocaleString("en"),
  ms: (n) => (n === null || n === undefined ? "–" : `${Math.round(n).toLocaleString("en")} ms`),
  pct: (r, digits = 1) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(digits)} %`),
  usd: (n) => `$${(n ?? 0).toFixed(4)}`,
  when: (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–"),
  age: (ms) => {
    const m = Math.round(ms / 60_000);
    return m < 120 ? `${m} min` : `${(m / 60).toFixed(1)} h`;
  },
};

/** A long text cut to `max` characters, whole in its tooltip. */
function clip(text, max = 160) {
  if (!text) return "–";
  return text.length <= max ? text : el("td", { title: text }, `${text.slice(0, max)}…`);
}

function table(headers, rows, numeric = []) {
  return el(
    "div",
    { class: "scroll" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", { scope: "col", class: numeric.includes(i) ? "n" : null }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((cell, i) => (cell instanceof Node && cell.tagName === "TD" ? cell : el("td", { class: numeric.includes(i) ? "n" : null }, cell)))))),
    ),
  );
}

let firstChart = true;
function chartDrawn() {
  if (firstChart) {
    firstChart = false;
    performance.mark("operator-first-chart");
  }
}

/** Horizontal bars, one row per item: `a` (and `b`, drawn over it) against one scale. */
function bars(items, { title, a, b, format }) {
  const rowH = 18;
  const labelW = 190;
  const width = 520;
  const max = Math.max(1, ...items.map((i) => Math.max(i.a ?? 0, i.b ?? 0)));
  const scale = (v) => ((width - labelW - 60) * (v ?? 0)) / max;
  const rows = items.map((item, index) => {
    const y = index * rowH;
    return svg(
      "g",
      {},
      svg("text", { x: 0, y: y + 12 }, document.createTextNode(item.label.length > 30 ? `${item.label.slice(0, 29)}…` : item.label)),
      svg("rect", { class: "bar", x: labelW, y: y + 3, width: Math.max(1, scale(item.a)), height: 12 }),
      b ? svg("rect", { class: "bar err", x: labelW, y: y + 7, width: scale(item.b), height: 4 }) : null,
      svg("text", { x: labelW + scale(Math.max(item.a ?? 0, item.b ?? 0)) + 4, y: y + 12 }, document.createTextNode(format(item))),
    );
  });
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${Math.max(rowH, items.length * rowH)}`, role: "img", "aria-label": title },
    svg("title", {}, document.createTextNode(title)),
    rows,
  );
  chartDrawn();
  return el("figure", {}, chart, el("figcaption", { class: "legend" }, el("span", { class: "a" }, `■ ${a}`), b ? el("span", { class: "b" }, `  ▬ ${b}`) : null));
}

/** A line per series over a shared x axis of `labels` (null values are gaps). */
function lines(labels, series, { title, goal, format }) {
  const width = 520;
  const height = 150;
  const pad = { l: 44, r: 8, t: 8, b: 20 };
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  if (goal !== undefined) values.push(goal);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) return el("p", { class: "empty" }, "No data yet for this chart.");
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const x = (i) => pad.l + ((width - pad.l - pad.r) * i) / Math.max(1, labels.length - 1);
  const y = (v) => pad.t + ((height - pad.t - pad.b) * (hi - v)) / (hi - lo);
  const paths = series.map((s) => {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += `${d && s.values[i - 1] !== null && s.values[i - 1] !== undefined ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    const dots = s.values.map((v, i) => (v === null || v === undefined ? null : svg("circle", { class: `line ${s.class || ""}`, cx: x(i), cy: y(v), r: 2 })));
    return svg("g", {}, svg("path", { class: `line ${s.class || ""}`, d }), dots);
  });
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    svg("title", {}, document.createTextNode(title)),
    svg("line", { class: "axis", x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b }),
    svg("text", { x: 0, y: pad.t + 8 }, document.createTextNode(format(hi))),
    svg("text", { x: 0, y: height - pad.b }, document.createTextNode(format(lo))),
    svg("text", { x: pad.l, y: height - 4 }, document.createTextNode(labels[0] ?? "")),
    svg("text", { x: width - pad.r - 60, y: height - 4 }, document.createTextNode(labels[labels.length - 1] ?? "")),
    goal === undefined ? null : svg("line", { class: "axis goal", x1: pad.l, y1: y(goal), x2: width - pad.r, y2: y(goal) }),
    paths,
  );
  chartDrawn();
  return el(
    "figure",
    {},
    chart,
    el("figcaption", { class: "legend" }, series.map((s, i) => el("span", { class: i === 0 ? "a" : "b" }, `${i ? "  " : ""}— ${s.name}`)), goal === undefined ? null : "  - - objective"),
  );
}

function fill(id, ...nodes) {
  $(id).querySelector(".body").replaceChildren(...nodes.flat().filter(Boolean));
}

function failed(id, error) {
  fill(id, el("p", { class: "bad" }, `Could not load: ${error.message}`));
}

// ---------------------------------------------------------------- sections

function renderHealth(h) {
  const problems = [...(h.configuration_errors || []), ...(h.unavailable || [])];
  const missing = (h.bindings || []).filter((b) => !b.present).map((b) => `${b.name} (${b.kind}) is missing`);
  fill(
    "health",
    el("p", {}, el("span", { class: `big ${h.status === "ok" ? "good" : "bad"}` }, h.status), `  ${h.environment || ""}`),
    el("p", { class: "hint" }, `Version ${h.version?.id ?? "unknown"}${h.version?.tag ? ` (${h.version.tag})` : ""}, service ${h.service_version ?? "?"}`),
    h.providers ? el("p", {}, `Embeddings: ${h.providers.embedding}, chat: ${h.providers.chat}, index: ${h.providers.vector_index} (${h.providers.dimensions} dimensions)`) : null,
    problems.length || missing.length
      ? [el("h3", {}, "Configuration problems"), el("ul", {}, [...problems, ...missing].map((p) => el("li", { class: "bad" }, typeof p === "string" ? p : JSON.stringify(p))))]
      : el("p", { class: "good" }, "No configuration problems."),
  );
}

function renderAvailability(a) {
  if (!a.requests) {
    fill("availability", el("p", { class: "empty" }, `No public requests in the last ${a.window_days} days yet: the objective is ${a.objective_percent} %.`));
    return;
  }
  const ok = a.availability * 100 >= a.objective_percent;
  const days = [...a.per_day].reverse();
  fill(
    "availability",
    el("p", {}, el("span", { class: `big ${ok ? "good" : "bad"}` }, fmt.pct(a.availability, 3)), `  over ${a.window_days} days, objective ${a.objective_percent} %`),
    el(
      "p",
      { class: a.budget_left < 0 ? "bad" : a.budget_left < 0.25 ? "warn" : "good" },
      a.budget_left < 0
        ? `Error budget overspent: ${fmt.int(a.errors)} 5xx answers where ${a.budget_errors.toPrecision(2)} were allowed over ${fmt.int(a.requests)} requests.`
        : `Error budget left: ${fmt.pct(a.budget_left, 1)} (${fmt.int(a.errors)} of ${a.budget_errors.toPrecision(3)} allowed 5xx answers over ${fmt.int(a.requests)} requests).`,
    ),
    lines(
      days.map((d) => d.day),
      [{ name: "availability per day (%)", values: days.map((d) => (d.availability === null ? null : d.availability * 100)) }],
      { title: "Availability per day", goal: a.objective_percent, format: (v) => `${v.toFixed(2)}%` },
    ),
    el("h3", {}, "Fast burn (pages when both windows of a rule reach its rate)"),
    table(
      ["rule", "rate", "long window", "short window", "holds"],
      (a.fast_burn || []).map((r) => [`${r.long_ms / 60_000} min / ${r.short_ms / 60_000} min`, `${r.rate}x`, r.long_rate === null ? "–" : `${r.long_rate.toFixed(1)}x`, r.short_rate === null ? "–" : `${r.short_rate.toFixed(1)}x`, r.holds ? "yes" : "no"]),
      [1, 2, 3],
    ),
  );
}

function renderAlerts(a) {
  const rows = (list) => list.map((x) => [el("td", { class: "key" }, x.key), x.message, fmt.when(x.fired_at), x.resolved_at ? fmt.when(x.resolved_at) : x.notice_owed ? `notice owed (${x.notice_owed})` : "firing"]);
  fill(
    "alerts",
    a.active.length ? table(["alert", "message", "fired", "state"], rows(a.active)) : el("p", { class: "good" }, "No alert is firing."),
    el("h3", {}, "Resolved in the last 7 days"),
    a.recent.length ? table(["alert", "message", "fired", "resolved"], rows(a.recent.slice(0, 10))) : el("p", { class: "empty" }, "None."),
  );
}

async function reprocess(key, button) {
  button.disabled = true;
  button.textContent = "Queuing…";
  try {
    await api(`/admin/documents/${key.split("/").map(encodeURIComponent).join("/")}/process`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ force: true }),
    });
    button.textContent = "Queued";
    setTimeout(refresh, 1_000);
  } catch (e) {
    button.disabled = false;
    button.textContent = "Process again";
    button.after(el("span", { class: "bad", role: "alert" }, ` ${e.message}`));
  }
}

function renderDocuments(counts, failedDocs, inFlight, now) {
  const byStatus = counts?.by_status || {};
  const total = Object.values(byStatus).reduce((s, n) => s + n, 0);
  if (!total) {
    fill("documents", el("p", { class: "empty" }, "No documents yet: run r2-sync, or scripts/dev.sh --samples locally."));
    return;
  }
  const stuck = inFlight.filter((d) => now - (d.started_at_ms || d.queued_at_ms || d.updated_at || now) > STUCK_MS);
  fill(
    "documents",
    bars(
      Object.entries(byStatus).map(([status, n]) => ({ label: status, a: n })),
      { title: "Documents by status", a: "documents", format: (i) => fmt.int(i.a) },
    ),
    el("h3", {}, `Failed (${failedDocs.length})`),
    failedDocs.length
      ? table(
          ["key", "step", "last error", ""],
          failedDocs.map((d) => [el("td", { class: "key" }, d.key), d.step ?? "–", clip(d.last_error), el("td", { class: "act" }, el("button", { type: "button", class: "quiet", "data-key": d.key, onclick: (e) => reprocess(d.key, e.currentTarget) }, "Process again"))]),
        )
      : el("p", { class: "good" }, "None failed."),
    el("h3", {}, `Stuck (queued or processing for more than ${STUCK_MS / 60_000} min): ${stuck.length}`),
    stuck.length
      ? table(
          ["key", "status", "step", "for", ""],
          stuck.map((d) => [el("td", { class: "key" }, d.key), d.status, d.step ?? "–", fmt.age(now - (d.started_at_ms || d.queued_at_ms)), el("td", { class: "act" }, el("button", { type: "button", class: "quiet", onclick: (e) => reprocess(d.key, e.currentTarget) }, "Process again"))]),
        )
      : el("p", { class: "good" }, "None stuck."),
  );
}

function routeCharts(report, window) {
  const routes = report.requests.routes.filter((r) => !r.route.includes(" /admin"));
  if (!routes.length) return el("p", { class: "empty" }, `No public requests in the last ${window}.`);
  return [
    el("h3", {}, `Last ${window}: ${fmt.int(report.requests.total)} requests, ${fmt.pct(report.requests.error_rate, 2)} 5xx, p50 ${fmt.ms(report.requests.p50_ms)}, p95 ${fmt.ms(report.requests.p95_ms)}`),
    bars(
      routes.map((r) => ({ label: r.route, a: r.count, b: r.errors })),
      { title: `Requests per route, last ${window}`, a: "requests", b: "5xx", format: (i) => `${fmt.int(i.a)}${i.b ? ` (${fmt.int(i.b)} 5xx)` : ""}` },
    ),
    bars(
      routes.map((r) => ({ label: r.route, a: r.p95_ms, b: r.p50_ms })),
      { title: `Latency per route, last ${window}`, a: "p95", b: "p50", format: (i) => `p50 ${fmt.ms(i.b)}, p95 ${fmt.ms(i.a)}` },
    ),
  ];
}

function renderRequests(hour, day) {
  fill("requests", routeCharts(hour, "hour"), routeCharts(day, "24 h"));
}

function renderProviders(day) {
  const list = day.providers || [];
  fill(
    "providers",
    list.length
      ? [
          table(
            ["provider", "call", "calls", "errors", "tokens", "est. cost"],
            list.map((p) => [p.provider, p.operation, fmt.int(p.calls), fmt.int(p.errors), fmt.int(p.tokens), fmt.usd(p.estimated_cost_usd)]),
            [2, 3, 4, 5],
          ),
          el("p", { class: "hint" }, `Last 24 h; estimated cost ${fmt.usd(list.reduce((s, p) => s + p.estimated_cost_usd, 0))} at the configured prices per 1K tokens.`),
        ]
      : el("p", { class: "empty" }, "No provider calls in the last 24 h."),
  );
}

function renderIngestion(day, runs) {
  const i = day.ingestion;
  fill(
    "ingestion",
    el("p", {}, `Last 24 h: ${fmt.int(i.runs)} runs (${Object.entries(i.by_outcome).map(([k, n]) => `${n} ${k}`).join(", ") || "none"}), ${fmt.int(i.chunks)} chunks, ${fmt.int(i.retries)} retried steps.`),
    Object.keys(i.failures_by_reason).length ? el("ul", {}, Object.entries(i.failures_by_reason).map(([r, n]) => el("li", { class: "bad" }, `${r}: ${n}`))) : null,
    day.queue ? el("p", {}, `Queue: ${fmt.int(day.queue.queued)} queued, ${fmt.int(day.queue.processing)} processing, ${fmt.int(day.queue.dead_letters_not_replayed)} dead letters not replayed.`) : null,
    el("h3", {}, "Reconciliation runs"),
    runs.length
      ? table(
          ["started", "trigger", "status", "objects", "enqueued", "errors"],
          runs.slice(0, 8).map((r) => [fmt.when(r.started_at), r.trigger, r.status, fmt.int(r.objects_seen), fmt.int(Object.values(r.enqueued || {}).reduce((s, n) => s + n, 0)), (r.errors || []).length]),
          [3, 4, 5],
        )
      : el("p", { class: "empty" }, "No reconciliation run yet: the daily cron starts one, or POST /admin/reconcile."),
  );
}

function renderRollout(state, report) {
  const days = [...report.per_day].reverse();
  fill(
    "rollout",
    el("p", {}, `Serving ${state.effective.percent} % of chats here, shadowing ${state.effective.shadow_percent} %${state.legacy ? `; the rest goes to ${state.legacy}` : " (no legacy endpoint configured)"}.`),
    days.length
      ? [
          lines(
            days.map((d) => d.day),
            [{ name: "mean overlap of sources (%)", values: days.map((d) => (d.mean_overlap === null ? null : d.mean_overlap * 100)) }],
            { title: "Shadow overlap per day", format: (v) => `${v.toFixed(0)}%` },
          ),
          lines(
            days.map((d) => d.day),
            [
              { name: "ours p95 (ms)", values: days.map((d) => d.ours_p95_ms) },
              { name: "legacy p95 (ms)", values: days.map((d) => d.legacy_p95_ms), class: "err" },
            ],
            { title: "Latency per day, both sides", format: (v) => `${Math.round(v)}` },
          ),
          el("p", { class: "hint" }, `${fmt.int(report.compared)} comparisons, ${fmt.int(report.failovers)} failovers over ${report.days} days.`),
        ]
      : el("p", { class: "empty" }, "No shadow comparisons yet: PUT /admin/rollout with a shadow_percent starts them."),
  );
}

function renderFeedback(unhelpful, all) {
  const helpful = all.filter((f) => f.helpful).length;
  fill(
    "feedback",
    all.length
      ? el("p", {}, `${fmt.int(helpful)} helpful and ${fmt.int(all.length - helpful)} unhelpful among the last ${fmt.int(all.length)} ratings.`)
      : el("p", { class: "empty" }, "No ratings yet: readers rate answers on the chat page (/)."),
    unhelpful.length
      ? [
          el("h3", {}, "Recent unhelpful answers"),
          table(
            ["when", "question", "comment", "cited documents", "answer id"],
            unhelpful.map((f) => [fmt.when(f.at), f.question, f.comment || "–", f.sources.length ? f.sources.join(", ") : "none cited", f.answer_id]),
          ),
        ]
      : null,
  );
}

// ---------------------------------------------------------------- loading

async function section(id, load) {
  try {
    await load();
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    failed(id, e);
  }
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  $("refreshed").textContent = "Refreshing…";
  const now = Date.now();
  const get = (path) => api(path);
  const hour = get("/admin/metrics?window=1h");
  const day = get("/admin/metrics?window=24h");
  const results = await Promise.allSettled([
    section("health", async () => {
      const res = await fetch("/api/health", { cache: "no-store" });
      renderHealth(await res.json());
    }),
    section("availability", async () => renderAvailability(await get("/admin/availability"))),
    section("alerts", async () => renderAlerts(await get("/admin/alerts"))),
    section("documents", async () => {
      const [h, failedList, processing, queued] = await Promise.all([
        hour,
        get("/admin/documents?status=failed&limit=50"),
        get("/admin/documents?status=processing&limit=100"),
        get("/admin/documents?status=queued&limit=100"),
      ]);
      renderDocuments(h.documents, failedList.documents, [...processing.documents, ...queued.documents], now);
    }),
    section("requests", async () => renderRequests(await hour, await day)),
    section("providers", async () => renderProviders(await day)),
    section("ingestion", async () => renderIngestion(await day, (await get("/admin/reconcile/runs?limit=8")).runs)),
    section("rollout", async () => renderRollout(await get("/admin/rollout"), await get("/admin/rollout/report?days=14"))),
    section("feedback", async () => {
      const [unhelpful, all] = await Promise.all([get("/admin/feedback?helpful=false&limit=20"), get("/admin/feedback?limit=200")]);
      renderFeedback(unhelpful.feedback, all.feedback);
    }),
  ]);
  if (results.some((r) => r.status === "rejected" && r.reason instanceof Unauthorized)) {
    signOut("The token was refused: enter it again.");
    return;
  }
  $("refreshed").textContent = `Refreshed at ${new Date().toLocaleTimeString()}; every ${REFRESH_MS / 1000} s.`;
  timer = setTimeout(refresh, REFRESH_MS);
}

function signIn() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("refresh").hidden = false;
  $("forget").hidden = false;
  refresh();
}

function signOut(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("board").hidden = true;
  $("refresh").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("refreshed").textContent = "Not loaded.";
  $("token").focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  $("token").value = "";
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  signIn();
});
$("refresh").addEventListener("click", refresh);
$("forget").addEventListener("click", () => signOut("Token forgotten."));

if (token()) signIn();
else $("token").focus();
