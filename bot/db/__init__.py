"""The database layer: one module per job, all on one SQLite file (see each module).

- connection: opening the file, pragmas, migrations, our errors and the shared connection.
- studies: the `Database`, studies as members read and search them.
- import_writer: the sync writer of imports and moderators' changes.
- community, settings, audit, threads, follows, feeds, digest: the stores of the Discord side.
"""

from bot.db.audit import SERVER_AUDIT_ACTIONS, AuditDraft, AuditEntry, ModerationStore
from bot.db.community import CommunityStore
from bot.db.connection import (
    Connection,
    DatabaseBusyError,
    DatabaseCorruptError,
    DatabaseError,
    DatabaseFullError,
    DatabaseReadOnlyError,
    SchemaTooNewError,
    connect_sync,
    database_error,
    latest_schema_version,
    migration_scripts,
    now_iso,
    parse_utc,
    sql_statements,
    utc_iso,
)
from bot.db.digest import DIGEST_MAX_STUDIES, DIGEST_PERIODS, DigestSettings, DigestStore
from bot.db.feeds import FeedState, FeedStore, mark_feed_batch
from bot.db.follows import (
    ALERTS_MATCH_CHUNK,
    ALERTS_SEEN_KEY,
    DM_CLOSED_NOTICE,
    AlertBatch,
    AlertStudy,
    Follow,
    FollowStore,
    follow_key,
    match_new_studies,
    match_range,
)
from bot.db.import_writer import (
    IMPORT,
    MODERATOR,
    ROW_FIELDS,
    SOURCE_FILE,
    ImportWriter,
    ModerationWriter,
    StudyRow,
    row_hash,
)
from bot.db.settings import GuildSettings, GuildSettingsStore
from bot.db.studies import RANK_WINDOW, Database, DatabaseStats, RelatedFacts
from bot.db.threads import (
    DiscussionStore,
    FailedJob,
    OutboxEntry,
    StudyFate,
    ThreadMapping,
    queue_threads_sync,
)

__all__ = [
    "ALERTS_MATCH_CHUNK",
    "ALERTS_SEEN_KEY",
    "DIGEST_MAX_STUDIES",
    "DIGEST_PERIODS",
    "DM_CLOSED_NOTICE",
    "IMPORT",
    "MODERATOR",
    "RANK_WINDOW",
    "ROW_FIELDS",
    "SERVER_AUDIT_ACTIONS",
    "SOURCE_FILE",
    "AlertBatch",
    "AlertStudy",
    "AuditDraft",
    "AuditEntry",
    "CommunityStore",
    "Connection",
    "Database",
    "DatabaseBusyError",
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseFullError",
    "DatabaseReadOnlyError",
    "DatabaseStats",
    "DigestSettings",
    "DigestStore",
    "DiscussionStore",
    "FailedJob",
    "FeedState",
    "FeedStore",
    "Follow",
    "FollowStore",
    "GuildSettings",
    "GuildSettingsStore",
    "ImportWriter",
    "ModerationStore",
    "ModerationWriter",
    "OutboxEntry",
    "RelatedFacts",
    "SchemaTooNewError",
    "StudyFate",
    "StudyRow",
    "ThreadMapping",
    "connect_sync",
    "database_error",
    "follow_key",
    "latest_schema_version",
    "mark_feed_batch",
    "match_new_studies",
    "match_range",
    "migration_scripts",
    "now_iso",
    "parse_utc",
    "queue_threads_sync",
    "row_hash",
    "sql_statements",
    "utc_iso",
]
