"""Readings and poll batches: what drivers produce and what the outbox stores.

A *stream* is one device's poll results. Each poll becomes one `Batch` (one outbox row,
one MQTT message). The outbox gives every committed batch the next sequence number of
its stream, so a gap in `seq` seen by the platform always means lost or evicted data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

Value = float | int | bool | str | None


class Quality(StrEnum):
    GOOD = "good"
    BAD = "bad"  # with a reason: timeout, exception code, decode error, device down...
    STALE = "stale"  # a value that has not been refreshed; keeps its original timestamp
    OVERRIDDEN = "overridden"  # forced by a manual override, not measured

    @property
    def sparkplug(self) -> int:
        """Sparkplug B quality code (192 good, 0 bad, 500 stale)."""
        return _SPARKPLUG[self]


# An override is a deliberate, valid value (OPC UA calls it Good_LocalOverride), so it maps
# to "good"; the `status` field of the payload still tells it apart from a measurement.
_SPARKPLUG = {Quality.GOOD: 192, Quality.BAD: 0, Quality.STALE: 500, Quality.OVERRIDDEN: 192}


def wall_ms() -> int:
    """Wall-clock time in integer milliseconds since the epoch (source timestamps)."""
    return time.time_ns() // 1_000_000


class Reading(NamedTuple):
    """The value of one point at one moment, as read from the field.

    A NamedTuple, not a frozen dataclass: equally immutable, and about four times cheaper
    to build — every point of every poll makes one, on the hottest path of the agent.
    """

    point: str  # point id, unique within its device
    value: Value
    ts: int  # source timestamp, wall-clock ms; never re-stamped when the value goes stale
    quality: Quality = Quality.GOOD
    reason: str | None = None  # why the quality is not good ("timeout", "exception 2", ...)

    @classmethod
    def bad(cls, point: str, reason: str, ts: int) -> Reading:
        return cls(point, None, ts, Quality.BAD, reason)


@dataclass(frozen=True, slots=True)
class Batch:
    """One device poll: the unit of storage and of publication."""

    stream: str  # device id
    ts: int  # wall-clock ms at the start of the poll
    readings: tuple[Reading, ...]
