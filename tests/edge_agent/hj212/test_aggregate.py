"""Minute, hourly and daily records: against the plain reference (tests/edge_agent/hj212/
reference.py) on generated series, and on small examples worked by hand."""

from __future__ import annotations

import math
from dataclasses import asdict
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.hj212.aggregate import (
    CHINA_TZ_OFFSET_MS,
    DAY_MIN_VALID_HOURS,
    DAY_MS,
    HOUR_MIN_VALID_FRACTION,
    HOUR_MS,
    Record,
    Sample,
    data_time,
    period_flag,
    period_from_samples,
    period_starts,
    required_count,
    roll_up,
)
from edge_agent.hj212.flags import DataFlag
from tests.edge_agent.hj212 import reference

N, F, M, S, D, C, T, B = (DataFlag[name] for name in "NFMSDCTB")
MIN10 = 600_000
START = 1_704_038_400_000  # 2024-01-01 00:00 in China (2023-12-31 16:00 UTC)
SETTINGS = settings(max_examples=400, deadline=None, database=None)

# Values of a size where a different order of summing cannot change the comparison.
values = st.floats(min_value=-50, max_value=1000, allow_nan=False, allow_subnormal=False)
flows = st.one_of(
    st.just(0.0), st.floats(min_value=0, max_value=500, allow_nan=False, allow_subnormal=False)
)


@st.composite
def series(draw, start: int, end: int, amounts=values) -> list[Sample]:
    """Polled samples around [start, end): a cadence, jitter, gaps of any length, every
    flag, a few samples just outside the period; distinct instants, in any order."""
    step = draw(st.sampled_from([5_000, 10_000, 30_000, 60_000, 120_000]))
    first = start - draw(st.integers(min_value=0, max_value=2 * step))
    out = []
    for k in range((end - first) // step + 2):
        if not draw(st.booleans()):
            continue  # a gap
        ts = first + k * step + draw(st.integers(min_value=0, max_value=step // 2))
        flag = draw(st.sampled_from(list(DataFlag)))
        value = draw(amounts if flag is N else st.one_of(st.none(), amounts))
        out.append(Sample(ts, value, flag))
    return draw(st.permutations(out))


def plain(samples: list[Sample] | None) -> list[tuple[int, float | None, str]] | None:
    return None if samples is None else [(s.ts_ms, s.value, s.flag.value) for s in samples]


def assert_same(record: Record, expected: dict) -> None:
    got = asdict(record)
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        if isinstance(want, float) and isinstance(got[key], float):
            assert math.isclose(got[key], want, rel_tol=1e-9, abs_tol=1e-9), (key, got, want)
        else:
            assert got[key] == want, (key, got, want)


fractions = st.one_of(
    st.sampled_from([0.75, 0.5, 0.8, 0.9, 1.0, 0.1, 0.7, 0.3, 0.05, 0.55]),
    st.floats(min_value=0.01, max_value=1.0),
)
rules = st.sampled_from(
    [("none", "arithmetic"), ("volume", "arithmetic"), ("none", "flow"), ("load", "flow"),
     ("load", "arithmetic")]
)  # fmt: skip


@SETTINGS
@given(data=st.data(), fraction=fractions, rule=rules)
def test_minute_records_agree_with_the_reference(data, fraction, rule):
    cou, weighting = rule
    end = START + MIN10
    samples = data.draw(series(START, end))
    needs_flow = cou == "load" or weighting == "flow"
    flow = data.draw(series(START, end, flows)) if needs_flow else None
    expected_count = data.draw(st.integers(min_value=1, max_value=130))
    got = period_from_samples(
        "w01018", samples, START, end, expected_count=expected_count,
        min_valid_fraction=fraction, flow=flow, cou=cou, weighting=weighting,
    )  # fmt: skip
    want = reference.minute(
        "w01018", plain(samples), START, end, expected_count, fraction, plain(flow), cou,
        weighting,
    )  # fmt: skip
    assert_same(got, want)


@SETTINGS
@given(
    expected_count=st.integers(min_value=1, max_value=200),
    fraction=fractions,
    below=st.booleans(),
    others=st.lists(st.sampled_from([F, M, S, D, C, T, B]), max_size=30),
)
def test_valid_at_exactly_the_fraction_and_not_one_below(expected_count, fraction, below, others):
    need = reference.needed(fraction, expected_count)
    count = need - 1 if below else need
    samples = [Sample(START + 1000 * i, 1.0, N) for i in range(count)]
    samples += [Sample(START + 1000 * (count + i), None, f) for i, f in enumerate(others)]
    record = period_from_samples(
        "w01018", samples, START, START + MIN10, expected_count=expected_count,
        min_valid_fraction=fraction, cou="none", weighting="arithmetic",
    )  # fmt: skip
    assert record.valid is not below
    assert record.valid_count == count
    assert required_count(fraction, expected_count) == need


@st.composite
def records(draw, code: str, start: int, count: int, length: int, amounts=values) -> list[Record]:
    """Sub-period records of [start, start + count * length), with gaps, every flag (a
    valid one is N, an invalid one anything else, as period_from_samples makes them) and
    one record just before and one just after."""
    out = []
    for k in range(-1, count + 1):
        if not draw(st.booleans()):
            continue
        valid = draw(st.booleans())
        flag = N if valid else draw(st.sampled_from([F, M, S, D, C, T, B]))
        maybe = amounts if valid else st.one_of(st.none(), amounts)
        low, avg, high = (draw(maybe) for _ in range(3))
        begin = start + k * length
        cou = draw(st.one_of(st.none(), amounts))
        counted = draw(st.integers(0, 60))
        out.append(
            Record(code, begin, begin + length, low, avg, high, cou, flag, valid, counted, 60)
        )
    return draw(st.permutations(out))


def as_dicts(rows: list[Record] | None) -> list[dict] | None:
    return None if rows is None else [asdict(r) for r in rows]


@SETTINGS
@given(
    data=st.data(),
    shape=st.sampled_from([(6, MIN10), (24, HOUR_MS), (4, 15 * 60_000)]),
    weighting=st.sampled_from(["arithmetic", "flow"]),
)
def test_roll_ups_agree_with_the_reference(data, shape, weighting):
    count, length = shape
    end = START + count * length
    rows = data.draw(records("w01018", START, count, length))
    flow = None
    if weighting == "flow":
        flow = data.draw(records("w00000", START, count, length, flows))
    min_valid = data.draw(st.integers(min_value=1, max_value=count))
    got = roll_up(
        "w01018", rows, START, end, expected_count=count, min_valid_count=min_valid,
        weighting=weighting, flow_records=flow,
    )  # fmt: skip
    want = reference.rolled(
        "w01018", as_dicts(rows), START, end, count, min_valid, weighting, as_dicts(flow)
    )
    assert_same(got, want)


# -- worked by hand --------------------------------------------------------------------


def ten_minutes(good: int, bad: int, flag: DataFlag = B) -> Record:
    """60 polls 10 s apart; the first `good` read 1, 2, 3, ..., the rest are `flag`."""
    samples = [Sample(START + 10_000 * i, float(i + 1), N) for i in range(good)]
    samples += [Sample(START + 10_000 * (good + i), None, flag) for i in range(bad)]
    return period_from_samples(
        "w01018", samples, START, START + MIN10, expected_count=60, cou="none",
        weighting="arithmetic",
    )  # fmt: skip


def test_the_threshold_is_the_decimal_fraction():
    assert required_count(0.75, 60) == 45
    assert required_count(0.75, 6) == 5
    # 0.55 * 100 is 55.00000000000001 in floats: the threshold stays 55.
    assert required_count(0.55, 100) == 55
    assert required_count(0.01, 6) == 1


def test_44_of_60_is_not_a_valid_ten_minutes():
    record = ten_minutes(good=44, bad=16)
    assert (record.valid, record.valid_count, record.flag) == (False, 44, B)
    # What was measured is still described.
    assert (record.min, record.avg, record.max) == (1.0, 22.5, 44.0)


def test_45_of_60_is_a_valid_ten_minutes():
    record = ten_minutes(good=45, bad=15, flag=M)
    assert (record.valid, record.valid_count, record.flag) == (True, 45, N)
    assert (record.min, record.avg, record.max) == (1.0, 23.0, 45.0)


def test_an_invalid_period_takes_its_most_common_flag():
    assert ten_minutes(good=10, bad=50, flag=C).flag is C
    assert ten_minutes(good=0, bad=60, flag=T).flag is T
    # Too few samples, all normal: the missing ones were never received.
    assert ten_minutes(good=10, bad=0).flag is B


def test_a_period_without_samples():
    record = period_from_samples(
        "w01018", [], START, START + MIN10, expected_count=60, cou="volume",
        weighting="arithmetic",
    )  # fmt: skip
    assert (record.valid, record.flag, record.valid_count) == (False, B, 0)
    assert (record.min, record.avg, record.max, record.cou) == (None, None, None, None)


def test_ties_go_to_the_more_severe_flag():
    assert period_flag(False, [M, M, D, D, N, N, N]) is D
    assert period_flag(False, [B, B, C, C, S]) is C
    assert period_flag(False, [T, S, B]) is T
    assert period_flag(False, [B, B, B, C, C]) is B  # more common beats more severe
    assert period_flag(True, [B, B, B]) is N


def test_a_manual_value_is_reported_but_not_valid():
    samples = [Sample(START + 10_000 * i, 7.0, S) for i in range(60)]
    record = period_from_samples(
        "w01018", samples, START, START + MIN10, expected_count=60, cou="none",
        weighting="arithmetic",
    )  # fmt: skip
    assert (record.valid, record.valid_count, record.flag, record.avg) == (False, 0, S, None)


def flow_samples(rate: float, missing: range = range(0)) -> list[Sample]:
    return [Sample(START + 10_000 * i, rate, N) for i in range(60) if i not in missing]


def test_volume_of_a_steady_flow():
    record = period_from_samples(
        "w00000", flow_samples(36.0), START, START + MIN10, expected_count=60, cou="volume",
        weighting="arithmetic",
    )  # fmt: skip
    assert record.cou == pytest.approx(6.0)  # 36 m3/h for 1/6 h


def test_a_gap_in_the_flow_adds_nothing():
    # Polls 20..29 missing: poll 19 stands for 20 s (twice the spacing), not 110 s; the
    # other 49 polls for 10 s each: 510 s at 36 m3/h.
    record = period_from_samples(
        "w00000", flow_samples(36.0, range(20, 30)), START, START + MIN10, expected_count=60,
        cou="volume", weighting="arithmetic",
    )  # fmt: skip
    assert record.cou == pytest.approx(36.0 * 510 / 3600)
    assert (record.valid, record.valid_count) == (True, 50)


def test_the_first_poll_stands_for_the_start_of_the_period():
    # Polls at 5 s, 15 s, ... 595 s: the first also stands for the 5 s before it.
    samples = [Sample(START + 5_000 + 10_000 * i, 36.0, N) for i in range(60)]
    record = period_from_samples(
        "w00000", samples, START, START + MIN10, expected_count=60, cou="volume",
        weighting="arithmetic",
    )  # fmt: skip
    assert record.cou == pytest.approx(6.0)


def test_load_of_a_steady_concentration():
    cod = [Sample(START + 10_000 * i, 100.0, N) for i in range(60)]
    record = period_from_samples(
        "w01018", cod, START, START + MIN10, expected_count=60, flow=flow_samples(36.0),
        cou="load", weighting="flow",
    )  # fmt: skip
    # 100 mg/L = 100 g/m3, times 6 m3: 600 g.
    assert record.cou == pytest.approx(0.6)
    assert record.avg == pytest.approx(100.0)


def test_flow_weighted_average():
    cod = [Sample(START, 10.0, N), Sample(START + 300_000, 20.0, N)]
    flow = [Sample(START, 1.0, N), Sample(START + 300_000, 3.0, N)]
    record = period_from_samples(
        "w01018", cod, START, START + MIN10, expected_count=2, flow=flow, cou="load",
        weighting="flow",
    )  # fmt: skip
    assert record.avg == pytest.approx((10 * 1 + 20 * 3) / 4)
    assert record.cou == pytest.approx((10 * 1 + 20 * 3) * 300 / 3600 * 1e-3)
    arithmetic = period_from_samples(
        "w01018", cod, START, START + MIN10, expected_count=2, cou="none",
        weighting="arithmetic",
    )  # fmt: skip
    assert arithmetic.avg == pytest.approx(15.0)


def test_a_concentration_without_a_valid_flow_has_no_load():
    cod = [Sample(START + 10_000 * i, 100.0, N) for i in range(60)]
    stopped = [Sample(START + 10_000 * i, 0.0, F) for i in range(60)]
    record = period_from_samples(
        "w01018", cod, START, START + MIN10, expected_count=60, flow=stopped, cou="load",
        weighting="flow",
    )  # fmt: skip
    assert record.cou is None
    assert record.avg == pytest.approx(100.0)  # the plain mean: no flow to weight with


def test_an_old_flow_is_not_used():
    # The flow meter went silent after its first poll; 20 s later its value stands no more.
    cod = [Sample(START + 10_000 * i, 100.0, N) for i in range(3)]
    flow = [Sample(START - 10_000, 36.0, N), Sample(START, 36.0, N)]
    record = period_from_samples(
        "w01018", cod, START, START + 30_000, expected_count=3, flow=flow, cou="load",
        weighting="flow",
    )  # fmt: skip
    # The polls at 0 s and 10 s have the flow; the one at 20 s has none.
    assert record.cou == pytest.approx(100 * 36 * 20 / 3600 * 1e-3)


def hours(valid: int, cou: float = 1.0) -> list[Record]:
    rows = []
    for h in range(24):
        begin = START + h * HOUR_MS
        ok = h < valid
        value = float(h) if ok else None
        flag, counted = (N, 6) if ok else (M, 0)
        rows.append(
            Record("w01018", begin, begin + HOUR_MS, value, value, value, cou, flag, ok, counted, 6)
        )
    return rows


def a_day(rows: list[Record]) -> Record:
    return roll_up(
        "w01018", rows, START, START + DAY_MS, expected_count=24,
        min_valid_count=DAY_MIN_VALID_HOURS, weighting="arithmetic",
    )  # fmt: skip


def test_a_day_of_19_valid_hours_is_not_valid():
    day = a_day(hours(19))
    assert (day.valid, day.valid_count, day.flag) == (False, 19, M)
    assert (day.min, day.avg, day.max) == (0.0, 9.0, 18.0)
    assert day.cou == pytest.approx(24.0)  # every hour's load, valid or not


def test_a_day_of_20_valid_hours_is_valid():
    day = a_day(hours(20))
    assert (day.valid, day.valid_count, day.flag) == (True, 20, N)
    assert (day.min, day.avg, day.max) == (0.0, 9.5, 19.0)


def test_an_hour_from_ten_minute_records():
    tens = [ten_minutes(good=60 if k < 5 else 44, bad=0 if k < 5 else 16) for k in range(6)]
    tens = [
        Record(**{**asdict(r), "start_ms": START + k * MIN10, "end_ms": START + (k + 1) * MIN10})
        for k, r in enumerate(tens)
    ]
    volumes = [
        Record("w00000", r.start_ms, r.end_ms, None, None, None, v, N, True, 60, 60)
        for r, v in zip(tens, [1.0, 1.0, 1.0, 1.0, 0.0, 4.0], strict=True)
    ]
    need = required_count(HOUR_MIN_VALID_FRACTION, 6)
    assert need == 5
    hour = roll_up(
        "w01018", tens, START, START + HOUR_MS, expected_count=6, min_valid_count=need,
        weighting="flow", flow_records=volumes,
    )  # fmt: skip
    assert (hour.valid, hour.valid_count, hour.flag) == (True, 5, N)
    assert (hour.min, hour.avg, hour.max) == (1.0, 30.5, 60.0)  # the invalid sixth left out
    one_short = roll_up(
        "w01018", tens, START, START + HOUR_MS, expected_count=6, min_valid_count=6,
        weighting="arithmetic",
    )  # fmt: skip
    assert (one_short.valid, one_short.flag) == (False, B)


def test_periods_start_on_local_boundaries():
    since = START + 25 * 60_000  # 00:25 local
    starts = period_starts(since, since + DAY_MS, HOUR_MS, CHINA_TZ_OFFSET_MS)
    assert [data_time(s, CHINA_TZ_OFFSET_MS) for s in starts[:2]] == [
        "20240101010000",
        "20240101020000",
    ]
    assert len(starts) == 23  # 01:00 .. 23:00; the hour from 00:00 on the 2nd is not over
    days = period_starts(START - 1, START + 2 * DAY_MS, DAY_MS, CHINA_TZ_OFFSET_MS)
    assert [data_time(s, CHINA_TZ_OFFSET_MS) for s in days] == [
        "20240101000000",
        "20240102000000",
    ]


@SETTINGS
@given(
    since=st.integers(min_value=0, max_value=4_000_000_000_000),
    span=st.integers(min_value=0, max_value=3 * DAY_MS),
    length=st.sampled_from([60_000, MIN10, HOUR_MS, DAY_MS, 7_000]),
    tz=st.sampled_from([0, CHINA_TZ_OFFSET_MS, -5 * HOUR_MS]),
)
def test_period_starts_are_every_whole_aligned_period(since, span, length, tz):
    until = since + span
    starts = period_starts(since, until, length, tz)
    for s in starts:
        assert (s + tz) % length == 0 and since <= s and s + length <= until
    assert all(b - a == length for a, b in pairwise(starts))
    # None left out at either end: the aligned start before the first begins before
    # `since`, the one after the last ends after `until`.
    first_aligned = since + (-(since + tz)) % length
    assert (starts[0] if starts else first_aligned) == first_aligned
    after = starts[-1] + length if starts else first_aligned
    assert after + length > until


def test_data_time_is_local_time():
    assert data_time(0, CHINA_TZ_OFFSET_MS) == "19700101080000"
    assert data_time(START, CHINA_TZ_OFFSET_MS) == "20240101000000"
    assert data_time(START, 0) == "20231231160000"
    assert data_time(START + 999, CHINA_TZ_OFFSET_MS) == "20240101000000"  # ms dropped


# -- refusals --------------------------------------------------------------------------


def minute(samples=(), **overrides):
    args = {
        "expected_count": 60, "cou": "none", "weighting": "arithmetic", "flow": None,
        "min_valid_fraction": 0.75,
    } | overrides  # fmt: skip
    return period_from_samples("w01018", list(samples), START, START + MIN10, **args)


@pytest.mark.parametrize(
    ("samples", "overrides", "match"),
    [
        ([Sample(START, 1.0, N), Sample(START, 2.0, N)], {}, "one instant"),
        ([], {"weighting": "flow"}, "need the flow"),
        ([], {"cou": "load"}, "need the flow"),
        ([], {"cou": "mass"}, "cou 'mass'"),
        ([], {"weighting": "median"}, "weighting 'median'"),
        ([], {"min_valid_fraction": 0.0}, r"\(0, 1\]"),
        ([], {"min_valid_fraction": 1.5}, r"\(0, 1\]"),
        ([], {"expected_count": 0}, "at least 1"),
        ([], {"flow": [Sample(START, 1.0, N)] * 2, "cou": "load"}, "flow: two samples"),
    ],
)
def test_minute_refusals(samples, overrides, match):
    with pytest.raises(ValueError, match=match):
        minute(samples, **overrides)


def test_a_period_must_have_a_length():
    with pytest.raises(ValueError, match="must follow"):
        period_from_samples(
            "w01018", [], START, START, expected_count=1, cou="none", weighting="arithmetic"
        )
    with pytest.raises(ValueError, match="must be positive"):
        period_starts(START, START + DAY_MS, 0, CHINA_TZ_OFFSET_MS)


def test_a_normal_sample_has_a_value():
    with pytest.raises(ValueError, match="finite value"):
        Sample(START, None, N)
    with pytest.raises(ValueError, match="finite value"):
        Sample(START, math.nan, N)
    assert Sample(START, None, B).value is None


def test_roll_up_refusals():
    rows = hours(24)
    day = {"expected_count": 24, "min_valid_count": 20, "weighting": "arithmetic"}
    with pytest.raises(ValueError, match="records of"):
        roll_up("w00000", rows, START, START + DAY_MS, **day)
    with pytest.raises(ValueError, match="two records of one period"):
        roll_up("w01018", rows + rows[:1], START, START + DAY_MS, **day)
    with pytest.raises(ValueError, match="needs the flow records"):
        roll_up("w01018", rows, START, START + DAY_MS, **(day | {"weighting": "flow"}))
    for count in (0, 25):
        with pytest.raises(ValueError, match="min valid count"):
            roll_up("w01018", rows, START, START + DAY_MS, **(day | {"min_valid_count": count}))
