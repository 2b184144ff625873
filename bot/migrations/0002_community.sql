-- What the Discord side keeps: view state for buttons, per-server settings, discussion
-- threads and their outbox, the moderators' audit log, and usage counters.
CREATE TABLE saved_views (
    key        TEXT PRIMARY KEY,           -- short hash carried in component custom ids
    kind       TEXT NOT NULL,              -- 'search', ...
    state      TEXT NOT NULL,              -- JSON
    created_at TEXT NOT NULL
);

CREATE TABLE guild_settings (
    guild_id              INTEGER PRIMARY KEY,
    discussion_channel_id INTEGER,
    auto_threads          INTEGER,          -- NULL: the config default
    archive_after_minutes INTEGER,
    log_channel_id        INTEGER,
    updated_at            TEXT NOT NULL
);

CREATE TABLE moderator_roles (
    guild_id INTEGER NOT NULL,
    role_id  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, role_id)
) WITHOUT ROWID;

-- Forum tag ids per topic slug or study type ('type:rct'), per server.
CREATE TABLE forum_tags (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    key        TEXT NOT NULL,
    tag_id     INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id, key)
) WITHOUT ROWID;

-- One discussion thread per study per server. A row in state 'creating' is the claim that
-- makes concurrent requests wait for one creation instead of making two threads.
CREATE TABLE threads (
    guild_id   INTEGER NOT NULL,
    study_id   TEXT NOT NULL,
    channel_id INTEGER NOT NULL,
    thread_id  INTEGER,
    state      TEXT NOT NULL CHECK (state IN ('creating', 'active')),
    claimed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (guild_id, study_id)
);
CREATE UNIQUE INDEX threads_thread_id ON threads (thread_id);

-- Automatic threads waiting to be created (drained in the background).
CREATE TABLE thread_outbox (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    study_id        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    UNIQUE (guild_id, study_id)
);
CREATE INDEX thread_outbox_due ON thread_outbox (next_attempt_at);

CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER,
    moderator_id   INTEGER,
    moderator_name TEXT,
    action         TEXT NOT NULL,
    study_id       TEXT,
    details        TEXT NOT NULL DEFAULT '{}',  -- JSON: before/after, counts, settings
    created_at     TEXT NOT NULL,
    reverted_by    INTEGER REFERENCES audit_log (id)
);
CREATE INDEX audit_log_study ON audit_log (study_id);
CREATE INDEX audit_log_moderator ON audit_log (guild_id, moderator_id);

CREATE TABLE command_usage (
    day     TEXT NOT NULL,
    command TEXT NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (day, command)
) WITHOUT ROWID;

CREATE TABLE study_views (
    study_id       TEXT PRIMARY KEY,
    views          INTEGER NOT NULL,
    last_viewed_at TEXT NOT NULL
) WITHOUT ROWID;
