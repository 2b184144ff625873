-- Profiles (migration 0011) without a first write that makes them all: the studies that had
-- none wait in a backlog that bot.db.profiles.fill_profile_backlog works through in short
-- transactions in the background; an import's new studies come with their profile.

-- Studies whose profile was never made (those migration 0011 found). Related research
-- ignores them until their profile is made; an edit makes it at once (its own transaction).
CREATE TABLE study_profiles_backlog (
    study_pk INTEGER PRIMARY KEY REFERENCES studies (pk) ON DELETE CASCADE
);
INSERT INTO study_profiles_backlog (study_pk) SELECT study_pk FROM study_profiles_stale;
DELETE FROM study_profiles WHERE study_pk IN (SELECT study_pk FROM study_profiles_backlog);
DELETE FROM study_profiles_stale;

-- While an import stores the profiles its parse workers made with the rows, it sets meta
-- 'profiles_given' and marks the rows that came without one itself (ImportWriter): a new row
-- is then not marked stale only to be unmarked when its profile is stored.
DROP TRIGGER studies_profile_ai;
CREATE TRIGGER studies_profile_ai AFTER INSERT ON studies
WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'profiles_given') BEGIN
    INSERT OR IGNORE INTO study_profiles_stale (study_pk) VALUES (new.pk);
END;
