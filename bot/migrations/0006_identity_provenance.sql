-- Identity, provenance and tombstones (issue 11).
-- Where a study's current content came from: 'source-file' (studies.sources at start-up),
-- 'import' (a moderator's upload or `studybot import`), 'moderator' (add, edit, revert, merge,
-- restore), 'feed'; the source's name; the hash of the record last imported from a source
-- file (start-up does not apply an unchanged record again); when a moderator last changed it.
ALTER TABLE studies ADD COLUMN source_kind TEXT;
ALTER TABLE studies ADD COLUMN source_name TEXT;
ALTER TABLE studies ADD COLUMN source_hash TEXT;
ALTER TABLE studies ADD COLUMN moderated_at TEXT;
-- A NULL source_hash reads as content_hash (what the last import wrote): rewriting every
-- row (whole abstracts) here would take minutes at a million studies.
UPDATE studies SET source_kind = 'moderator', moderated_at = (
    SELECT max(a.created_at) FROM audit_log a
    WHERE a.study_id = studies.id AND a.action IN ('add', 'edit', 'revert', 'merge'))
WHERE id IN (SELECT study_id FROM audit_log WHERE action IN ('add', 'edit', 'revert', 'merge'));

-- Every id, DOI and PMID a study ever carried (a merged duplicate's too, then pointing at the
-- study kept): lookup, /study, import matching and merge read it.
CREATE TABLE study_identifiers (
    kind     TEXT NOT NULL CHECK (kind IN ('id', 'doi', 'pmid')),
    value    TEXT NOT NULL,
    study_pk INTEGER NOT NULL REFERENCES studies (pk) ON DELETE CASCADE,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX study_identifiers_study ON study_identifiers (study_pk);
INSERT INTO study_identifiers (kind, value, study_pk) SELECT 'id', id, pk FROM studies;
INSERT INTO study_identifiers (kind, value, study_pk)
    SELECT 'doi', doi, pk FROM studies WHERE doi IS NOT NULL;
INSERT INTO study_identifiers (kind, value, study_pk)
    SELECT 'pmid', pmid, pk FROM studies WHERE pmid IS NOT NULL;
-- Duplicates merged before this migration: their id, DOI and PMID point at the kept study.
INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk)
    SELECT 'id', json_extract(a.details, '$.duplicate'), s.pk
    FROM audit_log a JOIN studies s ON s.id = a.study_id
    WHERE a.action = 'merge' AND json_extract(a.details, '$.duplicate') IS NOT NULL;
INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk)
    SELECT 'doi', json_extract(a.details, '$.study.doi'), s.pk
    FROM audit_log a JOIN studies s ON s.id = a.study_id
    WHERE a.action = 'merge' AND json_extract(a.details, '$.study.doi') IS NOT NULL;
INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk)
    SELECT 'pmid', json_extract(a.details, '$.study.pmid'), s.pk
    FROM audit_log a JOIN studies s ON s.id = a.study_id
    WHERE a.action = 'merge' AND json_extract(a.details, '$.study.pmid') IS NOT NULL;

-- Removed studies (tombstones): no source, import or feed brings them back; a moderator can
-- restore one (the whole study is in the audit entry audit_id).
CREATE TABLE removed_studies (
    study_id   TEXT PRIMARY KEY,
    title      TEXT,
    title_key  TEXT,
    year       INTEGER,
    doi        TEXT,
    pmid       TEXT,
    reason     TEXT,
    audit_id   INTEGER REFERENCES audit_log (id),
    removed_at TEXT
);
CREATE INDEX removed_studies_title ON removed_studies (title_key, year);
-- Every identifier a removed study carried, so that an import recognises it.
CREATE TABLE removed_identifiers (
    kind     TEXT NOT NULL,
    value    TEXT NOT NULL,
    study_id TEXT NOT NULL REFERENCES removed_studies (study_id) ON DELETE CASCADE,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX removed_identifiers_study ON removed_identifiers (study_id);
-- Studies removed before this migration (and not back since): the latest removal of each.
INSERT OR IGNORE INTO removed_studies (study_id, title, title_key, year, doi, pmid, reason,
                                       audit_id, removed_at)
    SELECT a.study_id, json_extract(a.details, '$.study.title'), NULL,
           json_extract(a.details, '$.study.year'), json_extract(a.details, '$.study.doi'),
           json_extract(a.details, '$.study.pmid'), json_extract(a.details, '$.reason'),
           a.id, a.created_at
    FROM audit_log a
    WHERE a.action = 'remove' AND a.study_id IS NOT NULL
      AND a.id = (SELECT max(b.id) FROM audit_log b
                  WHERE b.action = 'remove' AND b.study_id = a.study_id)
      AND NOT EXISTS (SELECT 1 FROM studies s WHERE s.id = a.study_id);
INSERT OR IGNORE INTO removed_identifiers (kind, value, study_id)
    SELECT 'id', study_id, study_id FROM removed_studies;
INSERT OR IGNORE INTO removed_identifiers (kind, value, study_id)
    SELECT 'doi', doi, study_id FROM removed_studies WHERE doi IS NOT NULL;
INSERT OR IGNORE INTO removed_identifiers (kind, value, study_id)
    SELECT 'pmid', pmid, study_id FROM removed_studies WHERE pmid IS NOT NULL;

-- Records of a source kept out because a moderator had changed the study since (counted in
-- /studyadmin stats); one row per study, record and moderator change.
CREATE TABLE source_conflicts (
    study_pk     INTEGER NOT NULL REFERENCES studies (pk) ON DELETE CASCADE,
    record_hash  TEXT NOT NULL,
    moderated_at TEXT NOT NULL,
    source_kind  TEXT NOT NULL,
    source_name  TEXT,
    seen_at      TEXT NOT NULL,
    PRIMARY KEY (study_pk, record_hash, moderated_at)
) WITHOUT ROWID;
