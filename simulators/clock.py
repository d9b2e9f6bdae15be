"""Simulated time: a start instant plus the simulated seconds the plant has stepped through."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta


class SimClock:
    """Simulated time that can run faster than real time.

    The clock never reads the wall clock after construction: time moves only through
    `advance`, so a run is reproducible. `speed` is how many simulated seconds pass per wall
    second when a real-time loop (`PlantRoom.run`) drives it.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = float(speed)
        # Local naive midnight today: the daily profiles start at night, like a real day.
        self._start = start if start is not None else datetime.combine(date.today(), time())
        self._elapsed_s = 0.0

    @property
    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed_s)

    @property
    def elapsed_s(self) -> float:
        return self._elapsed_s

    @property
    def hour_of_day(self) -> float:
        """Simulated local time as fractional hours in [0, 24)."""
        now = self.now
        return now.hour + now.minute / 60.0 + (now.second + now.microsecond / 1e6) / 3600.0

    def advance(self, dt_s: float) -> None:
        if not dt_s >= 0:
            raise ValueError(f"time only moves forward, got dt_s={dt_s}")
        self._elapsed_s += dt_s
