// A local stand-in for the Workers AI binding (`env.AI`), for tests: Workers AI has no
// local simulation (wrangler sends AI calls to the account). The Worker reaches it through a
// service binding named AI and calls it exactly as it calls the real binding (JS RPC:
// `env.AI.run(model, inputs)`).
//
// Behaviour reproduced from workerd's binding (src/cloudflare/internal/ai-api.ts) and the
// Workers AI documentation:
// - Embedding models (`@cf/baai/bge-small-en-v1.5` 384, `bge-base-en-v1.5` 768,
//   `bge-large-en-v1.5` 1024, `bge-m3` 1024 dimensions; model pages under
//   https://developers.cloudflare.com/workers-ai/models/): `{ text: string | string[] }`,
//   1 to 100 texts (the model schema's maxItems), answered `{ shape: [n, d], data, pooling:
//   "mean" }`. Vectors are deterministic (hashed words, tests/standins/answers.mjs).
// - Text-generation models (`@cf/meta/...`, `@hf/...` in KNOWN_CHAT_MODELS):
//   `{ messages, max_tokens?, temperature?, stream? }` answered `{ response, usage }`, or
//   with `stream: true` a ReadableStream of server-sent events `data: {"response": "..."}`
//   ending with a usage event and `data: [DONE]` — what the binding returns for streams.
// - Errors as the binding throws them: an `InferenceUpstreamError` whose message is
//   `"<internal code>: <description>"` with the codes of
//   https://developers.cloudflare.com/workers-ai/platform/errors/ (5007 no such model,
//   3003 incomplete request, 3040 out of capacity, 3036 daily allocation used up, ...).
//
// Test-only methods: `script(match, faults, model?)` — requests (to `model`, when given)
// whose JSON input contains `match` get `faults` in order (`{ code }` throws that documented error, `{ delay_ms }` answers
// late, `{ cut_after_events }` ends a stream early), then normal answers; `calls(match?)`
// lists the calls (model, matched scripts, outcome) in order; `reset()`.
import { WorkerEntrypoint } from "cloudflare:workers";
import { chatAnswer, embed, rerankScore } from "./answers.mjs";

export const EMBEDDING_MODELS = {
  "@cf/baai/bge-small-en-v1.5": 384,
  "@cf/baai/bge-base-en-v1.5": 768,
  "@cf/baai/bge-large-en-v1.5": 1024,
  "@cf/baai/bge-m3": 1024,
};
/** Rerankers: `{ query, contexts: [{ text }], top_k? }` answered `{ response: [{ id, score }] }`, best first. */
export const RERANKER_MODELS = new Set(["@cf/baai/bge-reranker-base"]);
const KNOWN_CHAT_MODELS = new Set([
  "@cf/meta/llama-3.1-8b-instruct",
  "@cf/meta/llama-3.1-8b-instruct-fp8-fast",
  "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
  "@hf/nousresearch/hermes-2-pro-mistral-7b",
]);
const MAX_TEXTS = 100;
/** Documented errors: internal code → description (the errors page). */
const ERRORS = {
  5007: (model) => `No such model ${model} or task`,
  3003: () => "Request is missing headers or body: inputs",
  3006: () => "Request is too large",
  3007: () => "Request timeout",
  3023: () => "Service unavailable for account",
  3036: () =>
    "You have used up your daily free allocation of 10,000 neurons. Please upgrade to Cloudflare's Workers Paid plan if you would like to continue usage.",
  3040: () => "No more data centers to forward the request to",
};

class InferenceUpstreamError extends Error {
  constructor(message) {
    super(message);
    this.name = "InferenceUpstreamError";
  }
}

const upstream = (code, model) => new InferenceUpstreamError(`${code}: ${ERRORS[code](model)}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Module state lives as long as the stand-in's isolate: one script per test run.
const state = { rules: [], calls: [] };

/** The scripts a call matches (a chat prompt quotes other documents too) and its fault. */
function faultFor(model, raw) {
  const matching = state.rules.filter((r) => raw.includes(r.match) && (r.model === null || r.model === model));
  const rule = matching.find((r) => r.served < r.faults.length);
  return { matches: matching.map((r) => r.match), fault: rule ? rule.faults[rule.served++] : null };
}

function tokens(text) {
  return Math.ceil(text.length / 4);
}

function streamOf(text, usage, cutAfterEvents) {
  const encoder = new TextEncoder();
  const pieces = text.match(/.{1,16}/gs) ?? [];
  const events = [
    ...pieces.map((p) => `data: ${JSON.stringify({ response: p, p: "abcdef" })}\n\n`),
    `data: ${JSON.stringify({ response: "", usage })}\n\n`,
    "data: [DONE]\n\n",
  ];
  const sent = cutAfterEvents === undefined ? events : events.slice(0, cutAfterEvents);
  return new ReadableStream({
    async pull(controller) {
      const next = sent.shift();
      if (next === undefined) return controller.close();
      await sleep(1);
      controller.enqueue(encoder.encode(next));
    },
  });
}

export class WorkersAiStandin extends WorkerEntrypoint {
  async run(model, inputs) {
    const raw = JSON.stringify(inputs ?? null);
    const { matches, fault } = faultFor(model, raw);
    const call = { model, matches, stream: !!inputs?.stream, outcome: "ok", at: Date.now() };
    state.calls.push(call);
    if (fault?.delay_ms) await sleep(fault.delay_ms);
    if (fault?.code) {
      call.outcome = String(fault.code);
      throw upstream(fault.code, model);
    }
    if (inputs === null || typeof inputs !== "object") {
      call.outcome = "3003";
      throw upstream(3003, model);
    }

    if (model in EMBEDDING_MODELS) {
      const texts = typeof inputs.text === "string" ? [inputs.text] : inputs.text;
      if (!Array.isArray(texts) || texts.length === 0 || texts.some((t) => typeof t !== "string")) {
        call.outcome = "3003";
        throw upstream(3003, model);
      }
      if (texts.length > MAX_TEXTS) {
        call.outcome = "3006";
        throw upstream(3006, model);
      }
      const dims = EMBEDDING_MODELS[model];
      call.texts = texts.length;
      return { shape: [texts.length, dims], data: texts.map((t) => embed(t, dims)), pooling: "mean" };
    }

    if (RERANKER_MODELS.has(model)) {
      const { query, contexts, top_k: topK } = inputs;
      if (typeof query !== "string" || !Array.isArray(contexts) || contexts.some((c) => typeof c?.text !== "string")) {
        call.outcome = "3003";
        throw upstream(3003, model);
      }
      call.texts = contexts.length;
      const scored = contexts
        .map((c, id) => ({ id, score: rerankScore(query, c.text) }))
        .sort((a, b) => b.score - a.score || a.id - b.id);
      return { response: topK === undefined ? scored : scored.slice(0, topK) };
    }

    if (!KNOWN_CHAT_MODELS.has(model)) {
      call.outcome = "5007";
      throw upstream(5007, model);
    }
    if (!Array.isArray(inputs.messages) || inputs.messages.length === 0) {
      call.outcome = "3003";
      throw upstream(3003, model);
    }
    const text = chatAnswer(inputs.messages);
    const prompt = inputs.messages.reduce((n, m) => n + tokens(String(m.content ?? "")), 0);
    const usage = { prompt_tokens: prompt, completion_tokens: tokens(text), total_tokens: prompt + tokens(text) };
    if (inputs.stream) {
      if (fault?.cut_after_events !== undefined) call.outcome = "cut";
      return streamOf(text, usage, fault?.cut_after_events);
    }
    return { response: text, usage };
  }

  script(match, faults, model = null) {
    state.rules.push({ match, faults, model, served: 0 });
    return state.rules.length;
  }

  calls(match = null) {
    return state.calls.filter((c) => match === null || c.matches.includes(match));
  }

  reset() {
    state.rules = [];
    state.calls = [];
  }
}

export default {
  fetch() {
    return new Response("Workers AI stand-in: call it through the AI service binding", { status: 404 });
  },
};
