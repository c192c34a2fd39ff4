// The three kinds of clients the service speaks to, each through its own
// official library, against the built Worker under `wrangler dev` with the
// sample corpus loaded and the OpenAI-compatible provider stand-in answering
// (its scripted faults make a provider fail on demand):
// - the `openai` package: a completion, a streamed one, refused requests;
// - the `ai` package's client side, as `useChat` uses it
//   (`DefaultChatTransport.sendMessages`, then `readUIMessageStream`);
// - the `@modelcontextprotocol/sdk` client over Streamable HTTP.
// Plus: `/api/chat`'s own `{ question }` shape answers as before.
// Run: node_modules/.bin/node --test tests/local/clients.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";
import { startLocalStack, stopLocalStack } from "../harness/local-stack.mjs";
import { startProviderStandin } from "../standins/provider.mjs";

// Not secrets: credentials of this throwaway local stack and its stand-in.
const TOKEN = "clients-test-token-not-a-secret-000001";
const KEY = "standin-key-not-a-secret";
const MODEL = "portfolio-docs";
const samples = path.resolve(import.meta.dirname, "../../samples");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// What each client sent and got, one line an exchange: printed at the end and
// kept in test-output/clients-transcript.txt.
const transcript = [];
const said = (who, sent, got) => transcript.push(`${who}  > ${sent}\n${" ".repeat(who.length)}  < ${String(got).replace(/\s+/g, " ").slice(0, 220)}`);
let base;
let standin;
const keys = [];

function markdownFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? markdownFiles(full) : name.endsWith(".md") ? [full] : [];
  });
}

/** Makes the stand-in's chat completions fail for questions containing `match`. */
async function failChatsAbout(match) {
  const res = await fetch(`${standin.url}/__standin/rules`, {
    method: "POST",
    body: JSON.stringify({ match, path: "/v1/chat/completions", faults: [{ status: 500 }], repeat: true }),
  });
  assert.equal(res.status, 200);
}

before(async () => {
  standin = await startProviderStandin({ apiKey: KEY });
  base = await startLocalStack({
    name: "clients",
    adminToken: TOKEN,
    vars: { CHAT_PROVIDER: "openai", OPENAI_BASE_URL: standin.url, PROVIDER_TIMEOUT_MS: "10000" },
    secrets: { OPENAI_API_KEY: KEY },
    drop: ["ratelimits"],
  });
  const auth = { authorization: `Bearer ${TOKEN}` };
  for (const file of markdownFiles(samples)) {
    const key = path.relative(samples, file).split(path.sep).join("/");
    const res = await fetch(`${base}/admin/documents/${key}`, { method: "PUT", headers: auth, body: readFileSync(file) });
    assert.equal(res.status, 202, await res.text());
    keys.push(key);
  }
  for (const key of keys) {
    for (let i = 0; ; i++) {
      const doc = await (await fetch(`${base}/admin/documents/${key}`, { headers: auth })).json();
      if (doc.status === "ready") break;
      assert.ok(i < 240 && doc.status !== "failed", `${key} not ready: ${JSON.stringify(doc)}`);
      await sleep(250);
    }
  }
});

after(async () => {
  stopLocalStack();
  await standin?.close();
  mkdirSync(path.resolve(import.meta.dirname, "../../test-output"), { recursive: true });
  writeFileSync(path.resolve(import.meta.dirname, "../../test-output/clients-transcript.txt"), `${transcript.join("\n")}\n`);
  console.log(transcript.join("\n"));
});

describe("the openai package", () => {
  const client = () => new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused-while-public", maxRetries: 0 });

  test("lists the service's one model", async () => {
    const models = [];
    for await (const model of client().models.list()) models.push(model.id);
    assert.deepEqual(models, [MODEL]);
    said("openai", "models.list()", JSON.stringify(models));
  });

  test("a completion answers from the documents, citing them, with the sources alongside", async () => {
    const completion = await client().chat.completions.create({
      model: MODEL,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Which database does Northwind's order platform use?" },
      ],
      company: "northwind",
    });
    assert.equal(completion.object, "chat.completion");
    const text = completion.choices[0].message.content;
    assert.match(text, /\[1\]/);
    assert.match(text, /Which database does Northwind's order platform use\?/);
    assert.equal(completion.choices[0].finish_reason, "stop");
    assert.ok(completion.sources.length > 0, "sources in the extension field");
    assert.ok(completion.sources.every((s) => s.company === "northwind"), JSON.stringify(completion.sources));
    assert.deepEqual(completion.sources.map((s) => s.number), completion.sources.map((_, i) => i + 1));
    said("openai", "chat.completions.create({ user: \"Which database does Northwind's order platform use?\", company: \"northwind\" })", `${text} | sources: ${completion.sources.map((s) => `[${s.number}] ${s.key}`).join(", ")}`);
  });

  test("a streamed completion sends the text in chunks and the sources on the last one", async () => {
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [
        { role: "user", content: "What does Acme Robotics build?" },
        { role: "assistant", content: "Robots [1]." },
        { role: "user", content: "How do they simulate them?" },
      ],
      stream: true,
    });
    let text = "";
    let chunks = 0;
    let last;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? "";
      last = chunk;
    }
    assert.ok(chunks >= 3, `${chunks} chunks`);
    assert.match(text, /\[1\]/);
    assert.match(text, /How do they simulate them\?/);
    assert.equal(last.choices[0].finish_reason, "stop");
    assert.ok(last.sources.length > 0);
    assert.ok(last.sources.some((s) => s.key.startsWith("companies/acme-robotics/")), JSON.stringify(last.sources));
    said("openai", "chat.completions.create({ stream: true, …, user: \"How do they simulate them?\" })", `${chunks} chunks: ${text} | last chunk's sources: ${last.sources.map((s) => s.key).join(", ")}`);
  });

  test("refused requests arrive as APIError with OpenAI's status, code and param", async () => {
    await assert.rejects(
      client().chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
      (e) => {
        said("openai", 'chat.completions.create({ model: "gpt-4o" })', `APIError ${e.status} ${e.code} (param ${e.param}): ${e.message}`);
        return e instanceof OpenAI.APIError && e.status === 404 && e.code === "model_not_found" && e.param === "model";
      },
    );
    await assert.rejects(
      client().chat.completions.create({ model: MODEL, messages: [{ role: "assistant", content: "hi" }] }),
      (e) => e instanceof OpenAI.BadRequestError && e.code === "bad_messages" && e.type === "invalid_request_error",
    );
    await assert.rejects(
      client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], tags: Array(11).fill("t") }),
      (e) => e instanceof OpenAI.BadRequestError && e.code === "bad_tags" && e.param === "tags",
    );
  });

  test("a provider failing mid-stream is an APIError, not a truncated answer", async () => {
    await failChatsAbout("lighthouse keepers");
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Who employs lighthouse keepers?" }],
      stream: true,
    });
    await assert.rejects(
      (async () => {
        for await (const _ of stream);
      })(),
      (e) => e instanceof OpenAI.APIError && e.code === "provider_error" && /request id/.test(e.message),
    );
  });
});

describe("the ai package, as useChat uses it", () => {
  const transport = (body) => new DefaultChatTransport({ api: `${base}/api/chat`, body });
  const userMessage = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });

  /** Sends like `useChat` and reads the answer as it builds it: the final message and errors. */
  async function chat(messages, body) {
    const errors = [];
    const stream = await transport(body).sendMessages({
      trigger: "submit-message",
      chatId: "chat-1",
      messageId: undefined,
      messages,
      abortSignal: undefined,
    });
    let message;
    for await (const snapshot of readUIMessageStream({ stream, onError: (e) => errors.push(e) })) message = snapshot;
    return { message, errors };
  }

  test("text and source parts arrive", async () => {
    const { message, errors } = await chat([userMessage("u1", "Which database does Northwind's order platform use?")], { company: "northwind" });
    assert.deepEqual(errors, []);
    assert.equal(message.role, "assistant");
    const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
    assert.match(text, /\[1\]/);
    const sources = message.parts.filter((p) => p.type === "source-document");
    assert.ok(sources.length > 0, JSON.stringify(message.parts));
    assert.equal(sources[0].sourceId, "1");
    assert.ok(sources.every((s) => s.filename.startsWith("companies/northwind/")), JSON.stringify(sources));
    assert.equal(sources[0].providerMetadata.portfolio.company, "northwind");
    said("ai", "DefaultChatTransport.sendMessages(user: \"Which database does Northwind's order platform use?\") + readUIMessageStream", `text: ${text} | source-document parts: ${sources.map((p) => p.filename).join(", ")}`);
  });

  test("a follow-up carries the conversation, as useChat resends it", async () => {
    const first = await chat([userMessage("u1", "What does Acme Robotics build?")]);
    const { message, errors } = await chat([
      userMessage("u1", "What does Acme Robotics build?"),
      first.message,
      userMessage("u2", "And how is it simulated?"),
    ]);
    assert.deepEqual(errors, []);
    const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
    assert.match(text, /And how is it simulated\?/);
  });

  test("a provider failure arrives as an error chunk", async () => {
    await failChatsAbout("harbour pilots");
    const { message, errors } = await chat([userMessage("u1", "Who trains harbour pilots?")]);
    assert.equal(errors.length, 1, `errors: ${errors}`);
    assert.match(errors[0].message, /could not be completed; quote request id/);
    said("ai", "sendMessages(user: \"Who trains harbour pilots?\"), the provider failing", `onError: ${errors[0].message}`);
    assert.ok(message.parts.some((p) => p.type === "source-document"), "the sources came before the failure");
  });

  test("a refused request is the transport's error, before any stream", async () => {
    await assert.rejects(chat([{ id: "a1", role: "assistant", parts: [{ type: "text", text: "hi" }] }]), /bad_messages/);
  });

  test("the { question } shape of /api/chat is unchanged", async () => {
    const res = await fetch(`${base}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "Which database does Northwind's order platform use?" }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-vercel-ai-ui-message-stream"), null);
    const body = await res.json();
    assert.deepEqual(Object.keys(body).sort(), ["answer", "model", "prompt_version", "sources", "timings"]);
    const refused = await fetch(`${base}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "x", colour: "red" }),
    });
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).error.code, "bad_json");
  });
});

describe("the MCP SDK client", () => {
  let client;

  before(async () => {
    client = new Client({ name: "clients-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
  });

  after(async () => {
    await client?.close();
  });

  const text = (result) => result.content.map((c) => c.text).join("");

  test("initializes on the latest protocol revision", () => {
    assert.equal(client.getServerVersion().name, "portfolio-docs");
    assert.ok(client.getServerCapabilities().tools);
    assert.equal(client.transport.protocolVersion, LATEST_PROTOCOL_VERSION);
    said("mcp", "initialize", `${JSON.stringify(client.getServerVersion())}, protocol ${client.transport.protocolVersion}`);
  });

  test("lists four tools with object input schemas", async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name), ["search_documents", "ask_question", "list_companies", "get_document"]);
    for (const tool of tools) assert.equal(tool.inputSchema.type, "object");
    said("mcp", "tools/list", tools.map((t) => `${t.name}(${Object.keys(t.inputSchema.properties ?? {}).join(", ")})`).join("; "));
    await client.ping();
  });

  test("search_documents finds passages, filtered by company", async () => {
    const result = await client.callTool({ name: "search_documents", arguments: { query: "refrigerated freight", company: "northwind", limit: 3 } });
    assert.notEqual(result.isError, true, text(result));
    const hits = result.structuredContent.results;
    assert.ok(hits.length > 0 && hits.length <= 3);
    assert.ok(hits.every((h) => h.company === "northwind"));
    assert.deepEqual(JSON.parse(text(result)).results.map((h) => h.key), hits.map((h) => h.key));
    said("mcp", 'tools/call search_documents { query: "refrigerated freight", company: "northwind", limit: 3 }', hits.map((h) => `${h.key} › ${h.heading_path}`).join("; "));
  });

  test("ask_question answers with citations and sources", async () => {
    const result = await client.callTool({ name: "ask_question", arguments: { question: "What does Lumen Health do?" } });
    assert.notEqual(result.isError, true, text(result));
    assert.match(result.structuredContent.answer, /\[1\]/);
    assert.ok(result.structuredContent.sources.length > 0);
    assert.match(text(result), /Sources:\n\[1\] /);
    said("mcp", 'tools/call ask_question { question: "What does Lumen Health do?" }', text(result));
  });

  test("list_companies names the sample companies", async () => {
    const result = await client.callTool({ name: "list_companies", arguments: {} });
    const slugs = result.structuredContent.companies.map((c) => c.slug);
    assert.deepEqual(slugs, ["acme-robotics", "lumen-health", "northwind"]);
    said("mcp", "tools/call list_companies {}", slugs.join(", "));
  });

  test("get_document returns the stored markdown", async () => {
    const key = "companies/northwind/overview.md";
    const result = await client.callTool({ name: "get_document", arguments: { key } });
    assert.notEqual(result.isError, true, text(result));
    assert.equal(text(result), readFileSync(path.join(samples, key), "utf8"));
    assert.equal(result.structuredContent.company, "northwind");
  });

  test("bad arguments are tool errors, and the session goes on", async () => {
    for (const [name, args] of [
      ["search_documents", { query: "x", limit: 500 }],
      ["ask_question", {}],
      ["get_document", { key: "../secrets" }],
      ["get_document", { key: "companies/nobody/none.md" }],
    ]) {
      const result = await client.callTool({ name, arguments: args });
      assert.equal(result.isError, true, `${name} ${JSON.stringify(args)}: ${JSON.stringify(result)}`);
      said("mcp", `tools/call ${name} ${JSON.stringify(args)}`, `isError: ${text(result)}`);
      assert.ok(text(result).length > 0);
    }
    await assert.rejects(client.callTool({ name: "drop_tables", arguments: {} }), /unknown tool/);
    assert.equal((await client.callTool({ name: "list_companies", arguments: {} })).isError, false);
  });

  test("protocol errors are JSON-RPC errors", async () => {
    const post = (body, headers = {}) =>
      fetch(`${base}/mcp`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
        body,
      });
    const malformed = await post("{oops");
    assert.equal(malformed.status, 400);
    assert.equal((await malformed.json()).error.code, -32700);
    assert.equal((await (await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "resources/list" }))).json()).error.code, -32601);
    assert.equal((await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }), { "mcp-protocol-version": "1999-01-01" })).status, 400);
    assert.equal((await fetch(`${base}/mcp`)).status, 405);
  });
});

describe("what each client adds over /api/chat", () => {
  // Not a benchmark gate: the figures for the closing note, measured in one
  // run against the same stack, each client through its own library, the
  // four interleaved round by round so drift hits them alike.
  test("median of 30 sequential answers per client", async () => {
    const question = "Which database does Northwind's order platform use?";
    const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused-while-public", maxRetries: 0 });
    const mcp = new Client({ name: "clients-latency", version: "1.0.0" });
    await mcp.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
    const transport = new DefaultChatTransport({ api: `${base}/api/chat` });
    const clients = {
      "/api/chat": async () => {
        const res = await fetch(`${base}/api/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ question }) });
        return (await res.json()).answer;
      },
      "openai": async () => (await openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: question }] })).choices[0].message.content,
      "ai (useChat transport)": async () => {
        const stream = await transport.sendMessages({ trigger: "submit-message", chatId: "c", messageId: undefined, messages: [{ id: "u", role: "user", parts: [{ type: "text", text: question }] }], abortSignal: undefined });
        let message;
        for await (const snapshot of readUIMessageStream({ stream })) message = snapshot;
        return message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
      },
      "mcp ask_question": async () => (await mcp.callTool({ name: "ask_question", arguments: { question } })).structuredContent.answer,
    };
    const times = Object.fromEntries(Object.keys(clients).map((k) => [k, []]));
    for (let round = 0; round < 30; round++) {
      for (const [name, ask] of Object.entries(clients)) {
        const started = performance.now();
        const answer = await ask();
        times[name].push(performance.now() - started);
        assert.match(answer, /\[1\]/, `${name}: ${answer}`);
      }
    }
    await mcp.close();
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const baseline = median(times["/api/chat"]);
    for (const [name, xs] of Object.entries(times)) {
      const m = median(xs);
      console.log(`[clients] ${name}: median ${m.toFixed(1)} ms of ${xs.length}${name === "/api/chat" ? "" : ` (${m - baseline >= 0 ? "+" : ""}${(m - baseline).toFixed(1)} ms over /api/chat)`}`);
    }
  });
});
