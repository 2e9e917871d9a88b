"""The prediction log's write-ahead journal: a server appends each answer's rows to a local
file before answering, and a background thread moves them into the database table.

Why: a request that waits for a database commit, however well commits are shared
(:class:`~trademl.monitoring.writer.LogWriter`), costs a polled server a quarter of its
throughput (``bench/serve_bench.py``: a cached answer takes well under a millisecond, and the
wait is on the order of one). One ``write`` to a file opened for appending costs a few
microseconds on the event loop, and once it returns the entry is the kernel's: a server killed
at any point loses nothing of what it answered.

- One file per server process under ``folder`` (``{host}-{pid}-{random}.jsonl``) of JSON lines:
  an answer's rows once under their key (``{"a": key, "p": rows}``, written before the first
  request that names it), then one short line per request (``{"r": id, "t": time, "a": key}``).
  A polled bar answered thousands of times is written, moved and stored once.
- Every ``flush_s`` a mover takes the complete lines written since its last move into
  ``prediction_answers`` (an answer stored already is skipped) and ``prediction_log``, and
  records how far it has read in ``prediction_log_journal``, in the same
  transaction: a crash between the two cannot move a line twice or skip one.
- A server that starts moves what dead servers of the same host left (their process is gone),
  from where they stopped, then deletes their files; a clean shutdown moves everything and
  deletes its own.
- A database that cannot be written meanwhile only delays the move (a warning, once): the
  entries wait in the journal. A journal that cannot be written fails the request (503): an
  answer that could not be logged is not sent.

Durability is that of a file write without ``fsync``, the same as the SQLite log's WAL with
``synchronous=NORMAL``: a process crash loses nothing, an operating-system crash or power loss
can lose the last writes. Readers of the table see an answer at most ``flush_s`` after it was
sent.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from loguru import logger

from trademl.config import Settings
from trademl.errors import StoreError
from trademl.monitoring.appender import skip_clause
from trademl.monitoring.predictions import (
    ANSWER_COLUMNS,
    REQUEST_COLUMNS,
    LoggedPrediction,
    PredictionLog,
    PreparedRows,
    check_request_id,
    prediction_answers,
    prediction_log,
)
from trademl.redact import redact

# Seconds between moves: each move is a transaction, whose fixed cost a longer period shares
# among more requests (at 0.2 s it was a third of the mover's CPU on a polled server).
FLUSH_S = 1.0
SUFFIX = ".jsonl"
# Answer keys remembered as written to this process's file (one evicted is written again).
_DEFINED = 4096
# Lines moved per transaction at most (a backlog after an outage moves in steps).
_MAX_LINES = 5000

_offsets_metadata = sa.MetaData()
journal_offsets = sa.Table(
    "prediction_log_journal",
    _offsets_metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
)
_BAR = 4  # bar_timestamp's place in a prepared row (model_name, version, symbol, timeframe, bar)
_ANSWER, _REQUEST = b'{"a":', b'{"r":'


def journal_folder(settings: Settings) -> Path:
    """The journals of one log database under home: servers logging elsewhere never move
    each other's entries."""
    url = settings.prediction_log_url or settings.jobs_store_url
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(settings.home) / "prediction-journal" / key


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class Mover:
    """Moves journal lines into the table, recording how far each file was read in the same
    transaction (see the module docstring)."""

    def __init__(self, log: PredictionLog, folder: Path) -> None:
        self.log = log
        self.folder = Path(folder)
        self.host = host_name()
        self._offsets_ready = False
        self._failing = False
        self._lock = threading.Lock()
        dialect = log._engine.dialect
        self._sqlite = dialect.name == "sqlite"
        self._second, self._second_text = -1, ""
        # How far each file is known to be moved (this mover's own commits).
        self._read_to: dict[str, int] = {}
        self._offset_after = 0
        mark = "?" if dialect.paramstyle == "qmark" else "%s"

        def insert(table: str, columns: list[str]) -> str:
            marks = ", ".join([mark] * len(columns))
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"

        self._insert_requests = insert(prediction_log.name, REQUEST_COLUMNS)
        self._insert_answers = insert(prediction_answers.name, ANSWER_COLUMNS) + skip_clause(
            dialect.name, ANSWER_COLUMNS[0]
        )

    def _ensure_offsets(self) -> None:
        if not self._offsets_ready:
            _offsets_metadata.create_all(self.log._engine, checkfirst=True)
            self._offsets_ready = True

    def _offset(self, connection: sa.Connection, name: str) -> int:
        found = connection.execute(
            sa.select(journal_offsets.c.offset).where(journal_offsets.c.name == name)
        ).scalar()
        return int(found or 0)

    def move(self, path: Path) -> int:
        """Move the complete lines of ``path`` not yet in the table; returns the rows moved.
        Raises StoreError when the database cannot be written or the file is gone."""
        with self._lock:
            try:
                if self._read_to.get(path.name) == path.stat().st_size:
                    return 0  # nothing written since the last move: no transaction
                self.log._create()
                self._ensure_offsets()
                moved = 0
                while True:
                    step = self._move_step(path)
                    self._read_to[path.name] = self._offset_after  # committed
                    moved += step
                    if step == 0:
                        return moved
            except sa.exc.DBAPIError as error:
                raise StoreError(
                    redact(f"prediction log: cannot move journal entries: {error}")
                ) from None
            except FileNotFoundError:
                raise StoreError(
                    f"prediction log journal {path} was removed: what it held and had not "
                    "moved is lost"
                ) from None

    def _move_step(self, path: Path) -> int:
        with self.log._engine.begin() as connection:
            start = self._offset(connection, path.name)
            self._offset_after = start
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read(1 << 22)
            end = data.rfind(b"\n")
            if end < 0:
                return 0
            lines = data[: end + 1].splitlines()[:_MAX_LINES]
            consumed = sum(len(line) + 1 for line in lines)
            answers, requests = self._rows(lines)
            # The driver's executemany: a backlog of many rows moves quickly.
            if answers:
                connection.exec_driver_sql(self._insert_answers, answers)
            if requests:
                connection.exec_driver_sql(self._insert_requests, requests)
            connection.execute(
                sa.delete(journal_offsets).where(journal_offsets.c.name == path.name)
            )
            connection.execute(
                sa.insert(journal_offsets).values(name=path.name, offset=start + consumed)
            )
            self._offset_after = start + consumed
            return max(len(requests), 1)

    def _rows(self, lines: list[bytes]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The answer rows and request rows of complete journal lines."""
        for line in lines:
            if not line.startswith((_REQUEST, _ANSWER)):
                raise StoreError(
                    f"prediction log journal: a line that is not an entry: {line[:80]!r}"
                )
        try:  # one decode for the batch: per-line calls would cost more than the rows' inserts
            entries = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError as error:
            raise StoreError(
                f"prediction log journal: an entry that is not JSON: {error}"
            ) from None
        answers: list[tuple[Any, ...]] = []
        requests: list[tuple[Any, ...]] = []
        for entry in entries:
            if "r" in entry:
                requests.append((self._logged_at(entry["t"]), entry["r"], entry["a"]))
                continue
            for position, row in enumerate(entry["p"]):
                if not self._sqlite:  # SQLite's stamps are text already; a server takes times
                    row[_BAR] = datetime.fromisoformat(row[_BAR])
                answers.append((entry["a"], position, *row))
        return answers, requests

    def _logged_at(self, seconds: float) -> Any:
        """A request's time as the log stores it; SQLite's text formatted once per second."""
        if not self._sqlite:
            return datetime.fromtimestamp(seconds, UTC)
        whole = int(seconds)
        if whole != self._second:
            self._second = whole
            self._second_text = self.log._stamp(datetime.fromtimestamp(whole, UTC))[:19]
        micros = min(round((seconds - whole) * 1e6), 999_999)
        return f"{self._second_text}.{micros:06d}"

    def forget(self, path: Path) -> None:
        """Delete a fully moved file, then its offset (a crash between leaves a harmless row)."""
        path.unlink(missing_ok=True)
        self._read_to.pop(path.name, None)
        try:
            with self.log._engine.begin() as connection:
                connection.execute(
                    sa.delete(journal_offsets).where(journal_offsets.c.name == path.name)
                )
        except sa.exc.DBAPIError as error:
            logger.warning("journal offset of {} not removed: {}", path.name, redact(str(error)))

    def recover(self, keep: Path | None = None) -> None:
        """Move what dead servers of this host left, then delete their files."""
        for path in sorted(self.folder.glob(f"{self.host}-*{SUFFIX}")):
            if path == keep:
                continue
            pid = path.name[len(self.host) + 1 :].split("-", 1)[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            try:
                moved = self.move(path)
            except StoreError as error:
                logger.warning("journal {} left for later: {}", path.name, error)
                continue
            logger.info("moved {} logged rows a stopped server left in {}", moved, path.name)
            self.forget(path)

    def move_quietly(self, path: Path) -> None:
        """:meth:`move`, a failure logged once until it recovers (entries wait meanwhile)."""
        try:
            self.move(path)
        except StoreError as error:
            if not self._failing:
                logger.warning("{}; the entries wait in {}", error, path)
            self._failing = True
            return
        if self._failing:
            logger.info("prediction log: journal entries moving again")
        self._failing = False

    def finish(self, path: Path) -> None:
        """Move everything of ``path``; delete it when all of it moved."""
        try:
            self.move(path)
        except StoreError as error:
            logger.warning("{}; {} is moved by the next server to start", error, path)
        else:
            self.forget(path)


def host_name() -> str:
    """This host, as journal file names carry it."""
    return socket.gethostname().replace("-", "_")[:60]


def _yield_to_serving() -> None:
    """Run this process only on CPU time nothing else wants.

    Linux's SCHED_IDLE, else the lowest priority nice gives: at nice 10 a saturated server
    still gave the mover about a tenth of a core, a tenth of its throughput.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


def _mover_process(url: str, folder: str, path: str, stop: Any, flush_s: float) -> None:
    """The mover in its own process: a server's event loop never waits on the database, nor
    on this work for the interpreter lock."""
    # Below the server in the scheduler's order: under saturation the answers come first and
    # the move catches up when load drops (the entries are safe in the journal meanwhile).
    _yield_to_serving()
    mover = Mover(PredictionLog(url), Path(folder))
    mover.recover(keep=Path(path))
    while not stop.wait(flush_s):
        mover.move_quietly(Path(path))
    mover.finish(Path(path))
    mover.log.close()


class Journal:
    """Appends answers to this process's journal file; a mover takes them into ``log``.

    Offers what the server's log writer offers (:meth:`append`, :meth:`append_async`,
    :meth:`append_prepared_async`, :meth:`close`), each returning once the rows are in the
    journal.

    Parameters
    ----------
    log : PredictionLog
        The table the entries are moved into.
    folder : Path
        Where journal files live (created).
    flush_s : float
        Seconds between moves.
    process : bool
        Move in a child process (a server: the move's database work then takes no time from
        the event loop's interpreter) rather than in a thread.
    """

    def __init__(
        self,
        log: PredictionLog,
        folder: Path,
        *,
        flush_s: float = FLUSH_S,
        process: bool = False,
    ) -> None:
        self.log = log
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{host_name()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._defined: OrderedDict[str, None] = OrderedDict()
        self._closed = False
        self._mover: Mover | None = None
        self._child: Any = None
        if process:
            context = multiprocessing.get_context("spawn")
            self._child_stop = context.Event()
            self._child = context.Process(
                target=_mover_process,
                args=(log.url, str(self.folder), str(self.path), self._child_stop, flush_s),
                name="trademl-journal-mover",
                daemon=True,
            )
            self._child.start()
        else:
            self._mover = Mover(log, self.folder)
            self._mover.recover(keep=self.path)
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(flush_s,), name="trademl-journal", daemon=True
            )
            self._thread.start()

    def _run(self, flush_s: float) -> None:
        assert self._mover is not None
        while not self._stop.wait(flush_s):
            self._mover.move_quietly(self.path)

    def _answer(self, rows: PreparedRows) -> bytes:
        """The line that defines ``rows`` under its key, or nothing when this file has it."""
        key = rows.key
        if key in self._defined:
            return b""
        self._defined[key] = None
        while len(self._defined) > _DEFINED:
            self._defined.popitem(last=False)
        return b'{"a":"%s","p":%s}\n' % (key.encode(), rows.encoded)

    def write(self, request_id: str, rows: PreparedRows) -> int:
        """Append one answer's rows; returns how many. Raises StoreError when the journal
        cannot be written (its file gone, the disk full)."""
        check_request_id(request_id)
        if not rows.rows:
            return 0
        definition = self._answer(rows)
        # One write: the answer's definition and the request that names it land together.
        # A plain id (a uuid's hex, most clients' ids) needs no JSON escaping.
        quoted = (
            b'"%s"' % request_id.encode()
            if request_id.isalnum()
            else json.dumps(request_id).encode()
        )
        now = time.time()
        line = b'%s{"r":%s,"t":%r,"a":"%s"}\n' % (definition, quoted, now, rows.key.encode())
        try:
            if os.fstat(self._fd).st_nlink == 0:  # removed under the server: writes would vanish
                raise OSError("the journal file was removed")
            os.write(self._fd, line)
        except OSError as error:
            if definition:  # not written: write it with the next request
                self._defined.pop(rows.key, None)
            raise StoreError(f"prediction log journal {self.path}: cannot write: {error}") from None
        return len(rows.rows)

    def append(self, predictions: Iterable[LoggedPrediction]) -> Future[int]:
        """Append ``predictions`` (grouped by request id); a completed future."""
        future: Future[int] = Future()
        try:
            future.set_result(self._append(predictions))
        except Exception as error:
            future.set_exception(error)
        return future

    def _append(self, predictions: Iterable[LoggedPrediction]) -> int:
        by_request: dict[str, list[LoggedPrediction]] = {}
        for p in predictions:
            by_request.setdefault(p.request_id, []).append(p)
        return sum(self.write(rid, self.log.prepare(rows)) for rid, rows in by_request.items())

    async def append_async(self, predictions: Iterable[LoggedPrediction]) -> int:
        """:meth:`append` on the event loop (a write, no wait)."""
        return self._append(predictions)

    async def append_prepared_async(self, request_id: str, rows: PreparedRows) -> int:
        """:meth:`write` on the event loop (a write, no wait)."""
        return self.write(request_id, rows)

    def close(self) -> None:
        """Stop writing, move everything, and delete the file when all of it moved."""
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)
        if self._child is not None:
            self._child_stop.set()
            self._child.join(60)
        else:
            self._stop.set()
            self._thread.join()
            assert self._mover is not None
            self._mover.finish(self.path)
        self.log.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
