"""Equipment-level control loops: what a real plant's drives do on their own.

Pump drives hold the chilled-water loop's differential pressure at its setpoint and tower
fans hold the condenser-water supply at its setpoint. The agent either writes speed
commands (loop released) or writes the setpoints and leaves the speed to these loops. Each
loop is sampled once per physics substep on the previous substep's (true) measurement.
Gains, limits and the reasons for them: docs/simulator.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from simulators.config import PIGains
from simulators.equipment import Pump, TowerCell

# Fans restart only once the loop asks for this much more than their minimum speed, so they
# do not start and stop on every sample when even the minimum speed over-cools the water.
FAN_RESTART_BAND_PCT = 5.0


class PIController:
    """Positional PI on an error, its integral clamped to the output limits (anti-windup).

    While a setpoint is out of reach the integral stops at the limit instead of growing
    without bound, so once the setpoint is withdrawn the output leaves the limit as soon as
    the error changes sign, rather than after unwinding what piled up meanwhile.
    """

    def __init__(self, gains: PIGains) -> None:
        self.kp = gains.kp
        self.ti_s = gains.ti_s
        self.integral = 0.0
        self.output = 0.0

    def track(self, output: float, error: float) -> None:
        """Follow the equipment while released, so that taking over again is bumpless."""
        self.integral = output - self.kp * error
        self.output = output

    def update(self, error: float, dt_s: float, lo: float, hi: float) -> float:
        proportional = self.kp * error
        self.integral += proportional * dt_s / self.ti_s
        self.integral = min(max(self.integral, lo), hi)
        self.output = min(max(proportional + self.integral, lo), hi)
        return self.output


class Drive(Protocol):
    """A variable-speed drive a local loop can take over (Pump, TowerCell)."""

    local_speed: float | None

    @property
    def commanded_on(self) -> bool: ...

    def target_speed(self) -> float: ...


D = TypeVar("D", bound=Drive)


class LocalLoop(ABC, Generic[D]):
    """One PI loop running every drive of a group that is commanded on at one speed."""

    def __init__(self, gains: PIGains, drives: Sequence[D]) -> None:
        self.pi = PIController(gains)
        self.drives = drives
        self._release(error=0.0)  # start from the commanded speeds: no bump at t = 0

    def step(self, enabled: bool, error: float, dt_s: float) -> None:
        """error > 0 asks for more speed."""
        running = [d for d in self.drives if d.commanded_on]
        if not enabled or not running:
            self._release(error)
            return
        lo, hi = self._limits(running)
        speed = self._speed(self.pi.update(error, dt_s, lo, hi), running)
        for drive in self.drives:  # idle drives too: one that starts joins at this speed
            drive.local_speed = speed

    def _release(self, error: float) -> None:
        for drive in self.drives:
            drive.local_speed = None
        targets = [d.target_speed() for d in self.drives if d.commanded_on]
        output = sum(targets) / len(targets) if targets else 0.0
        self.pi.track(output, error)
        self._follow(output)

    @abstractmethod
    def _limits(self, running: list[D]) -> tuple[float, float]:
        """Output range in which every running drive really follows the loop."""

    def _speed(self, output: float, running: list[D]) -> float:
        """Drive speed for a controller output."""
        return output

    def _follow(self, output: float) -> None:
        """Adopt the state the commanded speed implies while released."""


class PressureLoop(LocalLoop[Pump]):
    """CHW pump drives hold the index-circuit DP: error = setpoint - DP (kPa)."""

    def _limits(self, running: list[Pump]) -> tuple[float, float]:
        # At the highest minimum speed every running pump really is at the loop's output.
        return max(p.config.min_speed_pct for p in running), 100.0


class CondenserLoop(LocalLoop[TowerCell]):
    """Tower fans hold the condenser-water supply: error = supply - setpoint (K).

    The output spans 0-100 % so the loop can ask for less than the fans' minimum speed:
    the fans then stop, and restart above the minimum plus FAN_RESTART_BAND_PCT.
    """

    fans_on: bool  # set by _follow at construction

    def _limits(self, running: list[TowerCell]) -> tuple[float, float]:
        return 0.0, 100.0

    def _speed(self, output: float, running: list[TowerCell]) -> float:
        min_pct = max(t.config.min_fan_pct for t in running)
        self.fans_on = output >= (min_pct if self.fans_on else min_pct + FAN_RESTART_BAND_PCT)
        return output if self.fans_on else 0.0

    def _follow(self, output: float) -> None:
        self.fans_on = output > 0.0
