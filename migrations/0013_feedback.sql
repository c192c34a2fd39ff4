-- Reader feedback (issue 29): a reader's rating of one answer, sent by the
-- chat page to POST /api/feedback. Only what the reader saw or typed: the
-- answer's request id, the question, the cited documents' keys (JSON array),
-- the rating and an optional comment; no address, client id or header.
-- GET /admin/feedback lists them newest first (the operator page shows the
-- unhelpful ones). The daily cron deletes ratings older than 30 days
-- (OPERATIONS_RETENTION_MS). A new table: additive, safe during a split.
CREATE TABLE feedback (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  at        INTEGER NOT NULL,     -- ms since the epoch
  answer_id TEXT NOT NULL,        -- the chat response's x-request-id
  helpful   INTEGER NOT NULL,     -- 1 helpful, 0 not
  question  TEXT NOT NULL,
  sources   TEXT NOT NULL,        -- JSON array of document keys
  comment   TEXT                  -- NULL: none
);
CREATE INDEX feedback_by_rating ON feedback (helpful, id);
