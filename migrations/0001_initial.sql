-- Initial schema of the portfolio document service.
-- Times are milliseconds since the Unix epoch (INTEGER); JSON lives in TEXT.
-- A document is identified by its R2 key; its chunks carry a generation
-- (`version`) and only `documents.active_version` is ever read by queries, so
-- a half-written generation is invisible and a failed run never loses the old one.

CREATE TABLE companies (
  id          INTEGER PRIMARY KEY,
  slug        TEXT NOT NULL UNIQUE,
  name        TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);

CREATE TABLE documents (
  id              INTEGER PRIMARY KEY,
  key             TEXT NOT NULL UNIQUE,              -- R2 object key
  company_id      INTEGER REFERENCES companies(id) ON DELETE SET NULL,
  title           TEXT,
  tags            TEXT NOT NULL DEFAULT '[]',         -- JSON array of document-level tags
  metadata        TEXT NOT NULL DEFAULT '{}',         -- JSON object from front matter
  sha256          TEXT,                               -- content hash of the active generation
  etag            TEXT,                               -- R2 etag of the active generation's object
  size            INTEGER,
  status          TEXT NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'processing', 'ready', 'failed', 'deleted')),
  step            TEXT,                               -- current pipeline step while processing
  active_version  INTEGER,                            -- NULL until the first commit
  latest_version  INTEGER NOT NULL DEFAULT 0,         -- highest generation ever started
  chunk_count     INTEGER NOT NULL DEFAULT 0,         -- chunks of the active generation
  attempts        INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  processed_at    INTEGER
);
CREATE INDEX documents_status_updated ON documents(status, updated_at);
CREATE INDEX documents_company ON documents(company_id);

CREATE TABLE chunks (
  id            INTEGER PRIMARY KEY,
  document_id   INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  version       INTEGER NOT NULL,                     -- generation
  chunk_index   INTEGER NOT NULL,
  heading_path  TEXT NOT NULL DEFAULT '',             -- "Acme > Projects > Search"
  content       TEXT NOT NULL,
  token_count   INTEGER NOT NULL,
  start_byte    INTEGER NOT NULL,
  end_byte      INTEGER NOT NULL,
  start_line    INTEGER NOT NULL,
  end_line      INTEGER NOT NULL,
  tags          TEXT NOT NULL DEFAULT '[]',           -- JSON array
  vector_id     TEXT NOT NULL UNIQUE,                 -- "<document_id>:<version>:<chunk_index>"
  created_at    INTEGER NOT NULL,
  UNIQUE (document_id, version, chunk_index)
);
CREATE INDEX chunks_document_version ON chunks(document_id, version);

-- Keyword search (BM25) over chunk text, kept in sync by triggers.
CREATE VIRTUAL TABLE chunks_fts USING fts5(
  content,
  heading_path,
  content = 'chunks',
  content_rowid = 'id',
  tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
  INSERT INTO chunks_fts(rowid, content, heading_path) VALUES (new.id, new.content, new.heading_path);
END;

CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, content, heading_path) VALUES ('delete', old.id, old.content, old.heading_path);
END;

CREATE TRIGGER chunks_fts_update AFTER UPDATE OF content, heading_path ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, content, heading_path) VALUES ('delete', old.id, old.content, old.heading_path);
  INSERT INTO chunks_fts(rowid, content, heading_path) VALUES (new.id, new.content, new.heading_path);
END;

-- The D1-exact vector index (local default, small deployments). Deliberately
-- separate from `chunks`: it mirrors what Vectorize holds, so reconciliation
-- can compare the two stores the same way for either implementation.
CREATE TABLE vector_index (
  id           TEXT PRIMARY KEY,                      -- vector id
  document_id  INTEGER NOT NULL,
  company_id   INTEGER,
  version      INTEGER NOT NULL,
  tags         TEXT NOT NULL DEFAULT '[]',
  dimensions   INTEGER NOT NULL,
  embedding    BLOB NOT NULL                          -- little-endian f32 × dimensions
);
CREATE INDEX vector_index_document ON vector_index(document_id, version);

-- One row per ingestion run of a document (DocumentProcessor).
CREATE TABLE processing_runs (
  id            INTEGER PRIMARY KEY,
  document_key  TEXT NOT NULL,
  document_id   INTEGER,
  version       INTEGER,
  reason        TEXT NOT NULL,
  status        TEXT NOT NULL
                CHECK (status IN ('running', 'ready', 'unchanged', 'failed', 'superseded', 'deleted')),
  started_at    INTEGER NOT NULL,
  finished_at   INTEGER,
  chunk_count   INTEGER,
  attempts      INTEGER NOT NULL DEFAULT 0,
  error         TEXT,
  steps         TEXT NOT NULL DEFAULT '[]'            -- JSON: [{ step, started_at, duration_ms, attempts }]
);
CREATE INDEX processing_runs_key_started ON processing_runs(document_key, started_at);

-- One row per reconciliation run (cron or admin), across its continuations.
CREATE TABLE reconcile_runs (
  id              INTEGER PRIMARY KEY,
  trigger         TEXT NOT NULL,                      -- 'cron' | 'admin'
  status          TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
  started_at      INTEGER NOT NULL,
  finished_at     INTEGER,
  objects_seen    INTEGER NOT NULL DEFAULT 0,
  documents_seen  INTEGER NOT NULL DEFAULT 0,
  enqueued        TEXT NOT NULL DEFAULT '{}',         -- JSON: { reason: count }
  errors          TEXT NOT NULL DEFAULT '[]'          -- JSON array of messages
);
CREATE INDEX reconcile_runs_started ON reconcile_runs(started_at);

-- Messages that could never be processed (malformed, or out of retries).
CREATE TABLE dead_letters (
  id            INTEGER PRIMARY KEY,
  queue         TEXT NOT NULL,
  message_id    TEXT NOT NULL,
  document_key  TEXT,
  body          TEXT NOT NULL,
  error         TEXT,
  attempts      INTEGER NOT NULL DEFAULT 0,
  received_at   INTEGER NOT NULL
);
CREATE INDEX dead_letters_key ON dead_letters(document_key);

-- Supabase migration: legacy UUIDs → integer ids, so re-runs are idempotent.
CREATE TABLE legacy_id_map (
  entity     TEXT NOT NULL CHECK (entity IN ('company', 'document', 'chunk')),
  legacy_id  TEXT NOT NULL,
  new_id     INTEGER NOT NULL,
  PRIMARY KEY (entity, legacy_id)
);
