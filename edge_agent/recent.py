"""The most recent values of a duration (a command's round trip, a loop step), for status and
metrics: a bounded window and its percentiles."""

from __future__ import annotations

from collections import deque


class Recent:
    def __init__(self, kept: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=kept)

    def add(self, value: float) -> None:
        self._values.append(value)

    def percentile(self, q: float) -> float | None:
        """The q-quantile (nearest rank, rounded to 0.1) of the window; None when empty."""
        if not self._values:
            return None
        ordered = sorted(self._values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    def max(self) -> float | None:
        return round(max(self._values), 1) if self._values else None
