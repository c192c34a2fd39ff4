// The `vectorize` project's setup, run before each test file (each gets a
// fresh stand-in index): creates the metadata indexes the service filters on
// and waits until they are in effect, before any vector is written, as the
// deploy steps in docs/going-live.md do with `wrangler vectorize create-metadata-index`.
// Vectors written before an index exists are never filterable on it
// (tests/vectorize_metadata_index.spec.ts shows what happens without this).
import { env } from "cloudflare:test";
import { createMetadataIndexes } from "./vector_state";

await createMetadataIndexes((env as any).VECTORIZE);
