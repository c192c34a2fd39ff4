-- A marker of the chunk rows searches serve, so each Worker isolate can keep
-- the rows it has read (portfolio_core::query::row_cache) and know, from one
-- small read in the search's first D1 batch, whether they are still what D1
-- would answer (crates/worker/src/store/d1_search.rs).
--
-- One row. `generation` moves whenever a served chunk row can change: a
-- generation flipped live or dropped (documents.active_version), a document
-- renamed, retitled, moved to another company or deleted, a company's slug
-- changed or a company deleted, a chunk of a live generation written,
-- rewritten or removed. Kept by triggers, so every writer is seen: ingestion's
-- two-phase commit, deletion, reconciliation, `migrate` and raw SQL alike.
-- Writes that cannot change a served row (status and step updates, chunks of
-- a generation not live yet, the previous generation's removal) leave it alone.
-- Caches compare it for equality only. After a Time Travel restore, move it:
--   UPDATE served_state SET generation = generation + 1;
CREATE TABLE served_state (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  generation  INTEGER NOT NULL
);
INSERT INTO served_state (id, generation) VALUES (1, 1);

CREATE TRIGGER served_documents_update AFTER UPDATE ON documents
  WHEN old.active_version IS NOT new.active_version OR old.key IS NOT new.key
    OR old.title IS NOT new.title OR old.company_id IS NOT new.company_id
BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER served_documents_delete AFTER DELETE ON documents
  WHEN old.active_version IS NOT NULL
BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER served_companies_update AFTER UPDATE OF slug ON companies
  WHEN old.slug IS NOT new.slug
BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER served_companies_delete AFTER DELETE ON companies BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER served_chunks_insert AFTER INSERT ON chunks
  WHEN new.version = (SELECT active_version FROM documents WHERE id = new.document_id)
BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER served_chunks_update AFTER UPDATE ON chunks
  WHEN old.version = (SELECT active_version FROM documents WHERE id = old.document_id)
    OR new.version = (SELECT active_version FROM documents WHERE id = new.document_id)
BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER served_chunks_delete AFTER DELETE ON chunks
  WHEN old.version = (SELECT active_version FROM documents WHERE id = old.document_id)
BEGIN
  UPDATE served_state SET generation = generation + 1 WHERE id = 1;
END;
