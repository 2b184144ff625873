"""Bulk import: a large load into an empty library, built as a new file beside it and
swapped in atomically (`studybot import`, see bot/db/bulk_build.py for the file's side).

The records go through the same matching and merging as any import (StudyImporter, one
transaction): the same studies, identifiers, merges, topics, references and audit entry.
What differs is where and how they are written: a copy of the empty library, without the
full-text triggers (both indexes made once after the rows), with the new studies' profiles
left to the bot's background backfill. Until the rename, the library file is untouched and
held alone; a crash leaves it as it was (and a `.bulk-build` file the next bulk import
removes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from bot.db import ImportWriter
from bot.db.bulk_build import (
    BulkRefused,
    BulkWriter,
    LibraryHold,
    build_path,
    finish_build,
    open_build,
    remove_file,
)
from bot.importing import PARSE_WORKERS, ImportReport, Progress, prepared_items, run_import
from bot.topics import TopicVocabulary

__all__ = ["BulkRefused", "bulk_import"]

log = logging.getLogger("studybot.importing")


def bulk_import(target: str | Path, paths: Iterable[str | Path], topics: TopicVocabulary, *,
                busy_timeout_ms: int = 5000, max_size_mb: int | None = None,
                skip_invalid: bool = False, progress: Progress | None = None,
                after_write: Callable[[ImportWriter, ImportReport], None] | None = None,
                overwrite_moderated: bool = False, workers: int = PARSE_WORKERS
                ) -> ImportReport:
    """Fill the empty library at `target` from `paths` through a new file swapped in at the
    end. Raises BulkRefused (nothing done) when the library has studies or another process
    has it open; ImportAborted, DatabaseError as run_import (the library untouched)."""
    target = Path(target)
    paths = list(paths)
    hold = LibraryHold.acquire(target, busy_timeout_ms)
    build = build_path(target)
    swapped = False
    try:
        hold.copy_to(build)
        log.info("bulk import: building the new library in %s", build)
        conn, triggers = open_build(build, busy_timeout_ms, max_size_mb)
        try:
            report = run_import(
                conn, prepared_items(paths, topics, workers, profiles=False), topics,
                skip_invalid=skip_invalid, progress=progress, after_write=after_write,
                overwrite_moderated=overwrite_moderated, profiles_later=True,
                writer_class=BulkWriter)
        except BaseException:
            conn.close()
            raise
        finish_build(conn, triggers)
        hold.swap_in(build)
        swapped = True
        log.info("bulk import: %s replaced (%s)", target, report.summary_line())
        return report
    finally:
        if not swapped:
            remove_file(build)
            hold.release()
