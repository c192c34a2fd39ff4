// A local stand-in for R2's S3-compatible API that emits R2 event notifications, so the
// whole chain r2-sync → R2 → event → queue → processor runs locally in one piece. It runs as
// a second Worker in the service's `wrangler dev` process (`-c service -c r2-s3`), with an R2
// binding on the bucket the service reads and a producer on the service's ingest queue: the
// objects it writes are the objects the service reads, and its messages reach the service's
// own queue consumer. It must never do anything R2 would not: no message the documented
// format does not have, no operation R2's S3 API does not offer.
//
// Sources (read 2026-12):
//   [events] https://developers.cloudflare.com/r2/buckets/event-notifications/ ("Message format")
//   [s3]     https://developers.cloudflare.com/r2/api/s3/api/ (R2's S3 operations)
//   [sigv4]  https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
//
// S3 operations (path style, `/<bucket>/<key>`; the subset r2-sync's object_store client uses,
// plus CopyObject): ListObjectsV2, HeadObject, GetObject (with Range), PutObject (x-amz-meta-*
// become R2 custom metadata: r2-sync's `sha256`), CopyObject (x-amz-copy-source,
// x-amz-metadata-directive), DeleteObject, DeleteObjects (object_store sends r2-sync's deletes
// as `POST ?delete`), CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
// AbortMultipartUpload. Anything else (conditional writes among it) answers 501 NotImplemented.
//
// Events [events], after the write is stored, one message per changed object on the queue:
//   { account, action, bucket, object: { key, size, eTag }, eventTime, copySource? }
//   PutObject, CopyObject (with copySource: { bucket, object }), CompleteMultipartUpload;
//   DeleteObject with `object: { key }` only (size and eTag are "not present for object-delete
//   events"), sent only when an object was removed, one per key of a DeleteObjects.
//   LifecycleDeletion has no S3 request that causes it (R2 runs lifecycle rules on its own
//   schedule): `POST /__standin/lifecycle-expire?key=K` plays that part — it deletes K and
//   emits LifecycleDeletion. `GET /__standin/events` lists the messages sent (tests check
//   their shape against the documented one).
//
// Authentication: every request must carry an AWS Signature Version 4 `Authorization` header
// [sigv4] for the configured access key, and the signature is verified (canonical request,
// signing key derived from the secret, x-amz-date within 15 minutes, payload hash checked
// against x-amz-content-sha256 when the client signed it). Verifying rather than only checking
// the header's presence is what makes a wrong secret, a wrong region scope or a client that
// mangles key encoding fail here the way it fails against R2, instead of in production.
// Presigned URLs (query-string auth) and aws-chunked streaming uploads are not supported.

const MAX_SKEW_MS = 15 * 60 * 1000; // S3 refuses requests more than 15 minutes off [sigv4]
const MAX_LIST_KEYS = 1000; // ListObjectsV2's MaxKeys ceiling
const MAX_DELETE_KEYS = 1000; // DeleteObjects takes at most 1,000 keys per request
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const SENT_LOG_LIMIT = 1000;
const CONDITIONAL_HEADERS = ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"];
/** The latest messages sent, oldest first (one local isolate: module state is the stand-in's memory). */
const sent = [];

export default {
  async fetch(request, env) {
    const requestId = crypto.randomUUID().replaceAll("-", "").slice(0, 16).toUpperCase();
    try {
      return await handle(request, env, requestId);
    } catch (err) {
      if (err instanceof S3Error) return err.toResponse(requestId);
      if (err instanceof URIError) return new S3Error(400, "InvalidURI", "Couldn't parse the specified URI.").toResponse(requestId);
      console.error("r2-s3 stand-in:", err?.stack ?? err);
      return new S3Error(500, "InternalError", String(err?.message ?? err)).toResponse(requestId);
    }
  },
};

class S3Error extends Error {
  constructor(status, code, message, resource = "") {
    super(message);
    this.status = status;
    this.code = code;
    this.resource = resource;
  }
  toResponse(requestId) {
    const body =
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${this.code}</Code><Message>${xml(this.message)}</Message>` +
      `<Resource>${xml(this.resource)}</Resource><RequestId>${requestId}</RequestId></Error>`;
    return new Response(body, { status: this.status, headers: { "content-type": "application/xml", "x-amz-request-id": requestId } });
  }
}

async function handle(request, env, requestId) {
  const url = new URL(request.url);
  const method = request.method;
  const body = method === "GET" || method === "HEAD" ? new Uint8Array() : new Uint8Array(await request.arrayBuffer());
  await authenticate(request, url, body, env);

  const path = url.pathname;
  const ok = (init = {}) => ({ ...init, headers: { "x-amz-request-id": requestId, ...(init.headers ?? {}) } });
  if (path === "/__standin/events" && method === "GET") {
    return new Response(JSON.stringify(sent), ok({ headers: { "content-type": "application/json" } }));
  }
  if (path === "/__standin/lifecycle-expire" && method === "POST") {
    const key = url.searchParams.get("key") ?? "";
    const removed = await env.BUCKET.head(key);
    if (!removed) throw new S3Error(404, "NoSuchKey", "The specified key does not exist.", key);
    await env.BUCKET.delete(key);
    await notify(env, "LifecycleDeletion", { key });
    return new Response(null, ok({ status: 204 }));
  }

  // Path style: /<bucket>[/<key>]. The key is the rest of the path, percent-decoded once.
  const slash = path.indexOf("/", 1);
  const bucket = decodeURIComponent(slash < 0 ? path.slice(1) : path.slice(1, slash));
  const key = slash < 0 ? "" : decodeURIComponent(path.slice(slash + 1));
  if (bucket !== env.BUCKET_NAME) throw new S3Error(404, "NoSuchBucket", "The specified bucket does not exist.", bucket);
  const q = url.searchParams;
  if ((method === "PUT" || method === "POST") && CONDITIONAL_HEADERS.some((h) => request.headers.has(h)))
    throw new S3Error(501, "NotImplemented", "conditional writes are not supported by the local stand-in", key);

  if (!key) {
    if (method === "GET" && q.get("list-type") === "2") return listObjectsV2(env, q, ok);
    if (method === "POST" && q.has("delete")) return deleteObjects(env, body, ok);
    throw new S3Error(501, "NotImplemented", `${method} on the bucket is not supported by the local stand-in`, bucket);
  }

  if (method === "POST" && q.has("uploads")) {
    const upload = await env.BUCKET.createMultipartUpload(key, objectMetadata(request.headers));
    return xmlResponse(
      `<InitiateMultipartUploadResult><Bucket>${xml(bucket)}</Bucket><Key>${xml(key)}</Key><UploadId>${xml(upload.uploadId)}</UploadId></InitiateMultipartUploadResult>`,
      ok(),
    );
  }
  if (method === "PUT" && q.has("uploadId") && q.has("partNumber")) {
    const partNumber = Number(q.get("partNumber"));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000)
      throw new S3Error(400, "InvalidArgument", "partNumber must be an integer from 1 to 10000", key);
    const upload = env.BUCKET.resumeMultipartUpload(key, q.get("uploadId"));
    const part = await r2Call(() => upload.uploadPart(partNumber, body), key);
    return new Response(null, ok({ headers: { etag: `"${part.etag}"` } }));
  }
  if (method === "POST" && q.has("uploadId")) {
    const parts = [...new TextDecoder().decode(body).matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map(([, part]) => ({
      partNumber: Number(/<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(part)?.[1]),
      etag: unxml(/<ETag>([\s\S]*?)<\/ETag>/.exec(part)?.[1] ?? "").replaceAll('"', "").trim(),
    }));
    if (parts.length === 0) throw new S3Error(400, "MalformedXML", "CompleteMultipartUpload names no parts", key);
    const upload = env.BUCKET.resumeMultipartUpload(key, q.get("uploadId"));
    const object = await r2Call(() => upload.complete(parts), key);
    await notify(env, "CompleteMultipartUpload", { key, size: object.size, eTag: object.etag });
    return xmlResponse(
      `<CompleteMultipartUploadResult><Location>${xml(url.origin + path)}</Location><Bucket>${xml(bucket)}</Bucket><Key>${xml(key)}</Key><ETag>${xml(object.httpEtag)}</ETag></CompleteMultipartUploadResult>`,
      ok(),
    );
  }
  if (method === "DELETE" && q.has("uploadId")) {
    await r2Call(() => env.BUCKET.resumeMultipartUpload(key, q.get("uploadId")).abort(), key);
    return new Response(null, ok({ status: 204 }));
  }
  if (method === "PUT" && request.headers.has("x-amz-copy-source")) return copyObject(request, env, bucket, key, ok);
  if (method === "PUT") {
    const object = await env.BUCKET.put(key, body, objectMetadata(request.headers));
    await notify(env, "PutObject", { key, size: object.size, eTag: object.etag });
    return new Response(null, ok({ headers: { etag: object.httpEtag } }));
  }
  if (method === "HEAD" || method === "GET") {
    const object =
      method === "HEAD" ? await env.BUCKET.head(key) : await env.BUCKET.get(key, { range: request.headers.has("range") ? request.headers : undefined });
    if (!object) {
      if (method === "HEAD") return new Response(null, { status: 404, headers: { "x-amz-request-id": requestId } });
      throw new S3Error(404, "NoSuchKey", "The specified key does not exist.", key);
    }
    const headers = objectHeaders(object);
    if (method === "HEAD") {
      headers.set("content-length", String(object.size));
      return new Response(null, ok({ headers: Object.fromEntries(headers) }));
    }
    const range = object.range;
    if (range && request.headers.has("range")) {
      const start = range.offset ?? object.size - range.suffix;
      const length = range.length ?? object.size - start;
      headers.set("content-range", `bytes ${start}-${start + length - 1}/${object.size}`);
      return new Response(object.body, ok({ status: 206, headers: Object.fromEntries(headers) }));
    }
    return new Response(object.body, ok({ headers: Object.fromEntries(headers) }));
  }
  if (method === "DELETE") {
    // S3 answers 204 whether or not the key existed; R2 notifies only about a removal [events].
    const existed = await env.BUCKET.head(key);
    await env.BUCKET.delete(key);
    if (existed) await notify(env, "DeleteObject", { key });
    return new Response(null, ok({ status: 204 }));
  }
  throw new S3Error(501, "NotImplemented", `${method} ${[...q.keys()].join("&")} is not supported by the local stand-in`, key);
}

async function listObjectsV2(env, q, ok) {
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? undefined;
  const maxKeys = Math.min(Number(q.get("max-keys") ?? MAX_LIST_KEYS) || MAX_LIST_KEYS, MAX_LIST_KEYS);
  const token = q.get("continuation-token") ?? undefined;
  const page = await env.BUCKET.list({
    prefix,
    delimiter,
    limit: maxKeys,
    cursor: token,
    startAfter: token ? undefined : (q.get("start-after") ?? undefined),
  });
  const contents = page.objects
    .map(
      (o) =>
        `<Contents><Key>${xml(o.key)}</Key><LastModified>${o.uploaded.toISOString()}</LastModified><ETag>${xml(o.httpEtag)}</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
    )
    .join("");
  const prefixes = (page.delimitedPrefixes ?? []).map((p) => `<CommonPrefixes><Prefix>${xml(p)}</Prefix></CommonPrefixes>`).join("");
  return xmlResponse(
    `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${xml(env.BUCKET_NAME)}</Name><Prefix>${xml(prefix)}</Prefix>` +
      `<KeyCount>${page.objects.length + (page.delimitedPrefixes ?? []).length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys>` +
      (delimiter ? `<Delimiter>${xml(delimiter)}</Delimiter>` : "") +
      `<IsTruncated>${page.truncated}</IsTruncated>` +
      (token ? `<ContinuationToken>${xml(token)}</ContinuationToken>` : "") +
      (page.truncated ? `<NextContinuationToken>${xml(page.cursor)}</NextContinuationToken>` : "") +
      `${contents}${prefixes}</ListBucketResult>`,
    ok(),
  );
}

/** DeleteObjects (r2-sync's deletes: object_store sends `POST ?delete` even for one key). */
async function deleteObjects(env, body, ok) {
  const text = new TextDecoder().decode(body);
  const keys = [...text.matchAll(/<Object>[\s\S]*?<Key>([\s\S]*?)<\/Key>[\s\S]*?<\/Object>/g)].map(([, k]) => unxml(k));
  if (keys.length === 0 || keys.length > MAX_DELETE_KEYS) throw new S3Error(400, "MalformedXML", `a Delete names 1 to ${MAX_DELETE_KEYS} objects`);
  const quiet = /<Quiet>\s*true\s*<\/Quiet>/i.test(text);
  const deleted = [];
  for (const key of keys) {
    const existed = await env.BUCKET.head(key);
    await env.BUCKET.delete(key);
    // One DeleteObject event per removed object: the documented actions have no bulk one [events].
    if (existed) await notify(env, "DeleteObject", { key });
    deleted.push(key);
  }
  return xmlResponse(
    `<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${quiet ? "" : deleted.map((k) => `<Deleted><Key>${xml(k)}</Key></Deleted>`).join("")}</DeleteResult>`,
    ok(),
  );
}

async function copyObject(request, env, bucket, key, ok) {
  // `x-amz-copy-source: [/]<bucket>/<url-encoded key>[?versionId=…]`
  const raw = request.headers.get("x-amz-copy-source").replace(/^\//, "").split("?")[0];
  const cut = raw.indexOf("/");
  const sourceBucket = decodeURIComponent(raw.slice(0, cut));
  const sourceKey = decodeURIComponent(raw.slice(cut + 1));
  if (cut < 1 || !sourceKey) throw new S3Error(400, "InvalidArgument", "x-amz-copy-source must be <bucket>/<key>", key);
  if (sourceBucket !== env.BUCKET_NAME) throw new S3Error(404, "NoSuchBucket", "The specified bucket does not exist.", sourceBucket);
  const source = await env.BUCKET.get(sourceKey);
  if (!source) throw new S3Error(404, "NoSuchKey", "The specified key does not exist.", sourceKey);
  const replace = (request.headers.get("x-amz-metadata-directive") ?? "COPY").toUpperCase() === "REPLACE";
  const metadata = replace ? objectMetadata(request.headers) : { httpMetadata: source.httpMetadata, customMetadata: source.customMetadata };
  const object = await env.BUCKET.put(key, await source.arrayBuffer(), metadata);
  await notify(env, "CopyObject", { key, size: object.size, eTag: object.etag }, { bucket: sourceBucket, object: sourceKey });
  return xmlResponse(
    `<CopyObjectResult><LastModified>${object.uploaded.toISOString()}</LastModified><ETag>${xml(object.httpEtag)}</ETag></CopyObjectResult>`,
    ok({ headers: { etag: object.httpEtag } }),
  );
}

/** Sends one event notification in the documented message format [events]. */
async function notify(env, action, object, copySource) {
  const message = { account: env.ACCOUNT_ID, action, bucket: env.BUCKET_NAME, object, eventTime: new Date().toISOString() };
  if (copySource) message.copySource = copySource;
  await env.EVENTS.send(message, { contentType: "json" });
  sent.push(message);
  if (sent.length > SENT_LOG_LIMIT) sent.shift();
}

/** R2 binding errors (unknown upload id, a part too small) as S3 errors, not 500s. */
async function r2Call(call, key) {
  try {
    return await call();
  } catch (err) {
    const message = String(err?.message ?? err);
    if (/upload/i.test(message) && /(not ?found|does not exist|no such)/i.test(message)) throw new S3Error(404, "NoSuchUpload", message, key);
    throw new S3Error(400, "InvalidRequest", message, key);
  }
}

function objectMetadata(headers) {
  const customMetadata = {};
  for (const [name, value] of headers) if (name.startsWith("x-amz-meta-")) customMetadata[name.slice("x-amz-meta-".length)] = value;
  const httpMetadata = {};
  for (const [header, field] of HTTP_METADATA) if (headers.has(header)) httpMetadata[field] = headers.get(header);
  return { httpMetadata, customMetadata };
}

const HTTP_METADATA = [
  ["content-type", "contentType"],
  ["content-language", "contentLanguage"],
  ["content-disposition", "contentDisposition"],
  ["content-encoding", "contentEncoding"],
  ["cache-control", "cacheControl"],
];

function objectHeaders(object) {
  const headers = new Headers({ etag: object.httpEtag, "last-modified": object.uploaded.toUTCString(), "accept-ranges": "bytes" });
  for (const [header, field] of HTTP_METADATA) if (object.httpMetadata?.[field]) headers.set(header, object.httpMetadata[field]);
  if (!headers.has("content-type")) headers.set("content-type", "application/octet-stream");
  for (const [name, value] of Object.entries(object.customMetadata ?? {})) headers.set(`x-amz-meta-${name}`, value);
  return headers;
}

function xmlResponse(inner, init) {
  return new Response(`<?xml version="1.0" encoding="UTF-8"?>\n${inner}`, { ...init, headers: { "content-type": "application/xml", ...init.headers } });
}

function unxml(text) {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&(lt|gt|quot|apos|amp);/g, (_, e) => ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" })[e]);
}

function xml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]);
}

// ---- AWS Signature Version 4 [sigv4] --------------------------------------------------------

async function authenticate(request, url, body, env) {
  const header = request.headers.get("authorization");
  if (!header) throw new S3Error(403, "AccessDenied", "Requests must be signed (AWS Signature Version 4 Authorization header)");
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,\s*Signature=([0-9a-f]{64})\s*$/.exec(header);
  if (!m) throw new S3Error(400, "AuthorizationHeaderMalformed", "The Authorization header is not an AWS4-HMAC-SHA256 header");
  const [, credential, signedHeaders, signature] = m;
  const [accessKeyId, day, region, service, terminal] = credential.split("/");
  if (accessKeyId !== env.ACCESS_KEY_ID) throw new S3Error(403, "InvalidAccessKeyId", "The access key ID you provided does not exist in our records.");
  if (service !== "s3" || terminal !== "aws4_request" || !/^\d{8}$/.test(day ?? ""))
    throw new S3Error(400, "AuthorizationHeaderMalformed", `bad credential scope ${credential}`);
  const amzDate = request.headers.get("x-amz-date") ?? "";
  const at = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!at || !amzDate.startsWith(day)) throw new S3Error(403, "AccessDenied", "x-amz-date is missing or does not match the credential scope");
  const time = Date.UTC(+at[1], +at[2] - 1, +at[3], +at[4], +at[5], +at[6]);
  if (Math.abs(Date.now() - time) > MAX_SKEW_MS) throw new S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.");
  const payloadHash = request.headers.get("x-amz-content-sha256");
  if (!payloadHash) throw new S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  if (payloadHash.startsWith("STREAMING-")) throw new S3Error(501, "NotImplemented", "aws-chunked uploads are not supported by the local stand-in");
  if (payloadHash !== "UNSIGNED-PAYLOAD") {
    const actual = body.length === 0 ? EMPTY_SHA256 : hex(await crypto.subtle.digest("SHA-256", body));
    if (actual !== payloadHash) throw new S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  const names = signedHeaders.split(";");
  if (!names.includes("host")) throw new S3Error(400, "AuthorizationHeaderMalformed", "SignedHeaders must include host");
  const canonicalHeaders = names
    .map((name) => {
      const value = name === "host" ? (request.headers.get("host") ?? url.host) : (request.headers.get(name) ?? "");
      return `${name}:${value.trim().replace(/\s+/g, " ")}\n`;
    })
    .join("");
  const canonicalRequest = [request.method, url.pathname, canonicalQuery(url.search), canonicalHeaders, signedHeaders, payloadHash].join("\n");
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(await crypto.subtle.digest("SHA-256", utf8(canonicalRequest)))].join("\n");
  let key = utf8(`AWS4${env.SECRET_ACCESS_KEY}`);
  for (const part of [day, region, "s3", "aws4_request"]) key = await hmac(key, part);
  const expected = hex(await hmac(key, stringToSign));
  if (expected !== signature)
    throw new S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.");
}

/** Query parameters decoded, strictly re-encoded and sorted by name, then value [sigv4]. */
function canonicalQuery(search) {
  return [...new URLSearchParams(search)]
    .map(([k, v]) => [strictEncode(k), strictEncode(v)])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

function strictEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function hmac(key, text) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, utf8(text)));
}

function utf8(text) {
  return new TextEncoder().encode(text);
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
