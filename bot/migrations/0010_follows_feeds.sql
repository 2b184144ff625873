-- Follows and alerts by direct message, digests, PubMed feeds (issue 14).

-- A member's follow: a topic, or a saved search (words as an FTS5 expression, with the
-- optional filters of /search). Per member, not per server.
CREATE TABLE follows (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('topic', 'query')),
    topic        TEXT,               -- kind 'topic': the topic's slug
    query        TEXT,               -- kind 'query': the words shown to the member
    match        TEXT,               -- kind 'query': the FTS5 expression
    filter_topic TEXT,
    filter_type  TEXT,
    filter_since INTEGER,
    key          TEXT NOT NULL,      -- the follow in canonical form: one of each per member
    paused       INTEGER NOT NULL DEFAULT 0,  -- 1: the member's direct messages were closed
    created_at   TEXT NOT NULL,
    UNIQUE (user_id, key)
);
CREATE INDEX follows_topic ON follows (topic, paused) WHERE kind = 'topic';
CREATE INDEX follows_match ON follows (match, paused) WHERE kind = 'query';

-- Studies matched to a member's follows, waiting for their next direct message.
CREATE TABLE alert_queue (
    user_id   INTEGER NOT NULL,
    study_pk  INTEGER NOT NULL REFERENCES studies (pk) ON DELETE CASCADE,
    follow_id INTEGER NOT NULL REFERENCES follows (id) ON DELETE CASCADE,
    queued_at TEXT NOT NULL,
    PRIMARY KEY (user_id, study_pk)
) WITHOUT ROWID;
CREATE INDEX alert_queue_study ON alert_queue (study_pk);
CREATE INDEX alert_queue_follow ON alert_queue (follow_id);

-- When each member was last sent an alert, and what to tell them next time they use the bot.
CREATE TABLE alert_members (
    user_id      INTEGER PRIMARY KEY,
    last_sent_at TEXT,
    notice       TEXT
);

-- Every alert message sent: its studies (for "and N more") and the follows that matched
-- (for "Stop these alerts").
CREATE TABLE alert_batches (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    study_ids  TEXT NOT NULL,   -- JSON list, in the order shown
    follow_ids TEXT NOT NULL,   -- JSON list
    sent_at    TEXT NOT NULL
);

-- A server's digest of new studies.
CREATE TABLE digests (
    guild_id       INTEGER PRIMARY KEY,
    channel_id     INTEGER,
    every          TEXT NOT NULL DEFAULT 'weekly' CHECK (every IN ('daily', 'weekly', 'off')),
    covered_until  TEXT,         -- studies created before this were in a digest already
    next_at        TEXT,         -- when the next one is due
    last_posted_at TEXT
);

-- Each configured PubMed feed's state (its config is in config.yaml).
CREATE TABLE feeds (
    name            TEXT PRIMARY KEY,
    covered_until   TEXT,            -- YYYY/MM/DD: the entry dates polled successfully so far
    window_from     TEXT,            -- a poll under way: its entry-date window
    window_to       TEXT,
    window_done     INTEGER NOT NULL DEFAULT 0,  -- ids of that window already imported
    last_run_at     TEXT,
    last_success_at TEXT,
    next_run_at     TEXT,
    studies_added   INTEGER NOT NULL DEFAULT 0,
    last_added      INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
