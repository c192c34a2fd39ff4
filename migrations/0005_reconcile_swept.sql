-- Reconciliation sweeps generations that failed to drop (chunk rows, their FTS
-- and tag rows by trigger, and their vectors); each run counts the generations
-- it removed.
ALTER TABLE reconcile_runs ADD COLUMN swept INTEGER NOT NULL DEFAULT 0;
