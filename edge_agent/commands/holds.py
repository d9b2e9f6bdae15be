"""Who holds each writable point: a software priority array, one slot per source.

The value on the device is the value of the highest-precedence hold (lowest `Source`).
A lower-precedence source cannot write while a higher one holds the point; when a hold
ends, the next one's value is written back (or the point is given back to the device).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edge_agent.commands.messages import Source
from edge_agent.points import Value


@dataclass(frozen=True, slots=True)
class Hold:
    point: str  # "device.point"
    source: Source
    value: Value
    priority: int | None  # BACnet priority it was written at (None: not BACnet)
    command_id: str
    since_ms: int
    until_ms: int | None  # None: until released
    by: str | None = None  # who: a unix user, the platform, a loop id

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "source": self.source.label}


class Holds:
    def __init__(self, holds: list[Hold] | None = None) -> None:
        self._by_point: dict[str, dict[Source, Hold]] = {}
        for hold in holds or ():
            self.put(hold)

    def put(self, hold: Hold) -> None:
        self._by_point.setdefault(hold.point, {})[hold.source] = hold

    def remove(self, point: str, source: Source) -> Hold | None:
        slots = self._by_point.get(point, {})
        hold = slots.pop(source, None)
        if not slots:
            self._by_point.pop(point, None)
        return hold

    def get(self, point: str, source: Source) -> Hold | None:
        return self._by_point.get(point, {}).get(source)

    def winner(self, point: str) -> Hold | None:
        slots = self._by_point.get(point)
        return slots[min(slots)] if slots else None

    def beneath(self, point: str, source: Source) -> Hold | None:
        """The hold that takes over when `source`'s ends."""
        below = [s for s in self._by_point.get(point, {}) if s > source]
        return self._by_point[point][min(below)] if below else None

    def blocker(self, point: str, source: Source) -> Hold | None:
        """The hold that keeps `source` from writing `point`, if any."""
        winner = self.winner(point)
        return winner if winner is not None and winner.source < source else None

    def expired(self, now_ms: int) -> list[Hold]:
        return [
            hold
            for slots in self._by_point.values()
            for hold in slots.values()
            if hold.until_ms is not None and hold.until_ms <= now_ms
        ]

    def all(self) -> list[Hold]:
        return [hold for slots in self._by_point.values() for hold in slots.values()]
