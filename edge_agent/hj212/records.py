"""The data the logger uploads, made from the agent's own readings (docs/hj212.md, "Data").

Real-time data (2011) from the latest readings; minute, hourly and daily records (2051,
2061, 2031) from the readings kept in the store's history, through the flags and the
HJ 356 means of `flags` and `aggregate`; run status (2021) from binary points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from edge_agent.hj212.aggregate import (
    Record,
    Sample,
    period_from_samples,
    required_count,
    roll_up,
)
from edge_agent.hj212.codes import POLLUTANTS
from edge_agent.hj212.config import Hj212, Pollutant
from edge_agent.hj212.flags import DataFlag, flag_of
from edge_agent.hj212.frame import format_cp
from edge_agent.points import Batch, Reading, Value

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def decimals(pollutant: Pollutant) -> int:
    if pollutant.decimals is not None:
        return pollutant.decimals
    known = POLLUTANTS.get(pollutant.code)
    return known.decimals if known is not None else 3


def number(value: float, places: int) -> str:
    return f"{value:.{places}f}"


def flag_now(
    pollutant: Pollutant, reading: Reading | None, status: Reading | None
) -> tuple[float | None, DataFlag]:
    """The value (scaled) and flag of a pollutant from its latest readings."""
    if reading is None:
        return None, DataFlag.B
    flag = flag_of(
        reading.quality.value,
        reading.value,
        _status_value(status),
        None if status is None else status.quality.value,
        pollutant.status_map if pollutant.status else {},
        pollutant.range,
    )
    return _scaled(pollutant, reading.value), flag


def realtime_cp(config: Hj212, data_time: str, latest: Mapping[str, Reading | None]) -> str:
    """`DataTime=...;w01018-Rtd=48.2,w01018-Flag=N;...` from the latest readings by ref."""
    groups: list[list[tuple[str, str]]] = [[("DataTime", data_time)]]
    for pollutant in config.pollutants:
        status = latest.get(pollutant.status) if pollutant.status else None
        value, flag = flag_now(pollutant, latest.get(pollutant.point), status)
        group = (
            [] if value is None else [(f"{pollutant.code}-Rtd", number(value, decimals(pollutant)))]
        )
        groups.append([*group, (f"{pollutant.code}-Flag", flag.value)])
    return format_cp(groups)


def run_status_cp(config: Hj212, data_time: str, latest: Mapping[str, Reading | None]) -> str:
    """`DataTime=...;SB1-RS=1;...`: 1 running, 0 stopped; an unreadable state is left out."""
    groups: list[list[tuple[str, str]]] = [[("DataTime", data_time)]]
    for equipment in config.run_status:
        reading = latest.get(equipment.point)
        if reading is not None and reading.quality.value == "good" and reading.value is not None:
            groups.append([(f"{equipment.code}-RS", str(int(bool(reading.value))))])
    return format_cp(groups)


@dataclass(frozen=True, slots=True)
class Series:
    """The samples of every pollutant over a span, flagged, by code."""

    samples: dict[str, list[Sample]]

    @classmethod
    def of(cls, config: Hj212, polls: Iterable[Batch]) -> Series:
        """Flag each reading of a pollutant's point with the status reading of the same poll
        (or the latest one before it, when the status is another device's)."""
        by_point: dict[str, list[Pollutant]] = {}
        for pollutant in config.pollutants:
            by_point.setdefault(pollutant.point, []).append(pollutant)
        statuses = {p.status for p in config.pollutants if p.status}
        last_status: dict[str, Reading] = {}
        samples: dict[str, list[Sample]] = {p.code: [] for p in config.pollutants}
        for poll in polls:
            prefix = poll.stream + "."
            for reading in poll.readings:
                if prefix + reading.point in statuses:
                    last_status[prefix + reading.point] = reading
            for reading in poll.readings:
                for pollutant in by_point.get(prefix + reading.point, ()):
                    status = last_status.get(pollutant.status) if pollutant.status else None
                    value, flag = flag_now(pollutant, reading, status)
                    samples[pollutant.code].append(Sample(reading.ts, value, flag))
        for series in samples.values():
            series.sort(key=lambda s: s.ts_ms)
            _drop_same_instant(series)
        return cls(samples)


def _drop_same_instant(series: list[Sample]) -> None:
    """Two samples at one instant (a reading repeated in two polls) count once."""
    kept: list[Sample] = []
    for sample in series:
        if kept and kept[-1].ts_ms == sample.ts_ms:
            continue
        kept.append(sample)
    series[:] = kept


def minute_records(
    config: Hj212, series: Series, start_ms: int, end_ms: int, expected: Mapping[str, int]
) -> dict[str, Record]:
    """One record per pollutant over [start, end) (wall-clock ms) from its samples;
    `expected`: how many polls each pollutant's device makes in that time. Volumes and
    loads are computed with the flow in m3/h, whatever unit it is reported in."""
    flow = config.flow
    flow_m3h = None
    if flow is not None:
        factor = flow.m3h_per_unit
        flow_m3h = [
            Sample(s.ts_ms, None if s.value is None else s.value * factor, s.flag)
            for s in _within(series.samples[flow.code], start_ms, end_ms)
        ]
    out: dict[str, Record] = {}
    for pollutant in config.pollutants:
        is_flow = flow is not None and pollutant.code == flow.code
        record = period_from_samples(
            pollutant.code,
            _within(series.samples[pollutant.code], start_ms, end_ms),
            start_ms,
            end_ms,
            expected_count=max(expected[pollutant.code], 1),
            min_valid_fraction=config.validity.minute_fraction,
            flow=None if is_flow else flow_m3h,
            cou=pollutant.cou,
            weighting="arithmetic" if is_flow else pollutant.weighting,
        )
        if is_flow and record.cou is not None:  # the volume, from the flow in m3/h
            record = replace(record, cou=record.cou * pollutant.m3h_per_unit)
        out[pollutant.code] = record
    return out


def rolled_up(
    config: Hj212,
    parts: Sequence[Mapping[str, Record]],
    start_ms: int,
    end_ms: int,
    min_valid: int,
) -> dict[str, Record]:
    """One record per pollutant over [start, end) from shorter records (hour from minute
    records, day from hours)."""
    flow = config.flow
    out: dict[str, Record] = {}
    for pollutant in config.pollutants:
        flow_records = [p[flow.code] for p in parts] if flow and pollutant is not flow else None
        out[pollutant.code] = roll_up(
            pollutant.code,
            [p[pollutant.code] for p in parts],
            start_ms,
            end_ms,
            expected_count=len(parts),
            min_valid_count=min_valid,
            weighting=pollutant.weighting if flow_records else "arithmetic",
            flow_records=flow_records,
        )
    return out


def hour_valid_count(config: Hj212, minute_interval: int) -> int:
    return required_count(config.validity.hour_fraction, 60 // minute_interval)


def records_cp(config: Hj212, data_time: str, records: Mapping[str, Record]) -> str:
    """`DataTime=...;w01018-Min=..,w01018-Avg=..,w01018-Max=..,w01018-Cou=..,w01018-Flag=N`;
    a value that cannot be given is left out, the flag never."""
    groups: list[list[tuple[str, str]]] = [[("DataTime", data_time)]]
    for pollutant in config.pollutants:
        record = records[pollutant.code]
        places = decimals(pollutant)
        group = [
            (f"{pollutant.code}-{name}", number(value, places if name != "Cou" else max(places, 3)))
            for name, value in (
                ("Cou", record.cou),
                ("Min", record.min),
                ("Avg", record.avg),
                ("Max", record.max),
            )
            if value is not None and math.isfinite(value)
        ]
        groups.append([*group, (f"{pollutant.code}-Flag", record.flag.value)])
    return format_cp(groups)


def _within(samples: list[Sample], start_ms: int, end_ms: int) -> list[Sample]:
    return [s for s in samples if start_ms <= s.ts_ms < end_ms]


def _scaled(pollutant: Pollutant, value: Value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) * pollutant.scale


def _status_value(reading: Reading | None) -> int | None:
    return None if reading is None else _as_int(reading.value)


def _as_int(value: Value) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
