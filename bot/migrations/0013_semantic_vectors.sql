-- Related research by latent semantic vectors (issue 17; bot/semantic.py, the optional `lsa`
-- extra): a model fitted over the library and a vector per study. Without the extra both
-- tables stay empty and related research is what it was. (IF NOT EXISTS: tests that rewind
-- user_version to replay 0012 replay this one over its own tables.)

-- The fitted model, one row (the newest; older rows are dropped when a new one is stored):
-- its vocabulary ('\n'-joined words, zlib), their idf (float32), the projection onto the
-- vectors (vocabulary x dims, float16) and the centroids of the index's cells (float32).
CREATE TABLE IF NOT EXISTS semantic_model (
    id          INTEGER PRIMARY KEY,
    dims        INTEGER NOT NULL,
    cells       INTEGER NOT NULL,
    vocabulary  BLOB NOT NULL,
    idf         BLOB NOT NULL,
    projection  BLOB NOT NULL,
    centroids   BLOB NOT NULL,
    studies     INTEGER NOT NULL,   -- studies in the library when it was fitted
    sampled     INTEGER NOT NULL,   -- studies the fit read
    fitted_at   TEXT NOT NULL
);

-- A study's vector (dims x int8, unit length times 127) under a model, and its index cell.
-- Goes with the study (removal, merged duplicate); an edit of its title or abstract drops it,
-- and the background fill folds it in again (bot/semantic_backlog.py).
CREATE TABLE IF NOT EXISTS semantic_vectors (
    study_pk INTEGER PRIMARY KEY REFERENCES studies (pk) ON DELETE CASCADE,
    model    INTEGER NOT NULL,
    cell     INTEGER NOT NULL,
    vector   BLOB NOT NULL
);

CREATE TRIGGER IF NOT EXISTS studies_semantic_au AFTER UPDATE OF title, summary ON studies
WHEN old.title IS NOT new.title OR old.summary IS NOT new.summary BEGIN
    DELETE FROM semantic_vectors WHERE study_pk = new.pk;
END;
