"""Runs the SQLite outbox on its own thread and batches polls into few transactions.

Pollers `submit` without waiting; the writer commits what has gathered at most every
`commit_interval` (one fsync for many polls) and then wakes the uplink, which only ever
publishes committed rows.

While the store fails (a full disk), records wait in memory, bounded: the oldest polls go
first. Records lost that way, or still waiting when the agent stops, never got a seq, so no
gap would show them: they are counted (status), logged, and announced by a `data_dropped`
event as soon as the store takes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from edge_agent import envelope, logs
from edge_agent.points import Batch, wall_ms
from edge_agent.store.outbox import DEFAULT_HISTORY_S, Outbox, Record, Row, TrafficClass

log = logs.get("store")
T = TypeVar("T")

RETRY_S = 1.0


class StoreLocked(RuntimeError):
    """Another agent already owns this outbox (two writers would publish everything twice)."""


@dataclass(slots=True)
class Dropped:
    """Records lost before they were committed, for one `data_dropped` event."""

    streams: dict[str, list[int]] = field(default_factory=dict)  # [rows, points, from, to]
    classes: dict[str, list[int]] = field(default_factory=dict)  # name -> [rows, points]

    def add(self, record: Record) -> None:
        points = len(record.batch.readings) if record.batch is not None else 0
        count = self.classes.setdefault(record.cls.name.lower(), [0, 0])
        count[0] += 1
        count[1] += points
        if record.batch is not None:
            entry = self.streams.setdefault(record.stream, [0, 0, record.ts, record.ts])
            entry[0] += 1
            entry[1] += points
            entry[2], entry[3] = min(entry[2], record.ts), max(entry[3], record.ts)

    def fields(self) -> dict[str, Any]:
        keys = ("rows", "points", "from_ts", "to_ts")
        return {
            "classes": {n: {"rows": r, "points": p} for n, (r, p) in self.classes.items()},
            "streams": {n: dict(zip(keys, v, strict=True)) for n, v in self.streams.items()},
        }


class StoreWorker:
    def __init__(
        self,
        path: Path,
        budget_bytes: int,
        retention_s: float,
        commit_interval_s: float = 0.1,
        max_pending_points: int = 2_000_000,
        identity: dict[str, str] | None = None,
        history_s: float = DEFAULT_HISTORY_S,
    ) -> None:
        self._history_s = history_s
        self._path = path
        self._budget_bytes = budget_bytes
        self._retention_s = retention_s
        self._identity = identity
        self._commit_interval = commit_interval_s
        self._max_pending_points = max_pending_points
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._pending: list[Record] = []
        self._pending_points = 0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._failing: str | None = None
        self._outbox: Outbox | None = None  # from `open` on
        self.committed_rows = 0
        # Lost before commit because the store kept failing (or was failing at the stop).
        self.dropped_points = 0
        self.dropped_rows = 0
        self._dropped: dict[str, Dropped] = {}  # by reason, not yet announced
        # An append whose caller was cancelled: (future, records, with drop notices).
        self._appending: tuple[asyncio.Future, list[Record], bool] | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def outbox(self) -> Outbox:
        """The open outbox (use it on the store thread, through `call`)."""
        if self._outbox is None:
            raise RuntimeError(f"the store {self._path} is not open")
        return self._outbox

    async def open(self) -> None:
        path = self._path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(f"another agent is using the store {path}") from None
        self._outbox = await self.call(
            partial(
                Outbox,
                path,
                self._budget_bytes,
                self._retention_s,
                identity=self._identity,
                history_s=self._history_s,
            )
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the store thread (the only thread that touches SQLite)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def on_commit(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def notify(self) -> None:
        """Tell the listeners (the uplink) that there is something to publish, after a
        change made by `call` rather than by a commit (a backfill)."""
        for listener in self._listeners:
            listener()

    def submit_event(self, ts: int, payload: bytes) -> None:
        """An event's payload (edge_agent.events.Events hands them in)."""
        self.submit(Record(TrafficClass.EVENT, "event", ts, payload=payload))

    def submit_batch(self, batch: Batch) -> None:
        self.submit(Record(TrafficClass.TELEMETRY, batch.stream, batch.ts, batch=batch))

    def submit(self, record: Record, *, urgent: bool = False) -> None:
        """Queue a record for the next commit; `urgent` commits without waiting for more
        (a command's reply: someone is waiting for it)."""
        self._pending.append(record)
        if urgent:
            self._urgent.set()
        if record.batch is not None:
            self._pending_points += len(record.batch.readings)
            if self._pending_points > self._max_pending_points:
                self._drop_oldest_telemetry()
        self._wake.set()

    async def run(self) -> None:
        """The writer task."""
        while True:
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), self._commit_interval)
            self._urgent.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def flush(self) -> bool:
        """Commit everything submitted so far, and the announcement of what was dropped;
        False (all of it kept) if the store fails."""
        self._wake.clear()
        if not self._pending and not self._dropped:
            return True
        notices = self._drop_notices()
        records, self._pending, pending_points = self._pending, [], self._pending_points
        self._pending_points = 0
        try:
            await self._append(records, notices)
        except Exception as exc:
            self._pending[:0] = records
            self._pending_points += pending_points
            if self._failing is None:
                log.error("store append failed; keeping data in memory", error=str(exc))
            self._failing = str(exc)
            return False
        if self._failing is not None:
            log.info("store append recovered", after_error=self._failing)
            self._failing = None
        self._dropped.clear()  # announced in this commit
        self.committed_rows += len(records)
        for listener in self._listeners:
            listener()
        return True

    async def _append(self, records: list[Record], notices: list[Record]) -> list[Row]:
        """`outbox.append` on the store thread. If the caller is cancelled (the writer
        task at the stop), the thread still finishes: `close` settles it."""
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self.outbox.append, records + notices
        )
        self._appending = (future, records, bool(notices))
        try:
            return await asyncio.shield(future)
        finally:
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                self._appending = None

    def _drop_notices(self) -> list[Record]:
        ts = wall_ms()
        return [
            Record(TrafficClass.EVENT, "event", ts, payload=envelope.encode(envelope.message(
                "data_dropped", self._identity or {}, ts, reason=reason, **dropped.fields())))
            for reason, dropped in self._dropped.items()
        ]  # fmt: skip

    def _drop(self, record: Record, reason: str) -> None:
        self._dropped.setdefault(reason, Dropped()).add(record)
        self.dropped_rows += 1
        if record.batch is not None:
            self.dropped_points += len(record.batch.readings)

    def _drop_oldest_telemetry(self) -> None:
        """Memory bound while the store is failing: the oldest polls go first."""
        for index, record in enumerate(self._pending):
            if record.batch is not None:
                del self._pending[index]
                self._pending_points -= len(record.batch.readings)
                self._drop(record, "store_failing")
                return

    def stats(self) -> dict[str, object]:
        return {
            "pending_records": len(self._pending),
            "dropped_rows": self.dropped_rows,
            "dropped_points": self.dropped_points,
            "dropped_unannounced": sum(
                r for d in self._dropped.values() for r, _ in d.classes.values()
            ),
            "error": self._failing,
        }

    async def close(self) -> None:
        """Commit what is pending, once (the agent is stopping): what the store refuses is
        dropped, counted, logged, and announced if the store takes the event alone."""
        await self._settle_cancelled_append()
        if not await self.flush():
            for record in self._pending:
                self._drop(record, "shutdown")
            rows, points = len(self._pending), self._pending_points
            self._pending, self._pending_points = [], 0
            log.error("records held in memory could not be written and are lost",
                      rows=rows, points=points, dropped_rows=self.dropped_rows,
                      dropped_points=self.dropped_points, error=self._failing)  # fmt: skip
            try:
                await self._append([], self._drop_notices())
                self._dropped.clear()
            except Exception as exc:
                log.error("data_dropped event not stored", error=str(exc))
        if self._outbox is not None:
            await self.call(self._outbox.close)
        self._executor.shutdown(wait=True)
        os.close(self._lock_fd)  # releases the lock

    async def _settle_cancelled_append(self) -> None:
        """An append whose caller was cancelled: wait for the thread; if it failed, its
        records are pending again (else they would vanish without a count)."""
        if self._appending is None:
            return
        future, records, with_notices = self._appending
        self._appending = None
        try:
            await future
        except Exception:
            self._pending[:0] = records
            self._pending_points += sum(len(r.batch.readings) for r in records if r.batch)
        else:
            if with_notices:
                self._dropped.clear()
