"""The `energy` message: each closed 15-minute interval's energy, published through the
outbox like an event (docs/mqtt-api.md, "Energy"; docs/energy-accounting.md).

Every minute the publisher looks at the last day of 15-minute intervals that have closed
(their end plus `SETTLE_MS`; at a new installation from its first readings on): an
interval not yet published goes out; one published
before whose figures changed since — a reading that came late, after an outage, turns a
`missing` interval into an `estimated` one — goes out again with `revision` one higher.
What was published is kept in a small JSON file beside the store, so a restart neither
repeats nor skips an interval. A tree node over its allowed loss is an
`energy_balance_exceeded` event, once per interval.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent import envelope, logs
from edge_agent.energy.config import Energy
from edge_agent.energy.report import Line, Report, build
from edge_agent.events import EventSink
from edge_agent.points import wall_ms
from edge_agent.store.history import HistoryReader

log = logs.get("energy")

QUARTER_MS = 900_000
SETTLE_MS = 60_000  # an interval is published this long after its end (late polls)
WINDOW_MS = 86_400_000  # intervals this far back are watched for late data
LOOK_S = 60.0

Submit = Callable[[int, bytes], None]  # (ts, the message) into the outbox's "energy" stream


class EnergyPublisher:
    def __init__(
        self,
        config: Energy,
        store_path: Path,
        submit: Submit,
        identity: envelope.Identity,
        events: EventSink,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.config = config
        self.store_path = Path(store_path)
        self.state_path = self.store_path.parent / "energy.json"
        self._submit = submit
        self._identity = identity
        self._events = events
        self._clock = clock
        # interval start -> [revision, what was published (JSON), all of it measured]
        self._published: dict[int, list[Any]] = self._load()

    async def run(self) -> None:
        while True:
            try:
                await self.publish_due()
            except Exception as exc:  # an unreadable store must not end the agent
                log.warning("energy not published", error=str(exc))
            await asyncio.sleep(LOOK_S)

    async def publish_due(self) -> int:
        """Publish what is due now; how many messages went out."""
        now = self._clock()
        closed = (now - SETTLE_MS) // QUARTER_MS * QUARTER_MS
        start = closed - WINDOW_MS
        first = self._first_unsettled(start)
        if first >= closed:
            return 0
        report, oldest = await asyncio.to_thread(self._report, first, closed)
        fresh = not self._published  # a new installation: from its first readings on
        sent = 0
        for index in range(len(report.edges) - 1):
            at, end = report.edges[index], report.edges[index + 1]
            if fresh and (oldest is None or at < oldest):
                continue
            body = _interval(report, index)
            fingerprint = json.dumps(body, sort_keys=True)
            known = self._published.get(at)
            if known is not None and known[1] == fingerprint:
                continue
            revision = 0 if known is None else known[0] + 1
            message = envelope.message(
                "energy", self._identity, now, period="15min", start=at, end=end,
                revision=revision, **body,
            )  # fmt: skip
            self._submit(now, envelope.encode(message))
            if known is None:
                for parent, loss in body["balance"].items():
                    if loss["exceeded"]:
                        self._events.emit(
                            "energy_balance_exceeded", level="warning", parent=parent,
                            start=at, loss_pct=loss["loss_pct"],
                        )  # fmt: skip
            settled = all(m["quality"] == "measured" for m in body["meters"].values())
            self._published[at] = [revision, fingerprint, settled]
            sent += 1
        self._published = {k: v for k, v in self._published.items() if k >= start}
        self._save()
        return sent

    def _first_unsettled(self, window_start: int) -> int:
        """The oldest interval of the window that may still change: published missing or
        estimated, or not published at all (the first after the newest published)."""
        open_ones = [
            at for at, (_revision, _fingerprint, settled) in self._published.items()
            if at >= window_start and not settled
        ]  # fmt: skip
        newest = max(self._published, default=None)
        after = window_start if newest is None else max(newest + QUARTER_MS, window_start)
        return min([*open_ones, after])

    def _report(self, start: int, end: int) -> tuple[Report, int | None]:
        """The report of [start, end), and the time of the oldest reading it read."""
        refs = [meter.point for meter in self.config.meters]
        samples: dict[str, list[Any]] = {ref: [] for ref in refs}
        with HistoryReader(self.store_path) as history:
            around = history.readings(start - 3_600_000, end + 3_600_000, refs)
            for ref, ts, value, quality in around:
                samples[ref].append((ts, value, quality))
        oldest = min((points[0][0] for points in samples.values() if points), default=None)
        report = build(self.config, samples, "15min", start, end, self.config.tz_offset_ms)
        return report, oldest

    def _load(self) -> dict[int, list[Any]]:
        try:
            raw = json.loads(self.state_path.read_text())
            return {int(k): v for k, v in raw.items()}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._published))
        os.replace(temporary, self.state_path)


def _interval(report: Report, index: int) -> dict[str, Any]:
    """The figures of one interval of the report: meters, categories, coal, balance."""

    def figures(lines: list[Line]) -> dict[str, Any]:
        return {
            line.id: {
                "energy": line.intervals[index].energy,
                "unit": line.unit,
                "quality": line.intervals[index].quality.value,
                **({"flags": sorted(f.value for f in line.intervals[index].flags)}
                   if line.intervals[index].flags else {}),
            }
            for line in lines
        }  # fmt: skip

    return {
        "meters": figures(report.meters),
        "categories": figures(report.categories),
        "balance": {
            parent: {"loss_pct": items[index].loss_pct, "exceeded": items[index].exceeded}
            for parent, items in report.balances.items()
        },
    }
