"""The latest reading of every point, read by loops, alarms and the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_agent.points import Quality, Reading


@dataclass(slots=True)
class Entry:
    reading: Reading
    received: float  # monotonic time the reading arrived
    last_good: Reading | None


class PointCache:
    """Latest value per `device.point`. A good value older than its device's stale limit is
    reported as STALE with its original source timestamp (never re-stamped as fresh)."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._stale_after: dict[str, float] = {}

    def configure_device(self, device: str, stale_after_s: float) -> None:
        self._stale_after[device] = stale_after_s

    def forget(self, device: str, keep: frozenset[str] = frozenset()) -> None:
        """Drop `device`'s points but those in `keep` (none: the device is gone). The cache
        outlives a reload, so what is no longer configured must leave it."""
        prefix = f"{device}."
        for ref in [r for r in self._entries if r.startswith(prefix)]:
            if ref[len(prefix) :] not in keep:
                del self._entries[ref]
        if not keep:
            self._stale_after.pop(device, None)

    def update(self, device: str, readings: tuple[Reading, ...] | list[Reading]) -> None:
        now = time.monotonic()
        entries = self._entries
        for reading in readings:
            key = f"{device}.{reading.point}"
            previous = entries.get(key)
            last_good = (
                reading
                if reading.quality is Quality.GOOD
                else (previous.last_good if previous else None)
            )
            entries[key] = Entry(reading, now, last_good)

    def get(self, ref: str) -> Reading | None:
        entry = self._entries.get(ref)
        if entry is None:
            return None
        return self._judge(ref, entry, time.monotonic())

    def last_good(self, ref: str) -> Reading | None:
        entry = self._entries.get(ref)
        return entry.last_good if entry else None

    def snapshot(self, device: str | None = None) -> dict[str, Reading]:
        now = time.monotonic()
        prefix = f"{device}." if device else ""
        return {
            ref: self._judge(ref, entry, now)
            for ref, entry in self._entries.items()
            if ref.startswith(prefix)
        }

    def _judge(self, ref: str, entry: Entry, now: float) -> Reading:
        reading = entry.reading
        limit = self._stale_after.get(ref.partition(".")[0])
        if reading.quality is Quality.GOOD and limit is not None and now - entry.received > limit:
            return reading._replace(quality=Quality.STALE, reason="not refreshed")
        return reading
