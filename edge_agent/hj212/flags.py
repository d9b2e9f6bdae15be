"""The HJ 212-2017 data flag of one polled value (docs/hj212-aggregates.md).

Pure: the reporter hands in what it has read (the value's quality and the instrument's
status register, if there is one) and gets the flag the bureau is told. The one promise
this module keeps above all: N (normal) only for a value the agent has really read, from
an instrument that says it is working normally.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

from edge_agent.points import Quality, Value


class DataFlag(StrEnum):
    """The data flags of HJ 212-2017 (its table of data flags, the `-Flag` field)."""

    N = "N"  # normal: the instrument works normally
    F = "F"  # stopped (停运)
    M = "M"  # maintenance (维护)
    S = "S"  # manual setting (手工输入的设定值)
    D = "D"  # fault (故障)
    C = "C"  # calibration (校准)
    T = "T"  # over range (超测上限)
    B = "B"  # communication lost (通讯异常)


def default_status_map() -> dict[int, DataFlag]:
    """A typical vendor's status codes, the ones the simulated sewage monitor reports.

    An assumption, not a standard: every analyzer vendor has its own table, so a site
    configures its own map; this is the default and the simulator's. A new dict each call
    (callers may adapt it; no module-global state).
    """
    return {
        0: DataFlag.N,
        1: DataFlag.M,
        2: DataFlag.C,
        3: DataFlag.D,
        4: DataFlag.F,
        5: DataFlag.S,
        6: DataFlag.T,
    }


_UNREADABLE = (Quality.BAD, Quality.STALE)


def flag_of(
    quality: str,
    value: Value,
    status: int | None,
    status_quality: str | None,
    status_map: Mapping[int, DataFlag],
    measuring_range: tuple[float, float] | None,
) -> DataFlag:
    """The flag of one value. The rules apply in this order; the first that matches wins.

    1. The value cannot be used (quality bad or stale, None, not a finite number) -> B.
       Without a value there is nothing the instrument's state could qualify: the value
       did not reach the logger, which is what B says.
    2. A status point is configured (`status_map` not empty) but its reading is missing,
       bad or stale -> B. The value alone does not show whether the analyzer is
       calibrating or in maintenance, so N cannot be claimed without the status.
    3. The status maps to a flag other than N -> that flag. The instrument knows its own
       state best (a value read during calibration is the calibration standard).
    4. A status code the map does not know -> D: the instrument reports a state we cannot
       interpret, so the value cannot be vouched for; "fault" says that, and makes the
       technician look (a value must never pass as N on an unknown state).
    5. The value, or the status, was forced by a manual override -> S (a manual value).
       An override of the status that maps to a non-N flag was taken at rule 3: that is a
       technician declaring maintenance, say. An override that says "normal" is still not
       a measurement of the state, so it cannot give N.
    6. The value lies outside `measuring_range` (inclusive bounds) -> T.
    7. Otherwise N.

    `quality` and `status_quality` are edge_agent.points.Quality values; an unknown one
    is a ValueError. A bool is not a measured number (HJ 212 values are numbers) -> B.
    """
    if measuring_range is not None and measuring_range[0] > measuring_range[1]:
        raise ValueError(f"measuring range {measuring_range}: low above high")
    quality = Quality(quality)
    number = _number(value)
    if quality in _UNREADABLE or number is None:
        return DataFlag.B
    overridden = quality is Quality.OVERRIDDEN
    if status_map:
        if status is None or status_quality is None:
            return DataFlag.B
        status_quality = Quality(status_quality)
        if status_quality in _UNREADABLE:
            return DataFlag.B
        flag = status_map.get(status)
        if flag is None:
            return DataFlag.D
        if flag is not DataFlag.N:
            return flag
        overridden = overridden or status_quality is Quality.OVERRIDDEN
    if overridden:
        return DataFlag.S
    if measuring_range is not None and not measuring_range[0] <= number <= measuring_range[1]:
        return DataFlag.T
    return DataFlag.N


def _number(value: Value) -> float | None:
    """The value as a finite number, or None when it is none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
