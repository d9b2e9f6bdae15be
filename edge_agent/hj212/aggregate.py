"""The minute, hourly and daily records of one monitored factor (HJ 212 data of the kinds
2051, 2061 and 2031), from polled samples and from shorter records.

HJ 356-2019's rules as we assume them: we could not get the standard's text, so every rule
is a parameter whose default is written down and argued in docs/hj212-aggregates.md. Pure
functions: no clock, no I/O; the reporter decides the periods and hands in the data.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Literal, get_args

from edge_agent.hj212.flags import DataFlag

CouRule = Literal["none", "volume", "load"]
Weighting = Literal["arithmetic", "flow"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CHINA_TZ_OFFSET_MS = 8 * HOUR_MS  # HJ 212 DataTime is local time; China: UTC+8, no DST

# Assumed defaults (docs/hj212-aggregates.md): a minute record needs 75 % of its polls, an
# hour 75 % of its minute records (the caller turns that into a count: required_count),
# a day 20 of its 24 hours (the HJ 75 rule for flue gas, assumed for water too).
MINUTE_MIN_VALID_FRACTION = 0.75
HOUR_MIN_VALID_FRACTION = 0.75
DAY_MIN_VALID_HOURS = 20

# Breaks a tie between equally common flags of an invalid period: the flag that says most
# about why the data is missing comes first (an instrument fault before a lost link).
SEVERITY = (
    DataFlag.D,
    DataFlag.C,
    DataFlag.M,
    DataFlag.F,
    DataFlag.T,
    DataFlag.S,
    DataFlag.B,
)

_KG_PER_G = 1e-3


@dataclass(frozen=True, slots=True)
class Sample:
    """One polled value with its flag (edge_agent.hj212.flags.flag_of)."""

    ts_ms: int
    value: float | None
    flag: DataFlag

    def __post_init__(self) -> None:
        if self.flag is DataFlag.N and (self.value is None or not math.isfinite(self.value)):
            raise ValueError(f"a sample flagged N needs a finite value, not {self.value!r}")

    @property
    def valid(self) -> bool:
        """Only a normal measurement counts; S (a manual value) is reported, never valid."""
        return self.flag is DataFlag.N


@dataclass(frozen=True, slots=True)
class Record:
    """One period of one factor: what the bureau receives as Min, Avg, Max, Cou and Flag."""

    code: str
    start_ms: int
    end_ms: int
    min: float | None
    avg: float | None
    max: float | None
    cou: float | None
    flag: DataFlag
    valid: bool
    valid_count: int
    expected_count: int


def required_count(fraction: float, expected_count: int) -> int:
    """ceil(fraction * expected_count), at least 1: how many valid parts make a period valid.

    The fraction is taken as the decimal it is written as (0.75 is 3/4), so that a float's
    binary rounding never moves the threshold by one.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"a valid fraction lies in (0, 1], not {fraction}")
    if expected_count < 1:
        raise ValueError(f"expected count {expected_count}: at least 1")
    return max(1, math.ceil(Fraction(repr(fraction)) * expected_count))


def period_from_samples(
    code: str,
    samples: Iterable[Sample],
    start_ms: int,
    end_ms: int,
    *,
    expected_count: int,
    min_valid_fraction: float = MINUTE_MIN_VALID_FRACTION,
    flow: Sequence[Sample] | None = None,
    cou: CouRule,
    weighting: Weighting,
) -> Record:
    """The minute record of [start_ms, end_ms) from the samples polled in it.

    Samples outside the period are ignored (the caller may pass a longer series). Valid
    samples are those flagged N. The record is valid with at least
    required_count(min_valid_fraction, expected_count) of them. Min, Avg and Max describe
    the valid samples even when the record is not valid (None when there are none).

    weighting "flow": Avg = sum(C*Q)/sum(Q), Q the flow that stands at each sample's time
    (see _FlowAt); the samples without a flow are left out of it; the plain mean when no
    sample has one or the flows add up to zero or less.
    cou "volume" (the samples are a flow in m3/h): m3 in the period; "load" (the samples are
    a concentration in mg/L): kg in the period, with the flow. Each sample stands for its
    share of time (_held_ms); only valid samples add to it; None when none does.
    `flow` is needed for (and only used by) weighting "flow" and cou "load".
    """
    _check_period(start_ms, end_ms)
    _check_choice("cou", cou, CouRule)
    _check_choice("weighting", weighting, Weighting)
    need = required_count(min_valid_fraction, expected_count)  # (checks both)
    if flow is None and (weighting == "flow" or cou == "load"):
        raise ValueError(f"{code}: weighting {weighting!r} and cou {cou!r} need the flow")
    inside = _in_time_order([s for s in samples if start_ms <= s.ts_ms < end_ms], code)
    nominal_ms = (end_ms - start_ms) / expected_count
    held = _held_ms(inside, start_ms, end_ms, nominal_ms)
    valid = [
        (s.ts_ms, s.value, ms)
        for s, ms in zip(inside, held, strict=True)
        if s.valid and s.value is not None  # (an N sample always has one)
    ]
    values = [value for _, value, _ in valid]

    flow_at = None if flow is None else _FlowAt(_in_time_order(flow, f"{code} flow"), nominal_ms)
    with_flow = [
        (value, q, ms)
        for ts, value, ms in valid
        if flow_at is not None and (q := flow_at(ts)) is not None
    ]
    avg = _mean(values)
    if weighting == "flow":
        avg = _weighted([(c, q) for c, q, _ in with_flow], fallback=avg)

    total: float | None = None
    if cou == "volume" and values:
        total = sum(value * ms / HOUR_MS for _, value, ms in valid)
    elif cou == "load" and with_flow:
        total = sum(c * q * ms / HOUR_MS for c, q, ms in with_flow) * _KG_PER_G

    is_valid = len(values) >= need
    return Record(
        code=code,
        start_ms=start_ms,
        end_ms=end_ms,
        min=min(values) if values else None,
        avg=avg,
        max=max(values) if values else None,
        cou=total,
        flag=period_flag(is_valid, [s.flag for s in inside]),
        valid=is_valid,
        valid_count=len(values),
        expected_count=expected_count,
    )


def roll_up(
    code: str,
    records: Iterable[Record],
    start_ms: int,
    end_ms: int,
    *,
    expected_count: int,
    min_valid_count: int,
    weighting: Weighting,
    flow_records: Iterable[Record] | None = None,
) -> Record:
    """The hourly record from minute records, or the daily one from hourly records.

    Records not wholly inside [start_ms, end_ms) are ignored. Valid with at least
    min_valid_count valid records (the caller's choice: for an hour
    required_count(HOUR_MIN_VALID_FRACTION, records per hour), for a day
    DAY_MIN_VALID_HOURS). Min and Max: the extremes of the valid records; Avg: the mean of
    their Avgs, or with weighting "flow" weighted by the Cou (the volume) of the flow record
    of the same period (the records without one left out; the plain mean when none has
    one or the volumes add up to zero or less). Cou: the sum over all records that have
    one, valid or not (what was discharged was discharged); None when none has.
    """
    _check_period(start_ms, end_ms)
    _check_choice("weighting", weighting, Weighting)
    if expected_count < 1 or not 1 <= min_valid_count <= expected_count:
        raise ValueError(
            f"{code}: min valid count {min_valid_count} of {expected_count}: 1 to the count"
        )
    if weighting == "flow" and flow_records is None:
        raise ValueError(f"{code}: weighting 'flow' needs the flow records")
    inside = [r for r in records if start_ms <= r.start_ms and r.end_ms <= end_ms]
    if any(r.code != code for r in inside):
        raise ValueError(f"{code}: records of {sorted({r.code for r in inside} - {code})}")
    _distinct_starts(inside, code)
    valid = [r for r in inside if r.valid]
    avgs = [r.avg for r in valid if r.avg is not None]
    avg = _mean(avgs)
    if weighting == "flow" and flow_records is not None:
        volumes = {(f.start_ms, f.end_ms): f.cou for f in _distinct_starts(flow_records, code)}
        pairs = [
            (r.avg, volume)
            for r in valid
            if r.avg is not None and (volume := volumes.get((r.start_ms, r.end_ms))) is not None
        ]
        avg = _weighted(pairs, fallback=avg)
    mins = [r.min for r in valid if r.min is not None]
    maxes = [r.max for r in valid if r.max is not None]
    cous = [r.cou for r in inside if r.cou is not None]
    is_valid = len(valid) >= min_valid_count
    return Record(
        code=code,
        start_ms=start_ms,
        end_ms=end_ms,
        min=min(mins) if mins else None,
        avg=avg,
        max=max(maxes) if maxes else None,
        cou=sum(cous) if cous else None,
        flag=period_flag(is_valid, [r.flag for r in inside]),
        valid=is_valid,
        valid_count=len(valid),
        expected_count=expected_count,
    )


def period_flag(valid: bool, flags: Iterable[DataFlag]) -> DataFlag:
    """N for a valid period; else its most common flag other than N, ties broken by
    SEVERITY; B when there is none (the missing parts were never received)."""
    if valid:
        return DataFlag.N
    counts = Counter(flag for flag in flags if flag is not DataFlag.N)
    if not counts:
        return DataFlag.B
    return max(counts, key=lambda flag: (counts[flag], -SEVERITY.index(flag)))


def period_starts(since_ms: int, until_ms: int, length_ms: int, tz_offset_ms: int) -> list[int]:
    """The starts of the whole periods of length_ms inside [since_ms, until_ms), aligned on
    local time (a day starts at local midnight): the periods that have ended by until_ms."""
    if length_ms <= 0:
        raise ValueError(f"period length {length_ms} ms: must be positive")
    first = -(-(since_ms + tz_offset_ms) // length_ms) * length_ms - tz_offset_ms
    return list(range(first, until_ms - length_ms + 1, length_ms))


_EPOCH = datetime(1970, 1, 1)  # naive on purpose: the local time is the offset added to it


def data_time(start_ms: int, tz_offset_ms: int) -> str:
    """HJ 212's DataTime "YYYYMMDDhhmmss" of an instant, in local time (ms dropped)."""
    return (_EPOCH + timedelta(milliseconds=start_ms + tz_offset_ms)).strftime("%Y%m%d%H%M%S")


class _FlowAt:
    """The flow that stands at an instant: the latest flow sample at or before it, if that
    sample is valid and not older than twice the flow's median spacing (a flow sample
    stands for the time until the next, at most that long: the model of _held_ms)."""

    def __init__(self, flow: list[Sample], nominal_ms: float) -> None:
        self._ts = [s.ts_ms for s in flow]
        self._flow = flow
        self._cap_ms = 2 * _spacing_ms(flow, nominal_ms)

    def __call__(self, ts_ms: int) -> float | None:
        i = bisect.bisect_right(self._ts, ts_ms) - 1
        if i < 0 or ts_ms - self._ts[i] >= self._cap_ms or not self._flow[i].valid:
            return None
        return self._flow[i].value


def _held_ms(samples: list[Sample], start_ms: int, end_ms: int, nominal_ms: float) -> list[float]:
    """The time each sample (in time order) stands for: until the next sample, the last one
    until the end of the period, the first one also from its start; each stretch at most
    twice the median spacing, so that a gap in the data adds nothing (nominal_ms, the period
    over the expected count, stands in for the spacing when there are fewer than two)."""
    cap = 2 * _spacing_ms(samples, nominal_ms)
    held = []
    for i, sample in enumerate(samples):
        following = samples[i + 1].ts_ms if i + 1 < len(samples) else end_ms
        ms = min(following - sample.ts_ms, cap)
        if i == 0:
            ms += min(sample.ts_ms - start_ms, cap)
        held.append(ms)
    return held


def _spacing_ms(samples: list[Sample], nominal_ms: float) -> float:
    if len(samples) < 2:
        return nominal_ms
    return statistics.median(b.ts_ms - a.ts_ms for a, b in pairwise(samples))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _weighted(pairs: list[tuple[float, float]], fallback: float | None) -> float | None:
    weight = sum(w for _, w in pairs)
    if not pairs or weight <= 0:
        return fallback
    return sum(v * w for v, w in pairs) / weight


def _in_time_order(samples: Iterable[Sample], what: str) -> list[Sample]:
    ordered = sorted(samples, key=lambda s: s.ts_ms)
    if any(a.ts_ms == b.ts_ms for a, b in pairwise(ordered)):
        raise ValueError(f"{what}: two samples at one instant")
    return ordered


def _distinct_starts(records: Iterable[Record], what: str) -> list[Record]:
    listed = list(records)
    if len({r.start_ms for r in listed}) != len(listed):
        raise ValueError(f"{what}: two records of one period")
    return listed


def _check_period(start_ms: int, end_ms: int) -> None:
    if end_ms <= start_ms:
        raise ValueError(f"period [{start_ms}, {end_ms}): the end must follow the start")


def _check_choice(name: str, chosen: str, choices: object) -> None:
    if chosen not in get_args(choices):
        raise ValueError(f"{name} {chosen!r}: one of {get_args(choices)}")
