"""Polling: one task per device on monotonic deadlines, with backoff and health tracking."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from drivers.base import AnyDriver, DeviceUnavailable
from edge_agent import logs
from edge_agent.cache import PointCache
from edge_agent.config.base import DeviceBase
from edge_agent.events import Events
from edge_agent.points import Batch, Quality, Reading, wall_ms

log = logs.get("poller")

MAX_BACKOFF_S = 300.0
# A read that takes this many intervals is a hung driver. Per-request timeouts are the
# driver's job; waiting for a busy shared link is not a device failure (slots get skipped).
HUNG_READ_INTERVALS = 10


@dataclass(slots=True)
class DeviceHealth:
    """What the status command shows for a device."""

    up: bool = True
    polls: int = 0
    failures: int = 0  # polls that failed as a whole
    bad_points: int = 0  # bad readings in the last poll
    consecutive_failures: int = 0
    skipped_slots: int = 0  # deadlines missed after a stall, not caught up
    last_good_ts: int | None = None  # wall ms
    last_error: str | None = None
    last_rtt_s: float = 0.0
    down_since_mono: float | None = None
    # Library log records about the device counted instead of written (logs.LIBRARY), by
    # library: what pymodbus & co. said while the device was down.
    library_records_suppressed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "up": self.up,
            "polls": self.polls,
            "failures": self.failures,
            "error_rate": round(self.failures / self.polls, 4) if self.polls else 0.0,
            "bad_points": self.bad_points,
            "skipped_slots": self.skipped_slots,
            "last_good_ts": self.last_good_ts,
            "last_error": self.last_error,
            "rtt_ms": round(self.last_rtt_s * 1000, 2),
            "library_records_suppressed": dict(self.library_records_suppressed),
        }


class Deadlines:
    """Fixed-rate deadlines on the monotonic clock.

    Slots are `start + k * interval`, so there is no drift. After a stall (a suspend, a
    slow device) the missed slots are skipped, never caught up in a burst.
    """

    def __init__(self, start: float, interval: float) -> None:
        self.interval = interval
        self.next = start

    def advance(self, now: float, slots: int = 1) -> int:
        """Move to the next slot at least `slots` ahead that is still in the future.
        Returns how many slots were skipped because they were already past."""
        self.next += slots * self.interval
        if now < self.next:
            return 0
        missed = math.floor((now - self.next) / self.interval) + 1
        self.next += missed * self.interval
        return missed


class PollWatcher(Protocol):
    """Told of every poll and of device loss and recovery (the alarm engine)."""

    def observe(self, device: str, readings: Sequence[Reading], now_ms: int) -> None: ...

    def device_down(self, device: str, reason: str, now_ms: int) -> None: ...

    def device_recovered(self, device: str, now_ms: int) -> None: ...


class Poller:
    """Polls one device forever; hands every poll to `submit` and the cache."""

    def __init__(
        self,
        device: DeviceBase,
        driver: AnyDriver,
        submit: Callable[[Batch], None],
        cache: PointCache,
        events: Events,
        stagger_s: float = 0.0,
        watcher: PollWatcher | None = None,
    ) -> None:
        self.device = device
        self._watcher = watcher
        self.driver = driver
        self._submit = submit
        self._cache = cache
        self._events = events
        self._stagger_s = stagger_s
        self.health = DeviceHealth(library_records_suppressed=logs.LIBRARY.suppressed(device.id))
        logs.LIBRARY.watch(device.id, addresses(device))
        cache.configure_device(device.id, stale_after_s=3 * device.poll_interval)

    async def run(self) -> None:
        deadlines = Deadlines(time.monotonic() + self._stagger_s, self.device.poll_interval)
        task = asyncio.current_task()
        try:
            while True:
                await asyncio.sleep(max(0.0, deadlines.next - time.monotonic()))
                await self.poll_once()
                if task is not None and task.cancelling():
                    # Python 3.11's wait_for (inside pymodbus) can swallow a cancel that lands
                    # together with an answer; honour it here so that shutdown never hangs.
                    raise asyncio.CancelledError
                skipped = deadlines.advance(time.monotonic(), self._backoff_slots())
                if skipped:
                    self.health.skipped_slots += skipped
                    log.warning("poll slots skipped", device=self.device.id, skipped=skipped)
        finally:
            logs.LIBRARY.summarise(self.device.id)  # what the libraries said meanwhile

    async def poll_once(self) -> Batch:
        device = self.device
        ts = wall_ms()
        started = time.monotonic()
        # The libraries' log records of a poll that fails are counted, not written: the
        # device_down event (once) says what they would say at every poll.
        with logs.LIBRARY.polling(device.id) as poll:
            try:
                async with asyncio.timeout(HUNG_READ_INTERVALS * device.poll_interval):
                    readings = await self.driver.read(device.points)
                failure = None
            except DeviceUnavailable as exc:
                failure = exc.reason
            except TimeoutError:
                failure = "timeout"
            except Exception as exc:
                failure = f"driver error: {type(exc).__name__}: {exc}"
                if self.health.up:
                    log.exception("driver failed", device=device.id)
            poll.failed = failure is not None
        self.health.last_rtt_s = time.monotonic() - started
        if failure is not None:
            readings = [Reading.bad(p.id, failure, ts) for p in device.points]
        # The batch carries the readings' source timestamp (drivers stamp one read with one
        # time), so only exceptions such as stale values need their own `ts` in the payload.
        batch = Batch(device.id, readings[0].ts if readings else ts, tuple(readings))
        self._record_health(failure, readings, ts)
        self._cache.update(device.id, batch.readings)
        self._submit(batch)
        if self._watcher is not None:
            self._watcher.observe(device.id, batch.readings, ts)
        return batch

    def _record_health(self, failure: str | None, readings: list[Reading], ts: int) -> None:
        health = self.health
        health.polls += 1
        health.bad_points = sum(r.quality is Quality.BAD for r in readings)
        if failure is None:
            health.last_good_ts = ts
            if not health.up:
                down_for = time.monotonic() - (health.down_since_mono or time.monotonic())
                self._events.emit(
                    "device_recovered", device=self.device.id, down_for_s=round(down_for, 1)
                )
                if self._watcher is not None:
                    self._watcher.device_recovered(self.device.id, ts)
            health.up, health.consecutive_failures, health.down_since_mono = True, 0, None
            return
        health.failures += 1
        health.consecutive_failures += 1
        health.last_error = failure
        if health.up:
            health.up, health.down_since_mono = False, time.monotonic()
            self._events.emit("device_down", level="warning", device=self.device.id, reason=failure)
            if self._watcher is not None:
                self._watcher.device_down(self.device.id, failure, ts)

    def _backoff_slots(self) -> int:
        """1 while healthy; doubles per consecutive failure, capped at MAX_BACKOFF_S."""
        failures = self.health.consecutive_failures
        if failures <= 1:
            return 1
        cap = max(1, int(MAX_BACKOFF_S // self.device.poll_interval))
        return min(2 ** (failures - 1), cap)


def addresses(device: DeviceBase) -> list[str]:
    """How a library's messages may name the device's endpoint: `host:port` and Python's
    `('host', port)` for TCP, the serial port, a BACnet address."""
    connection = getattr(device, "connection", None)
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return [f"{host}:{port}", f"('{host}', {port})"]
    if isinstance(port, str):
        return [port]
    address = getattr(connection, "address", None)
    if isinstance(address, str):
        host, _, number = address.partition(":")
        return [address, f"('{host}', {number})"] if number.isdigit() else [address]
    return []


class ClockWatch:
    """Detects wall-clock jumps (NTP steps, an RTC reset after a power cut).

    Scheduling never uses the wall clock and streams are ordered by sequence numbers, so a
    jump cannot reorder data; it only needs to be known, because timestamps jump with it.
    """

    def __init__(self, events: Events, threshold_s: float = 2.0, period_s: float = 1.0) -> None:
        self._events = events
        self._threshold = threshold_s
        self._period = period_s

    @staticmethod
    def offset() -> float:
        return time.time() - time.monotonic()

    async def run(self) -> None:
        reference = self.offset()
        while True:
            await asyncio.sleep(self._period)
            now = self.offset()
            if abs(now - reference) > self._threshold:
                self._events.emit("clock_jump", level="warning", jump_s=round(now - reference, 3))
            reference = now
