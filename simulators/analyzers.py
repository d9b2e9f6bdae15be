"""An online analyzer's status register and the value it reports in each state.

The codes are a typical vendor's table (an assumption, docs/simulator.md): a data logger
derives its HJ 212 data flags from them. The simulator sets the states the control file
names; "over range" is the analyzer's own, whenever it measures above its range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any

from simulators.config import AnalyzerConfig


class Status(IntEnum):
    NORMAL = 0
    MAINTENANCE = 1
    CALIBRATION = 2
    FAULT = 3
    STOPPED = 4
    MANUAL = 5
    OVER_RANGE = 6


# What the control file may set, by name.
STATES = {
    "maintenance": Status.MAINTENANCE,
    "calibration": Status.CALIBRATION,
    "fault": Status.FAULT,
    "stopped": Status.STOPPED,
    "manual": Status.MANUAL,
}
ALL = "all"  # the control file's name for every instrument at once


class Analyzer:
    """Reports what `measure()` gives (the process value) while no state is set, else:
    maintenance, stopped: the value when the state began; calibration: the standard;
    fault: 0; manual: the configured manual value, or the value when the state began."""

    def __init__(self, config: AnalyzerConfig, measure: Callable[[], float]) -> None:
        self.config = config
        self._measure = measure
        self.state: Status | None = None
        self._held = 0.0

    @property
    def measuring(self) -> bool:
        return self.state is None

    @property
    def value(self) -> float:
        state = self.state
        if state is None:
            return self._measure()
        if state is Status.CALIBRATION:
            return self.config.standard
        if state is Status.FAULT:
            return 0.0
        if state is Status.MANUAL and self.config.manual is not None:
            return self.config.manual
        return self._held

    @property
    def status(self) -> int:
        if self.state is not None:
            return int(self.state)
        over = self._measure() > self.config.range[1]
        return int(Status.OVER_RANGE if over else Status.NORMAL)

    def set_state(self, state: Status | None) -> None:
        """The value reported until now is what a holding state holds (so a state kept from
        one control file to the next keeps its value)."""
        self._held = self.value
        self.state = state


def parse_states(spec: Any, names: tuple[str, ...]) -> dict[str, Status | None]:
    """{"cod": "calibration", "all": "maintenance"} -> every instrument of `names` and its
    state (None: measuring). "all" sets every instrument; a named one overrides it.
    None or {} -> all measuring. ValueError for anything else, naming the entry."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ValueError(f'sewage must be {{"<instrument>": "<state>"}}, got {spec!r}')
    for name, state in spec.items():
        if name != ALL and name not in names:
            raise ValueError(
                f"sewage: unknown instrument {name!r} (one of {', '.join((*names, ALL))})"
            )
        if not isinstance(state, str) or state not in STATES:
            raise ValueError(f"sewage {name}: unknown state {state!r} (one of {', '.join(STATES)})")
    every = STATES[spec[ALL]] if ALL in spec else None
    return {name: STATES[spec[name]] if name in spec else every for name in names}
