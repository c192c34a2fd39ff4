-- Reconciliation runs that span several invocations: each page is one
-- invocation, carried over through a queue message. The run row records how
-- far the run got, so a redelivered page message is recognised and skipped.
ALTER TABLE reconcile_runs ADD COLUMN pages INTEGER NOT NULL DEFAULT 0;           -- pages completed
ALTER TABLE reconcile_runs ADD COLUMN cursor TEXT;                                 -- last key of the last completed page
ALTER TABLE reconcile_runs ADD COLUMN page_size INTEGER NOT NULL DEFAULT 500;     -- objects (and rows) per page
ALTER TABLE reconcile_runs ADD COLUMN stores_checked INTEGER NOT NULL DEFAULT 0;  -- ready documents whose chunk/vector counts were compared
ALTER TABLE reconcile_runs ADD COLUMN updated_at INTEGER;                          -- last progress (ms)

-- At most one run at a time: two concurrent runs would enqueue the same work twice.
CREATE UNIQUE INDEX reconcile_runs_one_running ON reconcile_runs(status) WHERE status = 'running';
