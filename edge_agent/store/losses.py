"""What the outbox lost, and how the loss is announced.

- `StreamGap`: the rows of one stream deleted unsent, as exact seq ranges.
- `Gap`: what one eviction transaction deleted.
- `PendingEvictions`: announcements not yet published, coalesced per (reason, disk_full,
  class, stream) in the `evictions` table, which eviction never deletes from. Each eviction
  merges into it in the transaction that deletes the rows, so no crash can separate a loss
  from its announcement; the outbox seals the pending entries into one `data_evicted` event
  per (reason, disk_full) when the uplink can publish it (`Outbox.announce`).
- `Throttle`: a log line at most once per interval, with the totals of what it held back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Never evicted, never sent: the announcements still to be made. One row per key.
EVICTIONS_TABLE = """
CREATE TABLE IF NOT EXISTS evictions (
    reason TEXT NOT NULL,           -- disk_budget or retention
    disk_full INTEGER NOT NULL,     -- 1: the filesystem, not the budget, forced it
    cls INTEGER NOT NULL,           -- traffic class of the deleted rows
    stream INTEGER NOT NULL,        -- streams.id
    ranges TEXT NOT NULL,           -- JSON [[from_seq, to_seq], ...]: exactly the seqs deleted
    from_ts INTEGER NOT NULL,
    to_ts INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    points INTEGER NOT NULL,
    PRIMARY KEY (reason, disk_full, cls, stream)
) WITHOUT ROWID;
"""

Key = tuple[str, bool, int, int]  # reason, disk_full, cls, stream id


def merge_ranges(ranges: Iterable[list[int] | tuple[int, int]]) -> list[list[int]]:
    """Sorted, disjoint, non-adjacent [from, to] ranges covering exactly the same seqs."""
    out: list[list[int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], high)
        else:
            out.append([low, high])
    return out


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Rows of one stream deleted unsent: exactly the seqs in `ranges` (seqs between two
    ranges were delivered, or were in flight, and are not lost)."""

    ranges: list[list[int]]
    from_ts: int
    to_ts: int
    rows: int
    points: int

    @classmethod
    def of(cls, deleted: Iterable[tuple[int, int, int]]) -> StreamGap:
        """From (seq, ts, n_points) of the deleted rows."""
        rows = list(deleted)
        return cls(
            merge_ranges((seq, seq) for seq, _, _ in rows),
            min(ts for _, ts, _ in rows),
            max(ts for _, ts, _ in rows),
            len(rows),
            sum(n for _, _, n in rows),
        )

    @property
    def from_seq(self) -> int:
        return self.ranges[0][0]

    @property
    def to_seq(self) -> int:
        return self.ranges[-1][1]

    def merged(self, other: StreamGap) -> StreamGap:
        return StreamGap(
            merge_ranges(self.ranges + other.ranges),
            min(self.from_ts, other.from_ts),
            max(self.to_ts, other.to_ts),
            self.rows + other.rows,
            self.points + other.points,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"from_seq": self.from_seq, "to_seq": self.to_seq, "from_ts": self.from_ts,
                "to_ts": self.to_ts, "rows": self.rows, "points": self.points,
                "ranges": self.ranges}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Gap:
    """What one eviction transaction deleted."""

    reason: str  # "disk_budget" or "retention"
    disk_full: bool
    classes: dict[str, dict[str, int]]  # class name -> {"rows", "points"}
    streams: dict[str, StreamGap]  # telemetry, by device
    topics: dict[str, StreamGap]  # other classes, by topic suffix

    @property
    def rows(self) -> int:
        return sum(count["rows"] for count in self.classes.values())

    def summary(self) -> dict[str, object]:
        return {"classes": self.classes, "streams": sorted(self.streams),
                "disk_full": self.disk_full}  # fmt: skip


class PendingEvictions:
    """The announcements still to be made, mirrored in memory (read once at open)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.entries: dict[Key, StreamGap] = {}
        for reason, disk_full, cls, stream, ranges, *rest in db.execute(
            "SELECT reason, disk_full, cls, stream, ranges, from_ts, to_ts, rows, points "
            "FROM evictions"
        ):
            self.entries[(reason, bool(disk_full), cls, stream)] = StreamGap(
                json.loads(ranges), *rest
            )

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def rows(self) -> int:
        return sum(gap.rows for gap in self.entries.values())

    def merge(self, key: Key, gap: StreamGap) -> StreamGap:
        """Write `gap` merged into the entry of `key`, inside the caller's transaction;
        returns the merged entry, for `apply` once the transaction has committed."""
        known = self.entries.get(key)
        merged = gap if known is None else known.merged(gap)
        self._db.execute(
            "INSERT OR REPLACE INTO evictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key[0], int(key[1]), key[2], key[3], json.dumps(merged.ranges),
             merged.from_ts, merged.to_ts, merged.rows, merged.points),
        )  # fmt: skip
        return merged

    def clear(self) -> dict[Key, StreamGap | None]:
        """Delete every entry, inside the caller's transaction (sealed into events)."""
        self._db.execute("DELETE FROM evictions")
        return dict.fromkeys(self.entries)

    def apply(self, changes: dict[Key, StreamGap | None]) -> None:
        for key, gap in changes.items():
            if gap is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = gap

    def bodies(
        self, stream_names: dict[int, str], class_names: dict[int, str]
    ) -> list[dict[str, Any]]:
        """One `data_evicted` body (without v, identity, ts) per (reason, disk_full)."""
        groups: dict[tuple[str, bool], dict[str, Any]] = {}
        for (reason, disk_full, cls, stream), gap in sorted(self.entries.items()):
            body = groups.setdefault(
                (reason, disk_full), {"reason": reason, "classes": {}, "streams": {}}
            )
            count = body["classes"].setdefault(class_names[cls], {"rows": 0, "points": 0})
            count["rows"] += gap.rows
            count["points"] += gap.points
            where = body["streams"] if cls == 0 else body.setdefault("topics", {})
            name = stream_names[stream]
            where[name] = (where[name].merged(gap) if name in where else gap)  # fmt: skip
        for (_reason, disk_full), body in groups.items():
            for part in ("streams", "topics"):
                if part in body:
                    body[part] = {name: g.as_dict() for name, g in body[part].items()}
            if disk_full:
                body["disk_full"] = True
        return list(groups.values())


class Throttle:
    """A repeated log line at most once per `interval` s: the first at once, the later ones
    folded into the next line: `count` says how many it stands for, the fields named in
    `summed` are totals, set fields are unions, the others the latest value."""

    def __init__(
        self, emit: Callable[..., None], message: str, interval: float, summed: Iterable[str]
    ) -> None:
        self._emit, self._message, self._interval = emit, message, interval
        self._summed = frozenset(summed)
        self._due = 0.0
        self._count = 0
        self._fields: dict[str, Any] = {}

    def note(self, **fields: Any) -> None:
        self._count += 1
        for name, value in fields.items():
            known = self._fields.get(name)
            if name in self._summed and known is not None:
                self._fields[name] = known + value
            elif isinstance(value, (set, frozenset)):
                self._fields[name] = (known or set()) | value
            else:
                self._fields[name] = value
        now = time.monotonic()
        if now < self._due:
            return
        shown = {k: sorted(v) if isinstance(v, set) else v for k, v in self._fields.items()}
        self._emit(self._message, count=self._count, **shown)
        self._due, self._count, self._fields = now + self._interval, 0, {}
