-- Usage statistics per server (one library, many servers: each sees its own), and when a
-- saved button state was last used, so states nobody used for views.keep_days are pruned.
CREATE TABLE command_usage_by_guild (
    day      TEXT NOT NULL,
    guild_id INTEGER NOT NULL,             -- 0: not in a server (and counts from before 9)
    command  TEXT NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (day, guild_id, command)
) WITHOUT ROWID;
INSERT INTO command_usage_by_guild (day, guild_id, command, count)
    SELECT day, 0, command, count FROM command_usage;
DROP TABLE command_usage;
ALTER TABLE command_usage_by_guild RENAME TO command_usage;

ALTER TABLE saved_views ADD COLUMN last_used_at TEXT;
UPDATE saved_views SET last_used_at = created_at;
CREATE INDEX saved_views_last_used ON saved_views (last_used_at);
