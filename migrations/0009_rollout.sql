-- The cut-over from the old chat API (issue 15). `rollout_setting` holds the
-- one row behind PUT /admin/rollout (absent: ROLLOUT_PERCENT applies);
-- `shadow_comparisons` one row per shadowed request: the old API answered the
-- client while this service ran its retrieval in the background
-- (portfolio_core::rollout). The daily cron deletes comparisons older than 30 days.
CREATE TABLE rollout_setting (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  percent         INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
  shadow_percent  INTEGER NOT NULL CHECK (shadow_percent BETWEEN 0 AND 100),
  updated_at      INTEGER NOT NULL
);
CREATE TABLE shadow_comparisons (
  id            INTEGER PRIMARY KEY,
  at            INTEGER NOT NULL,   -- ms since the epoch, when the request arrived
  overlap       REAL,               -- NULL when either side failed
  legacy_ms     INTEGER NOT NULL,
  ours_ms       INTEGER NOT NULL,
  legacy_error  TEXT,
  ours_error    TEXT
);
CREATE INDEX shadow_comparisons_at ON shadow_comparisons(at);
