-- The outbox learns job kinds: 'create' (an automatic thread) and 'sync' (bring a study's
-- threads up to date after its study was edited, reverted, merged, removed or restored).
-- Sync jobs are queued by triggers on studies, in the transaction that changed the study, so a
-- crash after the commit cannot lose them; the worker reconciles each with the current state.
CREATE TABLE thread_outbox_jobs (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL DEFAULT 'create' CHECK (kind IN ('create', 'sync')),
    guild_id        INTEGER NOT NULL,
    study_id        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    generation      INTEGER NOT NULL DEFAULT 0,  -- bumped by each change queued again
    step            TEXT,                        -- progress of a job of several requests
    failed_at       TEXT,                        -- stopped for good (a permanent 4xx)
    UNIQUE (guild_id, study_id, kind)
);
INSERT INTO thread_outbox_jobs (id, kind, guild_id, study_id, created_at, attempts,
                                next_attempt_at, last_error)
SELECT id, 'create', guild_id, study_id, created_at, attempts, next_attempt_at, last_error
FROM thread_outbox;
DROP TABLE thread_outbox;
ALTER TABLE thread_outbox_jobs RENAME TO thread_outbox;
CREATE INDEX thread_outbox_due ON thread_outbox (next_attempt_at) WHERE failed_at IS NULL;
CREATE INDEX thread_outbox_study ON thread_outbox (study_id);

-- The triggers find a study's threads by study id; the member limit counts a member's threads.
CREATE INDEX threads_study ON threads (study_id);
ALTER TABLE threads ADD COLUMN created_by INTEGER;  -- the member who asked for it
ALTER TABLE threads ADD COLUMN closed TEXT;         -- 'removed': locked by the bot for a removal
CREATE INDEX threads_created_by ON threads (guild_id, created_by, created_at)
    WHERE created_by IS NOT NULL;

-- What a card shows changed: its threads are brought up to date. A job already queued is
-- kept (its backoff too) and marked as having news; a stopped one is started again.
CREATE TRIGGER studies_sync_threads_au AFTER UPDATE OF
    id, title, authors, journal, year, month, day, citations, tldr, summary, url, doi, pmid,
    topics, study_type ON studies
WHEN old.id IS NOT new.id OR old.title IS NOT new.title OR old.authors IS NOT new.authors
    OR old.journal IS NOT new.journal OR old.year IS NOT new.year
    OR old.month IS NOT new.month OR old.day IS NOT new.day
    OR old.citations IS NOT new.citations OR old.tldr IS NOT new.tldr
    OR old.summary IS NOT new.summary OR old.url IS NOT new.url OR old.doi IS NOT new.doi
    OR old.pmid IS NOT new.pmid OR old.topics IS NOT new.topics
    OR old.study_type IS NOT new.study_type
BEGIN
    INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at)
    SELECT 'sync', guild_id, study_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM threads WHERE study_id IN (old.id, new.id)
    ON CONFLICT (guild_id, study_id, kind) DO UPDATE SET
        generation = generation + 1,
        attempts = CASE WHEN failed_at IS NULL THEN attempts ELSE 0 END,
        next_attempt_at = CASE WHEN failed_at IS NULL THEN next_attempt_at
                               ELSE excluded.next_attempt_at END,
        failed_at = NULL;
END;

-- A study inserted (restored, or added again) whose id still has threads: reopen them.
CREATE TRIGGER studies_sync_threads_ai AFTER INSERT ON studies
WHEN EXISTS (SELECT 1 FROM threads WHERE study_id = new.id)
BEGIN
    INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at)
    SELECT 'sync', guild_id, study_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM threads WHERE study_id = new.id
    ON CONFLICT (guild_id, study_id, kind) DO UPDATE SET
        generation = generation + 1,
        attempts = CASE WHEN failed_at IS NULL THEN attempts ELSE 0 END,
        next_attempt_at = CASE WHEN failed_at IS NULL THEN next_attempt_at
                               ELSE excluded.next_attempt_at END,
        failed_at = NULL;
END;

-- A study deleted (removed, or merged into another): its threads are closed or moved; its
-- automatic threads not yet made are dropped.
CREATE TRIGGER studies_sync_threads_ad AFTER DELETE ON studies
BEGIN
    DELETE FROM thread_outbox WHERE study_id = old.id AND kind = 'create';
    INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at)
    SELECT 'sync', guild_id, study_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM threads WHERE study_id = old.id
    ON CONFLICT (guild_id, study_id, kind) DO UPDATE SET
        generation = generation + 1,
        attempts = CASE WHEN failed_at IS NULL THEN attempts ELSE 0 END,
        next_attempt_at = CASE WHEN failed_at IS NULL THEN next_attempt_at
                               ELSE excluded.next_attempt_at END,
        failed_at = NULL;
END;
