"""SQLite store-and-forward outbox, and the local history of delivered telemetry.

Everything the agent publishes is committed here first. When the broker acknowledges a row,
events, alarms and command results are deleted; telemetry is kept as *history* (`sent` = 1)
for `edge-agent export`/`trend` and the platform's backfill, until it is older than the
history period or the disk budget needs its room. One dedicated thread owns the connection
(the asyncio side calls in through a single-thread executor), so there is no locking here.

- **Rows.** One row per device poll (TELEMETRY, body encoded by `codec`) or per
  event/alarm/command result (body = the final JSON). Each row carries the next `seq` of its
  stream; the counter lives in the `streams` table and moves in the same transaction as the
  rows, so a committed number is never reused or skipped.
- **Indexes.** Each telemetry row is in exactly one of two partial indexes: unsent rows in
  `outbox_unsent` (commit order: what the lanes scan, so history never slows leasing),
  delivered rows in `outbox_history` (by time: history queries, its expiry and its eviction).
- **Leases are in memory only.** A leased row is one handed to the uplink and not yet acked
  or requeued. Nothing about leasing is written to disk (no write per publish), and a
  restart therefore returns every unsent row to ready by construction.
- **Durability.** WAL mode. Transactions that allocate seq numbers (appends, evictions with
  their event) commit with `synchronous=FULL`: with NORMAL a power cut may roll back the
  last commits, and their seq numbers would then be issued again for different data the
  platform may already hold. Acks commit with NORMAL: a lost ack only means the row is
  published again (at-least-once), and the next FULL commit syncs the WAL anyway.
- **Budget.** Used bytes = (page_count - freelist_count) * page_size of the main database.
  Over budget, history goes first (oldest first, silently: it was delivered; counted in
  `history_evicted_rows`), then the oldest unsent rows: telemetry, then events, alarms,
  command results, and never a later class while any row of an earlier one remains; never
  the rows of the append that called for it (the newest data is kept). History older than
  `history` and unsent telemetry older than `retention` are deleted too. Every eviction of
  unsent rows adds to persisted per-class counters and, in the same transaction, to the
  pending announcements (`losses.PendingEvictions`, a table eviction never touches), which
  `announce` seals into `data_evicted` events naming the exact seq ranges when the uplink
  can publish them (EVICTION_NOTICE rows, never evicted either). A filesystem with less
  room than the budget lowers the limit (headroom kept free); a write that still fails for
  lack of space (append, ack, announce) evicts a slice and retries once, else raises
  `StoreFull`. A limit that cannot hold a minute of data is reported once (`too_small`).
- **Backfill.** `resend` returns delivered rows to unsent; they are published again with
  their original seq, in the BACKLOG lane (so flagged historical).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from functools import wraps
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

from edge_agent import envelope, logs
from edge_agent.points import Batch, wall_ms
from edge_agent.store import codec
from edge_agent.store.losses import (
    EVICTIONS_TABLE,
    Gap,
    Key,
    PendingEvictions,
    StreamGap,
    Throttle,
)

log = logs.get("store")

SCHEMA_VERSION = 3  # 2: the `sent` flag (history) and its counters; 3: `evictions`
DEFAULT_HISTORY_S = 7 * 86400.0
_SQLITE_MAGIC = b"SQLite format 3\x00"
SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
# The WAL is checkpointed every 1000 pages (SQLite's default) and cut back to this size
# afterwards, so on disk it stays near this figure (or the largest single transaction).
WAL_LIMIT_BYTES = 16 * 2**20
# Deleting rows writes about as many bytes to the WAL as it frees (measured), so one
# eviction transaction frees at most this much: about what the WAL holds between
# checkpoints anyway, so an eviction fits even when the disk has no room left for WAL growth.
EVICT_CHUNK_BYTES = 4 * 2**20
# Hysteresis: evict down to 95 % of the limit (at most 16 MiB below it), so that evictions
# are occasional: 16 MiB is well over an hour of a 5,000-point plant.
EVICT_MARGIN = 0.05
EVICT_MARGIN_MAX = 16 * 2**20
# Left free on the filesystem for WAL growth and an eviction: if the disk is smaller than
# the budget (or something else fills it), the outbox stops growing before it is full.
FS_HEADROOM_BYTES = 32 * 2**20
ROW_OVERHEAD = 32  # on-disk bytes of a row beyond its body: cell header, rowid, columns
RETENTION_CHECK_S = 60.0
DISK_FULL_SLICE = 2**20  # freed when a write fails for lack of space (must fit the WAL)
# Pending eviction announcements are sealed into an event at most this often while the
# uplink is connected (and at once after each connect): a disk that forces an eviction per
# poll yields one data_evicted event per interval, not one per poll.
ANNOUNCE_INTERVAL_S = 10.0
ANNOUNCE_RETRY_S = 1.0  # after a failed seal (the disk is full)
EVICT_LOG_S = 60.0  # at most one warning line per this, with the totals since the last
# A space eviction that takes telemetry polled less than this long ago means the outbox
# cannot hold a minute of data: the disk is too small to keep anything useful.
MIN_USEFUL_S = 60.0


class TrafficClass(IntEnum):
    TELEMETRY = 0
    EVENT = 1
    ALARM = 2
    COMMAND_RESULT = 3
    # data_evicted events, published on the event topic in the event stream's seq: never
    # evicted, or an announcement of lost data could itself be lost.
    EVICTION_NOTICE = 4


EVICTION_ORDER = (TrafficClass.TELEMETRY, TrafficClass.EVENT, TrafficClass.ALARM,
                  TrafficClass.COMMAND_RESULT)  # first to go first  # fmt: skip


class Lane(Enum):
    PRIORITY = "priority"  # events, alarms, command results, any age
    LIVE = "live"  # telemetry committed after the boundary (the CONNACK)
    BACKLOG = "backlog"  # telemetry committed up to it, and backfill: published as historical


class StoreError(Exception):
    """The outbox cannot be opened or written; the message names the file."""


class StoreFull(StoreError):
    """The filesystem is full even after evicting telemetry."""


@dataclass(frozen=True, slots=True)
class Record:
    """What goes in."""

    cls: TrafficClass
    stream: str  # TELEMETRY: device id (= batch.stream); others: topic suffix ("event"...)
    ts: int  # wall ms; TELEMETRY: = batch.ts
    batch: Batch | None = None  # TELEMETRY
    payload: bytes | None = None  # other classes: the final JSON bytes


@dataclass(frozen=True, slots=True)
class Row:
    """What comes out of `lease` (and `append`)."""

    id: int
    cls: TrafficClass
    stream: str
    seq: int
    ts: int
    n_points: int
    batch: Batch | None
    payload: bytes | None


@dataclass(frozen=True, slots=True)
class ClassStats:
    rows: int
    points: int
    oldest_ts: int | None
    evicted_rows: int
    evicted_points: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    backlog_rows: int  # rows not yet acknowledged (in flight included), all classes
    backlog_points: int
    oldest_ts: int | None
    in_flight: int
    evicted_rows: int  # unsent rows evicted since the outbox was created (persisted)
    evicted_points: int
    used_bytes: int  # (page_count - freelist_count) * page_size
    budget_bytes: int  # configured
    limit_bytes: int  # in force: the budget, or less when the filesystem has less room
    classes: dict[str, ClassStats]
    history_rows: int  # delivered telemetry kept locally
    history_points: int
    history_oldest_ts: int | None
    history_evicted_rows: int  # history deleted for the disk budget (persisted)
    unannounced_rows: int  # evicted rows whose data_evicted event is still to be sealed
    too_small: str | None  # set while the limit cannot hold a minute of data


@dataclass(frozen=True, slots=True)
class EvictionReport:
    used_before: int
    used_after: int
    gaps: tuple[Gap, ...]
    history_rows: int = 0  # delivered rows deleted for the budget (no event)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _sqlite_errors(
    action: str,
) -> Callable[[Callable[Concatenate[Outbox, _P], _T]], Callable[Concatenate[Outbox, _P], _T]]:
    """Report SQLite failures as StoreError naming the file."""

    def decorate(
        method: Callable[Concatenate[Outbox, _P], _T],
    ) -> Callable[Concatenate[Outbox, _P], _T]:
        @wraps(method)
        def wrapper(self: Outbox, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise StoreError(f"outbox {self.path}: {action} failed: {exc}") from exc

        return wrapper

    return decorate


_COUNTERS = ("rows", "points", "evicted_rows", "evicted_points",
             "history_rows", "history_points", "history_evicted_rows")  # fmt: skip
# An index on `sent` alone: its entries are (0, rowid), so it is small and in commit order.
_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent) WHERE cls = 0 AND sent = 0;
CREATE INDEX IF NOT EXISTS outbox_history ON outbox (ts) WHERE cls = 0 AND sent = 1;
"""
_ADD_COUNTS = f"UPDATE counters SET {', '.join(f'{c} = {c} + ?' for c in _COUNTERS)} WHERE cls = ?"
_ZEROS = ", ".join(f"({c}{', 0' * len(_COUNTERS)})" for c in TrafficClass)
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,          -- 0: telemetry, name = device id; 1: topic suffix
    name TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY,
    points TEXT NOT NULL UNIQUE     -- JSON array of the point ids of a telemetry body
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,         -- commit order
    cls INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    n_points INTEGER NOT NULL,
    schema_id INTEGER,
    body BLOB NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0 -- telemetry acknowledged by the broker: history
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (id) WHERE cls > 0;
{_INDEXES.strip()}
CREATE TABLE IF NOT EXISTS counters (
    cls INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,          -- unsent
    points INTEGER NOT NULL,
    evicted_rows INTEGER NOT NULL,
    evicted_points INTEGER NOT NULL,
    history_rows INTEGER NOT NULL DEFAULT 0,
    history_points INTEGER NOT NULL DEFAULT 0,
    history_evicted_rows INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO counters VALUES {_ZEROS};
{EVICTIONS_TABLE.strip()}
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
# Version 1 kept no history: every row is unsent. Adding columns with a default rewrites
# nothing; building outbox_unsent reads the table once.
_MIGRATE_FROM_1 = f"""
BEGIN IMMEDIATE;
ALTER TABLE outbox ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
{_INDEXES.replace("IF NOT EXISTS ", "")}
ALTER TABLE counters ADD COLUMN history_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE counters ADD COLUMN history_points INTEGER NOT NULL DEFAULT 0;
ALTER TABLE counters ADD COLUMN history_evicted_rows INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 2;
COMMIT;
"""
# Version 2 announced evictions with ordinary (evictable) event rows; those stay as they are.
_MIGRATE_FROM_2 = f"""
BEGIN IMMEDIATE;
{EVICTIONS_TABLE.strip()}
INSERT OR IGNORE INTO counters (cls, rows, points, evicted_rows, evicted_points)
    VALUES ({int(TrafficClass.EVICTION_NOTICE)}, 0, 0, 0, 0);
PRAGMA user_version = 3;
COMMIT;
"""
_MIGRATIONS = {1: _MIGRATE_FROM_1, 2: _MIGRATE_FROM_2}

_COLUMNS = "id, cls, stream, seq, ts, n_points, schema_id, body"
# Literal `cls = 0 AND sent = 0` so that SQLite may use the partial index; INDEXED BY so
# that it must (the rowid range alone would look as good to the planner, and walk history).
_UNSENT_TELEMETRY = "outbox INDEXED BY outbox_unsent WHERE cls = 0 AND sent = 0"
_HISTORY = "outbox INDEXED BY outbox_history WHERE cls = 0 AND sent = 1"
_SCAN = {
    Lane.PRIORITY: f"SELECT {_COLUMNS} FROM outbox WHERE cls > 0 AND id > ? ORDER BY id LIMIT ?",
    Lane.LIVE: f"SELECT {_COLUMNS} FROM {_UNSENT_TELEMETRY} AND id > ? ORDER BY id LIMIT ?",
    Lane.BACKLOG: f"SELECT {_COLUMNS} FROM {_UNSENT_TELEMETRY} AND id > ? AND id <= ? "
    "ORDER BY id LIMIT ?",
}
_NOT_LEASED = "id NOT IN (SELECT value FROM json_each(?))"
_IDS = "id IN (SELECT value FROM json_each(?))"
_CLASS_NAMES = {c.value: c.name.lower() for c in TrafficClass}


@dataclass(slots=True)
class _Txn:
    """In-memory mirror changes that take effect only when the transaction commits."""

    last_id: int
    streams: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # -> [id, seq]
    schemas: dict[tuple[str, ...], int] = field(default_factory=dict)
    counts: dict[int, list[int]] = field(default_factory=dict)  # cls -> _COUNTERS deltas
    pending: dict[Key, StreamGap | None] = field(default_factory=dict)  # None: sealed

    def _deltas(self, cls: int) -> list[int]:
        return self.counts.setdefault(cls, [0] * len(_COUNTERS))

    def count(self, cls: int, rows: int, points: int) -> None:
        deltas = self._deltas(cls)
        deltas[0] += rows
        deltas[1] += points

    def count_evicted(self, cls: int, rows: int, points: int) -> None:
        self.count(cls, -rows, -points)
        self.counts[cls][2] += rows
        self.counts[cls][3] += points

    def count_history(self, rows: int, points: int, *, evicted: bool = False) -> None:
        """Telemetry rows entering (+) or leaving (-) the history; `evicted`: for the budget."""
        deltas = self._deltas(TrafficClass.TELEMETRY)
        deltas[4] += rows
        deltas[5] += points
        if evicted:
            deltas[6] -= rows


@dataclass(frozen=True, slots=True)
class _Prepared:
    record: Record
    schema: tuple[str, ...] | None
    body: bytes
    n_points: int


class Outbox:
    def __init__(
        self,
        path: Path,
        budget_bytes: int,
        retention_s: float,
        synchronous: str = "FULL",
        *,
        identity: dict[str, str] | None = None,
        history_s: float = DEFAULT_HISTORY_S,
    ) -> None:
        """Open (or create, or migrate) the outbox at `path`. `identity` (site, gateway) is
        merged into the data_evicted events, like every other event. Delivered telemetry is
        kept for `history_s` (infinite: until the budget needs the room)."""
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        if not history_s > 0:
            raise ValueError(f"history_s must be positive, not {history_s!r}")
        self.path = Path(path)
        self.budget_bytes = int(budget_bytes)
        self.retention_ms = int(retention_s * 1000) if math.isfinite(retention_s) else None
        self.history_ms = int(history_s * 1000) if math.isfinite(history_s) else None
        self._sync = synchronous
        self._identity = dict(identity or {})
        _refuse_foreign_file(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the outbox {self.path}: {exc}") from exc
        try:
            self._setup()
        except (sqlite3.Error, StoreError) as exc:
            self._db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the outbox {self.path}: {exc}") from exc
        self._commit_lock = threading.Lock()  # see committed_id()
        self._committed_id = self._last_id
        self._leased: dict[int, Lane] = {}  # row id -> the lane that leased it
        self._cursor = dict.fromkeys(Lane, 0)  # highest id a lane's scan has handed out
        # Rows the lanes' scans will not reach again, to lease first (heaps of ids).
        self._returned: dict[Lane, list[int]] = {lane: [] for lane in Lane}
        self._boundary = self._last_id
        # Backfill of rows delivered in the LIVE lane of this connection: the BACKLOG scan
        # reaches up to here (see `resend`); 0 when there are none.
        self._replay_to = 0
        self._retention_due = 0.0
        self._pending = PendingEvictions(self._db)
        self._announce_due = 0.0
        self._too_small: str | None = None
        self._evict_log = Throttle(log.warning, "evicted unsent data", EVICT_LOG_S, ["rows"])
        self._full_log = Throttle(log.warning, "disk full: made room", EVICT_LOG_S,
                                  ["history_rows", "evicted_rows"])  # fmt: skip
        self._history_log = Throttle(log.info, "evicted delivered history", EVICT_LOG_S, ["rows"])
        self._announce_log = Throttle(log.error, "cannot seal data_evicted", EVICT_LOG_S, [])

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for tables of others in the same file; use it on the store
        thread only, and never leave a transaction open."""
        return self._db

    # -- set-up --------------------------------------------------------------------------

    def _setup(self) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"outbox {self.path}: the filesystem does not support WAL ({mode})")
        db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        db.execute(f"PRAGMA synchronous = {self._sync}")
        self._sync_now = self._sync
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"outbox {self.path} has schema version {version}, newer than this agent's "
                f"{SCHEMA_VERSION}: refusing to touch it"
            )
        if version == 0:  # a new file
            db.executescript(_SCHEMA)
        elif version < SCHEMA_VERSION:
            log.info("migrating the outbox", path=str(self.path), version=version,
                     to=SCHEMA_VERSION)  # fmt: skip
            for step in range(version, SCHEMA_VERSION):
                db.executescript(_MIGRATIONS[step])
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        self._checkpoint_bytes = db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] * (
            self._page_size
        )
        self._wal_path = self.path.with_name(self.path.name + "-wal")
        self._last_id = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        self._streams: dict[tuple[int, str], tuple[int, int]] = {}
        self._stream_names: dict[int, str] = {}
        for stream_id, kind, name, last_seq in db.execute(
            "SELECT id, kind, name, last_seq FROM streams"
        ):
            self._streams[(kind, name)] = (stream_id, last_seq)
            self._stream_names[stream_id] = name
        self._schema_ids: dict[tuple[str, ...], int] = {}
        self._schemas: dict[int, tuple[str, ...]] = {}

    # -- writing -------------------------------------------------------------------------

    @contextmanager
    def _write(self, synchronous: str) -> Iterator[_Txn]:
        """One transaction; the in-memory mirrors follow only if it commits."""
        db = self._db
        if synchronous != self._sync_now:
            db.execute(f"PRAGMA synchronous = {synchronous}")
            self._sync_now = synchronous
        txn = _Txn(self._last_id)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield txn
            self._flush_counts(txn)
            with self._commit_lock:
                db.execute("COMMIT")
                self._committed_id = txn.last_id
        except BaseException:
            if db.in_transaction:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already
                    db.execute("ROLLBACK")
            raise
        self._last_id = txn.last_id
        for key, (stream_id, seq) in txn.streams.items():
            self._streams[key] = (stream_id, seq)
            self._stream_names[stream_id] = key[1]
        for schema, schema_id in txn.schemas.items():
            self._schema_ids[schema] = schema_id
            self._schemas[schema_id] = schema
        self._pending.apply(txn.pending)

    def _flush_counts(self, txn: _Txn) -> None:
        if not txn.counts:
            return
        self._db.executemany(
            _ADD_COUNTS, [(*deltas, cls) for cls, deltas in txn.counts.items() if any(deltas)]
        )

    def append(self, records: Sequence[Record]) -> list[Row]:
        """Commit `records` in one transaction, each with the next seq of its stream."""
        if not records:
            return []
        prepared = [_prepare(record) for record in records]
        incoming = sum(len(p.body) + ROW_OVERHEAD for p in prepared)
        rows = self._writing("append", lambda: self._commit(prepared), incoming)
        if self._retention_due <= time.monotonic() or self._used_bytes() > self._limit()[0]:
            try:
                self.evict(rows[0].id - 1)  # never what was just committed: the newest data
            except StoreError as exc:  # the records are committed: do not report a failure
                log.error("eviction failed", error=str(exc))
        return rows

    def _commit(self, prepared: list[_Prepared]) -> list[Row]:
        with self._write(self._sync) as txn:
            return self._insert(txn, prepared)

    def _writing(self, action: str, write: Callable[[], _T], incoming: int) -> _T:
        """Run `write` (one transaction); if the filesystem is full, make room and retry
        once (`_retry_full`). Appends, acks and announcements all take this path."""
        try:
            return write()
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise StoreError(f"outbox {self.path}: {action} failed: {exc}") from exc
            return self._retry_full(action, write, incoming, exc)

    def _retry_full(
        self, action: str, write: Callable[[], _T], incoming: int, error: sqlite3.Error
    ) -> _T:
        """The filesystem is full (not just the budget): checkpoint (the WAL then restarts
        from its beginning, reusing its space), free a slice of history, else of unsent
        telemetry (announced), unless the file already has free pages (then deleting more
        would not help), and retry once. A failed transaction is rolled back, so the file is
        intact either way."""
        gap = None
        history_rows = 0
        try:
            self._checkpoint()
            if self._free_bytes() < 2 * incoming:
                need = max(DISK_FULL_SLICE, 2 * incoming)
                history_rows = self._evict_history(need)
                if not history_rows:
                    gap = self._evict_step(need, self._last_id, disk_full=True)
            result = write()
        except sqlite3.Error as exc:
            done = "evicting " + ("history" if history_rows else "telemetry")
            raise StoreFull(
                f"outbox {self.path}: the disk is full ({error}) and the {action} still fails "
                f"after {done if gap or history_rows else 'a checkpoint'}: {exc}"
            ) from exc
        self._full_log.note(action=action, history_rows=history_rows,
                            evicted_rows=gap.rows if gap else 0)  # fmt: skip
        if gap is not None:
            self._after_space_eviction([gap], self._limit()[0])
        return result

    def _checkpoint(self) -> None:
        with suppress(sqlite3.Error):  # best effort: it may itself need room
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _insert(self, txn: _Txn, prepared: list[_Prepared]) -> list[Row]:
        rows: list[Row] = []
        params = []
        for item in prepared:
            record = item.record
            stream = self._stream(txn, record)
            stream[1] += 1
            txn.last_id += 1
            schema_id = None if item.schema is None else self._schema_id(txn, item.schema)
            params.append(
                (txn.last_id, record.cls, stream[0], stream[1], record.ts, item.n_points,
                 schema_id, item.body)
            )  # fmt: skip
            rows.append(
                Row(txn.last_id, record.cls, record.stream, stream[1], record.ts,
                    item.n_points, record.batch, record.payload)
            )  # fmt: skip
            txn.count(record.cls, 1, item.n_points)
        self._db.executemany(f"INSERT INTO outbox ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", params)
        self._db.executemany(
            "UPDATE streams SET last_seq = ? WHERE id = ?",
            [(seq, stream_id) for stream_id, seq in txn.streams.values()],
        )
        return rows

    def _stream(self, txn: _Txn, record: Record) -> list[int]:
        key = (0 if record.cls == TrafficClass.TELEMETRY else 1, record.stream)
        entry = txn.streams.get(key)
        if entry is None:
            known = self._streams.get(key)
            if known is None:
                cursor = self._db.execute(
                    "INSERT INTO streams (kind, name, last_seq) VALUES (?, ?, 0)", key
                )
                assert cursor.lastrowid is not None, "an INSERT sets lastrowid"
                known = (cursor.lastrowid, 0)
            entry = txn.streams[key] = list(known)
        return entry

    def _schema_id(self, txn: _Txn, schema: tuple[str, ...]) -> int:
        schema_id = self._schema_ids.get(schema) or txn.schemas.get(schema)
        if schema_id is None:
            text = json.dumps(schema, ensure_ascii=False)
            found = self._db.execute("SELECT id FROM schemas WHERE points = ?", (text,)).fetchone()
            if found is None:
                insert = self._db.execute("INSERT INTO schemas (points) VALUES (?)", (text,))
                found = (insert.lastrowid,)
            schema_id = txn.schemas[schema] = found[0]
        return schema_id

    # -- publishing ----------------------------------------------------------------------

    def committed_id(self) -> int:
        """The id of the newest committed row. Safe from any thread: the uplink reads it
        on paho's thread when the CONNACK arrives, and a COMMIT is either wholly before
        that read or wholly after it."""
        with self._commit_lock:
            return self._committed_id

    def mark_boundary(self, upto_id: int | None = None) -> None:
        """Called at each (re)connect: telemetry with id <= `upto_id` (default: all rows
        committed so far) is backlog, published as historical; later rows are live. The
        uplink passes `committed_id()` read at the CONNACK: rows committed before the
        connection was established are historical, rows committed after it are live."""
        self._boundary = self._last_id if upto_id is None else min(upto_id, self._last_id)
        # Live rows requeued before now are backlog from here on; the backlog scan, which
        # has not reached them, will find them.
        self._returned[Lane.LIVE].clear()
        self._cursor[Lane.LIVE] = 0
        self._replay_to = 0
        self._announce_due = 0.0  # connected: what is pending can be announced now

    @_sqlite_errors("lease")
    def lease(self, lane: Lane, limit: int) -> list[Row]:
        """Up to `limit` ready rows of `lane`, oldest first; each is in flight until it is
        acked or requeued and is not leased again meanwhile."""
        found: list[tuple] = []
        taken: set[int] = set()

        def take(values: Iterable[tuple]) -> None:
            # A row can be in flight from another lane after mark_boundary() moved it, or
            # be both returned and reachable by the scan after a resend().
            for row in values:
                if row[0] not in self._leased and row[0] not in taken:
                    taken.add(row[0])
                    found.append(row)

        returned = self._returned[lane]
        while returned and len(found) < limit:
            ids = [heapq.heappop(returned) for _ in range(min(limit - len(found), len(returned)))]
            take(  # missing ones were evicted (or acked late: sent)
                self._db.execute(
                    f"SELECT {_COLUMNS} FROM outbox WHERE {_IDS} AND sent = 0 ORDER BY id",
                    (json.dumps(ids),),
                ).fetchall()
            )
        live_returned = set(self._returned[Lane.LIVE]) if lane is Lane.BACKLOG else set()
        while len(found) < limit:
            scanned = self._scan(lane, limit - len(found))
            if not scanned:
                break
            self._cursor[lane] = scanned[-1][0]
            # Above the boundary the backlog scan only wants rows resent (not live ones).
            take(row for row in scanned if row[0] not in live_returned)
        rows = [row for values in found if (row := self._row(values)) is not None]
        for row in rows:
            self._leased[row.id] = lane
        return rows

    def _scan(self, lane: Lane, limit: int) -> list[tuple]:
        cursor = self._cursor[lane]
        if lane is Lane.BACKLOG:
            upper = max(self._boundary, self._replay_to)
            return self._db.execute(_SCAN[lane], (cursor, upper, limit)).fetchall()
        if lane is Lane.LIVE:
            cursor = max(cursor, self._boundary)
        return self._db.execute(_SCAN[lane], (cursor, limit)).fetchall()

    def _scan_reaches(self, lane: Lane, row_id: int) -> bool:
        """Whether the lane's scan is still to hand out `row_id` (if it is ready)."""
        if lane is Lane.BACKLOG:
            return self._cursor[lane] < row_id <= max(self._boundary, self._replay_to)
        if lane is Lane.LIVE:
            return row_id > max(self._cursor[lane], self._boundary)
        return row_id > self._cursor[lane]

    def _row(self, values: tuple) -> Row | None:
        return _decode(values, self._stream_names[values[2]], self._schema, _log_damaged)

    def _schema(self, schema_id: int) -> tuple[str, ...]:
        schema = self._schemas.get(schema_id)
        if schema is None:
            schema = self._schemas[schema_id] = _load_schema(self._db, schema_id)
            self._schema_ids[schema] = schema_id
        return schema

    def ack(self, ids: Iterable[int]) -> None:
        """The broker has acknowledged these rows (one transaction): telemetry becomes
        history, everything else is deleted. On a full disk, room is made as for an
        append; StoreError (StoreFull) if it still fails: the rows stay leased, the caller
        keeps the ids and tries again."""
        ids = list(ids)
        if ids:
            # An ack moves index entries (unsent -> history): a few dozen bytes a row.
            self._writing("ack", lambda: self._ack(ids), 64 * len(ids))

    def _ack(self, ids: list[int]) -> None:
        # Leased rows say which statement they need; others (acked after a requeue(None))
        # go through both.
        telemetry = [i for i in ids if self._leased.get(i) is not Lane.PRIORITY]
        other = [i for i in ids if self._leased.get(i, Lane.PRIORITY) is Lane.PRIORITY]
        # NORMAL: if a power cut undoes this, the rows are simply published again.
        with self._write("NORMAL") as txn:
            if other:
                for cls, n_points in self._db.execute(
                    f"DELETE FROM outbox WHERE {_IDS} AND cls > 0 RETURNING cls, n_points",
                    (json.dumps(other),),
                ).fetchall():
                    txn.count(cls, -1, -n_points)
            if telemetry:
                # `sent = 0`: a row acked twice (published again after a reconnect) counts once.
                points = [n for (n,) in self._db.execute(
                    f"UPDATE outbox SET sent = 1 WHERE {_IDS} AND cls = 0 AND sent = 0 "
                    "RETURNING n_points",
                    (json.dumps(telemetry),),
                ).fetchall()]  # fmt: skip
                txn.count(TrafficClass.TELEMETRY, -len(points), -sum(points))
                txn.count_history(len(points), sum(points))
        for row_id in ids:
            self._leased.pop(row_id, None)

    def requeue(self, ids: Iterable[int] | None = None) -> None:
        """Make leased rows ready again (None: all, on disconnect); they are leased again
        before anything newer in their lane."""
        if ids is None:
            self._leased.clear()
            self._cursor = dict.fromkeys(Lane, 0)
            self._returned = {lane: [] for lane in Lane}
            self._replay_to = 0
            return
        for row_id in ids:
            lane = self._leased.pop(row_id, None)
            if lane is None:
                continue
            if lane is Lane.LIVE and row_id <= self._boundary:
                lane = Lane.BACKLOG  # mark_boundary() has moved it
            if not self._scan_reaches(lane, row_id):
                heapq.heappush(self._returned[lane], row_id)

    # -- history -------------------------------------------------------------------------

    @_sqlite_errors("resend")
    def resend(
        self, since_ms: int, until_ms: int, streams: Iterable[str] | None = None
    ) -> tuple[int, int]:
        """Backfill: delivered telemetry with since_ms <= ts < until_ms (of `streams`, or
        all devices) becomes unsent again, and is published again with its original seq in
        the BACKLOG lane. Returns (rows, points). One transaction per EVICT_CHUNK_BYTES, so
        that a long range does not grow the WAL."""
        stream_ids = self._stream_ids(streams)
        if stream_ids == []:
            return 0, 0
        total_rows = total_points = 0
        after: tuple[int, int] | None = None  # (ts, id) done so far
        while True:
            cut = self._history_cut(EVICT_CHUNK_BYTES, since_ms, until_ms, stream_ids, after)
            if cut is None:
                break
            where, params = _history_range(since_ms, until_ms, stream_ids, after, cut)
            with self._write(self._sync) as txn:
                changed = self._db.execute(
                    "UPDATE outbox INDEXED BY outbox_history SET sent = 0 "
                    f"WHERE cls = 0 AND sent = 1{where} RETURNING id, n_points",
                    params,
                ).fetchall()
                points = sum(n for _, n in changed)
                txn.count(TrafficClass.TELEMETRY, len(changed), points)
                txn.count_history(-len(changed), -points)
            self._rewind([row_id for row_id, _ in changed])
            total_rows, total_points = total_rows + len(changed), total_points + points
            after = cut
            self._checkpoint()
        if total_rows:
            log.info("history returned to unsent for a backfill", since=since_ms,
                     until=until_ms, rows=total_rows, points=total_points)  # fmt: skip
        return total_rows, total_points

    def _rewind(self, ids: list[int]) -> None:
        """Make the BACKLOG scan reach rows that are unsent again. It scans the unsent index,
        so moving its cursor back costs nothing for the delivered rows in between. Rows
        delivered in this connection's LIVE lane (above the boundary, below the LIVE
        cursor) are reached by stretching the BACKLOG scan up to them."""
        if not ids:
            return
        live_reach = max(self._cursor[Lane.LIVE], self._boundary)
        # A delivered row above live_reach would be ahead of the LIVE scan (and go out as
        # live): none exists, since the boundary is the newest row committed at the CONNACK
        # and every row delivered since went through the LIVE scan.
        reachable = [i for i in ids if i <= live_reach]
        if not reachable:
            return
        above = [i for i in reachable if i > self._boundary]
        if above:
            self._replay_to = max(self._replay_to, max(above))
        lowest = min(reachable)
        if lowest <= self._cursor[Lane.BACKLOG]:
            cursor = self._cursor[Lane.BACKLOG] = lowest - 1
            # Returned rows the scan will now find again need not stay returned.
            kept = [i for i in self._returned[Lane.BACKLOG] if i <= cursor]
            heapq.heapify(kept)
            self._returned[Lane.BACKLOG] = kept

    def _stream_ids(self, streams: Iterable[str] | None) -> list[int] | None:
        if streams is None:
            return None
        known = self._streams
        return [known[(0, name)][0] for name in dict.fromkeys(streams) if (0, name) in known]

    def _history_cut(
        self,
        need: int,
        since_ms: int | None,
        until_ms: int | None,
        stream_ids: list[int] | None,
        after: tuple[int, int] | None,
    ) -> tuple[int, int] | None:
        """Walk history oldest first (in the range, after `after`) until about `need`
        bytes; the (ts, id) of the last row, None if there is none."""
        where, params = _history_range(since_ms, until_ms, stream_ids, after, None)
        freed, last = 0, None
        cursor = self._db.execute(
            f"SELECT ts, id, length(body) FROM {_HISTORY}{where} ORDER BY ts, id", params
        )
        try:
            for ts, row_id, size in cursor:
                last = (ts, row_id)
                freed += size + ROW_OVERHEAD
                if freed >= need:
                    break
        finally:
            cursor.close()
        return last

    def history(
        self,
        since_ms: int,
        until_ms: int,
        streams: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> Iterator[Row]:
        """Telemetry rows, delivered and not, with since_ms <= ts < until_ms, ordered by
        (ts, id), batches decoded. Reads through its own read-only connection (a snapshot),
        so it may be consumed at any pace and from any thread without disturbing the
        writer; it holds no lock the writer waits for."""
        return iter_history(
            open_readonly(self.path), since_ms, until_ms, streams, limit, close=True
        )

    # -- eviction ------------------------------------------------------------------------

    @_sqlite_errors("evict")
    def evict(self, ceiling: int | None = None) -> EvictionReport | None:
        """Delete history past its period and unsent telemetry past its retention; over the
        limit, history (oldest first), then the oldest unsent rows, down to 95 % of it.
        Unsent rows above id `ceiling` are never deleted (`append` passes the id before its
        own rows: the newest data is kept, however small the limit). Returns what was
        deleted (None: nothing)."""
        before = self._used_bytes()
        ceiling = self._last_id if ceiling is None else ceiling
        if self.history_ms is not None:
            cutoff = wall_ms() - self.history_ms
            while self._evict_history(EVICT_CHUNK_BYTES, older_than=cutoff):
                pass
        gaps: list[Gap] = []
        while (gap := self._evict_step(None, ceiling)) is not None:
            gaps.append(gap)
        history_rows = 0
        limit, by_filesystem = self._limit()
        used = self._used_bytes()
        if used > limit:
            target = int(limit - min(limit * EVICT_MARGIN, EVICT_MARGIN_MAX))
            while used > target and (rows := self._evict_history(used - target)):
                history_rows += rows
                used = self._used_bytes()
            if history_rows:
                self._history_log.note(rows=history_rows)
            if used > target:
                space = self._evict_down_to(target, ceiling, by_filesystem)
                self._after_space_eviction(space, limit)
                gaps += space
        self._retention_due = time.monotonic() + RETENTION_CHECK_S
        for gap in gaps:
            self._evict_log.note(
                reasons={gap.reason}, rows=gap.rows, streams=set(gap.streams),
                disk_full=gap.disk_full, unannounced_rows=self._pending.rows,
            )  # fmt: skip
        if not gaps and not history_rows:
            return None
        return EvictionReport(before, self._used_bytes(), tuple(gaps), history_rows)

    def _evict_history(self, need: int, *, older_than: int | None = None) -> int:
        """One transaction deleting the oldest history, at most one chunk and about `need`
        bytes (with `older_than`: only rows older than that, not counted as evicted: the
        history period is over). Delivered rows go without a data_evicted event. Returns
        the number of rows deleted."""
        need = min(need, EVICT_CHUNK_BYTES)
        cut = self._history_cut(need, None, older_than, None, None)
        if cut is None:
            return 0
        where, params = _history_range(None, older_than, None, None, cut)
        # NORMAL: undone by a power cut, these rows are simply deleted again later.
        with self._write("NORMAL") as txn:
            points = [n for (n,) in self._db.execute(
                f"DELETE FROM outbox INDEXED BY outbox_history "
                f"WHERE cls = 0 AND sent = 1{where} RETURNING n_points",
                params,
            ).fetchall()]  # fmt: skip
            txn.count_history(-len(points), -sum(points), evicted=older_than is None)
        self._checkpoint()  # the next transaction rewrites the WAL from its start
        return len(points)

    def _evict_down_to(self, target: int, ceiling: int, disk_full: bool) -> list[Gap]:
        gaps: list[Gap] = []
        used = self._used_bytes()
        while used > target:
            gap = self._evict_step(used - target, ceiling, disk_full=disk_full)
            if gap is None:
                break  # nothing may go (only rows in flight)
            gaps.append(gap)
            used, previous = self._used_bytes(), used
            if used >= previous:
                break  # freed no page at all: try again after the next append
        return gaps

    def _evict_step(self, need: int | None, ceiling: int, *, disk_full: bool = False) -> Gap | None:
        """One transaction deleting at most one chunk of unsent rows up to id `ceiling`,
        and adding what it deleted to the pending announcements: expired telemetry (need
        None), else the oldest `need` bytes of the first class that has rows."""
        if need is None:
            chosen, reason = self._expired(ceiling), "retention"
        else:
            chosen, reason = self._victim(min(need, EVICT_CHUNK_BYTES), ceiling), "disk_budget"
        if chosen is None:
            return None
        cls, last = chosen
        with self._write(self._sync) as txn:
            deleted = self._db.execute(
                f"DELETE FROM {_unsent(cls)} AND id <= ? AND {_NOT_LEASED} "
                "RETURNING stream, seq, ts, n_points",
                (last, json.dumps(list(self._leased))),
            ).fetchall()
            if not deleted:
                return None
            txn.count_evicted(cls, len(deleted), sum(row[3] for row in deleted))
            gap, by_stream = self._gap(reason, cls, deleted, disk_full)
            for stream_id, stream_gap in by_stream.items():
                key = (reason, disk_full, int(cls), stream_id)
                txn.pending[key] = self._pending.merge(key, stream_gap)
        self._checkpoint()  # the next transaction rewrites the WAL from its start
        return gap

    def _expired(self, ceiling: int) -> tuple[TrafficClass, int] | None:
        if self.retention_ms is None:
            return None
        cutoff = wall_ms() - self.retention_ms
        last = self._last_evictable(TrafficClass.TELEMETRY, EVICT_CHUNK_BYTES, ceiling, cutoff)
        return None if last is None else (TrafficClass.TELEMETRY, last)

    def _victim(self, need: int, ceiling: int) -> tuple[TrafficClass, int] | None:
        """The class to evict from and the last row id to delete, or None when nothing may
        go: the first class with unsent rows is the only candidate, even if they are all
        leased."""
        for cls in EVICTION_ORDER:
            last = self._last_evictable(cls, need, ceiling)
            if last is not None:
                return cls, last
            # Rows in flight, or above the ceiling (the newest), are rows of this class too:
            # never touch a later class while any remains.
            if self._db.execute(f"SELECT 1 FROM {_unsent(cls)} LIMIT 1").fetchone():
                return None
        return None

    def _last_evictable(
        self, cls: TrafficClass, need: int, ceiling: int, older_than: int | None = None
    ) -> int | None:
        """Walk the oldest unsent rows of `cls` up to id `ceiling`, skipping those in
        flight, until about `need` bytes (with `older_than`: only rows older than that);
        the last id."""
        freed, last = 0, None
        cursor = self._db.execute(
            f"SELECT id, ts, length(body) FROM {_unsent(cls)} AND id <= ? ORDER BY id",
            (ceiling,),
        )
        try:
            for row_id, ts, size in cursor:
                if older_than is not None and ts >= older_than:
                    break
                if row_id in self._leased:
                    continue
                last = row_id
                freed += size + ROW_OVERHEAD
                if freed >= need:
                    break
        finally:
            cursor.close()
        return last

    def _gap(
        self, reason: str, cls: TrafficClass, deleted: list[tuple], disk_full: bool
    ) -> tuple[Gap, dict[int, StreamGap]]:
        """What one step deleted: as a report (streams by name), and by stream id."""
        rows: dict[int, list[tuple[int, int, int]]] = {}
        for stream_id, seq, ts, n_points in deleted:
            rows.setdefault(stream_id, []).append((seq, ts, n_points))
        by_stream = {stream_id: StreamGap.of(found) for stream_id, found in rows.items()}
        named = {self._stream_names[i]: gap for i, gap in by_stream.items()}
        count = {"rows": len(deleted), "points": sum(g.points for g in named.values())}
        telemetry = cls == TrafficClass.TELEMETRY
        gap = Gap(
            reason,
            disk_full,
            {_CLASS_NAMES[cls]: count},
            named if telemetry else {},
            {} if telemetry else named,
        )
        return gap, by_stream

    def _after_space_eviction(self, gaps: list[Gap], limit: int) -> None:
        """Space evictions that took telemetry polled less than MIN_USEFUL_S ago: the limit
        cannot hold a minute of data. Said once (log, status, event) until an eviction
        shows that a minute fits again."""
        newest = max((s.to_ts for g in gaps for s in g.streams.values()), default=None)
        if newest is None:
            return
        held_s = round(max(0.0, (wall_ms() - newest) / 1000), 1)
        if held_s >= MIN_USEFUL_S:
            if self._too_small is not None:
                log.info("the outbox holds more than a minute of data again", held_s=held_s)
                self._too_small = None
            return
        if self._too_small is not None:
            return
        disk_full = any(g.disk_full for g in gaps)
        source = "the free disk space" if disk_full else "store.disk_budget"
        self._too_small = (
            f"the disk is too small to keep anything useful: the outbox's limit of {limit} "
            f"bytes ({source}) holds only {held_s:g} s of data; the newest data is kept"
        )
        log.error("store too small", path=str(self.path), message=self._too_small)
        ts = wall_ms()
        fields = {"limit_bytes": limit, "held_s": held_s, "disk_full": disk_full}
        payload = envelope.encode(
            envelope.message("store_too_small", self._identity, ts, **fields,
                             message=self._too_small)
        )  # fmt: skip
        try:  # an ordinary event: if it cannot be stored now, the log and status say it
            self._commit([_prepare(Record(TrafficClass.EVENT, "event", ts, payload=payload))])
        except sqlite3.Error as exc:
            log.error("store_too_small event not stored", error=str(exc))

    # -- announcing evictions ------------------------------------------------------------

    def announce(self, *, force: bool = False) -> list[Row]:
        """Seal the pending eviction announcements into `data_evicted` events, one per
        (reason, disk_full): EVICTION_NOTICE rows, which the PRIORITY lane publishes and
        eviction never takes. The uplink calls this while it can publish: at most once per
        ANNOUNCE_INTERVAL_S (`force`: now) and at once after a connect, so announcements
        coalesce. A failure (the disk is full) is logged and tried again later, never
        raised. Returns the rows sealed."""
        now = time.monotonic()
        if not self._pending or (now < self._announce_due and not force):
            return []
        try:
            rows = self._writing("announce", self._seal, 4096)
        except StoreError as exc:
            self._announce_log.note(error=str(exc))
            self._announce_due = now + ANNOUNCE_RETRY_S
            return []
        self._announce_due = now + ANNOUNCE_INTERVAL_S
        return rows

    def _seal(self) -> list[Row]:
        ts = wall_ms()
        records = [
            _prepare(Record(TrafficClass.EVICTION_NOTICE, "event", ts,
                            payload=envelope.encode(
                                envelope.message("data_evicted", self._identity, ts, **body))))
            for body in self._pending.bodies(self._stream_names, _CLASS_NAMES)
        ]  # fmt: skip
        with self._write(self._sync) as txn:  # FULL: it hands out seq numbers
            rows = self._insert(txn, records)
            txn.pending.update(self._pending.clear())
        return rows

    # -- status --------------------------------------------------------------------------

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _free_bytes(self) -> int:
        return self._db.execute("PRAGMA freelist_count").fetchone()[0] * self._page_size

    def _limit(self) -> tuple[int, bool]:
        """The most bytes the outbox may use, and whether the filesystem (rather than the
        budget) sets it. Our two files may take all free space but the headroom, and the WAL
        needs room to grow to a checkpoint's worth plus an eviction chunk."""
        try:
            fs = os.statvfs(self.path.parent)
            db_file, wal_file = (_file_size(self.path), _file_size(self._wal_path))
        except OSError:
            return self.budget_bytes, False
        wal_peak = max(wal_file, self._checkpoint_bytes + EVICT_CHUNK_BYTES)
        ours = db_file + wal_file + fs.f_bavail * fs.f_frsize - FS_HEADROOM_BYTES
        room = ours - wal_peak
        if room >= self.budget_bytes:
            return self.budget_bytes, False
        # Out of room: stop growing and live inside the database's current pages.
        size = self._db.execute("PRAGMA page_count").fetchone()[0] * self._page_size
        return int(max(room, size * (1 - EVICT_MARGIN))), True

    @_sqlite_errors("stats")
    def stats(self) -> OutboxStats:
        classes: dict[str, ClassStats] = {}
        history = (0, 0, 0)
        for cls, rows, points, evicted_rows, evicted_points, *kept in self._db.execute(
            f"SELECT cls, {', '.join(_COUNTERS)} FROM counters ORDER BY cls"
        ).fetchall():
            oldest = self._oldest_ts(cls) if rows else None
            classes[_CLASS_NAMES[cls]] = ClassStats(
                rows, points, oldest, evicted_rows, evicted_points
            )
            if cls == TrafficClass.TELEMETRY:
                history = tuple(kept)
        stamps = [c.oldest_ts for c in classes.values() if c.oldest_ts is not None]
        history_oldest = None
        if history[0]:
            found = self._db.execute(f"SELECT min(ts) FROM {_HISTORY}").fetchone()
            history_oldest = found[0] if found else None
        return OutboxStats(
            backlog_rows=sum(c.rows for c in classes.values()),
            backlog_points=sum(c.points for c in classes.values()),
            oldest_ts=min(stamps, default=None),
            in_flight=len(self._leased),
            evicted_rows=sum(c.evicted_rows for c in classes.values()),
            evicted_points=sum(c.evicted_points for c in classes.values()),
            used_bytes=self._used_bytes(),
            budget_bytes=self.budget_bytes,
            limit_bytes=self._limit()[0],
            classes=classes,
            history_rows=history[0],
            history_points=history[1],
            history_oldest_ts=history_oldest,
            history_evicted_rows=history[2],
            unannounced_rows=self._pending.rows,
            too_small=self._too_small,
        )

    def _oldest_ts(self, cls: int) -> int | None:
        # The oldest unsent row in commit order: cheap (the head of an index).
        found = self._db.execute(
            f"SELECT ts FROM {_unsent(TrafficClass(cls))} ORDER BY id LIMIT 1"
        ).fetchone()
        return found[0] if found else None

    def close(self) -> None:
        self._db.close()


def _prepare(record: Record) -> _Prepared:
    """Encode outside the transaction; reject records that would not round-trip."""
    if record.cls == TrafficClass.TELEMETRY:
        batch = record.batch
        if batch is None or record.payload is not None:
            raise ValueError("a TELEMETRY record carries a batch and no payload")
        if (record.stream, record.ts) != (batch.stream, batch.ts):
            raise ValueError("a TELEMETRY record's stream and ts are those of its batch")
        schema, body = codec.encode(batch.readings, batch.ts)
        return _Prepared(record, schema, body, len(batch.readings))
    if record.payload is None or record.batch is not None:
        raise ValueError(f"a {record.cls.name} record carries a payload and no batch")
    return _Prepared(record, None, bytes(record.payload), 0)


def _refuse_foreign_file(path: Path) -> None:
    """SQLite would fail late (or worse) on a file that is not a database: say so now."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read the outbox {path}: {exc}") from exc
    if head and head != _SQLITE_MAGIC:
        raise StoreError(
            f"{path} exists but is not an SQLite database; it is left untouched "
            "(move it away to start a new outbox)"
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _unsent(cls: TrafficClass) -> str:
    """`FROM` and `WHERE` for the unsent rows of a class, through its partial index."""
    if cls == TrafficClass.TELEMETRY:
        return _UNSENT_TELEMETRY
    return f"outbox INDEXED BY outbox_priority WHERE cls > 0 AND cls = {int(cls)}"


def _history_range(
    since_ms: int | None,
    until_ms: int | None,
    stream_ids: list[int] | None,
    after: tuple[int, int] | None,
    upto: tuple[int, int] | None,
) -> tuple[str, list[object]]:
    """Extra `WHERE` terms (and their parameters) over (ts, id): since_ms <= ts < until_ms,
    (ts, id) > after, (ts, id) <= upto. The plain `ts` bounds let SQLite seek the index."""
    where, params = "", list[object]()  # sqlite3 parameters of any kind
    if since_ms is not None:
        where += " AND ts >= ?"
        params.append(since_ms)
    if until_ms is not None:
        where += " AND ts < ?"
        params.append(until_ms)
    if stream_ids is not None:
        where += " AND stream IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(stream_ids))
    if after is not None:
        where += " AND ts >= ? AND (ts > ? OR id > ?)"
        params += [after[0], after[0], after[1]]
    if upto is not None:
        where += " AND ts <= ? AND (ts < ? OR id <= ?)"
        params += [upto[0], upto[0], upto[1]]
    return where, params


def _load_schema(db: sqlite3.Connection, schema_id: int) -> tuple[str, ...]:
    found = db.execute("SELECT points FROM schemas WHERE id = ?", (schema_id,)).fetchone()
    if found is None:
        raise ValueError(f"unknown schema {schema_id}")
    return tuple(json.loads(found[0]))


def _log_damaged(row_id: int, stream: str, seq: int, error: str) -> None:
    # Never seen; but one damaged row must not stall its lane. It stays on disk (until
    # evicted) for a post-mortem and is skipped.
    log.error("undecodable outbox row skipped", row=row_id, stream=stream, seq=seq, error=error)


def _decode(
    values: tuple,
    stream: str,
    schema_of: Callable[[int], tuple[str, ...]],
    damaged: Callable[[int, str, int, str], None],
) -> Row | None:
    row_id, cls, _stream_id, seq, ts, n_points, schema_id, body = values
    if cls != TrafficClass.TELEMETRY:
        return Row(row_id, TrafficClass(cls), stream, seq, ts, n_points, None, body)
    try:
        readings = codec.decode(schema_of(schema_id), body, ts)
    except ValueError as exc:
        damaged(row_id, stream, seq, str(exc))
        return None
    batch = Batch(stream, ts, tuple(readings))
    return Row(row_id, TrafficClass.TELEMETRY, stream, seq, ts, n_points, batch, None)


# -- reading history from another connection -------------------------------------------------


def open_readonly(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection to an outbox (`mode=ro`: it can never write the database).
    `immutable`: also no -wal/-shm files and no locks; only for a file nobody writes."""
    uri = f"file:{quote(str(Path(path).absolute()))}?mode=ro"
    if immutable:
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def iter_history(
    db: sqlite3.Connection,
    since_ms: int,
    until_ms: int,
    streams: Iterable[str] | None = None,
    limit: int | None = None,
    *,
    damaged: Callable[[int, str, int, str], None] = _log_damaged,
    close: bool = False,
) -> Iterator[Row]:
    """Telemetry rows of an outbox, delivered and not, with since_ms <= ts < until_ms (of
    `streams`, or all devices), ordered by (ts, id), decoded. One statement in one read
    transaction on `db` (a connection of its own: a consistent snapshot, whatever the
    writer does meanwhile). Delivered rows come by the history index in order; unsent ones
    through their index, sorted by SQLite: few unless the uplink is far behind. A file of
    schema version 1 has no history: all its rows are unsent. `close`: close `db` after."""
    try:
        db.execute("BEGIN")  # one snapshot for the stream names, schemas and rows
        names = dict(db.execute("SELECT id, name FROM streams WHERE kind = 0").fetchall())
        where = " AND ts >= ? AND ts < ?"
        params: list[object] = [since_ms, until_ms]
        if streams is not None:
            wanted = set(streams)
            where += " AND stream IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([i for i, name in names.items() if name in wanted]))
        if db.execute("PRAGMA user_version").fetchone()[0] >= 2:
            sql = (
                f"SELECT {_COLUMNS} FROM {_HISTORY}{where} UNION ALL "
                f"SELECT {_COLUMNS} FROM {_UNSENT_TELEMETRY}{where} ORDER BY ts, id"
            )
            params += params
        else:
            sql = f"SELECT {_COLUMNS} FROM outbox WHERE cls = 0{where} ORDER BY ts, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        schemas: dict[int, tuple[str, ...]] = {}

        def schema_of(schema_id: int) -> tuple[str, ...]:
            if schema_id not in schemas:
                schemas[schema_id] = _load_schema(db, schema_id)
            return schemas[schema_id]

        cursor = db.execute(sql, params)
        try:
            while page := cursor.fetchmany(256):
                for values in page:
                    stream = names.get(values[2], f"stream-{values[2]}")
                    if (row := _decode(values, stream, schema_of, damaged)) is not None:
                        yield row
        finally:
            cursor.close()
    finally:
        with suppress(sqlite3.Error):  # ProgrammingError if the caller closed `db` first
            if db.in_transaction:
                db.execute("COMMIT")
            if close:
                db.close()
