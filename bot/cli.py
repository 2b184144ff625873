"""The `studybot` command line: run the bot, import, search, show, related, db."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from bot.config import TOKEN_ENV, Config, ConfigError, discord_token, load_config
from bot.db import Database, DatabaseError, ImportWriter, latest_schema_version
from bot.importers import ImportFormatError
from bot.importing import ImportAborted, ImportReport
from bot.index_merge import IndexMerge
from bot.library import InvalidQuery, SearchRequest, StudyLibrary
from bot.logs import setup_logging
from bot.model import STUDY_TYPES, Study
from bot.moderation import Actor, Moderation
from bot.semantic_backlog import SemanticBacklog
from bot.topics import TopicsError, TopicVocabulary

log = logging.getLogger("studybot")

# Who the audit log names for `studybot import` (an operator on the server, no Discord user).
CLI_ACTOR = Actor(guild_id=None, user_id=None, name="studybot import (command line)")


class UserError(Exception):
    """Exit 1 with this one-line message."""


def study_json(study: Study, **extra: Any) -> str:
    data: dict[str, Any] = {
        "id": study.id, "title": study.title, "year": study.year, "journal": study.journal,
        "doi": study.doi, "pmid": study.pmid, "authors": list(study.authors),
        "citations": study.citations, "study_type": study.study_type,
        "topics": list(study.topics), "tldr": study.tldr, "url": study.source_url,
    }
    data.update(extra)
    return json.dumps(data, ensure_ascii=False)


def study_line(study: Study) -> str:
    facts = [str(study.year) if study.year else "n.d."]
    if study.journal:
        facts.append(study.journal)
    if study.citations is not None:
        facts.append(f"{study.citations} citations")
    return f"{study.id}  {study.title}  ({'; '.join(facts)})"


def print_study(study: Study, out: TextIO) -> None:
    print(study.title, file=out)
    if study.authors:
        names = ", ".join(study.authors[:3]) + (" et al." if len(study.authors) > 3 else "")
        print(f"  {names}", file=out)
    line = study.published + (f" in {study.journal}" if study.journal else "")
    if study.citations is not None:
        line += f" · {study.citations} citations"
    print(f"  {line}", file=out)
    if study.tldr:
        print(f"  TLDR: {study.tldr}", file=out)
    if study.summary:
        print(f"  {study.summary}", file=out)
    ids = [f"id {study.id}"]
    if study.doi:
        ids.append(f"DOI {study.doi}")
    if study.pmid:
        ids.append(f"PMID {study.pmid}")
    print("  " + " · ".join(ids), file=out)
    if study.topics:
        print("  topics: " + ", ".join(study.topics), file=out)


class _Progress:
    """A one-line progress counter on stderr, only when it is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, count: int) -> None:
        if self.enabled:
            rate = count / max(1e-6, time.monotonic() - self.started)
            print(f"\r  {count:,} records read ({rate:,.0f}/s)", end="", file=sys.stderr,
                  flush=True)

    def done(self) -> None:
        if self.enabled:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)


def print_report(report: ImportReport, out: TextIO, limit: int = 20) -> None:
    print(report.summary_line(), file=out)
    for problem in report.invalid[:limit]:
        print(f"  invalid: {problem}", file=out)
    if len(report.invalid) > limit:
        print(f"  ... and {len(report.invalid) - limit} more invalid record(s)", file=out)
    if report.kept_moderated:
        print(f"  kept the moderators' version of {', '.join(report.kept_ids[:5])}"
              f"{' ...' if report.kept_moderated > 5 else ''} (--overwrite-moderated applies "
              "the file's records)", file=out)
    if report.removed_skipped:
        print(f"  removed earlier, skipped: {', '.join(report.removed_ids[:5])}"
              f"{' ...' if report.removed_skipped > 5 else ''} (restore them first)", file=out)
    for note in report.skipped[:5]:
        print(f"  skipped: {note}", file=out)
    if len(report.skipped) > 5:
        print(f"  ... and {len(report.skipped) - 5} more skipped", file=out)
    for warning in report.warnings[:5]:
        print(f"  warning: {warning}", file=out)
    if report.warning_count > 5:
        print(f"  ... and {report.warning_count - 5} more warning(s)", file=out)


# --- subcommands -----------------------------------------------------------------------------

async def _open(config: Config, args: argparse.Namespace, create: bool = True
                ) -> tuple[Database, StudyLibrary]:
    path = Path(args.db) if args.db else config.database_path
    try:
        topics = TopicVocabulary.load(config.topics_path)
    except TopicsError as exc:
        raise UserError(str(exc)) from None
    db = await Database.open(path, config.database.busy_timeout_ms, create=create,
                             max_size_mb=config.database.max_size_mb)
    return db, StudyLibrary(db, topics)


async def cmd_import(config: Config, args: argparse.Namespace) -> int:
    for path in args.paths:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file")
    files = ", ".join(Path(p).name for p in args.paths)
    size = sum(Path(p).stat().st_size for p in args.paths)

    def audited(writer: ImportWriter, report: ImportReport) -> None:
        # In the import's transaction: moderators see it in /studyadmin audit.
        Moderation.audit_import(writer, CLI_ACTOR, files, size, report)

    progress = _Progress()
    report: ImportReport | None = None
    try:
        if not args.dry_run and not args.no_bulk:
            # Into an empty library that no other process has open (the bot): a new file
            # built beside it and swapped in (bot/bulk_import.py); else the path below.
            report = await _bulk_import(config, args, progress, audited)
        if report is None:
            db, library = await _open(config, args)
            try:
                report = await library.import_paths(
                    args.paths, skip_invalid=args.skip_invalid, dry_run=args.dry_run,
                    progress=progress, overwrite_moderated=args.overwrite_moderated,
                    after_write=audited,
                    # Into an empty database: the bot makes the profiles in the background
                    # once it runs.
                    profiles_later=True)
            finally:
                await db.close()
    except ImportAborted as exc:
        progress.done()
        print_report(exc.report, sys.stderr)
        raise UserError(exc.reason) from None
    progress.done()
    print_report(report, sys.stdout)
    return 0


async def _bulk_import(config: Config, args: argparse.Namespace, progress: _Progress,
                       audited: Callable[[ImportWriter, ImportReport], None]
                       ) -> ImportReport | None:
    """The bulk import's report; None when it does not apply (a library with studies, or
    open in another process) and --bulk was not asked for (then it says why)."""
    from bot.bulk_import import BulkRefused, bulk_import

    path = Path(args.db) if args.db else config.database_path
    try:
        topics = TopicVocabulary.load(config.topics_path)
    except TopicsError as exc:
        raise UserError(str(exc)) from None
    try:
        return await asyncio.to_thread(
            bulk_import, path, args.paths, topics,
            busy_timeout_ms=config.database.busy_timeout_ms,
            max_size_mb=config.database.max_size_mb, skip_invalid=args.skip_invalid,
            progress=progress, after_write=audited,
            overwrite_moderated=args.overwrite_moderated)
    except BulkRefused as exc:
        if args.bulk:
            raise UserError(f"{exc}") from None
        return None


async def cmd_search(config: Config, args: argparse.Namespace) -> int:
    db, library = await _open(config, args)
    try:
        page = await library.search(SearchRequest(
            text=" ".join(args.terms), topic=args.topic, since=args.since, until=args.until,
            study_type=args.type, sort=args.sort, limit=args.limit))
    except InvalidQuery as exc:
        raise UserError(str(exc)) from None
    finally:
        await db.close()
    if args.json:
        for study in page.studies:
            print(study_json(study))
        return 0
    if page.corrected_query:
        print(f"(showing results for: {page.corrected_query})")
    total = f"{page.counted_to}+" if page.total > page.counted_to else str(page.total)
    print(f"{total} result(s)")
    for study in page.studies:
        print(study_line(study))
    return 0


async def studies_for(library: StudyLibrary, identifiers: Sequence[str]
                      ) -> tuple[list[tuple[str, Study]], list[str]]:
    """The study for each identifier as given, and a line for each unknown one (with 'did you
    mean' suggestions)."""
    found, missing = [], []
    for identifier in identifiers:
        study = await library.lookup(identifier)
        if study is not None:
            found.append((identifier, study))
            continue
        suggestions = await library.suggest(identifier, limit=5)
        hint = f" (did you mean: {', '.join(s.id for s in suggestions)})" if suggestions else ""
        missing.append(f"{identifier}: no such study{hint}")
    return found, missing


async def cmd_show(config: Config, args: argparse.Namespace) -> int:
    db, library = await _open(config, args)
    try:
        found, missing = await studies_for(library, args.ids)
        for identifier, study in found:
            if args.json:
                print(study_json(study, **{"for": identifier, "summary": study.summary}))
            else:
                print_study(study, sys.stdout)
                print()
    finally:
        await db.close()
    if missing:
        raise UserError("; ".join(missing))
    return 0


async def cmd_related(config: Config, args: argparse.Namespace) -> int:
    db, library = await _open(config, args)
    try:
        # The latent semantic vectors the bot made, when the lsa extra is installed.
        library.semantic = await SemanticBacklog(db).prepare(fit=False)
        found, missing = await studies_for(library, args.ids)
        for identifier, study in found:
            entries = await library.related(study, sort=args.sort, limit=args.limit)
            if not args.json:
                print(f"Related to {study.id}: {study.title}")
            for rank, entry in enumerate(entries, start=1):
                if args.json:
                    if entry.study:
                        print(study_json(entry.study, **{"for": identifier, "rank": rank}))
                    else:
                        ref = entry.ref
                        print(json.dumps({"id": None, "title": ref.title, "year": ref.year,
                                          "journal": ref.journal, "doi": ref.doi,
                                          "pmid": ref.pmid, "citations": ref.citations,
                                          "tldr": ref.tldr, "for": identifier, "rank": rank},
                                         ensure_ascii=False))
                elif entry.study:
                    print(f"{rank:3}. {study_line(entry.study)}")
                else:
                    print(f"{rank:3}. (not in the database) {entry.title}")
    finally:
        await db.close()
    if missing:
        raise UserError("; ".join(missing))
    return 0


async def cmd_db(config: Config, args: argparse.Namespace) -> int:
    # A check or a backup of a database that is not there must not create an empty one.
    db, _library = await _open(config, args, create=args.action == "stats")
    try:
        if args.action == "stats":
            stats = await db.stats()
            data = {"studies": stats.studies, "topics": stats.topics,
                    "last_updated": stats.last_updated, "size_bytes": stats.size_bytes,
                    "schema_version": stats.schema_version, "path": str(db.path)}
            if args.json:
                print(json.dumps(data))
            else:
                for key, value in data.items():
                    print(f"{key}: {value}")
        elif args.action == "check":
            problems = await db.integrity_check()
            version = (await db.stats()).schema_version
            print(f"schema version {version} (this studybot: {latest_schema_version()})")
            if problems:
                for problem in problems[:20]:
                    print(f"  {problem}")
                raise UserError(f"{db.path}: integrity check failed")
            print("integrity: ok")
        elif args.action == "backup":
            await _backup(db, args)
        elif args.action == "merge":
            # What the bot does in the background after large imports, here at once.
            merged = await IndexMerge(db, pause_seconds=0).merge_all(force=True)
            for m in merged:
                print(f"{m.table}: {m.segments_before} segments -> {m.segments_after} "
                      f"({m.steps} steps, {m.seconds:.1f} s)")
            if not merged:
                print("the full-text indexes are one segment each: nothing to merge")
        elif args.action == "semantic":
            await _fit_semantic(db)
    finally:
        await db.close()
    return 0


async def _fit_semantic(db: Database) -> None:
    """What the bot does in the background with the `lsa` extra, here at once: fit the latent
    semantic model over the library and fold in every study's vector."""
    backlog = SemanticBacklog(db, batch=2000, pause_seconds=0)
    if not backlog.available:
        raise UserError("related research by latent semantic vectors needs the lsa extra "
                        "(pip install 'studybot[lsa]': numpy and scipy)")
    started = time.monotonic()
    semantic = await backlog.prepare(force_fit=True)
    if semantic is None:
        raise UserError("too few studies for a model of related research")
    fitted = time.monotonic() - started
    folded = await backlog.fill()
    model = semantic.model
    print(f"fitted over {model.sampled:,} of {model.studies:,} studies in {fitted:.1f} s "
          f"({len(model.vocabulary):,} words, {model.dims} dimensions, "
          f"{len(model.centroids):,} cells); {folded:,} vectors folded in "
          f"{time.monotonic() - started - fitted:.1f} s")


async def _backup(db: Database, args: argparse.Namespace) -> None:
    """To a file, or into a folder as `<db name>-<UTC time>.db`, keeping the newest --keep."""
    if not args.target:
        raise UserError("db backup needs a target path")
    folder = Path(args.target) if Path(args.target).is_dir() else None
    if args.keep is not None and folder is None:
        raise UserError("--keep needs a folder as the backup target")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder / f"{db.path.stem}-{stamp}.db" if folder else Path(args.target)
    if target.exists() and not args.force:
        raise UserError(f"{target}: already exists (use --force to overwrite)")
    if target.resolve() == db.path.resolve():
        raise UserError("the backup target is the database itself")
    if not target.parent.is_dir():
        raise UserError(f"{target.parent}: no such directory")
    # Written aside and renamed: an interrupted backup never replaces a good one.
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        await db.backup(partial)
        partial.replace(target)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"{target}: backup failed ({exc})") from None
    print(f"backed up to {target}")
    if folder is not None and args.keep is not None:
        pattern = re.compile(re.escape(db.path.stem) + r"-\d{8}T\d{6}Z\.db")
        ours = sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))
        for old in ours[:-args.keep]:
            old.unlink()
            print(f"removed {old}")


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    return run_bot(config, db_override=args.db)


def run_bot(config: Config, db_override: str | None = None) -> int:
    """`studybot run`: open the services, start the bot with them, and stop cleanly on SIGINT
    or SIGTERM (the bot first, then the services it used)."""
    import discord  # the Discord layer is only needed here

    from bot.client import StudyBot, configure_api
    from bot.memory import trim_periodically
    from bot.services import Services

    token = discord_token()
    if not token:
        raise UserError(f"set the bot token in the {TOKEN_ENV} environment variable")
    configure_api(config.discord.api_base_url)

    async def main() -> None:
        services = await Services.open(config, Path(db_override) if db_override else None)
        try:
            bot = StudyBot(config, services)
            bot.freeze_gc_when_ready = True
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            runner = asyncio.create_task(bot.start(token))
            stopper = asyncio.create_task(stop.wait())
            # Bursts leave freed memory in malloc's free lists: hand it back (bot/memory.py).
            trimmer = asyncio.create_task(trim_periodically(before=services.db.shrink_memory))
            done, _ = await asyncio.wait({runner, stopper},
                                         return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("stopping")
            trimmer.cancel()
            await bot.close()
            stopper.cancel()
            if runner in done:
                runner.result()  # re-raise a start-up failure
            else:
                await asyncio.wait_for(runner, 30)
        finally:
            await services.close()

    try:
        asyncio.run(main())
    except discord.LoginFailure:
        raise UserError("Discord refused the token (check DISCORD_TOKEN)") from None
    except discord.PrivilegedIntentsRequired:
        raise UserError("Discord refused the requested intents") from None
    log.info("stopped")
    return 0


# --- argument parsing --------------------------------------------------------------------------

def _year(text: str) -> int:
    if not text.isdigit() or not 1500 <= int(text) <= 2100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a year")
    return int(text)


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError("expected a number from 1 to 1000")
    return int(text)


def _keep(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError("expected a number from 1 to 10000")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH",
                        help="config file (default: ./config.yaml if present)")
    common.add_argument("--db", metavar="PATH", help="database file (overrides database.path)")

    parser = argparse.ArgumentParser(
        prog="studybot", description="A Discord bot for reading, finding and discussing "
        "research studies.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", parents=[common], help="run the Discord bot (token from "
                   "DISCORD_TOKEN)")

    p = sub.add_parser("import", parents=[common], help="import study files into the database")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--skip-invalid", action="store_true",
                   help="import the valid records even if some are invalid")
    p.add_argument("--overwrite-moderated", action="store_true",
                   help="apply records to studies a moderator changed since (default: keep "
                   "the moderator's version)")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write "
                   "nothing")
    bulk = p.add_mutually_exclusive_group()
    bulk.add_argument("--bulk", action="store_true",
                      help="require the bulk path: an empty library is built anew beside its "
                      "file and swapped in (the default whenever the library is empty and no "
                      "other process has it open); refused otherwise")
    bulk.add_argument("--no-bulk", action="store_true",
                      help="import row by row into the library even when it is empty")

    p = sub.add_parser("search", parents=[common], help="search the studies")
    p.add_argument("terms", nargs="*", metavar="TERMS")
    p.add_argument("--topic")
    p.add_argument("--since", type=_year)
    p.add_argument("--until", type=_year)
    p.add_argument("--type", choices=STUDY_TYPES)
    p.add_argument("--sort", choices=("relevance", "citations", "newest"), default="relevance")
    p.add_argument("--limit", type=_limit, default=10)
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = sub.add_parser("show", parents=[common], help="show studies by id, DOI, PMID or URL")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = sub.add_parser("related", parents=[common], help="related research for studies")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--limit", type=_limit, default=10)
    p.add_argument("--sort", choices=("relevance", "citations", "newest"), default="relevance")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = sub.add_parser("db", parents=[common], help="database maintenance")
    p.add_argument("action", choices=("check", "stats", "backup", "merge", "semantic"),
                   help="merge: the full-text indexes into one segment each (faster searches "
                   "after large imports; the bot also does it in the background); semantic: "
                   "fit the latent semantic vectors of related research now (the lsa extra; "
                   "the bot also does it in the background)")
    p.add_argument("target", nargs="?", metavar="PATH",
                   help="backup file, or a folder to back up into with a dated name")
    p.add_argument("--force", action="store_true", help="overwrite an existing backup file")
    p.add_argument("--keep", type=_keep, metavar="N",
                   help="backing up into a folder: keep its newest N backups, remove older")
    p.add_argument("--json", action="store_true", help="JSON output (stats)")
    p = sub.add_parser("feed", parents=[common], help="PubMed feeds")
    p.add_argument("action", choices=("run",), help="run: poll the feed now")
    p.add_argument("name", help="the feed's name (config.yaml, feeds:)")
    p.add_argument("--since", type=_day, metavar="YYYY-MM-DD",
                   help="backfill from this entry date (default: since the last poll)")
    return parser


async def cmd_feed(config: Config, args: argparse.Namespace) -> int:
    """`studybot feed run NAME [--since YYYY-MM-DD]`: poll (or backfill) one PubMed feed."""
    from bot.feeds import FeedError, FeedService

    feed = next((f for f in config.feeds if f.name == args.name), None)
    if feed is None:
        known = ", ".join(f.name for f in config.feeds) or "none configured"
        raise UserError(f"no feed {args.name!r} in the config (feeds: {known})")
    db, library = await _open(config, args)
    home = min(config.moderation.library_guild_ids, default=None)
    feeds = FeedService(library, config, guild_id=lambda: home)
    bar = _Bar()
    try:
        result = await feeds.poll(feed, since=args.since, progress=bar)
    except FeedError as exc:
        raise UserError(f"feed {feed.name}: {exc}") from None
    finally:
        bar.done()
        await feeds.stop()
        await db.close()
    print(f"{feed.name}: {result.window[0]} to {result.window[1]}: {result.found:,} records, "
          f"{result.new:,} new, {result.updated:,} updated")
    for skipped in result.skipped_batches or []:
        print(f"  skipped: {skipped}")
    return 0


class _Bar:
    """A progress bar on stderr (records imported of those found), only on a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.enabled and total:
            filled = 30 * done // total
            print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} records",
                  end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled:
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "import": cmd_import, "search": cmd_search, "show": cmd_show, "related": cmd_related,
    "db": cmd_db, "feed": cmd_feed,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        setup_logging(config.logging)
        if args.command == "run":
            return cmd_run(config, args)
        return asyncio.run(COMMANDS[args.command](config, args))
    except (UserError, ConfigError, DatabaseError, ImportFormatError, TopicsError) as exc:
        print(f"studybot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("studybot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
