"""Runs the SQLite outbox on its own thread and batches polls into few transactions.

Pollers `submit` without waiting; the writer commits what has gathered at most every
`commit_interval` (one fsync for many polls) and then wakes the uplink, which only ever
publishes committed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from edge_agent import logs
from edge_agent.points import Batch
from edge_agent.store.outbox import DEFAULT_HISTORY_S, Outbox, Record, TrafficClass

log = logs.get("store")
T = TypeVar("T")

RETRY_S = 1.0


class StoreLocked(RuntimeError):
    """Another agent already owns this outbox (two writers would publish everything twice)."""


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
        self.outbox: Outbox | None = None
        self.committed_rows = 0
        self.dropped_points = 0  # lost before commit because the store kept failing

    @property
    def path(self) -> Path:
        return self._path

    async def open(self) -> None:
        path = self._path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(f"another agent is using the store {path}") from None
        self.outbox = await self.call(
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
            await self.flush()

    async def flush(self) -> None:
        """Commit everything submitted so far (keeps it pending if the store fails)."""
        self._wake.clear()
        if not self._pending:
            return
        records, self._pending, pending_points = self._pending, [], self._pending_points
        self._pending_points = 0
        try:
            await self.call(self.outbox.append, records)
        except Exception as exc:
            self._pending[:0] = records
            self._pending_points += pending_points
            if self._failing is None:
                log.error("store append failed; keeping data in memory", error=str(exc))
            self._failing = str(exc)
            await asyncio.sleep(RETRY_S)
            self._wake.set()
            return
        if self._failing is not None:
            log.info("store append recovered", after_error=self._failing)
            self._failing = None
        self.committed_rows += len(records)
        for listener in self._listeners:
            listener()

    def _drop_oldest_telemetry(self) -> None:
        """Memory bound while the store is failing: the oldest polls go first."""
        for index, record in enumerate(self._pending):
            if record.batch is not None:
                del self._pending[index]
                self._pending_points -= len(record.batch.readings)
                self.dropped_points += len(record.batch.readings)
                return

    def stats(self) -> dict[str, object]:
        return {
            "pending_records": len(self._pending),
            "dropped_points": self.dropped_points,
            "error": self._failing,
        }

    async def close(self) -> None:
        await self.flush()
        if self.outbox is not None:
            await self.call(self.outbox.close)
        self._executor.shutdown(wait=True)
        os.close(self._lock_fd)  # releases the lock
