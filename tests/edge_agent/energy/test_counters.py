"""Interval energy from cumulative registers (issue 14, item 2): against the plain
reference (tests/edge_agent/energy/reference.py) on generated histories with rollovers,
resets, replacements, gaps, bad readings and late data, and against the true energy a
generated meter used."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.energy.counters import (
    EnergyQuality,
    Flag,
    Register,
    boundaries,
    energy_between,
    interval_energy,
)
from tests.edge_agent.energy import reference

SETTINGS = settings(max_examples=300, deadline=None, database=None)
MIN = 60_000
T0 = int(datetime(2024, 1, 31, 20, 0, tzinfo=UTC).timestamp() * 1000)  # 04:00 +08:00
TZ = 8 * 3_600_000


@st.composite
def histories(
    draw: st.DrawFn, resets: bool = True, duplicates: bool = True
) -> tuple[list[tuple[int, object, str]], Register, list[float]]:
    """A meter read about every minute for some hours: (samples, register, true energy
    per minute). The register may wrap, be reset, be replaced; some readings are bad,
    some lost in an outage, some arrive twice or out of order."""
    minutes = draw(st.integers(5, 240))
    rollover = draw(st.sampled_from([None, 9999.99, 99999999.99]))
    factor = draw(st.sampled_from([1.0, 0.5, 40.0, 400.0]))
    register = Register(factor=factor, rollover=rollover, max_gap_ms=5 * MIN)
    value = draw(st.floats(0, 9000))
    if rollover is not None and draw(st.booleans()):
        value = rollover - draw(st.floats(0, 30))  # about to wrap
    outage = sorted(draw(st.lists(st.integers(0, minutes), min_size=2, max_size=2)))
    use = draw(st.lists(st.floats(0, 3), min_size=minutes, max_size=minutes))
    samples: list[tuple[int, object, str]] = []
    for minute in range(minutes + 1):
        ts = T0 + minute * MIN + draw(st.sampled_from([0, 0, 1]) | st.integers(-20_000, 20_000))
        events = ["read"] * 12 + ["bad", "stale"] + (["reset", "replace"] if resets else [])
        event = draw(st.sampled_from(events))
        if event == "reset":
            value = 0.0
        elif event == "replace":
            value = draw(st.floats(0, 500))
        if outage[0] < minute < outage[1]:
            pass  # not read during the outage
        elif event in ("bad", "stale"):
            samples.append((ts, None if event == "bad" else value, event))
        else:
            samples.append((ts, value, "good"))
            if duplicates and draw(st.booleans()) and draw(st.booleans()):
                samples.append((ts, value + 1, "good"))  # a second reading at one time
        if minute < minutes:
            value += use[minute] / factor
            if rollover is not None and value > rollover:
                value -= rollover
    samples = draw(st.permutations(samples))
    return samples, register, use


def _compare(got: list, expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for interval, want in zip(got, expected, strict=True):
        assert (interval.start, interval.end) == (want["start"], want["end"])
        assert interval.quality == want["quality"], (interval, want)
        assert {str(f) for f in interval.flags} == want["flags"], (interval, want)
        if want["energy"] is None:
            assert interval.energy is None
        else:
            assert interval.energy is not None
            assert interval.energy == pytest.approx(want["energy"], rel=1e-9, abs=1e-6)


@SETTINGS
@given(histories(), st.sampled_from(["15min", "hour", "day"]))
def test_the_intervals_are_the_references(history, period) -> None:
    samples, register, _use = history
    start, end = T0 - 3_600_000, T0 + 5 * 3_600_000
    got = interval_energy(samples, register, period, start, end, TZ)
    edges = [got[0].start, *(i.end for i in got)]
    assert edges == boundaries(period, start, end, TZ)
    expected = reference.intervals(
        samples, register.factor, register.rollover, register.max_gap_ms, edges
    )
    _compare(got, expected)


@SETTINGS
@given(histories())
def test_no_energy_is_negative_and_a_missing_interval_has_none(history) -> None:
    samples, register, _use = history
    for period in ("15min", "hour"):
        for interval in interval_energy(samples, register, period, T0, T0 + 5 * 3_600_000):
            if interval.quality is EnergyQuality.MISSING:
                assert interval.energy is None
            else:
                assert interval.energy is not None and interval.energy >= 0


@SETTINGS
@given(histories(resets=False, duplicates=False))
def test_without_resets_the_intervals_add_up_to_the_true_energy(history) -> None:
    """Between the first and the last good reading, the quarter hours (cut at those two
    readings) hold what the meter used, wraps and outages included."""
    samples, register, use = history
    good = sorted(ts for ts, _v, q in samples if q == "good")
    if len(good) < 2:
        return
    edges = sorted({good[0], *boundaries("15min", good[0], good[-1], TZ)[1:-1], good[-1]})
    got = energy_between(samples, register, edges)
    if any(Flag.RESET in i.flags for i in got):
        return  # a long outage of a small register: a wrap too large to tell from a reset
    assert all(i.quality is not EnergyQuality.MISSING for i in got)
    total = sum(i.energy for i in got if i.energy is not None)
    # the generated meter adds a minute's use right after that minute's reading
    first, last = (round((ts - T0) / MIN) for ts in (good[0], good[-1]))
    assert total == pytest.approx(sum(use[first:last]), rel=1e-6, abs=1e-6)


def test_months_are_calendar_months_in_local_time() -> None:
    start = int(datetime(2023, 12, 31, 16, 0, tzinfo=UTC).timestamp() * 1000)  # Jan 1 00:00
    end = int(datetime(2024, 3, 5, tzinfo=UTC).timestamp() * 1000)
    edges = boundaries("month", start, end, TZ)
    assert edges == reference.month_edges(2024, 1, 3, 8)
    # February 2024 has 29 days
    assert (edges[2] - edges[1]) == 29 * 86_400_000
    # a 15-minute edge is local quarter hour; a day starts at 00:00 +08:00 (16:00 UTC)
    day = boundaries("day", start + 1, start + 2, TZ)
    assert day == [start, start + 86_400_000]


def test_ct_and_pt_ratios_and_the_multiplier_scale_the_energy() -> None:
    samples = [(T0, 100.0, "good"), (T0 + 15 * MIN, 101.5, "good")]
    (interval,) = energy_between(
        samples, Register(factor=40 * 100 * 1, max_gap_ms=15 * MIN), [T0, T0 + 15 * MIN]
    )
    assert interval.energy == pytest.approx(1.5 * 4000)
    assert interval.quality is EnergyQuality.MEASURED


def test_a_rollover_counts_across_the_wrap_and_a_reset_starts_a_new_baseline() -> None:
    register = Register(rollover=99999999.99, max_gap_ms=15 * MIN)
    edges = [T0, T0 + 15 * MIN, T0 + 30 * MIN]
    wrap = [(T0, 99999999.0, "good"), (T0 + 15 * MIN, 1.0, "good"), (T0 + 30 * MIN, 3.0, "good")]
    first, second = energy_between(wrap, register, edges)
    assert first.energy == pytest.approx(1.99) and first.flags == {Flag.ROLLOVER}
    assert second.energy == pytest.approx(2.0) and not second.flags
    # From 5,000,000 to 10 is no wrap: a new meter. Its step gets the next step's rate.
    reset = [(T0, 5e6, "good"), (T0 + 15 * MIN, 10.0, "good"), (T0 + 30 * MIN, 13.0, "good")]
    first, second = energy_between(reset, register, edges)
    assert first.quality is EnergyQuality.ESTIMATED and first.flags == {Flag.RESET}
    assert first.energy == pytest.approx(3.0)
    assert second.quality is EnergyQuality.MEASURED and second.energy == pytest.approx(3.0)


def test_an_interval_without_readings_around_it_is_missing_never_zero() -> None:
    samples = [(T0 + 16 * MIN, 5.0, "good"), (T0 + 29 * MIN, 5.0, "good")]
    before, covered, after = energy_between(
        samples, Register(), [T0, T0 + 15 * MIN, T0 + 30 * MIN, T0 + 45 * MIN]
    )
    assert before.quality is after.quality is EnergyQuality.MISSING
    assert before.energy is None and after.energy is None
    assert covered.quality is EnergyQuality.MISSING  # 15..16 and 29..30 have no step


def test_late_data_after_an_outage_gives_the_corrected_figures() -> None:
    """During an outage the figures are missing; once the readings after it are in the
    history, the same function gives the outage's energy, estimated, and the total the
    register counted."""
    register = Register(max_gap_ms=5 * MIN)
    before = [(T0 + m * MIN, 100.0 + m, "good") for m in range(0, 61)]  # 1 kWh a minute
    after = [(T0 + m * MIN, 100.0 + m * 2 - 180, "good") for m in range(180, 241)]
    edges = boundaries("hour", T0, T0 + 4 * 3_600_000, TZ)
    during = energy_between(before, register, edges)
    assert [i.quality for i in during] == [EnergyQuality.MEASURED] + [EnergyQuality.MISSING] * 3
    later = energy_between(before + after, register, edges)
    assert [i.quality for i in later] == [
        EnergyQuality.MEASURED,
        EnergyQuality.ESTIMATED,
        EnergyQuality.ESTIMATED,
        EnergyQuality.MEASURED,
    ]
    assert sum(i.energy or 0 for i in later) == pytest.approx(after[-1][1] - before[0][1])
    assert later[0].energy == during[0].energy == pytest.approx(60.0)


def test_bad_stale_and_overridden_readings_do_not_count() -> None:
    samples = [
        (T0, 10.0, "good"),
        (T0 + 5 * MIN, 1e9, "bad"),
        (T0 + 6 * MIN, 0.0, "stale"),
        (T0 + 7 * MIN, 5e5, "overridden"),
        (T0 + 8 * MIN, math.inf, "good"),
        (T0 + 9 * MIN, True, "good"),
        (T0 + 15 * MIN, 12.0, "good"),
    ]
    (interval,) = energy_between(samples, Register(max_gap_ms=15 * MIN), [T0, T0 + 15 * MIN])
    assert interval.energy == pytest.approx(2.0) and not interval.flags
    assert interval.quality is EnergyQuality.MEASURED


def test_a_reset_near_the_top_of_the_register_is_no_rollover() -> None:
    # 2 kWh a quarter hour, then a drop from 95,000 to 3: wrapped, 5,003 kWh in one quarter
    # hour would be under a tenth of the register, but 2,500x the meter's pace: a reset.
    register = Register(rollover=99999.99, max_gap_ms=15 * MIN)
    edges = [T0 + k * 15 * MIN for k in range(4)]
    readings = [(T0, 94998.0, "good"), (T0 + 15 * MIN, 95000.0, "good"),
                (T0 + 30 * MIN, 3.0, "good"), (T0 + 45 * MIN, 5.0, "good")]  # fmt: skip
    _, jump, after = energy_between(readings, register, edges)
    assert jump.flags == {Flag.RESET} and jump.energy == pytest.approx(2.0)
    assert after.energy == pytest.approx(2.0)
    # At its own pace, a drop near the top is a rollover.
    readings = [(T0, 99995.0, "good"), (T0 + 15 * MIN, 99997.0, "good"),
                (T0 + 30 * MIN, 0.99, "good"), (T0 + 45 * MIN, 2.99, "good")]  # fmt: skip
    _, wrap, _ = energy_between(readings, register, edges)
    assert wrap.flags == {Flag.ROLLOVER} and wrap.energy == pytest.approx(3.98)
