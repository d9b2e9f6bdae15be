"""Sensor faults: what a transmitter reports differs from the process value.

A fault changes only the reported value of one tag; the physics keeps the true value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["stuck", "drift", "noise", "offset"]


@dataclass(frozen=True)
class SensorFault:
    """stuck: at `value` (None: the value when injected); drift: `rate_per_h` units per hour
    since injection; noise: Gaussian with standard deviation `sigma`; offset: `value` added."""

    kind: FaultKind
    value: float | bool | None = None
    rate_per_h: float = 0.0
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("stuck", "drift", "noise", "offset"):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "offset" and not isinstance(self.value, int | float):
            raise ValueError("an offset fault needs a numeric value")
        if self.sigma < 0:
            raise ValueError("sigma must not be negative")

    @classmethod
    def stuck(cls, value: float | bool | None = None) -> SensorFault:
        return cls("stuck", value=value)

    @classmethod
    def drift(cls, rate_per_h: float) -> SensorFault:
        return cls("drift", rate_per_h=rate_per_h)

    @classmethod
    def noise(cls, sigma: float) -> SensorFault:
        return cls("noise", sigma=sigma)

    @classmethod
    def offset(cls, value: float) -> SensorFault:
        return cls("offset", value=value)


class ActiveFault:
    """A fault injected on one tag at a given simulated time, with its own random stream.

    The stream is separate from the physics' streams, so injecting noise cannot change the
    process values of a seeded run.
    """

    def __init__(
        self, fault: SensorFault, injected_at_s: float, true_value: float | bool, seed: str
    ) -> None:
        self.fault = fault
        self.injected_at_s = injected_at_s
        self.stuck_value = true_value if fault.value is None else fault.value
        self._rng = random.Random(seed)
        self._noise = 0.0

    def step(self) -> None:
        """A new noise sample per plant step, so repeated reads between steps agree."""
        if self.fault.kind == "noise":
            self._noise = self._rng.gauss(0.0, self.fault.sigma)

    def reported(self, true_value: float | bool, now_s: float) -> float | bool:
        f = self.fault
        if f.kind == "stuck":
            return self.stuck_value
        if f.kind == "drift":
            return true_value + f.rate_per_h * (now_s - self.injected_at_s) / 3600.0
        if f.kind == "noise":
            return true_value + self._noise
        assert isinstance(f.value, int | float)
        return true_value + f.value
