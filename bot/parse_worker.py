"""Uploaded files are read in a separate process, where a hostile one cannot hurt the bot.

A file sent to /studyadmin import is parsed by one of at most two worker processes
(`python -m bot.parse_worker`, a fresh interpreter on a socket pair: nothing of the bot's state,
nor its token, is copied), started the first time a file arrives. A worker runs under an
address-space limit (RLIMIT_AS, `imports.parse_memory_mb`) and each file under a wall-clock
limit (`imports.parse_timeout_seconds`, with a CPU-time limit behind it for a worker whose bot
died); past either the worker is killed, the moderator is told "this file took too long to
read" or "this file needs too much memory to read", and a fresh worker reads the next file.
The bot's event loop only waits on the socket meanwhile (in a thread of its own), so it keeps
answering. What comes back is plain data, the records and invalid records in file order; the
database is written in the bot's process, as before.

The command line (`studybot import`) reads the operator's own files in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from bot import importers
from bot.config import TOKEN_ENV
from bot.importers import ImportFormatError
from bot.model import InvalidRecord, StudyRecord

log = logging.getLogger("studybot.imports")

Item = StudyRecord | InvalidRecord
MAX_WORKERS = 2
# A worker is replaced after this many files: the memory a big parse left fragmented goes back.
FILES_PER_WORKER = 20
# Records travel in batches, so the bot never unpickles one huge message in one go (that would
# hold the interpreter lock for as long).
BATCH = 500
STARTUP_SECONDS = 30.0  # a worker's own start-up (interpreter, imports) is not the file's time


class ParseLimitError(ImportFormatError):
    """The file was not read: it needed more time or memory than a file may take."""


@dataclass(frozen=True)
class ParsedUpload:
    """What a file held, as plain data: its records and invalid records in file order (the
    order the import's report refers to)."""

    items: tuple[Item, ...]

    @property
    def records(self) -> list[StudyRecord]:
        return [item for item in self.items if isinstance(item, StudyRecord)]

    @property
    def invalid(self) -> list[InvalidRecord]:
        return [item for item in self.items if isinstance(item, InvalidRecord)]

    @property
    def warnings(self) -> list[str]:
        return [w for record in self.records for w in record.warnings]

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)


def parse_in_process(data: bytes, filename: str, max_expanded_bytes: int) -> ParsedUpload:
    """The same parse, in the calling process (tests, tools; not for untrusted files on the
    bot's event loop)."""
    return ParsedUpload(tuple(importers.iter_bytes(data, filename, max_expanded_bytes)))


# --- the worker process ------------------------------------------------------------------

def _serve(conn: Connection, memory_bytes: int) -> None:
    """A worker's main loop: read (data, filename, max_expanded_bytes), answer with batches
    of items and then ('done',), or one ('error', kind, message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bot's Ctrl-C is the bot's to handle
    with contextlib.suppress(OSError):
        os.nice(5)  # on a busy machine the bot's own process goes first
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    importers.available_formats()  # every format module loaded before the first file
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        data, filename, max_expanded_bytes, cpu_seconds = request
        del request
        _limit_cpu(cpu_seconds)
        try:
            _parse_to(conn, data, filename, max_expanded_bytes)
        except MemoryError:
            reply: tuple[Any, ...] = ("error", "memory", "")
        except ImportFormatError as exc:
            reply = ("error", "format", str(exc))
        except RecursionError:
            reply = ("error", "format", f"{filename}: nested too deeply to read")
        except Exception as exc:  # a bug in an importer: reported, the worker goes on
            reply = ("error", "crash", "".join(
                traceback.format_exception_only(type(exc), exc)).strip()[:500])
        else:
            continue
        finally:
            del data
        try:
            conn.send(reply)
        except (OSError, MemoryError):
            return


def _limit_cpu(seconds: int) -> None:
    """Past `seconds` more of CPU time the kernel ends this process (SIGXCPU): the bot kills it
    at its wall-clock limit first, but a worker whose bot died goes too."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(usage.ru_utime + usage.ru_stime) + 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = spent + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _parse_to(conn: Connection, data: bytes, filename: str, max_expanded_bytes: int) -> None:
    batch: list[Item] = []
    for item in importers.iter_bytes(data, filename, max_expanded_bytes):
        batch.append(item)
        if len(batch) >= BATCH:
            conn.send(("items", batch))
            batch = []
    conn.send(("items", batch))
    conn.send(("done",))


# --- the bot's side ----------------------------------------------------------------------

class _Worker:
    """A worker process, `python -m bot.parse_worker`, over a socket pair: nothing of the bot's
    state (nor its token) reaches it, and no main module is imported again."""

    def __init__(self, memory_bytes: int) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[1])
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.parse_worker", str(theirs.fileno()),
                 str(memory_bytes)],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                close_fds=True)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.files = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_code(self) -> int | None:
        try:
            return self.process.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self) -> None:
        """Wait for the worker's start-up (its interpreter and imports), which is not counted
        in a file's time."""
        try:
            if wait([self.conn], STARTUP_SECONDS) and self.conn.recv() == ("ready",):
                return
        except (EOFError, OSError):
            pass
        self.stop(kill=True)
        log.error("the file-reading worker did not start (exit code %s)", self.exit_code())
        raise ImportFormatError("the file reader could not start (the log says why)")

    def stop(self, kill: bool = False) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.conn.close()


class UploadParser:
    """Parses uploaded files in worker processes with time and memory limits."""

    def __init__(self, timeout_seconds: float = 60, memory_mb: int = 512,
                 workers: int = MAX_WORKERS) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers)
        # Its own threads wait on the workers: files queued behind busy workers hold no thread
        # of the loop's default executor (which the database work uses).
        self._waiters = ThreadPoolExecutor(workers, thread_name_prefix="studybot-parse")
        self._closed = False
        self._busy = 0

    async def parse(self, data: bytes, filename: str, max_expanded_bytes: int
                    ) -> ParsedUpload:
        """The file's records; ImportFormatError (ParseLimitError past a limit) when it
        cannot be read. The event loop is free meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._waiters, self.parse_blocking, data, filename,
                                          max_expanded_bytes)

    def parse_blocking(self, data: bytes, filename: str, max_expanded_bytes: int
                       ) -> ParsedUpload:
        with self._slots:
            worker = self._take()
            with self._lock:
                self._busy += 1
            try:
                items, error = self._run(worker, data, filename, max_expanded_bytes)
            except BaseException:  # a limit, a dead worker, or the wait interrupted
                self._retire(worker, kill=True)
                raise
            finally:
                with self._lock:
                    self._busy -= 1
            worker.files += 1
            with self._lock:
                keep = not self._closed and worker.files < FILES_PER_WORKER
                if keep:
                    self._idle.append(worker)
            if not keep:
                self._retire(worker)
            if error is not None:
                raise error
            return ParsedUpload(tuple(items))

    def close(self) -> None:
        """Stop every worker (a file being read is abandoned)."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            idle = set(self._idle)
            self._idle.clear()
        for worker in workers:
            worker.stop(kill=worker not in idle)
        with self._lock:
            self._all.clear()
        self._waiters.shutdown(wait=False, cancel_futures=True)

    @property
    def busy(self) -> int:
        """How many files are being read now."""
        return self._busy

    @property
    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._all]

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise ImportFormatError("the bot is shutting down; upload the file again")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.discard(worker)
        worker = _Worker(self.memory_mb << 20)
        with self._lock:
            self._all.add(worker)
        try:
            worker.wait_ready()
        except ImportFormatError:
            with self._lock:
                self._all.discard(worker)
            raise
        return worker

    def _retire(self, worker: _Worker, kill: bool = False) -> None:
        worker.stop(kill=kill)
        with self._lock:
            self._all.discard(worker)

    def _run(self, worker: _Worker, data: bytes, filename: str, max_expanded_bytes: int
             ) -> tuple[list[Item], ImportFormatError | None]:
        """The items, or the file's error from a worker that is still sound; raises when the
        worker must go (a limit passed, or it died)."""
        name = os.path.basename(filename)
        log.info("reading %r (%s bytes) in worker pid %s", name, f"{len(data):,}", worker.pid)
        started = time.monotonic()
        try:
            worker.conn.send((data, filename, max_expanded_bytes,
                              int(self.timeout_seconds) + 10))
        except OSError:  # it died while idle: no file of ours was in it
            raise self._died(worker, name) from None
        deadline = started + self.timeout_seconds
        items: list[Item] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not wait([worker.conn], remaining):
                log.warning("reading %r took more than %s s: its worker (pid %s) was stopped",
                            name, self.timeout_seconds, worker.pid)
                raise ParseLimitError(f"this file took too long to read (more than "
                                      f"{self.timeout_seconds:g} seconds)")
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                raise self._died(worker, name) from None
            if message[0] == "items":
                items.extend(message[1])
            elif message[0] == "done":
                log.info("read %r in a worker: %d item(s) in %.2f s", name, len(items),
                         time.monotonic() - started)
                return items, None
            else:
                _, kind, text = message
                if kind == "memory":
                    log.warning("reading %r needed more than %d MB", name, self.memory_mb)
                    raise self._memory_error()
                if kind == "crash":
                    log.error("reading %r failed in its worker: %s", name, text)
                    return [], ImportFormatError(f"{name}: the file could not be read (the "
                                                 "log says why)")
                return [], ImportFormatError(text)

    def _memory_error(self) -> ParseLimitError:
        return ParseLimitError(f"this file needs too much memory to read (more than "
                               f"{self.memory_mb:,} MB)")

    def _died(self, worker: _Worker, name: str) -> ImportFormatError:
        code = worker.exit_code()
        log.warning("the worker reading %r stopped (exit code %s)", name, code)
        if code in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT) or code is None:
            # The kernel's out-of-memory killer, or an allocation failing where Python
            # could not raise MemoryError.
            return self._memory_error()
        return ImportFormatError(f"{name}: the file could not be read (the log says why)")


def main(argv: list[str]) -> int:
    """`python -m bot.parse_worker FD MEMORY_BYTES`: serve the bot over the socket FD."""
    fd, memory_bytes = int(argv[0]), int(argv[1])
    _serve(Connection(fd), memory_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
