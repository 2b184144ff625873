-- Automatic threads count against a server's hourly cap (discussions.max_auto_threads_per_hour),
-- across restarts: remember which threads the outbox made, and when.
ALTER TABLE threads ADD COLUMN origin TEXT NOT NULL DEFAULT 'member'
    CHECK (origin IN ('member', 'auto'));
CREATE INDEX threads_origin_created ON threads (guild_id, origin, created_at);
