"""Points in time as the technician types them (`edge_agent.cli.when`), and the compound
durations of the configuration they share (`edge_agent.config.base.parse_duration`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge_agent.cli.when import WhenError, parse_when
from edge_agent.config.base import parse_duration

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's clock in Shanghai (UTC+8, no daylight saving)."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def ms(*args: int, tz: ZoneInfo = SHANGHAI) -> int:
    return round(datetime(*args, tzinfo=tz).timestamp() * 1000)


NOW = ms(2026, 11, 24, 15, 30, 45)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("today", ms(2026, 11, 24)),
        ("yesterday", ms(2026, 11, 23)),
        ("tomorrow", ms(2026, 11, 25)),
        ("10m", NOW - 600_000),
        ("-10m", NOW - 600_000),
        ("10m ago", NOW - 600_000),
        ("2h30m", NOW - 9_000_000),
        ("2h 30m", NOW - 9_000_000),
        ("1.5h", NOW - 5_400_000),
        ("1d12h", NOW - 129_600_000),
        ("500ms", NOW - 500),
        ("08:00", ms(2026, 11, 24, 8)),
        ("08:00:30", ms(2026, 11, 24, 8, 0, 30)),
        ("2026-11-20", ms(2026, 11, 20)),
        ("2026-11-20 08:00", ms(2026, 11, 20, 8)),
        ("2026-11-20T08:00:15.5", ms(2026, 11, 20, 8, 0, 15) + 500),
        ("2026-11-20T00:00Z", ms(2026, 11, 20, tz=ZoneInfo("UTC"))),
        ("2026-11-20 08:00+01:00", ms(2026, 11, 20, 8, tz=ZoneInfo("Europe/Paris"))),
        ("@1764892800", 1764892800_000),
        ("@1764892800.25", 1764892800_250),
        ("@1764892800123", 1764892800123),
    ],
)
def test_the_forms(zone: None, text: str, expected: int) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("90", "a bare number is ambiguous: write 90s or 90m"),
        ("20261124", "a bare number is ambiguous"),
        ("yesterdy", "expected now, today, yesterday, a duration ago (10m, 2h30m, 7d)"),
        ("30m1h", "write the units from the largest to the smallest, each once"),
        ("1h1h", "write the units from the largest to the smallest, each once"),
        ("1m30", "expected now, today"),
        ("１０m", "type the digits as ASCII digits 0-9 (half-width)"),
        ("2026-13-01", "expected now, today"),
        ("@99999999999999999", "out of range"),
        ("", "expected now"),
    ],
)
def test_what_is_refused_says_why(zone: None, text: str, says: str) -> None:
    with pytest.raises(WhenError) as refused:
        parse_when(text, NOW)
    assert says in str(refused.value)
    assert repr(text) in str(refused.value)  # what the technician typed, quoted


def test_midnight_across_a_daylight_saving_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        now = ms(2026, 3, 29, 12, tz=BERLIN)  # clocks went forward at 02:00 that night
        assert parse_when("today", now) == ms(2026, 3, 29, tz=BERLIN)
        assert parse_when("yesterday", now) == ms(2026, 3, 28, tz=BERLIN)
        assert parse_when("today", now) - parse_when("yesterday", now) == 24 * 3600_000
        assert parse_when("tomorrow", now) - parse_when("today", now) == 23 * 3600_000
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1h30m", 5400.0), ("2h 30m", 9000.0), ("1d12h", 129600.0),
     ("1m30s", 90.0), ("90", 90.0), (" 2m ", 120.0), (7, 7.0)],
)  # fmt: skip
def test_configuration_durations_compound(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30m1h", "1m1m", "1m30", "h", "", "1 h x"])
def test_configuration_durations_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
