"""The sync writer of imports and moderators' changes: matches records to studies and
writes them inside one transaction it owns, on its own sqlite3 connection in a worker thread."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.db.audit import AUDIT_COLUMNS, AuditEntry
from bot.db.profiles import (
    backlog_new_studies,
    give_profiles,
    mark_stale,
    refresh_profiles,
    store_profiles,
)
from bot.db.references import (
    all_references,
    move_references,
    write_new_references,
    write_references,
)
from bot.text import title_key as make_title_key


@dataclass(frozen=True, slots=True)
class StudyRow:
    """The column values of one study, as the import writer stores them."""

    id: str
    title: str
    title_key: str
    authors: str
    journal: str | None
    year: int | None
    month: int | None
    day: int | None
    citations: int | None
    tldr: str | None
    summary: str | None
    url: str | None
    doi: str | None
    pmid: str | None
    topics: str
    study_type: str | None
    keywords: str
    similar: str | None

    def content_hash(self) -> str:
        return row_hash(tuple(getattr(self, name) for name in ROW_FIELDS))


ROW_FIELDS = ("title", "title_key", "authors", "journal", "year", "month", "day", "citations",
               "tldr", "summary", "url", "doi", "pmid", "topics", "study_type", "keywords",
               "similar")


def row_hash(values: Sequence[Any]) -> str:
    """The content hash of a study's column values (in ROW_FIELDS order; title_key, derived
    from the title, is left out)."""
    payload = "\x1f".join([v if type(v) is str else "" if v is None else str(v)
                           for v in (values[0], *values[2:])])
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


_FTS_COLUMNS = "title, tldr, summary, authors, journal, topics, keywords"
_INSERT_STUDY = ("INSERT INTO studies (id, " + ", ".join(ROW_FIELDS) + ", content_hash, "
                 "created_at, updated_at, source_kind, source_name, source_hash, moderated_at) "
                 "VALUES (" + ", ".join("?" * (len(ROW_FIELDS) + 8)) + ")")
# Where a study's current content came from (studies.source_kind; a feed would be one more).
SOURCE_FILE, IMPORT, MODERATOR = "source-file", "import", "moderator"
# The hash of the record a study was last imported with from a source file; before migration
# 6 (no source kind), its content hash.
_SOURCE_FILE_HASH = ("coalesce(source_hash, CASE WHEN source_kind IS NULL "
                     "THEN content_hash END)")
_UPSERT_IDENTIFIER = ("INSERT INTO study_identifiers (kind, value, study_pk) VALUES (?, ?, ?) "
                      "ON CONFLICT (kind, value) DO UPDATE SET study_pk = excluded.study_pk")
_TOPICS_AT = ROW_FIELDS.index("topics")
_DOI_AT, _PMID_AT = ROW_FIELDS.index("doi"), ROW_FIELDS.index("pmid")
# The import connection's page cache while it indexes in bulk (KiB, as cache_size wants).
BULK_CACHE_KIB = 65536
# FTS5's in-memory buffer of new terms (its 'hashsize'): default, and while bulk indexing.
FTS_HASH_BYTES = 1 << 20
BULK_FTS_HASH_BYTES = 32 << 20
# Indexes no import reads (matching uses id, doi, pmid and title_key): dropped while a bulk
# import fills an empty table, built again before its commit.
_BULK_DROPPED_INDEXES = ("studies_citations", "studies_year")
# Profiles made with their rows are stored this many at a time.
PROFILES_BATCH = 1000
# New studies' references are written this many rows at a time.
REFERENCES_BATCH = 20000


# --- the sync writer used by imports ---------------------------------------------------------


class ImportWriter:
    """Matches records to studies and writes them, inside one transaction it owns."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # Set while full-text indexing is deferred: rows with a larger pk, and the older rows
        # in _fts_removed, are indexed by finish_fts.
        self._fts_from: int | None = None
        self._fts_removed: set[int] = set()
        self._dropped_indexes: list[tuple[str, str]] = []  # (name, CREATE statement)
        # Set while identifier rows are deferred too: rows with a larger pk get theirs from
        # their columns in one statement (finish_fts); matching reads the columns meanwhile.
        self._ids_from: int | None = None
        self._tombstones: bool | None = None
        # Profiles made with their rows (in parse workers), stored in batches: by study pk.
        self._profiles: dict[int, str] = {}
        # Set from the first new row that comes with its profile to the commit: the trigger
        # that marks new rows stale is off (rows without one are marked by insert_values).
        self._profiles_given = False
        # Set by profiles_later: new rows above this pk without a profile join the backlog.
        self._backlog_after: int | None = None
        # New studies' references, (pk, key) rows, written in batches.
        self._new_references: list[tuple[int, str]] = []

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT max(pk) IS NULL FROM studies").fetchone()[0] == 1

    def defer_fts(self, *, empty_table: bool = False) -> None:
        """Stop indexing rows one by one (the triggers check meta 'fts_deferred'): a bulk
        import indexes them in batches (index_deferred) and at the end (finish_fts), inside
        the same transaction. Filling an empty table, the indexes no import reads are
        dropped too, and built again by finish_fts (one sort each)."""
        if self._fts_from is not None:
            return
        self._fts_from = self.conn.execute(
            "SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
        self._ids_from = self._fts_from
        self._fts_removed = set()
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS import_fts_old "
                          f"(pk INTEGER PRIMARY KEY, {_FTS_COLUMNS})")
        self.conn.execute("DELETE FROM temp.import_fts_old")
        self.conn.execute("INSERT INTO meta (key, value) VALUES ('fts_deferred', '1')")
        self.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        # FTS5 keeps new terms in memory up to 'hashsize' bytes before writing a segment:
        # bigger segments, fewer merges (-30 % CPU for 100k studies); reset in finish_fts.
        self.conn.execute("INSERT INTO studies_fts (studies_fts, rank) VALUES ('hashsize', ?)",
                          (BULK_FTS_HASH_BYTES,))
        if empty_table:
            marks = ", ".join("?" * len(_BULK_DROPPED_INDEXES))
            self._dropped_indexes = self.conn.execute(
                f"SELECT name, sql FROM sqlite_schema WHERE type = 'index' "
                f"AND name IN ({marks}) ORDER BY name", _BULK_DROPPED_INDEXES).fetchall()
            for name, _sql in self._dropped_indexes:
                self.conn.execute(f'DROP INDEX "{name}"')

    def profiles_later(self) -> None:
        """New rows without a profile join the backlog at commit (bot/profile_backlog.py
        makes them in the background) instead of being made before it; rows changed after
        their insert are still remade at commit."""
        if self._backlog_after is None:
            self._backlog_after = self.conn.execute(
                "SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
            if not self._profiles_given:
                give_profiles(self.conn, True)
                self._profiles_given = True

    def index_deferred(self) -> None:
        """Index the rows added since defer_fts (or the last call) now; rows updated after
        this are taken out of the index and indexed again by finish_fts (see update)."""
        if self._fts_from is None:
            return
        top = self.conn.execute("SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
        if top > self._fts_from:
            self.conn.execute(
                f"INSERT INTO studies_fts (rowid, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies WHERE pk > ? ORDER BY pk",
                (self._fts_from,))
            self._fts_from = top

    def finish_fts(self) -> None:
        """Index what was written since defer_fts, turn the triggers back on and build the
        indexes defer_fts dropped."""
        if self._fts_from is None:
            return
        self.conn.execute("DELETE FROM meta WHERE key = 'fts_deferred'")
        self.index_deferred()
        self._add_deferred_identifiers()
        if self._fts_removed:
            self.conn.execute(
                f"INSERT INTO studies_fts (studies_fts, rowid, {_FTS_COLUMNS}) "
                f"SELECT 'delete', pk, {_FTS_COLUMNS} FROM temp.import_fts_old ORDER BY pk")
            self.conn.execute(
                f"INSERT INTO studies_fts (rowid, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies "
                f"WHERE pk IN (SELECT pk FROM temp.import_fts_old) ORDER BY pk")
        self.conn.execute("DROP TABLE temp.import_fts_old")
        self.conn.execute("INSERT INTO studies_fts (studies_fts, rank) VALUES ('hashsize', ?)",
                          (FTS_HASH_BYTES,))
        for _name, sql in self._dropped_indexes:
            self.conn.execute(sql)
        self._dropped_indexes = []
        self.conn.execute("PRAGMA cache_size = -32000")
        self._fts_from = None
        self._fts_removed = set()

    def _add_deferred_identifiers(self) -> None:
        if self._ids_from is None:
            return
        for kind in ("id", "doi", "pmid"):
            # INSERT OR IGNORE: an identifier another study carried before stays with it.
            # In key order (read from the column's unique index): appended, not scattered
            # (0.2 s instead of 0.37 s for 73k studies).
            self.conn.execute(
                f"INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk) "
                f"SELECT '{kind}', {kind}, pk FROM studies WHERE pk > ? AND {kind} IS NOT NULL "
                f"ORDER BY {kind}", (self._ids_from,))
        self._ids_from = None

    def match_identifiers(self, study_id: str | None, doi: str | None, pmid: str | None
                          ) -> int | None:
        """The study a record's id, DOI or PMID (in that order) names: carried now, or
        before (a merged duplicate's, an earlier DOI), in one query."""
        # coalesce() stops at the first subquery that finds a study. The columns first: they
        # hold every current identifier even while identifier rows are deferred.
        return self.conn.execute(
            "SELECT coalesce((SELECT pk FROM studies WHERE id = ?1), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = 'id' AND value = ?1), "
            "(SELECT pk FROM studies WHERE doi = ?2), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = 'doi' AND value = ?2), "
            "(SELECT pk FROM studies WHERE pmid = ?3), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = 'pmid' AND value = ?3))",
            (study_id, doi, pmid),
        ).fetchone()[0]

    def title_candidates(self, title_key: str, year: int | None, limit: int = 50
                         ) -> list[tuple[int, str | None, str | None, str | None]]:
        """(pk, doi, pmid, journal) of the studies with this normalised title and year,
        oldest first."""
        return self.conn.execute(
            "SELECT pk, doi, pmid, journal FROM studies WHERE title_key = ? AND year IS ? "
            "ORDER BY title_key, year, pk LIMIT ?", (title_key, year, limit)).fetchall()

    def identifiers_of(self, pk: int) -> list[tuple[str, str]]:
        """Every (kind, value) a study carries or carried."""
        return self.conn.execute(
            "SELECT kind, value FROM study_identifiers WHERE study_pk = ? ORDER BY kind, value",
            (pk,)).fetchall()

    def carries(self, pk: int, kind: str, value: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM study_identifiers WHERE kind = ? AND value = ? AND study_pk = ?",
            (kind, value, pk)).fetchone() is not None

    def set_identifiers(self, pk: int, identifiers: Iterable[tuple[str, str | None]]
                        ) -> None:
        """These identifiers name this study from now on (taken from any study that
        carried them before); absent ones (None) are skipped."""
        self.conn.executemany(_UPSERT_IDENTIFIER, [(k, v, pk) for k, v in identifiers if v])

    def add_identifiers(self, pk: int, identifiers: Iterable[tuple[str, str | None]]
                        ) -> None:
        """These identifiers name this study too, unless another study carries one."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk) VALUES (?, ?, ?)",
            [(k, v, pk) for k, v in identifiers if v])

    def move_identifiers(self, from_pk: int, to_pk: int) -> None:
        """Every identifier of one study names another (a merge)."""
        self.conn.execute("UPDATE study_identifiers SET study_pk = ? WHERE study_pk = ?",
                          (to_pk, from_pk))

    # Tombstones ------------------------------------------------------------------------------

    def has_tombstones(self) -> bool:
        if self._tombstones is None:
            found = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM removed_studies)").fetchone()[0] == 1
            self._tombstones = found
            if found:
                self._key_old_tombstones()
            return found
        return self._tombstones

    def _key_old_tombstones(self) -> None:
        """Migration 6 made tombstones of earlier removals without their title key (SQL
        cannot normalise a title): add it, in this transaction."""
        rows = self.conn.execute("SELECT study_id, title FROM removed_studies "
                                 "WHERE title_key IS NULL AND title IS NOT NULL").fetchall()
        self.conn.executemany("UPDATE removed_studies SET title_key = ? WHERE study_id = ?",
                              [(make_title_key(title), study_id) for study_id, title in rows])

    def removed_match(self, study_id: str | None, doi: str | None, pmid: str | None
                      ) -> str | None:
        """The removed study a record's id, DOI or PMID names, if any."""
        if not self.has_tombstones():
            return None
        return self.conn.execute(
            "SELECT coalesce("
            "(SELECT study_id FROM removed_identifiers WHERE kind = 'id' AND value = ?1), "
            "(SELECT study_id FROM removed_identifiers WHERE kind = 'doi' AND value = ?2), "
            "(SELECT study_id FROM removed_identifiers WHERE kind = 'pmid' AND value = ?3))",
            (study_id, doi, pmid)).fetchone()[0]

    def removed_title_candidates(self, title_key: str, year: int | None
                                 ) -> list[tuple[str, str | None, str | None]]:
        """(study_id, doi, pmid) of removed studies with this normalised title and year."""
        if not self.has_tombstones():
            return []
        return self.conn.execute(
            "SELECT study_id, doi, pmid FROM removed_studies WHERE title_key = ? AND year IS ? "
            "ORDER BY removed_at LIMIT 50", (title_key, year)).fetchall()

    def add_tombstone(self, pk: int, row: StudyRow, reason: str, audit_id: int,
                      timestamp: str) -> None:
        """Remember a study being removed (before its row is deleted), with every
        identifier it carried."""
        self.conn.execute(
            "INSERT INTO removed_studies (study_id, title, title_key, year, doi, pmid, reason, "
            "audit_id, removed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (study_id) DO UPDATE SET title = excluded.title, "
            "title_key = excluded.title_key, year = excluded.year, doi = excluded.doi, "
            "pmid = excluded.pmid, reason = excluded.reason, audit_id = excluded.audit_id, "
            "removed_at = excluded.removed_at",
            (row.id, row.title, row.title_key, row.year, row.doi, row.pmid, reason, audit_id,
             timestamp))
        identifiers = {(k, v) for k, v in self.identifiers_of(pk)}
        identifiers.update((k, v) for k, v in (("id", row.id), ("doi", row.doi),
                                               ("pmid", row.pmid)) if v)
        self.conn.executemany(
            "INSERT INTO removed_identifiers (kind, value, study_id) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, value) DO UPDATE SET study_id = excluded.study_id",
            [(k, v, row.id) for k, v in sorted(identifiers)])
        self._tombstones = True

    def tombstone(self, study_id: str) -> tuple[str | None, int | None] | None:
        """(reason, audit entry id) of a removed study, or None."""
        row = self.conn.execute("SELECT reason, audit_id FROM removed_studies WHERE study_id = ?",
                                (study_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def removed_identifiers(self, study_id: str) -> list[tuple[str, str]]:
        return self.conn.execute(
            "SELECT kind, value FROM removed_identifiers WHERE study_id = ? ORDER BY kind, value",
            (study_id,)).fetchall()

    def drop_tombstone(self, study_id: str) -> None:
        self.conn.execute("DELETE FROM removed_studies WHERE study_id = ?", (study_id,))

    # Provenance ------------------------------------------------------------------------------

    def record_conflict(self, pk: int, record_hash: str, moderated_at: str, source_kind: str,
                        source_name: str | None, timestamp: str) -> bool:
        """Remember a source's record kept out by a moderator's change; True the first time
        (for this study, record and moderator change)."""
        return self.conn.execute(
            "INSERT OR IGNORE INTO source_conflicts (study_pk, record_hash, moderated_at, "
            "source_kind, source_name, seen_at) VALUES (?, ?, ?, ?, ?, ?)",
            (pk, record_hash, moderated_at, source_kind, source_name, timestamp)).rowcount > 0

    def _store_profiles(self) -> None:
        if self._profiles:
            # Rows inserted while profiles are given: never marked stale (an update in
            # between took its row out of the batch: it is remade at commit).
            store_profiles(self.conn, list(self._profiles.items()), marked_stale=False)
            self._profiles = {}

    # References ------------------------------------------------------------------------------

    def add_new_references(self, pk: int, refs: Sequence[str]) -> None:
        """The references of a study this transaction inserted (unique, bounded by the
        importer), written in batches."""
        self._new_references.extend((pk, ref) for ref in refs)
        if len(self._new_references) >= REFERENCES_BATCH:
            self._store_new_references()

    def add_references(self, pk: int, refs: Iterable[str]) -> int:
        """Add references to a study (a re-import, a restore); it keeps those it has, up to
        MAX_REFERENCES in all. How many were new."""
        self._store_new_references()
        return write_references(self.conn, pk, refs)

    def move_references(self, from_pk: int, to_pk: int) -> None:
        """A merge: the kept study cites what either cited."""
        self._store_new_references()
        move_references(self.conn, from_pk, to_pk)

    def references_of(self, pk: int) -> list[str]:
        self._store_new_references()
        return all_references(self.conn, pk)

    def _store_new_references(self) -> None:
        if self._new_references:
            write_new_references(self.conn, self._new_references)
            self._new_references = []

    def commit(self) -> None:
        # Every write of a study (import, add, edit, revert, restore, merge) commits here: its
        # profile is stored (made by the import's parse workers) or remade, in the same
        # transaction.
        self._store_new_references()
        self._store_profiles()
        if self._backlog_after is not None:
            backlog_new_studies(self.conn, self._backlog_after)
            self._backlog_after = None
        if self._profiles_given:
            give_profiles(self.conn, False)
            self._profiles_given = False
        refresh_profiles(self.conn)
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._profiles = {}
        self._profiles_given = False  # the rollback took meta 'profiles_given' away
        self._backlog_after = None
        self._new_references = []
        self._ids_from = None
        self._tombstones = None
        if self._fts_from is not None:
            self._fts_from = None
            self._dropped_indexes = []  # the rollback restored them, and the FTS settings
            self.conn.execute("PRAGMA cache_size = -32000")

    def find_pk(self, column: str, value: str) -> int | None:
        assert column in ("id", "doi", "pmid")
        row = self.conn.execute(f"SELECT pk FROM studies WHERE {column} = ?", (value,)).fetchone()
        return row[0] if row else None

    def id_taken(self, study_id: str) -> bool:
        """Whether an id names a study, now or before (merged, removed)."""
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM studies WHERE id = ?1) "
            "OR EXISTS (SELECT 1 FROM study_identifiers WHERE kind = 'id' AND value = ?1) "
            "OR EXISTS (SELECT 1 FROM removed_identifiers WHERE kind = 'id' AND value = ?1)",
            (study_id,)).fetchone()[0] == 1

    def load_row(self, pk: int) -> tuple[StudyRow, str]:
        row = self.conn.execute(
            "SELECT id, " + ", ".join(ROW_FIELDS) + ", content_hash FROM studies WHERE pk = ?",
            (pk,),
        ).fetchone()
        return StudyRow(*row[:-1]), row[-1]

    def load_state(self, pk: int
                   ) -> tuple[StudyRow, str, str | None, str | None, str | None]:
        """load_row and provenance in one query: (row, content hash, the source file's
        record hash, source kind, moderated at)."""
        row = self.conn.execute(
            "SELECT id, " + ", ".join(ROW_FIELDS) + f", content_hash, {_SOURCE_FILE_HASH}, "
            "source_kind, moderated_at FROM studies WHERE pk = ?", (pk,)).fetchone()
        return StudyRow(*row[:-4]), row[-4], row[-3], row[-2], row[-1]

    def owner_pmid(self, doi: str) -> str | None:
        """The PMID of the study that holds a DOI, if it has one."""
        row = self.conn.execute("SELECT pmid FROM studies WHERE doi = ?", (doi,)).fetchone()
        return row[0] if row else None

    def owner_of(self, column: str, value: str) -> str | None:
        assert column in ("doi", "pmid")
        row = self.conn.execute(f"SELECT id FROM studies WHERE {column} = ?", (value,)).fetchone()
        return row[0] if row else None

    def insert_values(self, study_id: str, values: Sequence[Any], content_hash: str,
                      timestamp: str, *, source_kind: str = IMPORT,
                      source_name: str | None = None, profile: str | None = None) -> int:
        """A new study, given as its ROW_FIELDS values and their hash, from a source (a
        moderator's is no source: its record hash is not kept). `profile`: its profile,
        bot.profiles.profile_text of these values (else made at commit)."""
        moderated = source_kind == MODERATOR
        if profile is not None and not self._profiles_given:
            give_profiles(self.conn, True)
            self._profiles_given = True
        pk = self.conn.execute(_INSERT_STUDY, (
            study_id, *values, content_hash, timestamp, timestamp, source_kind, source_name,
            content_hash if source_kind == SOURCE_FILE else None,
            timestamp if moderated else None)).lastrowid
        assert pk is not None
        if profile is not None:
            self._profiles[pk] = profile
            if len(self._profiles) >= PROFILES_BATCH:
                self._store_profiles()
        elif self._profiles_given and self._backlog_after is None:
            mark_stale(self.conn, pk)  # the trigger is off: made at commit
        self._write_topics(pk, values[_TOPICS_AT], replace=False)
        if self._ids_from is None:
            self.set_identifiers(pk, (("id", study_id), ("doi", values[_DOI_AT]),
                                      ("pmid", values[_PMID_AT])))
        return pk

    def update(self, pk: int, row: StudyRow, timestamp: str, *,
               source: tuple[str, str | None, str] | None = None,
               moderated: bool = False) -> None:
        """Write a study's new values. `source`: (kind, name, record hash) of the import
        whose record this is; `moderated`: a moderator's change. Neither: provenance kept
        (e.g. a similar link moved by a merge)."""
        # Its text may change: a profile made with its row no longer holds (remade at commit).
        self._profiles.pop(pk, None)
        if self._fts_from is not None and pk <= self._fts_from \
                and pk not in self._fts_removed:
            # Already indexed: finish_fts takes it out of the index with the values kept here
            # and indexes its new ones. (Not now: a delete below the last rowid written
            # makes FTS5 flush its in-memory terms, a small segment per update.)
            self.conn.execute(
                f"INSERT INTO temp.import_fts_old (pk, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies WHERE pk = ?", (pk,))
            self._fts_removed.add(pk)
        if self._ids_from is not None and pk > self._ids_from:
            # Written by this import, its identifier rows are not there yet: keep the ones
            # it is about to lose (finish_fts adds the new ones).
            self.conn.execute(
                "INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk) "
                "SELECT 'doi', doi, pk FROM studies WHERE pk = ?1 AND doi IS NOT NULL "
                "UNION ALL SELECT 'pmid', pmid, pk FROM studies WHERE pk = ?1 "
                "AND pmid IS NOT NULL", (pk,))
        # A source file's record hash is kept (before migration 6 the content hash stood in
        # for it: written down before the content changes).
        kept_hash = f"source_hash = {_SOURCE_FILE_HASH}"
        if source is not None and source[0] == SOURCE_FILE:
            provenance = "source_kind = ?, source_name = ?, source_hash = ?"
            extra: tuple[Any, ...] = source
        elif source is not None:
            provenance = f"source_kind = ?, source_name = ?, {kept_hash}"
            extra = source[:2]
        elif moderated:
            provenance = f"source_kind = ?, moderated_at = ?, {kept_hash}"
            extra = (MODERATOR, timestamp)
        else:
            provenance, extra = kept_hash, ()
        self.conn.execute(
            "UPDATE studies SET " + ", ".join(f"{f} = ?" for f in ROW_FIELDS)
            + f", content_hash = ?, updated_at = ?, {provenance} WHERE pk = ?",
            (*(getattr(row, f) for f in ROW_FIELDS), row.content_hash(), timestamp, *extra,
             pk),
        )
        self._write_topics(pk, row.topics, replace=True)
        self.set_identifiers(pk, (("id", row.id), ("doi", row.doi), ("pmid", row.pmid)))

    def _write_topics(self, pk: int, topics: str, replace: bool) -> None:
        if replace:
            self.conn.execute("DELETE FROM study_topics WHERE study_pk = ?", (pk,))
        if topics:
            self.conn.executemany(
                "INSERT OR IGNORE INTO study_topics (topic, study_pk) VALUES (?, ?)",
                [(t, pk) for t in topics.split()],
            )

    def add_audit(self, guild_id: int | None, moderator_id: int | None,
                  moderator_name: str | None, action: str, study_id: str | None,
                  details: str, timestamp: str) -> int:
        """An audit entry, in the writer's transaction (with the change it records)."""
        cursor = self.conn.execute(
            "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, study_id, "
            "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (guild_id, moderator_id, moderator_name, action, study_id, details, timestamp))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def mark_studies_changed(self, timestamp: str) -> None:
        """Stamp the write: 'last_updated' for people, and a counter that readers in other
        processes compare (timestamps are to the second; two writes can share one)."""
        self.set_meta("last_updated", timestamp)
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('studies_version', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")


# --- the async database --------------------------------------------------------------------


class ModerationWriter(ImportWriter):
    """Moderators' changes to studies, each written with its audit entry in one transaction
    (sync, on its own connection, like imports)."""

    def audit_entry(self, entry_id: int) -> AuditEntry | None:
        row = self.conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ?",
                                (entry_id,)).fetchone()
        return AuditEntry(*row) if row else None

    def mark_reverted(self, entry_id: int, by_entry_id: int) -> None:
        self.conn.execute("UPDATE audit_log SET reverted_by = ? WHERE id = ?",
                          (by_entry_id, entry_id))

    def delete_study(self, pk: int) -> None:
        self.conn.execute("DELETE FROM studies WHERE pk = ?", (pk,))

    def merged_into(self, study_id: str) -> str | None:
        """The id of the study a former id now names (it was merged into it), if any."""
        row = self.conn.execute(
            "SELECT s.id FROM study_identifiers i JOIN studies s ON s.pk = i.study_pk "
            "WHERE i.kind = 'id' AND i.value = ? AND s.id != i.value", (study_id,)).fetchone()
        return row[0] if row else None

    def studies_mentioning(self, needles: Sequence[str]) -> list[int]:
        """Studies whose similar list contains any of these strings (a cheap pre-filter;
        the caller parses the JSON to be sure)."""
        found: set[int] = set()
        for needle in needles:
            rows = self.conn.execute(
                "SELECT pk FROM studies WHERE similar IS NOT NULL AND instr(similar, ?) > 0",
                (needle,)).fetchall()
            found.update(r[0] for r in rows)
        return sorted(found)

    def move_views(self, from_id: str, to_id: str) -> None:
        """Fold a merged study's look-up counter into the study that remains."""
        self.conn.execute(
            "INSERT INTO study_views (study_id, views, last_viewed_at) "
            "SELECT ?, views, last_viewed_at FROM study_views WHERE study_id = ? "
            "ON CONFLICT (study_id) DO UPDATE SET views = views + excluded.views, "
            "last_viewed_at = max(last_viewed_at, excluded.last_viewed_at)", (to_id, from_id))
        self.drop_views(from_id)

    def drop_views(self, study_id: str) -> None:
        self.conn.execute("DELETE FROM study_views WHERE study_id = ?", (study_id,))
