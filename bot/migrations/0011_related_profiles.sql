-- Related research (issue 17): a profile per study, references, PubMed's similar articles.

-- A study's heaviest terms with their weights ('term weight' lines, bot/profiles.py), made in
-- the transaction that writes the study. Goes with the study (removal, merged duplicate).
CREATE TABLE study_profiles (
    study_pk INTEGER PRIMARY KEY REFERENCES studies (pk) ON DELETE CASCADE,
    terms    TEXT NOT NULL
);

-- Studies whose text changed since their profile was made: filled by the triggers below on
-- every write path (import, add, edit, revert, restore, merge), emptied by bot.db.profiles.refresh_profiles
-- before the same transaction commits. Existing studies start here.
CREATE TABLE study_profiles_stale (
    study_pk INTEGER PRIMARY KEY REFERENCES studies (pk) ON DELETE CASCADE
);
INSERT INTO study_profiles_stale (study_pk) SELECT pk FROM studies;

CREATE TRIGGER studies_profile_ai AFTER INSERT ON studies BEGIN
    INSERT OR IGNORE INTO study_profiles_stale (study_pk) VALUES (new.pk);
END;
CREATE TRIGGER studies_profile_au AFTER UPDATE OF title, tldr, summary, keywords ON studies
BEGIN
    INSERT OR IGNORE INTO study_profiles_stale (study_pk) VALUES (new.pk);
END;

-- Works a study cites, as 'doi:...' or 'pmid:...' keys (PubMed ReferenceList, CSL-JSON and
-- Crossref 'reference'): studies citing the same works are related (bibliographic coupling).
CREATE TABLE study_references (
    study_pk INTEGER NOT NULL REFERENCES studies (pk) ON DELETE CASCADE,
    ref      TEXT NOT NULL,
    PRIMARY KEY (study_pk, ref)
) WITHOUT ROWID;
CREATE INDEX study_references_ref ON study_references (ref, study_pk);

-- PubMed's own similar articles (E-utilities elink, pubmed_pubmed, neighbor_score), by the
-- study's PMID; fetched in the background while a PubMed feed is configured.
CREATE TABLE pubmed_neighbours (
    pmid          TEXT NOT NULL,
    neighbour     TEXT NOT NULL,     -- the similar article's PMID
    score         INTEGER NOT NULL,  -- PubMed's neighbor score
    PRIMARY KEY (pmid, neighbour)
) WITHOUT ROWID;
CREATE TABLE pubmed_neighbours_fetched (
    pmid       TEXT PRIMARY KEY,
    fetched_at TEXT NOT NULL,
    links      INTEGER NOT NULL       -- how many similar articles PubMed gave
) WITHOUT ROWID;
