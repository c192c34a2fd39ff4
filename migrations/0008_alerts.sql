-- Alerts (issue 15): one row per episode of an alert, from firing to
-- resolved, with the delivery state of its two notices. Every change is a
-- compare-and-set on `version`, and at most one row per key fires at a time
-- (the unique index below), so two overlapping evaluations (cron runs, a
-- dead letter) fire, resolve and notify once (portfolio_core::alerts).
CREATE TABLE alerts (
  id               INTEGER PRIMARY KEY,
  key              TEXT NOT NULL,                    -- 'error_rate', 'document_failed:<key>', 'provider_auth:openai', …
  kind             TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
  message          TEXT NOT NULL,                    -- what was observed when it fired
  fired_at         INTEGER NOT NULL,
  resolved_at      INTEGER,
  fire_sent_at     INTEGER,                          -- NULL: the fire notice is still owed
  resolve_sent_at  INTEGER,                          -- NULL: owed once resolved
  attempts         INTEGER NOT NULL DEFAULT 0,       -- failed deliveries of the notice owed now
  last_error       TEXT,
  claimed_until    INTEGER NOT NULL DEFAULT 0,       -- a delivery in progress holds the notice until then
  version          INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX alerts_one_firing ON alerts(key) WHERE status = 'firing';
-- Open alerts: firing, or owing a notice (every such row has resolve_sent_at NULL).
CREATE INDEX alerts_open ON alerts(resolve_sent_at);
CREATE INDEX alerts_resolved ON alerts(resolved_at);
