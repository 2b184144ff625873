-- Studies, their topics, the full-text index and a key/value table.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE studies (
    pk           INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    title        TEXT NOT NULL,
    title_key    TEXT NOT NULL,
    authors      TEXT NOT NULL DEFAULT '',  -- names in order, one per line
    journal      TEXT,
    year         INTEGER,
    month        INTEGER,
    day          INTEGER,
    citations    INTEGER,
    tldr         TEXT,
    summary      TEXT,
    url          TEXT,
    doi          TEXT UNIQUE,
    pmid         TEXT UNIQUE,
    topics       TEXT NOT NULL DEFAULT '',  -- topic slugs separated by spaces
    study_type   TEXT,
    keywords     TEXT NOT NULL DEFAULT '',  -- one per line (MeSH, author keywords)
    similar      TEXT,                      -- JSON list of references, or NULL
    content_hash TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX studies_title_key ON studies (title_key, year);
CREATE INDEX studies_year ON studies (year);
CREATE INDEX studies_citations ON studies (citations);

CREATE TABLE study_topics (
    topic    TEXT NOT NULL,
    study_pk INTEGER NOT NULL REFERENCES studies (pk) ON DELETE CASCADE,
    PRIMARY KEY (topic, study_pk)
) WITHOUT ROWID;
CREATE INDEX study_topics_study ON study_topics (study_pk);

CREATE VIRTUAL TABLE studies_fts USING fts5 (
    title, tldr, summary, authors, journal, topics, keywords,
    content = 'studies', content_rowid = 'pk',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE studies_vocab USING fts5vocab (studies_fts, 'row');

-- While a bulk import runs it sets meta 'fts_deferred' and indexes its rows itself at the end
-- (ImportWriter.defer_fts / finish_fts), in the same transaction.
CREATE TRIGGER studies_ai AFTER INSERT ON studies
WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'fts_deferred') BEGIN
    INSERT INTO studies_fts (rowid, title, tldr, summary, authors, journal, topics, keywords)
    VALUES (new.pk, new.title, new.tldr, new.summary, new.authors, new.journal,
            new.topics, new.keywords);
END;
CREATE TRIGGER studies_ad AFTER DELETE ON studies
WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'fts_deferred') BEGIN
    INSERT INTO studies_fts (studies_fts, rowid, title, tldr, summary, authors, journal, topics,
                             keywords)
    VALUES ('delete', old.pk, old.title, old.tldr, old.summary, old.authors, old.journal,
            old.topics, old.keywords);
END;
CREATE TRIGGER studies_au AFTER UPDATE ON studies
WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'fts_deferred') BEGIN
    INSERT INTO studies_fts (studies_fts, rowid, title, tldr, summary, authors, journal, topics,
                             keywords)
    VALUES ('delete', old.pk, old.title, old.tldr, old.summary, old.authors, old.journal,
            old.topics, old.keywords);
    INSERT INTO studies_fts (rowid, title, tldr, summary, authors, journal, topics, keywords)
    VALUES (new.pk, new.title, new.tldr, new.summary, new.authors, new.journal,
            new.topics, new.keywords);
END;
