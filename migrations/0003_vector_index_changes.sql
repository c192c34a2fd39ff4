-- A change log for the D1-exact vector index, so each Worker isolate can keep
-- the index in memory and bring it up to date with one small read per query
-- (portfolio_core::vector_cache, crates/worker/src/store/vector_cache.rs).
-- Kept by triggers, so every writer is seen: the index adapter, ingestion,
-- and an operator's raw SQL alike.

-- The vector's unit direction quantized to int8 (portfolio_core::vector_cache::
-- QuantizedVector: codes, then scale and residual as f32): what a cold cache
-- loads, a quarter of `embedding`. NULL (rows from before, or written by hand)
-- makes the cache read `embedding` instead.
ALTER TABLE vector_index ADD COLUMN quantized BLOB;

-- One row. `generation` is bumped by every row inserted, updated or deleted
-- and is the `seq` of that change; `epoch` is random per database, so a cache
-- filled from another database (or a test's fresh one) is never trusted.
-- After a Time Travel restore, set a new epoch:
--   UPDATE vector_index_state SET epoch = lower(hex(randomblob(8)));
CREATE TABLE vector_index_state (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  epoch           TEXT NOT NULL,
  generation      INTEGER NOT NULL,
  vector_count    INTEGER NOT NULL,                   -- rows in vector_index
  pruned_through  INTEGER NOT NULL DEFAULT 0          -- deletions up to here may be forgotten
);

-- The latest change of every vector id: live rows (deleted = 0) and
-- deletions (tombstones, deleted = 1). Tombstones are pruned once more than
-- a retention of newer changes exists (D1VectorIndex::delete_by_ids); a
-- cache older than `pruned_through` reloads everything.
CREATE TABLE vector_index_changes (
  id       TEXT PRIMARY KEY,                          -- vector id
  seq      INTEGER NOT NULL,                          -- generation of its latest change
  deleted  INTEGER NOT NULL CHECK (deleted IN (0, 1))
);
CREATE UNIQUE INDEX vector_index_changes_seq ON vector_index_changes(seq);
-- Pruning reads only the tombstones.
CREATE INDEX vector_index_tombstones ON vector_index_changes(seq) WHERE deleted = 1;

INSERT INTO vector_index_changes (id, seq, deleted)
  SELECT id, ROW_NUMBER() OVER (ORDER BY id), 0 FROM vector_index;
INSERT INTO vector_index_state (id, epoch, generation, vector_count)
  SELECT 1, lower(hex(randomblob(8))), COUNT(*), COUNT(*) FROM vector_index;

-- Delete-then-insert rather than INSERT OR REPLACE: inside a trigger SQLite applies the
-- outer statement's conflict policy (the adapter's upsert would make a REPLACE an ABORT).
CREATE TRIGGER vector_index_log_insert AFTER INSERT ON vector_index BEGIN
  UPDATE vector_index_state SET generation = generation + 1, vector_count = vector_count + 1 WHERE id = 1;
  DELETE FROM vector_index_changes WHERE id = new.id;
  INSERT INTO vector_index_changes (id, seq, deleted)
    SELECT new.id, generation, 0 FROM vector_index_state WHERE id = 1;
END;

-- Also fired by the adapter's INSERT … ON CONFLICT DO UPDATE. A changed id
-- (never done by the service) is a deletion of the old one.
CREATE TRIGGER vector_index_log_update AFTER UPDATE ON vector_index BEGIN
  UPDATE vector_index_state SET generation = generation + 1 WHERE id = 1 AND old.id <> new.id;
  DELETE FROM vector_index_changes WHERE id = old.id;
  INSERT INTO vector_index_changes (id, seq, deleted)
    SELECT old.id, generation, 1 FROM vector_index_state WHERE id = 1 AND old.id <> new.id;
  UPDATE vector_index_state SET generation = generation + 1 WHERE id = 1;
  DELETE FROM vector_index_changes WHERE id = new.id;
  INSERT INTO vector_index_changes (id, seq, deleted)
    SELECT new.id, generation, 0 FROM vector_index_state WHERE id = 1;
END;

CREATE TRIGGER vector_index_log_delete AFTER DELETE ON vector_index BEGIN
  UPDATE vector_index_state SET generation = generation + 1, vector_count = vector_count - 1 WHERE id = 1;
  DELETE FROM vector_index_changes WHERE id = old.id;
  INSERT INTO vector_index_changes (id, seq, deleted)
    SELECT old.id, generation, 1 FROM vector_index_state WHERE id = 1;
END;

-- An embedding changed without its quantized form (a hand-written UPDATE) must
-- not leave stale codes behind: drop them, so the cache reads the embedding.
CREATE TRIGGER vector_index_stale_quantized AFTER UPDATE OF embedding ON vector_index
WHEN new.embedding IS NOT old.embedding AND new.quantized IS old.quantized BEGIN
  UPDATE vector_index SET quantized = NULL WHERE id = new.id;
END;
