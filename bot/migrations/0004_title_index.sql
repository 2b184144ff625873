-- A small full-text index of titles alone, for autocomplete and spelling correction at scale:
-- prefix indexes make "minox" or "increases in pos" a seek instead of a merge of every
-- matching term's doclist, and its vocabulary counts title words without reading the big
-- index's doclists. Kept by its own triggers (not deferred by bulk imports: titles are cheap).
CREATE VIRTUAL TABLE titles_fts USING fts5 (
    title,
    content = 'studies', content_rowid = 'pk',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '3 4'
);
CREATE VIRTUAL TABLE titles_vocab USING fts5vocab (titles_fts, 'row');
INSERT INTO titles_fts (titles_fts) VALUES ('rebuild');
CREATE TRIGGER titles_ai AFTER INSERT ON studies BEGIN
    INSERT INTO titles_fts (rowid, title) VALUES (new.pk, new.title);
END;
CREATE TRIGGER titles_ad AFTER DELETE ON studies BEGIN
    INSERT INTO titles_fts (titles_fts, rowid, title) VALUES ('delete', old.pk, old.title);
END;
CREATE TRIGGER titles_au AFTER UPDATE OF title ON studies
WHEN old.title IS NOT new.title BEGIN
    INSERT INTO titles_fts (titles_fts, rowid, title) VALUES ('delete', old.pk, old.title);
    INSERT INTO titles_fts (rowid, title) VALUES (new.pk, new.title);
END;
