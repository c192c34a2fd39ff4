-- Failover during the cut-over (issue 26): a chat routed to the old chat API
-- that failed before its first byte reached the client (no connection, no
-- headers or first chunk within LEGACY_FIRST_BYTE_TIMEOUT_MS, a 5xx) is
-- answered by this service instead. Counted here per UTC day and reason
-- (`unreachable`, `timeout`, `status 503`, `broken`: at most about a hundred
-- rows a day, however many chats fail over) for GET /admin/rollout/report;
-- the daily cron deletes days older than 30 days. A new table: a version that
-- does not know it never reads or writes it, so two versions can share the
-- schema during a split. Apply before uploading the version that writes it
-- (until then its counts are lost and logged, the answers are unaffected).
CREATE TABLE rollout_failovers (
  day     TEXT NOT NULL,      -- YYYY-MM-DD (UTC), when the request arrived
  reason  TEXT NOT NULL,
  count   INTEGER NOT NULL,
  PRIMARY KEY (day, reason)
);
