// The local S3 endpoint for the dev stack's R2 (tests/standins/r2-s3.js): writes the two
// wrangler configs it runs from and signs S3 requests for tests. The stand-in joins the
// service's `wrangler dev` process as a second config (`-c service -c r2-s3.json`: same local
// R2 bucket, a producer on the service's ingest queue, both by name from the service's config);
// r2-s3-port.json runs in a second `wrangler dev` process and gives it its own port, reaching
// it through wrangler's dev registry (WRANGLER_REGISTRY_PATH, the same for both processes).
// Used by tests/harness/local-stack.mjs (`s3: true`) and scripts/dev.sh (`--s3`).
// CLI (dev.sh): node tests/standins/r2-s3-setup.mjs configs --dir DIR --service-config FILE
//   writes the configs (and DIR/credentials.json once) and prints shell assignments.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { experimental_readRawConfig } from "wrangler";

const root = path.resolve(import.meta.dirname, "../..");

/** The stand-in's Worker name: what the port Worker's service binding names in the dev registry. */
export const S3_STANDIN_NAME = "r2-s3-standin";
/** R2's S3 API takes the region `auto` (https://developers.cloudflare.com/r2/api/s3/api/). */
export const S3_REGION = "auto";
/** The `account` of the event messages: the local stack has no Cloudflare account. */
const LOCAL_ACCOUNT_ID = "00000000000000000000000000000000";

/** A fresh access key pair for a local endpoint (never a real credential). */
export function newCredentials() {
  return { accessKeyId: `LOCAL${randomBytes(8).toString("hex").toUpperCase()}`, secretAccessKey: randomBytes(24).toString("hex") };
}

/**
 * Writes `dir/r2-s3.json` (the stand-in, for the service's process) and `dir/r2-s3-port.json`
 * (its port) for the service whose wrangler config is `serviceConfig`. The bucket is the
 * service's DOCUMENTS bucket and the queue its INGEST_QUEUE producer's queue.
 */
export function writeS3StandinConfigs({ dir, serviceConfig, credentials }) {
  const { rawConfig } = experimental_readRawConfig({ config: serviceConfig });
  const bucket = rawConfig.r2_buckets?.find((b) => b.binding === "DOCUMENTS")?.bucket_name;
  const queue = rawConfig.queues?.producers?.find((p) => p.binding === "INGEST_QUEUE")?.queue;
  if (!bucket || !queue) throw new Error(`${serviceConfig} has no DOCUMENTS bucket or INGEST_QUEUE producer`);
  mkdirSync(dir, { recursive: true });
  const standinConfig = path.join(dir, "r2-s3.json");
  writeFileSync(
    standinConfig,
    JSON.stringify(
      {
        name: S3_STANDIN_NAME,
        main: path.join(root, "tests/standins/r2-s3.js"),
        compatibility_date: rawConfig.compatibility_date,
        r2_buckets: [{ binding: "BUCKET", bucket_name: bucket }],
        queues: { producers: [{ binding: "EVENTS", queue }] },
        vars: {
          BUCKET_NAME: bucket,
          ACCOUNT_ID: LOCAL_ACCOUNT_ID,
          ACCESS_KEY_ID: credentials.accessKeyId,
          SECRET_ACCESS_KEY: credentials.secretAccessKey,
        },
      },
      null,
      2,
    ),
  );
  const portConfig = path.join(dir, "r2-s3-port.json");
  writeFileSync(
    portConfig,
    JSON.stringify(
      {
        name: `${S3_STANDIN_NAME}-port`,
        main: path.join(root, "tests/standins/r2-s3-port.js"),
        compatibility_date: rawConfig.compatibility_date,
        services: [{ binding: "R2_S3", service: S3_STANDIN_NAME }],
      },
      null,
      2,
    ),
  );
  return { standinConfig, portConfig, bucket, queue };
}

/**
 * An S3 request signed with AWS Signature Version 4, as an S3 client sends it
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
 * `key` is the object key (encoded here per segment); `query` an object.
 */
export async function s3Request({ endpoint, bucket, accessKeyId, secretAccessKey, region = S3_REGION }, method, key, { query = {}, headers = {}, body } = {}) {
  const url = new URL(endpoint);
  url.pathname = `/${bucket}${key ? `/${key.split("/").map(strictEncode).join("/")}` : ""}`;
  const params = Object.entries(query).map(([k, v]) => [strictEncode(k), strictEncode(String(v))]).sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1));
  url.search = params.map(([k, v]) => `${k}=${v}`).join("&");
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const all = { ...Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)])), host: url.host, "x-amz-date": amzDate, "x-amz-content-sha256": sha256(payload) };
  const names = Object.keys(all).sort();
  const canonical = [method, url.pathname, url.search.slice(1), names.map((n) => `${n}:${all[n].trim()}\n`).join(""), names.join(";"), all["x-amz-content-sha256"]].join("\n");
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  let signingKey = `AWS4${secretAccessKey}`;
  for (const part of [day, region, "s3", "aws4_request"]) signingKey = createHmac("sha256", signingKey).update(part).digest();
  const signature = createHmac("sha256", signingKey).update(toSign).digest("hex");
  const { host: _host, ...sent } = all;
  sent.authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return fetch(url, { method, headers: sent, body: body === undefined ? undefined : payload });
}

function strictEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}

/** Resolves once `endpoint` is answered by the stand-in itself (an unsigned request's 403). */
export async function waitForS3Standin(endpoint, { timeoutMs = 60_000, alive = () => true } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(endpoint);
      await res.arrayBuffer();
      if (res.status === 403 && res.headers.has("x-amz-request-id")) return;
    } catch {}
    if (!alive()) throw new Error("the S3 endpoint's wrangler dev exited");
    if (Date.now() > deadline) throw new Error(`the S3 stand-in did not answer on ${endpoint}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const [command, ...rest] = process.argv.slice(2);
  const arg = (name) => rest[rest.indexOf(`--${name}`) + 1];
  if (command !== "configs" || !rest.includes("--dir") || !rest.includes("--service-config")) {
    console.error("usage: node tests/standins/r2-s3-setup.mjs configs --dir DIR --service-config FILE");
    process.exit(2);
  }
  const dir = path.resolve(arg("dir"));
  // One key pair per local state, kept next to it (under .wrangler/, never committed).
  const file = path.join(dir, "credentials.json");
  mkdirSync(dir, { recursive: true });
  if (!existsSync(file)) writeFileSync(file, JSON.stringify(newCredentials()), { mode: 0o600 });
  const credentials = JSON.parse(readFileSync(file, "utf8"));
  const out = writeS3StandinConfigs({ dir, serviceConfig: path.resolve(arg("service-config")), credentials });
  const quote = (v) => `'${String(v).replaceAll("'", "'\\''")}'`;
  for (const [name, value] of Object.entries({
    s3_standin_config: out.standinConfig,
    s3_port_config: out.portConfig,
    s3_bucket: out.bucket,
    s3_access_key_id: credentials.accessKeyId,
    s3_secret_access_key: credentials.secretAccessKey,
  }))
    console.log(`${name}=${quote(value)}`);
}
