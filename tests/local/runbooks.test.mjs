// The operator documentation stays true: every relative link and #anchor in
// README.md and docs/**/*.md resolves (anchors computed from headings as
// GitHub does), every section the docs and the code's comments name in prose
// (README, "Quick start"; docs/operations.md, "Metrics") exists in that file,
// every status value the runbooks quote is one the API can return (the enums
// of openapi.yaml), and every scripts/… the docs mention exists, with the
// --flags they give deploy.mjs, provision.mjs and the other .mjs scripts
// accepted by the script's source. Reads files only.
// Run: node_modules/.bin/node --test tests/local/runbooks.test.mjs
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

const root = path.resolve(import.meta.dirname, "../..");

/** README.md and every .md under docs/, as paths relative to the root. */
function documentationFiles() {
  const out = ["README.md", "scripts/README.md"];
  const walk = (dir) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.posix.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith(".md")) out.push(rel);
    }
  };
  walk("docs");
  return out;
}

/** The file's lines with a flag: inside a fenced code block or not. */
function lines(text) {
  let fence = null;
  return text.split("\n").map((line, index) => {
    const opener = line.match(/^\s{0,3}(`{3,}|~{3,})/);
    if (opener && (fence === null || opener[1][0] === fence[0] && opener[1].length >= fence.length)) {
      const wasOpen = fence !== null;
      fence = wasOpen ? null : opener[1];
      return { line, number: index + 1, code: true };
    }
    return { line, number: index + 1, code: fence !== null };
  });
}

/** Prose with inline code spans blanked out (links in code are examples). */
const withoutInlineCode = (line) => line.replace(/(`+)[\s\S]*?\1/g, (m) => " ".repeat(m.length));

/** A heading's text as GitHub renders it: markup gone, link texts kept. */
function headingText(raw) {
  return raw
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/`+([^`]*)`+/g, "$1")
    .replace(/<[^>]+>/g, "")
    .replace(/\*+/g, "")
    .trim();
}

/** GitHub's anchor of a heading (github-slugger): lower case, punctuation dropped, spaces → "-". */
const slug = (text) => headingText(text).toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "").replace(/ /g, "-");

const anchorCache = new Map();
/** Every anchor of a markdown file: its headings' slugs (repeats get -1, -2, …) and explicit ids. */
function anchors(file) {
  if (anchorCache.has(file)) return anchorCache.get(file);
  const seen = new Map();
  const found = new Set();
  const add = (base) => {
    const n = seen.get(base) ?? 0;
    found.add(n === 0 ? base : `${base}-${n}`);
    seen.set(base, n + 1);
  };
  const all = lines(readFileSync(file, "utf8"));
  all.forEach(({ line, code }, i) => {
    if (code) return;
    const atx = line.match(/^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/);
    if (atx) return add(slug(atx[1]));
    const next = all[i + 1];
    if (next && !next.code && /^\s{0,3}(=+|-+)\s*$/.test(next.line) && line.trim() !== "" && !/^\s*([-*+]|\d+\.)\s/.test(line) && !line.includes("|")) {
      add(slug(line));
    }
    for (const m of line.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) found.add(m[1]);
  });
  anchorCache.set(file, found);
  return found;
}

/** Every link target of a file outside code: inline links, images, reference definitions. */
function links(rel) {
  const out = [];
  for (const { line, number, code } of lines(readFileSync(path.join(root, rel), "utf8"))) {
    if (code) continue;
    const prose = withoutInlineCode(line);
    for (const m of prose.matchAll(/!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+"[^"]*")?\s*\)/g)) {
      out.push({ target: m[1].replace(/^<|>$/g, ""), number });
    }
    const definition = prose.match(/^\s{0,3}\[[^\]]+\]:\s*(\S+)/);
    if (definition) out.push({ target: definition[1].replace(/^<|>$/g, ""), number });
  }
  return out;
}

/** What is wrong with one link of `rel`, or null. */
function brokenLink(rel, target) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // https:, mailto:, …
  const hash = target.indexOf("#");
  const pathPart = hash === -1 ? target : target.slice(0, hash);
  const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
  const file = pathPart === "" ? path.join(root, rel) : path.resolve(path.dirname(path.join(root, rel)), decodeURIComponent(pathPart));
  if (!file.startsWith(root + path.sep) && file !== root) return `${target} points outside the repository`;
  if (!existsSync(file)) return `${target}: ${path.relative(root, file)} does not exist`;
  if (anchor === null || anchor === "") return null;
  if (!file.endsWith(".md") || statSync(file).isDirectory()) return null; // line anchors of code files are GitHub's
  return anchors(file).has(anchor) ? null : `${target}: no heading in ${path.relative(root, file)} has the anchor #${anchor}`;
}

test("every relative link and #anchor in README.md and docs/ resolves", () => {
  const broken = [];
  let checked = 0;
  for (const rel of documentationFiles()) {
    for (const { target, number } of links(rel)) {
      checked += 1;
      const problem = brokenLink(rel, target);
      if (problem) broken.push(`${rel}:${number}: ${problem}`);
    }
  }
  assert.ok(checked > 20, `only ${checked} links found: is the link reader broken?`);
  assert.deepEqual(broken, []);
});

/**
 * Sections named in prose, each with the file that should hold it: the README's ("the README's
 * Alerts section"; README, "Quick start") and a page's by its path from the root
 * (docs/operations.md, "Metrics"; docs/api.md's "Admin API").
 */
function namedSections(text) {
  const patterns = [
    /README(?:\.md)?(?:'s|,)\s+"(?<name>[^"]+)"/g, // the README's "Quick start"; README, "What it is"
    /README's\s+(?<name>[A-Z][\w-]*(?:[ \n][A-Z][\w-]*)*)\s+section/g, // the README's Documentation section
    /(?<![\w./-])(?<file>docs\/[\w./-]+\.md)(?:'s|,)\s+"(?<name>[^"]+)"/g, // docs/operations.md, "Metrics"
  ];
  return patterns.flatMap((re) => [...text.matchAll(re)].map((m) => ({
    file: m.groups.file ?? "README.md",
    name: m.groups.name.replace(/\s+/g, " "),
  })));
}

/** What a file says in prose: markdown outside code; elsewhere the text with comment leaders gone. */
function prose(rel) {
  const text = readFileSync(path.join(root, rel), "utf8");
  if (rel.endsWith(".md")) return lines(text).filter((l) => !l.code).map((l) => withoutInlineCode(l.line)).join("\n");
  return text.split("\n").map((line) => line.replace(/^\s*(?:\/\/[\/!]?|#|--|\*|\/\*\*?)\s?/, "")).join("\n");
}

/** Source and configuration files whose comments may name a documentation section. */
function sourceFiles() {
  const out = ["openapi.yaml", "wrangler.jsonc", "vitest.config.ts", "Cargo.toml", "package.json", "corpus/.gitkeep"].filter((f) => existsSync(path.join(root, f)));
  const skip = new Set(["node_modules", "target", ".wrangler"]);
  const walk = (dir) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.posix.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!skip.has(entry.name)) walk(rel);
      } else if (/\.(rs|ts|mjs|js|sh|py|sql|ya?ml|toml|jsonc?|md)$/.test(entry.name) || entry.name === "run") {
        if (rel !== "tests/local/runbooks.test.mjs" && statSync(path.join(root, rel)).size < 1_000_000) out.push(rel);
      }
    }
  };
  for (const dir of [".cargo", ".ci", ".github", "crates", "migrations", "scripts", "tests"]) {
    if (existsSync(path.join(root, dir))) walk(dir);
  }
  return out;
}

/** Why `name` is not a section of `file` (a heading that starts with it), or null. */
function missingSection(file, name) {
  const full = path.join(root, file);
  if (!existsSync(full)) return `${file} does not exist`;
  const headings = lines(readFileSync(full, "utf8"))
    .filter((l) => !l.code && /^\s{0,3}#{1,6}\s/.test(l.line))
    .map((l) => headingText(l.line.replace(/^\s*#+\s+/, "")).toLowerCase());
  return headings.some((h) => h.startsWith(name.toLowerCase())) ? null : `${file} has no section "${name}"`;
}

test("every section the docs and the code's comments name in prose exists", () => {
  const missing = [];
  let checked = 0;
  for (const rel of [...documentationFiles(), ...sourceFiles()]) {
    for (const { file, name } of namedSections(prose(rel))) {
      checked += 1;
      const problem = missingSection(file, name);
      if (problem) missing.push(`${rel}: ${problem}`);
    }
  }
  assert.ok(checked >= 10, `only ${checked} named sections found: is the reader broken?`);
  assert.deepEqual(missing, []);
  assert.deepEqual(namedSections("see the README's\nOperations section"), [{ file: "README.md", name: "Operations" }]);
  assert.deepEqual(namedSections('(docs/operations.md,\n"Metrics"); docs/api.md\'s "Admin API"'), [
    { file: "docs/operations.md", name: "Metrics" },
    { file: "docs/api.md", name: "Admin API" },
  ]);
  assert.equal(prose("crates/core/src/operations/metrics/point.rs").includes('(docs/operations.md,\n"Metrics")'), true);
  assert.equal(missingSection("docs/operations.md", "Metrics"), null);
  assert.match(missingSection("docs/operations.md", "No such section") ?? "", /has no section/);
  assert.match(missingSection("docs/no-such-page.md", "Metrics") ?? "", /does not exist/);
});

test("the anchors are GitHub's", () => {
  const cases = [
    ["Syncing documents (`r2-sync`)", "syncing-documents-r2-sync"],
    ["Providers: which environment uses which, and what they cost", "providers-which-environment-uses-which-and-what-they-cost"],
    ["Move chat traffic from the old stack (0 → 10 → 50 → 100 %)", "move-chat-traffic-from-the-old-stack-0--10--50--100-"],
    ["Cut-over from the old stack", "cut-over-from-the-old-stack"],
    ["Über [uns](x.md) *jetzt*", "über-uns-jetzt"],
    ["snake_case and 3.14", "snake_case-and-314"],
  ];
  for (const [heading, want] of cases) assert.equal(slug(heading), want, heading);
  assert.equal(brokenLink("docs/runbooks/replay.md", "../../README.md#no-such-section")?.includes("no heading"), true);
  assert.equal(brokenLink("docs/runbooks/replay.md", "missing.md")?.includes("does not exist"), true);
  assert.equal(brokenLink("docs/runbooks/replay.md", "../../README.md#quick-start"), null);
  assert.equal(brokenLink("docs/runbooks/replay.md", "../operations.md#alerts"), null);
  assert.equal(brokenLink("docs/runbooks/replay.md", "../operations.md#no-such-section")?.includes("no heading"), true);
});

/**
 * Every enum in openapi.yaml that describes a status (a property named `status`, or a
 * schema named `…Status`), read from the file's indentation: openapi.yaml writes enums
 * as flow sequences (`enum: [a, b]`), which is all this reader understands.
 */
function apiStatuses() {
  const statuses = new Set();
  const stack = [];
  for (const line of readFileSync(path.join(root, "openapi.yaml"), "utf8").split("\n")) {
    const m = line.match(/^(\s*)(?:-\s+)?"?([A-Za-z0-9_$.\/{}-]+)"?\s*:/);
    if (!m) continue;
    const indent = m[1].length;
    while (stack.length && stack.at(-1).indent >= indent) stack.pop();
    stack.push({ indent, key: m[2] });
    const enumMatch = line.match(/enum:\s*\[([^\]]*)\]/);
    if (!enumMatch) continue;
    // The key that owns the enum: the line's own (`status: { enum: [...] }`), or its parent's.
    const keys = stack.map((s) => s.key).filter((k) => k !== "enum");
    const owner = keys.at(-1);
    if (owner === "status" || /Status$/.test(owner)) {
      for (const value of enumMatch[1].split(",")) statuses.add(value.trim().replace(/^["']|["']$/g, ""));
    }
  }
  return statuses;
}

/** Status values the runbooks quote, in prose and in commands. */
function quotedStatuses(text) {
  const patterns = [
    /"status"\s*:\s*"([^"]*)"/g, // {"status":"ok"}
    /\bstatus`?\s*:\s*"([^"]*)"/g, // status: "done"
    /\bstatus`?\s+is\s+(?:not\s+)?["`]([^"`]*)["`]/g, // status is "done", `status` is not `done`
    /[?&]status=([A-Za-z_]+)/g, // ?status=failed
  ];
  return patterns.flatMap((re) => [...text.matchAll(re)].map((m) => ({ value: m[1], at: m.index })));
}

test("every status the docs quote is one the API returns (openapi.yaml's enums)", () => {
  const allowed = apiStatuses();
  for (const value of ["ok", "ready", "done"]) assert.ok(allowed.has(value), `openapi.yaml lists no status ${value}: ${[...allowed]}`);
  const wrong = [];
  let checked = 0;
  for (const rel of documentationFiles().filter((f) => f.startsWith("docs/"))) {
    const text = readFileSync(path.join(root, rel), "utf8");
    for (const { value, at } of quotedStatuses(text)) {
      checked += 1;
      if (!allowed.has(value)) wrong.push(`${rel}:${text.slice(0, at).split("\n").length}: status "${value}" is not one the API returns (${[...allowed].join(", ")})`);
    }
  }
  assert.ok(checked >= 5, `only ${checked} quoted statuses found: is the reader broken?`);
  assert.deepEqual(wrong, []);
  assert.deepEqual(quotedStatuses('wait for `status: "completed"`').map((s) => s.value), ["completed"]);
});

/** Each mention of scripts/… in a file, with the command text that follows it (continuations joined). */
function scriptMentions(rel) {
  const out = [];
  const all = lines(readFileSync(path.join(root, rel), "utf8"));
  for (let i = 0; i < all.length; i++) {
    const { line, number, code } = all[i];
    let text = line;
    if (code) {
      for (let j = i; text.endsWith("\\") && j + 1 < all.length; j++) text = text.slice(0, -1) + " " + all[j + 1].line;
    }
    for (const m of text.matchAll(/(?<![\w./-])scripts\/[\w./-]*/g)) {
      const script = m[0].replace(/[.]+$/, "");
      let rest = text.slice(m.index + m[0].length);
      if (code) rest = rest.split(/\s#|\||&&|;|>/)[0];
      else {
        // In prose a command is an inline code span: up to its closing backtick.
        const before = text.slice(0, m.index);
        rest = (before.split("`").length % 2 === 0 ? rest.split("`")[0] : "");
      }
      const flags = [...rest.matchAll(/(?:^|[\s\[])(--[a-z0-9][a-z0-9-]*)/g)].map((f) => f[1]);
      out.push({ script, flags, number });
    }
  }
  return out;
}

/**
 * Scripts whose parser takes a declared list of options (cloudflare.mjs's parseArgs with
 * `values` and `switches`): a flag must be in that list, as a quoted literal.
 */
const DECLARED_OPTIONS = new Set(["scripts/deploy/deploy.mjs", "scripts/deploy/provision.mjs"]);

/**
 * Whether a script's source accepts `--flag`: for DECLARED_OPTIONS the quoted literal; for
 * the others (cli.mjs's argument()/flag(), node:util's parseArgs, a usage line), cli.mjs's
 * argument("x") / flag("x"), an option `x: {`, or the flag spelled out whole.
 */
function accepts(source, flag, declared = false) {
  const name = flag.slice(2);
  const literal = [`"${flag}"`, `'${flag}'`].some((q) => source.includes(q));
  if (declared) return literal;
  const escaped = name.replace(/[-]/g, "\\-");
  return literal
    || new RegExp(`\\b(?:argument|flag)\\(\\s*["'\`]${escaped}["'\`]`).test(source)
    || new RegExp(`(?:^|[\\s{,])["']?${escaped}["']?\\s*:\\s*\\{`, "m").test(source)
    || new RegExp(`--${escaped}(?![\\w-])`).test(source);
}

test("every scripts/… the docs mention exists, and the flags they pass deploy.mjs, provision.mjs and the other .mjs scripts are in the script", () => {
  const problems = [];
  const flagged = new Map();
  for (const rel of documentationFiles()) {
    for (const { script, flags, number } of scriptMentions(rel)) {
      const file = path.join(root, script);
      if (!existsSync(file)) {
        problems.push(`${rel}:${number}: ${script} does not exist`);
        continue;
      }
      if (!script.endsWith(".mjs")) continue;
      const source = readFileSync(file, "utf8");
      for (const flag of flags) {
        flagged.set(script, (flagged.get(script) ?? 0) + 1);
        if (!accepts(source, flag, DECLARED_OPTIONS.has(script))) problems.push(`${rel}:${number}: ${script} does not accept ${flag}`);
      }
    }
  }
  for (const script of ["scripts/deploy/deploy.mjs", "scripts/deploy/provision.mjs"]) {
    assert.ok((flagged.get(script) ?? 0) > 0, `no --flag of ${script} found in the docs: is the reader broken?`);
  }
  assert.deepEqual(problems, []);
  assert.equal(accepts('values: ["--env", "--steps"]', "--steps", true), true);
  assert.equal(accepts('// usage: --steps 10,50', "--steps", true), false);
  assert.equal(accepts('values: ["--env"]', "--envv", true), false);
  assert.equal(accepts('const url = argument("url");', "--url"), true);
  assert.equal(accepts("options: { before: { type: \"string\" } }", "--before"), true);
  assert.equal(accepts("usage: --url URL [--expect-version ID]", "--expect-version"), true);
  assert.equal(accepts("usage: --url-base URL", "--url"), false);
});
