"""SQLite store-and-forward outbox.

Everything the agent publishes is committed here first and deleted only when the broker
has acknowledged it. One dedicated thread owns the connection (the asyncio side calls in
through a single-thread executor), so there is no locking here.

- **Rows.** One row per device poll (TELEMETRY, body encoded by `codec`) or per
  event/alarm/command result (body = the final JSON). Each row carries the next `seq` of its
  stream; the counter lives in the `streams` table and moves in the same transaction as the
  rows, so a committed number is never reused or skipped.
- **Leases are in memory only.** A leased row is one handed to the uplink and not yet acked
  or requeued. Nothing about leasing is written to disk (no write per publish), and a
  restart therefore returns every row to ready by construction.
- **Durability.** WAL mode. Transactions that allocate seq numbers (appends, evictions with
  their event) commit with `synchronous=FULL`: with NORMAL a power cut may roll back the
  last commits, and their seq numbers would then be issued again for different data the
  platform may already hold. Acks commit with NORMAL: a lost ack only means the row is
  published again (at-least-once), and the next FULL commit syncs the WAL anyway.
- **Budget.** Used bytes = (page_count - freelist_count) * page_size of the main database.
  Over budget, the oldest rows are deleted: telemetry first, then events, alarms, command
  results, and never a later class while any row of an earlier one remains. Telemetry older
  than the retention is deleted too. Every eviction transaction appends a `data_evicted`
  event naming the exact seq ranges, and adds to persisted per-class counters. A filesystem
  with less room than the budget lowers the limit (headroom kept free); a write that still
  fails for lack of space evicts a slice and retries once, else raises `StoreFull`.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from functools import wraps
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from edge_agent import logs
from edge_agent.points import Batch, wall_ms
from edge_agent.store import codec

log = logs.get("store")

SCHEMA_VERSION = 1
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


class TrafficClass(IntEnum):
    TELEMETRY = 0
    EVENT = 1
    ALARM = 2
    COMMAND_RESULT = 3


EVICTION_ORDER = tuple(TrafficClass)  # first to go first


class Lane(Enum):
    PRIORITY = "priority"  # events, alarms, command results, any age
    LIVE = "live"  # telemetry committed since the last mark_boundary()
    BACKLOG = "backlog"  # telemetry committed up to it: published as historical


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
    evicted_rows: int  # since the outbox was created (persisted)
    evicted_points: int
    used_bytes: int  # (page_count - freelist_count) * page_size
    budget_bytes: int  # configured
    limit_bytes: int  # in force: the budget, or less when the filesystem has less room
    classes: dict[str, ClassStats]


@dataclass(slots=True)
class StreamGap:
    """Rows of one stream deleted unsent; seq numbers in between may have been sent."""

    from_seq: int
    to_seq: int
    from_ts: int
    to_ts: int
    rows: int = 0
    points: int = 0

    def add(self, seq: int, ts: int, points: int) -> None:
        self.from_seq, self.to_seq = min(self.from_seq, seq), max(self.to_seq, seq)
        self.from_ts, self.to_ts = min(self.from_ts, ts), max(self.to_ts, ts)
        self.rows += 1
        self.points += points


@dataclass(frozen=True, slots=True)
class Gap:
    """What one eviction transaction deleted; announced by one `data_evicted` event."""

    reason: str  # "disk_budget" or "retention"
    disk_full: bool
    classes: dict[str, dict[str, int]]  # class name -> {"rows", "points"}
    streams: dict[str, StreamGap]  # telemetry, by device
    topics: dict[str, StreamGap]  # other classes, by topic suffix


@dataclass(frozen=True, slots=True)
class EvictionReport:
    used_before: int
    used_after: int
    gaps: tuple[Gap, ...]


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
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (id) WHERE cls > 0;
CREATE TABLE IF NOT EXISTS counters (
    cls INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    points INTEGER NOT NULL,
    evicted_rows INTEGER NOT NULL,
    evicted_points INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES {", ".join(f"({c}, 0, 0, 0, 0)" for c in TrafficClass)};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_COLUMNS = "id, cls, stream, seq, ts, n_points, schema_id, body"
_SCAN = {
    Lane.PRIORITY: f"SELECT {_COLUMNS} FROM outbox WHERE cls > 0 AND id > ? ORDER BY id LIMIT ?",
    Lane.LIVE: f"SELECT {_COLUMNS} FROM outbox WHERE cls = 0 AND id > ? ORDER BY id LIMIT ?",
    Lane.BACKLOG: f"SELECT {_COLUMNS} FROM outbox WHERE cls = 0 AND id > ? AND id <= ? "
    "ORDER BY id LIMIT ?",
}
_NOT_LEASED = "id NOT IN (SELECT value FROM json_each(?))"
_CLASS_NAMES = {c.value: c.name.lower() for c in TrafficClass}


@dataclass(slots=True)
class _Txn:
    """In-memory mirror changes that take effect only when the transaction commits."""

    last_id: int
    streams: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # -> [id, seq]
    schemas: dict[tuple[str, ...], int] = field(default_factory=dict)
    counts: dict[int, list[int]] = field(default_factory=dict)  # cls -> 4 counter deltas

    def count(self, cls: int, rows: int, points: int) -> None:
        deltas = self.counts.setdefault(cls, [0, 0, 0, 0])
        deltas[0] += rows
        deltas[1] += points

    def count_evicted(self, cls: int, rows: int, points: int) -> None:
        self.count(cls, -rows, -points)
        self.counts[cls][2] += rows
        self.counts[cls][3] += points


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
    ) -> None:
        """Open (or create) the outbox at `path`. `identity` (site, gateway) is merged into
        the data_evicted events, like every other event."""
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        self.path = Path(path)
        self.budget_bytes = int(budget_bytes)
        self.retention_ms = int(retention_s * 1000) if math.isfinite(retention_s) else None
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
        self._leased: dict[int, bool] = {}  # row id -> is telemetry
        self._cursor = dict.fromkeys(Lane, 0)  # highest id a lane's scan has handed out
        self._returned: dict[Lane, list[int]] = {lane: [] for lane in Lane}  # heaps, < cursor
        self._boundary = self._last_id
        self._retention_due = 0.0

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
        if version < SCHEMA_VERSION:  # 0: a new file (migrations from older versions go here)
            db.executescript(_SCHEMA)
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
            db.execute("COMMIT")
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

    def _flush_counts(self, txn: _Txn) -> None:
        self._db.executemany(
            "UPDATE counters SET rows = rows + ?, points = points + ?, "
            "evicted_rows = evicted_rows + ?, evicted_points = evicted_points + ? WHERE cls = ?",
            [(*deltas, cls) for cls, deltas in txn.counts.items()],
        )

    def append(self, records: Sequence[Record]) -> list[Row]:
        """Commit `records` in one transaction, each with the next seq of its stream."""
        if not records:
            return []
        prepared = [_prepare(record) for record in records]
        try:
            rows = self._commit(prepared)
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise StoreError(f"outbox {self.path}: append failed: {exc}") from exc
            rows = self._commit_when_full(prepared, exc)
        if self._retention_due <= time.monotonic() or self._used_bytes() > self._limit()[0]:
            try:
                self.evict()
            except StoreError as exc:  # the records are committed: do not report a failure
                log.error("eviction failed", error=str(exc))
        return rows

    def _commit(self, prepared: list[_Prepared]) -> list[Row]:
        with self._write(self._sync) as txn:
            return self._insert(txn, prepared)

    def _commit_when_full(self, prepared: list[_Prepared], error: sqlite3.Error) -> list[Row]:
        """The filesystem is full (not just the budget): free a slice of telemetry unless
        the file already has free pages (then deleting more would not help), retry once.
        A failed transaction is rolled back, so the file is intact either way."""
        incoming = sum(len(p.body) + ROW_OVERHEAD for p in prepared)
        gap = None
        try:
            self._checkpoint()  # lets the WAL restart from its beginning: reuses its space
            if self._free_bytes() < 2 * incoming:
                need = max(DISK_FULL_SLICE, 2 * incoming)
                gap = self._evict_step(need, self._last_id, disk_full=True)
            rows = self._commit(prepared)
        except sqlite3.Error as exc:
            raise StoreFull(
                f"outbox {self.path}: the disk is full ({error}) and writing still fails "
                f"after {'evicting telemetry' if gap else 'a checkpoint'}: {exc}"
            ) from exc
        if gap is not None:
            log.warning("disk full: evicted telemetry", path=str(self.path), **_summary(gap))
        return rows

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

    def mark_boundary(self, before_ts: int | None = None) -> None:
        """Called at each (re)connect: telemetry committed so far is backlog, later is live.

        With `before_ts`, only telemetry polled before that time is backlog: polls made a
        moment before the connection came up are live data, not a replay.
        """
        if before_ts is None:
            self._boundary = self._last_id
        else:
            # Newest first: the rows after the boundary are few, so this stops early.
            newest_old = self._db.execute(
                "SELECT id FROM outbox WHERE cls = 0 AND ts < ? ORDER BY id DESC LIMIT 1",
                (before_ts,),
            ).fetchone()
            self._boundary = newest_old[0] if newest_old else 0
        # Live rows requeued before now are backlog from here on; the backlog scan, which
        # has not reached them, will find them.
        self._returned[Lane.LIVE].clear()
        self._cursor[Lane.LIVE] = 0

    @_sqlite_errors("lease")
    def lease(self, lane: Lane, limit: int) -> list[Row]:
        """Up to `limit` ready rows of `lane`, oldest first; each is in flight until it is
        acked or requeued and is not leased again meanwhile."""
        found: list[tuple] = []
        returned = self._returned[lane]
        if returned and limit > 0:
            ids = [heapq.heappop(returned) for _ in range(min(limit, len(returned)))]
            found += self._db.execute(  # missing ones were evicted (or acked late)
                f"SELECT {_COLUMNS} FROM outbox WHERE id IN (SELECT value FROM json_each(?)) "
                "ORDER BY id",
                (json.dumps(ids),),
            ).fetchall()
        while len(found) < limit:
            scanned = self._scan(lane, limit - len(found))
            if not scanned:
                break
            self._cursor[lane] = scanned[-1][0]
            # A row can be in flight from another lane after mark_boundary() moved it.
            found += [row for row in scanned if row[0] not in self._leased]
        rows = [row for values in found if (row := self._row(values)) is not None]
        for row in rows:
            self._leased[row.id] = row.cls == TrafficClass.TELEMETRY
        return rows

    def _scan(self, lane: Lane, limit: int) -> list[tuple]:
        cursor = self._cursor[lane]
        if lane is Lane.BACKLOG:
            return self._db.execute(_SCAN[lane], (cursor, self._boundary, limit)).fetchall()
        if lane is Lane.LIVE:
            cursor = max(cursor, self._boundary)
        return self._db.execute(_SCAN[lane], (cursor, limit)).fetchall()

    def _row(self, values: tuple) -> Row | None:
        row_id, cls, stream_id, seq, ts, n_points, schema_id, body = values
        stream = self._stream_names[stream_id]
        if cls != TrafficClass.TELEMETRY:
            return Row(row_id, TrafficClass(cls), stream, seq, ts, n_points, None, body)
        try:
            readings = codec.decode(self._schema(schema_id), body, ts)
        except ValueError as exc:
            # Never seen; but one damaged row must not stall its lane. It stays on disk
            # (until evicted) for a post-mortem and is skipped.
            log.error("undecodable outbox row skipped", row=row_id, stream=stream, seq=seq,
                      error=str(exc))  # fmt: skip
            return None
        batch = Batch(stream, ts, tuple(readings))
        return Row(row_id, TrafficClass.TELEMETRY, stream, seq, ts, n_points, batch, None)

    def _schema(self, schema_id: int) -> tuple[str, ...]:
        schema = self._schemas.get(schema_id)
        if schema is None:
            (text,) = self._db.execute(
                "SELECT points FROM schemas WHERE id = ?", (schema_id,)
            ).fetchone()
            schema = self._schemas[schema_id] = tuple(json.loads(text))
            self._schema_ids[schema] = schema_id
        return schema

    @_sqlite_errors("ack")
    def ack(self, ids: Iterable[int]) -> None:
        """Delete rows the broker has acknowledged (one transaction)."""
        ids = list(ids)
        if not ids:
            return
        # NORMAL: if a power cut undoes this, the rows are simply published again.
        with self._write("NORMAL") as txn:
            for cls, n_points in self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?)) "
                "RETURNING cls, n_points",
                (json.dumps(ids),),
            ).fetchall():
                txn.count(cls, -1, -n_points)
        for row_id in ids:
            self._leased.pop(row_id, None)

    def requeue(self, ids: Iterable[int] | None = None) -> None:
        """Make leased rows ready again (None: all, on disconnect); they are leased again
        before anything newer in their lane."""
        if ids is None:
            self._leased.clear()
            self._cursor = dict.fromkeys(Lane, 0)
            self._returned = {lane: [] for lane in Lane}
            return
        for row_id in ids:
            telemetry = self._leased.pop(row_id, None)
            if telemetry is None:
                continue
            lane = self._lane_of(row_id, telemetry)
            reach = max(self._cursor[lane], self._boundary if lane is Lane.LIVE else 0)
            if row_id <= reach:  # otherwise the lane's scan has yet to reach it
                heapq.heappush(self._returned[lane], row_id)

    def _lane_of(self, row_id: int, telemetry: bool) -> Lane:
        if not telemetry:
            return Lane.PRIORITY
        return Lane.BACKLOG if row_id <= self._boundary else Lane.LIVE

    # -- eviction ------------------------------------------------------------------------

    @_sqlite_errors("evict")
    def evict(self) -> EvictionReport | None:
        """Delete telemetry past its retention and, over the limit, the oldest rows down to
        95 % of it. Returns what was deleted (None: nothing)."""
        before = self._used_bytes()
        ceiling = self._last_id  # not the data_evicted events this call appends
        gaps: list[Gap] = []
        while (gap := self._evict_step(None, ceiling)) is not None:
            gaps.append(gap)
        limit, by_filesystem = self._limit()
        if self._used_bytes() > limit:
            target = limit - min(limit * EVICT_MARGIN, EVICT_MARGIN_MAX)
            gaps += self._evict_down_to(int(target), ceiling, by_filesystem)
        self._retention_due = time.monotonic() + RETENTION_CHECK_S
        for gap in gaps:
            log.warning("evicted unsent data", reason=gap.reason, **_summary(gap))
        return EvictionReport(before, self._used_bytes(), tuple(gaps)) if gaps else None

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
        """One transaction deleting at most one chunk of rows up to id `ceiling`, with the
        data_evicted event that reports it: expired telemetry (need None), else the oldest
        `need` bytes of the first class that has rows."""
        if need is None:
            chosen, reason = self._expired(ceiling), "retention"
        else:
            chosen, reason = self._victim(min(need, EVICT_CHUNK_BYTES), ceiling), "disk_budget"
        if chosen is None:
            return None
        cls, last = chosen
        with self._write(self._sync) as txn:
            deleted = self._db.execute(
                f"DELETE FROM outbox WHERE cls = ? AND id <= ? AND {_NOT_LEASED} "
                "RETURNING stream, seq, ts, n_points",
                (cls, last, json.dumps(list(self._leased))),
            ).fetchall()
            if not deleted:
                return None
            txn.count_evicted(cls, len(deleted), sum(row[3] for row in deleted))
            gap = self._gap(reason, cls, deleted, disk_full)
            self._insert(txn, [_prepare(self._gap_record(gap))])
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
        go: the first class with rows is the only candidate, even if they are all leased."""
        for cls in EVICTION_ORDER:
            last = self._last_evictable(cls, need, ceiling)
            if last is not None:
                return cls, last
            if self._db.execute(
                "SELECT 1 FROM outbox WHERE cls = ? AND id <= ? LIMIT 1", (cls, ceiling)
            ).fetchone():
                return None  # only rows in flight left: never touch a later class
        return None

    def _last_evictable(
        self, cls: TrafficClass, need: int, ceiling: int, older_than: int | None = None
    ) -> int | None:
        """Walk the oldest rows of `cls` up to id `ceiling`, skipping those in flight, until
        about `need` bytes (with `older_than`: only rows older than that); the last id."""
        freed, last = 0, None
        cursor = self._db.execute(
            "SELECT id, ts, length(body) FROM outbox WHERE cls = ? AND id <= ? ORDER BY id",
            (int(cls), ceiling),
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

    def _gap(self, reason: str, cls: TrafficClass, deleted: list[tuple], disk_full: bool) -> Gap:
        gaps: dict[str, StreamGap] = {}
        for stream_id, seq, ts, n_points in deleted:
            name = self._stream_names[stream_id]
            gaps.setdefault(name, StreamGap(seq, seq, ts, ts, 0, 0)).add(seq, ts, n_points)
        count = {"rows": len(deleted), "points": sum(g.points for g in gaps.values())}
        telemetry = cls == TrafficClass.TELEMETRY
        return Gap(
            reason,
            disk_full,
            {_CLASS_NAMES[cls]: count},
            gaps if telemetry else {},
            {} if telemetry else gaps,
        )

    def _gap_record(self, gap: Gap) -> Record:
        ts = wall_ms()
        body: dict[str, object] = {
            "v": 1,
            "type": "data_evicted",
            **self._identity,
            "ts": ts,
            "reason": gap.reason,
            "classes": gap.classes,
            "streams": {name: _asdict(s) for name, s in gap.streams.items()},
        }
        if gap.topics:
            body["topics"] = {name: _asdict(s) for name, s in gap.topics.items()}
        if gap.disk_full:
            body["disk_full"] = True
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return Record(TrafficClass.EVENT, "event", ts, payload=payload)

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
        for cls, rows, points, evicted_rows, evicted_points in self._db.execute(
            "SELECT cls, rows, points, evicted_rows, evicted_points FROM counters ORDER BY cls"
        ).fetchall():
            oldest = self._oldest_ts(cls) if rows else None
            classes[_CLASS_NAMES[cls]] = ClassStats(
                rows, points, oldest, evicted_rows, evicted_points
            )
        stamps = [c.oldest_ts for c in classes.values() if c.oldest_ts is not None]
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
        )

    def _oldest_ts(self, cls: int) -> int | None:
        # The oldest row in commit order: cheap (the head of the table or of the index).
        index = " AND cls > 0" if cls else ""
        found = self._db.execute(
            f"SELECT ts FROM outbox WHERE cls = ?{index} ORDER BY id LIMIT 1", (cls,)
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


def _asdict(gap: StreamGap) -> dict[str, int]:
    return {name: getattr(gap, name) for name in StreamGap.__slots__}


def _summary(gap: Gap) -> dict[str, object]:
    return {"classes": gap.classes, "streams": sorted(gap.streams), "disk_full": gap.disk_full}
