"""Interval energy from a meter's cumulative register (docs/energy-accounting.md, "Counters").

Pure: a history of readings in, one figure per aligned interval out. Nothing is kept
between calls, so a history that grew after an outage (late data) simply gives the
corrected figures when computed again.

The rules, in short:
- only good readings with a finite value count; of two at one time, the first;
- between two consecutive readings is a *step*; its energy is the register's rise times
  the meter's factor (CT x PT x multiplier), spread over the step pro rata to time (the
  register interpolated linearly);
- a drop is a *rollover* when the register has a `rollover` (its maximum) and the wrapped
  rise, `rollover - before + after`, is under a tenth of it; any other drop is a *reset*
  (a reset or replaced meter): the new value is the new baseline, and the step's energy is
  estimated from the rate of the nearest step before it (else after it) that was counted;
- an interval is `measured` when steps no longer than `max_gap` cover it, `estimated`
  when a longer step (a gap filled by the interpolation) or a reset's estimate is part of
  it, and `missing` when any part of it has no step around it (before the first reading,
  after the last, or a reset with nothing to estimate it from): its energy is None,
  never zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from edge_agent.points import Quality

Period = Literal["15min", "hour", "day", "month"]
PERIODS: tuple[Period, ...] = ("15min", "hour", "day", "month")
_FIXED_MS = {"15min": 900_000, "hour": 3_600_000, "day": 86_400_000}
# A wrapped rise this large a part of the register is no rollover but a reset.
ROLLOVER_PLAUSIBLE = 0.1
# ... and one whose pace is more than this many times the meter's own (the nearest rising
# steps before and after the drop) is no rollover either.
RATE_PLAUSIBLE = 10.0


class EnergyQuality(StrEnum):
    """In order of worth: an interval takes the worst of what it is made of."""

    MEASURED = "measured"
    ESTIMATED = "estimated"
    MISSING = "missing"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {EnergyQuality.MEASURED: 0, EnergyQuality.ESTIMATED: 1, EnergyQuality.MISSING: 2}


def worst(qualities: Iterable[EnergyQuality]) -> EnergyQuality:
    return max(qualities, key=lambda q: q.rank, default=EnergyQuality.MEASURED)


class Flag(StrEnum):
    ROLLOVER = "rollover"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class Register:
    """How to read one meter's register (from the `energy.meters` entry)."""

    factor: float = 1.0  # CT ratio x PT ratio x multiplier
    rollover: float | None = None  # the register's maximum; None: it never wraps
    max_gap_ms: int = 300_000  # a longer step between readings is a gap (estimated)


@dataclass(frozen=True, slots=True)
class Interval:
    start: int  # ms, inclusive
    end: int  # ms, exclusive
    energy: float | None  # in the meter's unit; None exactly when missing
    quality: EnergyQuality
    flags: frozenset[Flag] = frozenset()


@dataclass(frozen=True, slots=True)
class _Step:
    start: int
    end: int
    energy: float | None  # None: unknown (a reset not yet estimated, or not estimable)
    estimated: bool
    flag: Flag | None


Sample = tuple[int, object, Quality | str]  # (ts ms, value, quality) as the store keeps them


def good_samples(samples: Iterable[Sample]) -> list[tuple[int, float]]:
    """The readings that count, in time order: good, numeric, finite; one per time."""
    kept: dict[int, float] = {}
    for ts, value, quality in samples:
        if quality != Quality.GOOD or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value) and ts not in kept:
            kept[ts] = float(value)
    return sorted(kept.items())


def _steps(points: Sequence[tuple[int, float]], register: Register) -> list[_Step]:
    pairs = list(pairwise(points))
    rising = [(v1 - v0) / (t1 - t0) if v1 >= v0 else None for (t0, v0), (t1, v1) in pairs]
    before, after = _nearest(rising), _nearest(rising[::-1])[::-1]
    steps: list[_Step] = []
    for index, ((t0, v0), (t1, v1)) in enumerate(pairs):
        estimated = t1 - t0 > register.max_gap_ms
        if v1 >= v0:
            steps.append(_Step(t0, t1, (v1 - v0) * register.factor, estimated, None))
            continue
        limit = register.rollover
        wrapped = None if limit is None else limit - v0 + v1
        if wrapped is not None and limit is not None and 0 <= wrapped < ROLLOVER_PLAUSIBLE * limit:
            # A wrap at the meter's own pace, not a jump: a reset near the top of the
            # register looks like a rollover by size alone.
            rates = [r for r in (before[index], after[index]) if r is not None]
            if not rates or wrapped / (t1 - t0) <= RATE_PLAUSIBLE * max(rates):
                steps.append(_Step(t0, t1, wrapped * register.factor, estimated, Flag.ROLLOVER))
                continue
        steps.append(_Step(t0, t1, None, True, Flag.RESET))
    return _fill_resets(steps)


def _nearest(rates: list[float | None]) -> list[float | None]:
    """For each position, the last rate before it that is known (None: none yet)."""
    out: list[float | None] = []
    last: float | None = None
    for rate in rates:
        out.append(last)
        if rate is not None:
            last = rate
    return out


def _fill_resets(steps: list[_Step]) -> list[_Step]:
    """A reset's step gets the rate of the nearest counted step before it, else after it."""
    before: list[float | None] = []
    rate: float | None = None
    for step in steps:
        before.append(rate)
        if step.energy is not None:
            rate = step.energy / (step.end - step.start)
    after: list[float | None] = [None] * len(steps)
    rate = None
    for index in range(len(steps) - 1, -1, -1):
        after[index] = rate
        known = steps[index].energy
        if known is not None:
            rate = known / (steps[index].end - steps[index].start)
    filled = []
    for index, step in enumerate(steps):
        if step.flag is Flag.RESET:
            nearest = before[index] if before[index] is not None else after[index]
            energy = None if nearest is None else nearest * (step.end - step.start)
            step = _Step(step.start, step.end, energy, True, Flag.RESET)
        filled.append(step)
    return filled


def boundaries(period: Period, start: int, end: int, tz_offset_ms: int) -> list[int]:
    """The edges (ms) of the aligned intervals that meet [start, end): local time at a fixed
    offset (China keeps +08:00 all year), months by the calendar."""
    if end <= start:
        return []
    if period != "month":
        size = _FIXED_MS[period]
        first = (start + tz_offset_ms) // size * size - tz_offset_ms
        last = -((-(end + tz_offset_ms)) // size) * size - tz_offset_ms
        return list(range(first, last + 1, size))
    zone = timedelta(milliseconds=tz_offset_ms)
    local = datetime.fromtimestamp(start / 1000, UTC) + zone
    year, month = local.year, local.month
    edges = []
    while True:
        edge = datetime(year, month, 1, tzinfo=UTC) - zone
        ms = int(edge.timestamp()) * 1000
        edges.append(ms)
        if ms >= end:
            return edges
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def interval_energy(
    samples: Iterable[Sample],
    register: Register,
    period: Period,
    start: int,
    end: int,
    tz_offset_ms: int = 8 * 3_600_000,
) -> list[Interval]:
    """The energy of each aligned interval of `period` that meets [start, end)."""
    edges = boundaries(period, start, end, tz_offset_ms)
    return energy_between(samples, register, edges)


def energy_between(
    samples: Iterable[Sample], register: Register, edges: Sequence[int]
) -> list[Interval]:
    """The energy between each two consecutive `edges` (ms, increasing)."""
    points = good_samples(samples)
    steps = _steps(points, register)
    count = max(len(edges) - 1, 0)
    energy = [0.0] * count
    quality = [EnergyQuality.MEASURED] * count
    flags: list[set[Flag]] = [set() for _ in range(count)]
    first = points[0][0] if points else None
    last = points[-1][0] if points else None
    for index in range(count):
        if first is None or last is None or edges[index] < first or edges[index + 1] > last:
            quality[index] = EnergyQuality.MISSING
    k = 0
    for step in steps:
        while k < count and edges[k + 1] <= step.start:
            k += 1
        j = k
        while j < count and edges[j] < step.end:
            overlap = min(step.end, edges[j + 1]) - max(step.start, edges[j])
            if overlap > 0:
                if step.flag is not None:
                    flags[j].add(step.flag)
                if step.energy is None:
                    quality[j] = EnergyQuality.MISSING
                else:
                    energy[j] += step.energy * overlap / (step.end - step.start)
                    if step.estimated and quality[j] is EnergyQuality.MEASURED:
                        quality[j] = EnergyQuality.ESTIMATED
            j += 1
    return [
        Interval(
            edges[i],
            edges[i + 1],
            None if quality[i] is EnergyQuality.MISSING else energy[i],
            quality[i],
            frozenset(flags[i]),
        )
        for i in range(count)
    ]
