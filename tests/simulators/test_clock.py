from __future__ import annotations

from datetime import date, datetime, time

import pytest

from simulators.clock import SimClock


def test_defaults_to_local_midnight_today() -> None:
    clock = SimClock()
    assert clock.now == datetime.combine(date.today(), time())
    assert clock.elapsed_s == 0.0
    assert clock.speed == 1.0


def test_advance_moves_simulated_time_only() -> None:
    clock = SimClock(speed=60.0, start=datetime(2026, 7, 15, 23, 30))
    clock.advance(3600.0)
    assert clock.now == datetime(2026, 7, 16, 0, 30)
    assert clock.elapsed_s == 3600.0
    assert clock.hour_of_day == pytest.approx(0.5)


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_rejects_non_positive_speed(speed: float) -> None:
    with pytest.raises(ValueError):
        SimClock(speed=speed)


def test_time_does_not_go_backwards() -> None:
    with pytest.raises(ValueError):
        SimClock().advance(-1.0)
