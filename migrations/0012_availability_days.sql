-- Availability against its objective (issue 29): public requests and how
-- many were answered 5xx, per UTC day, kept for the objective's 30-day window
-- although `metric_points` keeps only METRICS_RETENTION_DAYS (8 by default).
-- Rolled up from `metric_points` by every cron run (the last two days only);
-- a day's row only ever grows, so pruning a day's oldest points never shrinks
-- what was counted. Read by GET /admin/availability. A new table: a version
-- that does not know it never reads or writes it (additive, safe during a
-- split); the daily cron deletes days older than 30 days.
CREATE TABLE availability_days (
  day        TEXT PRIMARY KEY,   -- YYYY-MM-DD (UTC)
  requests   INTEGER NOT NULL,   -- public requests (admin and unrouted left out)
  errors     INTEGER NOT NULL,   -- of them, answered 5xx
  updated_at INTEGER NOT NULL    -- ms since the epoch
);
