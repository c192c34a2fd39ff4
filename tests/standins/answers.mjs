// What the provider stand-ins answer, shared by the OpenAI-compatible one
// (tests/standins/provider.mjs, Node) and the Workers AI one
// (tests/standins/workers-ai.js, workerd): deterministic embeddings from
// hashed words, tag answers in the shape the tagging prompt asks for, and
// chat answers citing passage [1]. No Node or Workers APIs here.

const STOP_WORDS = new Set(
  "the a an and or of to in on for with by is are was were be this that it its as at from has have had their our we you they he she not but can will".split(" "),
);

const words = (text) => text.toLowerCase().match(/[a-z][a-z0-9-]{2,}/g) ?? [];

/** FNV-1a, 32 bit. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A deterministic unit vector of `dimensions` from the words of `text` (never all zero). */
export function embed(text, dimensions) {
  const v = new Float64Array(dimensions);
  for (const w of [...words(text), "\u0000bias"]) {
    const h = hash(w);
    v[h % dimensions] += h & 0x80000000 ? -1 : 1;
  }
  const norm = Math.hypot(...v) || 1;
  return Array.from(v, (x) => x / norm);
}

/** Up to 4 tags per chunk: its most frequent non-trivial words. */
function tagsFor(text) {
  const counts = new Map();
  for (const w of words(text)) if (!STOP_WORDS.has(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 3).map(([w]) => w);
  return ["standin-tagged", ...top];
}

function tagAnswer(userMessage) {
  const answer = {};
  for (const m of userMessage.matchAll(/Chunk (\d+):\n([\s\S]*?)(?=\nChunk \d+:\n|$)/g)) answer[m[1]] = tagsFor(m[2]);
  return JSON.stringify(answer);
}

/**
 * A deterministic relevance score of `text` for `query`, as a reranker would
 * give: the share of the query's distinct non-trivial words the text contains,
 * plus a small bonus for the first of them appearing early. In [0, 1.1].
 */
export function rerankScore(query, text) {
  const asked = [...new Set(words(query).filter((w) => !STOP_WORDS.has(w)))];
  if (asked.length === 0) return 0;
  const seen = new Set(words(text));
  const share = asked.filter((w) => seen.has(w)).length / asked.length;
  const first = text.toLowerCase().indexOf(asked[0]);
  return share + (first >= 0 && first < 200 ? 0.1 : 0);
}

export function chatAnswer(messages) {
  const system = messages.find((m) => m.role === "system")?.content ?? "";
  const user = [...messages].reverse().find((m) => m.role === "user")?.content ?? "";
  if (system.includes("topic tags")) return tagAnswer(user);
  const question = user.split("\n").filter(Boolean).pop() ?? "";
  return `From the sources [1]: an answer to "${question.slice(0, 200)}" by the provider stand-in.`;
}

