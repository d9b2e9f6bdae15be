"""What the data logger owes each environmental platform, in SQLite (docs/hj212.md, "Delivery").

Every upload (real-time, minute, hour, day, run status) is a row, committed before it is
sent and owed until the platform's 9014 for its QN arrives; then it is kept as the record
the platform got, for its history requests and `hj212 send --since`, until `keep` ends.
One row per (platform, CN, DataTime): a record made twice (a restart between making it and
moving the watermark cannot happen: both are one transaction) or re-sent is never a new
record. The QN is fixed when the row is made, so every copy the platform sees carries it.

The same guarantees as the outbox: WAL, `synchronous=FULL` (an acknowledged record is not
owed again after a power cut; a made one is not lost), one connection on one thread
(`SpoolWorker`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    id INTEGER PRIMARY KEY,
    platform TEXT NOT NULL,
    cn TEXT NOT NULL,
    data_time TEXT NOT NULL,  -- yyyyMMddHHmmss, HJ 212 local time
    qn TEXT NOT NULL,
    cp TEXT NOT NULL,
    made_ms INTEGER NOT NULL,
    acked_ms INTEGER,  -- NULL: owed to the platform
    sends INTEGER NOT NULL DEFAULT 0,
    resends INTEGER NOT NULL DEFAULT 0  -- queued again by `hj212 send` or a request
);
CREATE UNIQUE INDEX IF NOT EXISTS packets_record ON packets (platform, cn, data_time);
CREATE INDEX IF NOT EXISTS packets_owed ON packets (platform, id) WHERE acked_ms IS NULL;
CREATE TABLE IF NOT EXISTS settings (
    platform TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (platform, key)
);
CREATE TABLE IF NOT EXISTS marks (
    platform TEXT NOT NULL, kind TEXT NOT NULL, next_ms INTEGER NOT NULL,
    PRIMARY KEY (platform, kind)
);
"""


@dataclass(frozen=True, slots=True)
class Owed:
    id: int
    cn: str
    data_time: str
    qn: str
    cp: str
    sends: int


@dataclass(frozen=True, slots=True)
class Backlog:
    owed: int
    oldest_data_time: str | None
    acked: int
    last_acked_ms: int | None


class Spool:
    """The spool's tables; call from one thread only (SpoolWorker's)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def make(
        self,
        platform: str,
        records: list[tuple[str, str, str, str]],
        now_ms: int,
        mark: tuple[str, int] | None = None,
    ) -> int:
        """Commit records (cn, data_time, qn, cp) owed to `platform` and, in the same
        transaction, move its watermark `mark` (kind, next period start). Returns how many
        were new (a record already there is left as it is)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO packets (platform, cn, data_time, qn, cp, made_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(platform, *record, now_ms) for record in records],
            )
            made = self._db.total_changes - before
            if mark is not None:
                self._set_mark(platform, *mark)
        return made

    def owed(self, platform: str, limit: int = 100) -> list[Owed]:
        rows = self._db.execute(
            "SELECT id, cn, data_time, qn, cp, sends FROM packets "
            "WHERE platform = ? AND acked_ms IS NULL ORDER BY id LIMIT ?",
            (platform, limit),
        ).fetchall()
        return [Owed(*row) for row in rows]

    def ack(self, packet_id: int, now_ms: int, sends: int = 1) -> None:
        """The platform answered; `sends`: the frames it took (one commit per packet: the
        copies are counted here, not as they go)."""
        self._db.execute(
            "UPDATE packets SET acked_ms = ?, sends = sends + ? WHERE id = ? AND acked_ms IS NULL",
            (now_ms, sends, packet_id),
        )

    def records(self, platform: str, cn: str, begin: str, end: str) -> list[Owed]:
        """The records of `cn` with begin <= DataTime <= end, acknowledged or not, in order."""
        rows = self._db.execute(
            "SELECT id, cn, data_time, qn, cp, sends FROM packets WHERE platform = ? AND "
            "cn = ? AND data_time BETWEEN ? AND ? ORDER BY data_time",
            (platform, cn, begin, end),
        ).fetchall()
        return [Owed(*row) for row in rows]

    def resend(self, platform: str, since: str, cns: tuple[str, ...]) -> int:
        """Owe again every record of `cns` from DataTime `since` on (the technician's
        `hj212 send --since`); how many. They keep their QN: copies, not new data."""
        marks = ",".join("?" * len(cns))
        with self._db:
            cursor = self._db.execute(
                f"UPDATE packets SET acked_ms = NULL, resends = resends + 1 WHERE platform = ? "
                f"AND data_time >= ? AND cn IN ({marks}) AND acked_ms IS NOT NULL",
                (platform, since, *cns),
            )
        return cursor.rowcount

    def backlog(self, platform: str) -> Backlog:
        owed, oldest = self._db.execute(
            "SELECT count(*), min(data_time) FROM packets WHERE platform = ? AND acked_ms IS NULL",
            (platform,),
        ).fetchone()
        acked, last = self._db.execute(
            "SELECT count(*), max(acked_ms) FROM packets WHERE platform = ? AND "
            "acked_ms IS NOT NULL",
            (platform,),
        ).fetchone()
        return Backlog(owed, oldest, acked, last)

    def prune(self, before_ms: int) -> int:
        """Forget acknowledged records acknowledged before `before_ms`; never owed ones."""
        with self._db:
            cursor = self._db.execute(
                "DELETE FROM packets WHERE acked_ms IS NOT NULL AND acked_ms < ?", (before_ms,)
            )
        return cursor.rowcount

    # -- what each platform set, and how far records were made --------------------------

    def settings(self, platform: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT key, value FROM settings WHERE platform = ?", (platform,)
        ).fetchall()
        return dict(rows)

    def set(self, platform: str, **values: str) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO settings (platform, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (platform, key) DO UPDATE SET value = excluded.value",
                [(platform, key, value) for key, value in values.items()],
            )

    def mark(self, platform: str, kind: str) -> int | None:
        row = self._db.execute(
            "SELECT next_ms FROM marks WHERE platform = ? AND kind = ?", (platform, kind)
        ).fetchone()
        return None if row is None else int(row[0])

    def set_mark(self, platform: str, kind: str, next_ms: int) -> None:
        with self._db:
            self._set_mark(platform, kind, next_ms)

    def _set_mark(self, platform: str, kind: str, next_ms: int) -> None:
        self._db.execute(
            "INSERT INTO marks (platform, kind, next_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (platform, kind) DO UPDATE SET next_ms = excluded.next_ms",
            (platform, kind, next_ms),
        )


class SpoolWorker:
    """The spool on its own thread: an fsync never stalls the event loop."""

    def __init__(self, path: Path) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hj212-spool")
        self.path = Path(path)
        self._spool: Spool | None = None

    async def open(self) -> None:
        self._spool = await self._run(Spool, self.path)

    async def close(self) -> None:
        if self._spool is not None:
            await self._run(self._spool.close)
            self._spool = None
        self._pool.shutdown(wait=True)

    async def call(self, method: Callable[..., T], *args: object, **kwargs: object) -> T:
        """`await worker.call(Spool.owed, "province")`: a Spool method on the spool's thread."""
        assert self._spool is not None, "the spool is not open"
        return await self._run(method, self._spool, *args, **kwargs)

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))
