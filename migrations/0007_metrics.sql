-- Metrics (issue 15): the local store of data points, which the tests,
-- `wrangler dev` and GET /admin/metrics read (Analytics Engine holds the
-- same points in deployed environments; METRICS_SINK chooses). One row per
-- request, ingestion step attempt, finished run, reconciliation page and
-- provider call; columns as in portfolio_core::metrics::DataPoint (docs/operations.md,
-- "Metrics"). The daily cron deletes rows older than METRICS_RETENTION_DAYS
-- and the oldest beyond METRICS_MAX_ROWS.
CREATE TABLE metric_points (
  id           INTEGER PRIMARY KEY,
  at           INTEGER NOT NULL,                       -- ms since the epoch
  kind         TEXT NOT NULL CHECK (kind IN ('request', 'step', 'run', 'reconcile', 'provider')),
  name         TEXT NOT NULL,                          -- route, step, document key, 'run <id>', provider
  outcome      TEXT NOT NULL,
  detail       TEXT NOT NULL DEFAULT '',
  duration_ms  REAL NOT NULL DEFAULT 0,
  status       INTEGER NOT NULL DEFAULT 0,
  items        REAL NOT NULL DEFAULT 0,
  tokens       REAL NOT NULL DEFAULT 0,
  retries      REAL NOT NULL DEFAULT 0,
  cost_usd     REAL NOT NULL DEFAULT 0,
  enqueued     REAL NOT NULL DEFAULT 0
);
CREATE INDEX metric_points_at ON metric_points(at);
-- The alerts read one kind over the last minutes (requests, provider calls).
CREATE INDEX metric_points_kind_at ON metric_points(kind, at);

-- Dead letters can be replayed from the admin API; each replay is counted.
ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER;
ALTER TABLE dead_letters ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dead_letters_received ON dead_letters(received_at);
