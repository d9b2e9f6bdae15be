"""The loops the runner steps: each turns good inputs into outputs for one period. The
numerics are numba kernels (control_loops.kernels); the sequences are in `sequences`.
`Loop` is the base the optimizer's `plant_loop.PlantLoop` builds on too."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from control_loops import kernels
from control_loops.config import (
    ChwResetLoop,
    CondenserLoop,
    DpResetLoop,
    LoopBase,
    LoopConfig,
    PidLoop,
    StagingLoop,
    finite,
)
from control_loops.sequences import (
    Staging,
    StagingParams,
    TrimRespond,
    ValveRequests,
    chw_reset_requests,
    dp_reset_requests,
)
from edge_agent import logs
from edge_agent.points import Value

log = logs.get("loops")
Output = float | bool  # what a loop writes: an analog setpoint, a run command


def fingerprint(cfg: LoopBase) -> str:
    """The loop's configuration: settings made by command outlive a restart, not a change."""
    return cfg.fingerprint()


class Loop:
    """One configured loop: its state, and the step that turns inputs into outputs."""

    type = ""

    def __init__(self, cfg: LoopConfig) -> None:
        self.cfg: LoopConfig = cfg
        self.id = cfg.id
        self.enabled = cfg.enabled
        self.mode = "auto" if self.enabled else "disabled"
        self.due: float | None = None
        self.last_step: float | None = None
        self.inputs: dict[str, float | None] = {}
        self.outputs: dict[str, Value] = {}  # last computed
        self.written: dict[str, Value] = {}  # last written and confirmed (done)
        self.result: str | None = None
        self.safe_reason: str | None = None
        self.retry_at: dict[str, float] = {}
        self.overrides: dict[str, float] = {}  # parameters set by command
        self.changed: dict[str, Any] | None = None  # the last loop command: by whom, when
        self.step_us = 0.0
        self.step_us_max = 0.0
        self.steps = 0
        self.writes = 0

    # Subclasses: compute outputs from good inputs; `held` maps blocked outputs to the
    # value that holds them; `shape` clamps and rate-limits an analog output.
    def compute(
        self,
        values: dict[str, float],
        now: float,
        dt: float,
        held: dict[str, Value],
        shape: Callable[[str, float, float], float],
        actual: Callable[[str], float | None],
    ) -> dict[str, Output]:
        raise NotImplementedError

    def track(self, value: float | None, values: dict[str, float], dt: float) -> None:
        """Not in control (disabled, safe): follow the output's actual value."""

    def bad(self, problems: dict[str, str]) -> dict[str, str]:
        """The input problems that stop the loop (some loops can do without some inputs)."""
        return problems

    @property
    def in_control(self) -> bool:
        """Commanding its outputs (a fallback loop stands by meanwhile)."""
        return self.enabled and self.mode in ("auto", "overridden")

    def enable(self) -> None:
        """Control starts (again) from the present state."""

    def set(self, parameter: str, value: float) -> None:
        raise ValueError(f"loop {self.id} ({self.type}) has no settable parameters")

    @property
    def interval(self) -> float:
        """How often the runner steps the loop (the optimizer: more often than it plans)."""
        return self.cfg.period

    def outcome(self, ref: str, value: Value, final: dict[str, Any]) -> None:
        """The final answer to a write of the loop's."""

    def details(self) -> dict[str, Any]:
        """Loop-specific entries of the status."""
        return {}

    def jobs(self) -> list[asyncio.Task]:
        """Background work of the loop's own (ended with the runner)."""
        return []


class Pid(Loop):
    type = "pid"
    cfg: PidLoop

    def __init__(self, cfg: PidLoop) -> None:
        super().__init__(cfg)
        self.setpoint: float | None = cfg.setpoint if isinstance(cfg.setpoint, float) else None
        self._tuning = {"kp": cfg.kp, "ti": cfg.ti, "td": cfg.td}
        self.params = self._params(**self._tuning)
        self.state: np.ndarray | None = None
        self._out = np.empty(1)

    def _params(self, kp: float, ti: float, td: float) -> np.ndarray:
        cfg = self.cfg
        lo, hi = cfg.out_min, cfg.out_max
        if cfg.limits is not None:
            lo, hi = max(lo, cfg.limits.min), min(hi, cfg.limits.max)
        direction = kernels.DIRECT if cfg.direction == "direct" else kernels.REVERSE
        row = kernels.pid_params(kp, ti, td, cfg.td_filter, lo, hi, direction, cfg.tracking)
        return row[None, :]

    def _step(
        self, values: dict[str, float], auto: bool, manual: float, dt: float, start: float | None
    ) -> float:
        if self.state is None:
            self.state = kernels.pid_state(1, output=start)
        sp = self.setpoint if self.setpoint is not None else values.get("setpoint", math.nan)
        y = values.get("measurement", math.nan)
        kernels.pid_step(
            self.params,
            self.state,
            np.array([sp]),
            np.array([y]),
            np.array([auto]),
            np.array([manual]),
            dt,
            self._out,
        )
        return float(self._out[0])

    def compute(self, values, now, dt, held, shape, actual):
        ref = self.cfg.output
        if ref in held:
            manual = finite(held[ref])
            self._step(values, False, math.nan if manual is None else manual, dt, manual)
            return {}
        u = self._step(values, True, math.nan, dt, actual(ref))
        if math.isnan(u):
            return {}
        v = shape(ref, u, dt)
        if v != u:  # the rate limit held it back: the integrator follows what is applied
            assert self.state is not None
            self.state[0, 0] += v - u
            self.state[0, 3] = v
        return {ref: v}

    def track(self, value, values, dt):
        manual = math.nan if value is None else value
        self._step(values, False, manual, dt, value)

    def set(self, parameter, value):
        if parameter == "setpoint":
            self.setpoint = value
        elif parameter in self._tuning:
            tuning = {**self._tuning, parameter: value}
            self.params = self._params(**tuning)  # ValueError when bad
            self._tuning = tuning
        else:
            raise ValueError(f"a pid loop sets setpoint, kp, ti or td, not {parameter!r}")
        self.overrides[parameter] = value


class Reset(Loop):
    """Trim and respond of a setpoint (CHW supply temperature or pump DP)."""

    cfg: ChwResetLoop | DpResetLoop

    def __init__(self, cfg: ChwResetLoop | DpResetLoop) -> None:
        super().__init__(cfg)
        self.type = cfg.type
        self.bounds = {"sp_min": cfg.sp_min, "sp_max": cfg.sp_max}
        self.sequence = TrimRespond(self._tr_params(), cfg.initial, cfg.delay, cfg.time_step)
        self.valves = ValveRequests(cfg.valve_high, cfg.valve_low)

    def _tr_params(self) -> tuple[float, ...]:
        c = self.cfg
        return (self.bounds["sp_min"], self.bounds["sp_max"], c.trim, c.respond,
                c.max_response, c.ignored_requests)  # fmt: skip

    def bad(self, problems):
        # A few coils out of touch leave enough requests to go on; all of them do not.
        valves = [k for k in problems if k.startswith("valve")]
        if valves and len(valves) < len(self.cfg.valves):
            return {k: v for k, v in problems.items() if not k.startswith("valve")}
        return problems

    def compute(self, values, now, dt, held, shape, actual):
        ref = self.cfg.output
        if self.cfg.enabled_by is not None and not values.get("enabled_by"):
            self.sequence.disable()
            return {ref: shape(ref, self.sequence.setpoint, dt)}
        if self.cfg.requests is not None:
            requests = values["requests"]
        else:
            positions = [values.get(f"valve{i}", math.nan) for i in range(len(self.cfg.valves))]
            count = chw_reset_requests if self.type == "chw_reset" else dp_reset_requests
            requests = count(self.valves, positions)
        sp = self.sequence.step(requests, now)
        return {} if ref in held else {ref: shape(ref, sp, dt)}

    def enable(self):
        self.sequence.disable()  # G36: back to the initial setpoint, then the delay

    def set(self, parameter, value):
        if parameter not in self.bounds:
            raise ValueError(f"a {self.type} loop sets sp_min or sp_max, not {parameter!r}")
        bounds = {**self.bounds, parameter: value}
        params = kernels.trim_respond_params(
            bounds["sp_min"], bounds["sp_max"], *self._tr_params()[2:]
        )
        self.bounds = bounds
        self.sequence.params = params
        self.sequence.setpoint = min(max(self.sequence.setpoint, params[0]), params[1])
        self.overrides[parameter] = value


class Stager(Loop):
    type = "staging"
    cfg: StagingLoop

    _SETTABLE = ("stage_up_plr", "stage_down_plr", "min_running")

    def __init__(self, cfg: StagingLoop) -> None:
        super().__init__(cfg)
        fields = {f.name for f in dataclasses.fields(StagingParams)}
        self.params = StagingParams(**{k: getattr(cfg, k) for k in fields})
        self.sequence: Staging | None = None
        self.reason = ""

    def bad(self, problems):
        return {k: v for k, v in problems.items() if not k.startswith("run_hours")}

    def compute(self, values, now, dt, held, shape, actual):
        cfg = self.cfg
        n = len(cfg.chillers)
        if self.sequence is None:  # start from what runs now
            running = [i for i in range(n) if values.get(f"status{i}")]
            self.sequence = Staging(self.params, running)

        def value(name: str, given: float | str | None) -> float:
            return given if isinstance(given, float) else values.get(name, math.nan)

        available = [
            c.available is None or bool(values.get(f"available{i}"))
            for i, c in enumerate(cfg.chillers)
        ]
        decision = self.sequence.step(
            values["load"],
            [c.capacity_kw for c in cfg.chillers],
            available,
            [values.get(f"run_hours{i}", math.nan) for i in range(n)],
            values["chw_supply"],
            value("chw_setpoint", cfg.chw_setpoint),
            value("dp", cfg.dp),
            value("dp_setpoint", cfg.dp_setpoint),
            now,
        )
        if decision.changed:
            log.info("staging", loop=self.id, on=list(decision.on), reason=decision.reason)
        self.reason = decision.reason
        runs = {c.run: i in decision.on for i, c in enumerate(cfg.chillers)}
        return {ref: on for ref, on in runs.items() if ref not in held}

    def enable(self):
        self.sequence = None

    def set(self, parameter, value):
        if parameter not in self._SETTABLE:
            allowed = ", ".join(self._SETTABLE)
            raise ValueError(f"a staging loop sets {allowed}, not {parameter!r}")
        if parameter == "min_running":
            if value != int(value):
                raise ValueError("min_running is a whole number")
            value = int(value)
        self.params = dataclasses.replace(self.params, **{parameter: value})
        if self.sequence is not None:
            self.sequence.params = self.params
        self.overrides[parameter] = value


class Condenser(Loop):
    type = "condenser"
    cfg: CondenserLoop

    _SETTABLE = ("design_approach", "low_load_approach", "lift", "cw_min", "cw_max")

    def __init__(self, cfg: CondenserLoop) -> None:
        super().__init__(cfg)
        fields = {f.name for f in dataclasses.fields(kernels.CondenserParams)}
        self.params = kernels.CondenserParams(**{k: getattr(cfg, k) for k in fields})

    def compute(self, values, now, dt, held, shape, actual):
        ref = self.cfg.output
        sp = kernels.condenser_setpoint(
            self.cfg.mode,
            values.get("wetbulb", math.nan),
            values.get("chw_supply", math.nan),
            values.get("load_fraction", math.nan),
            self.params,
        )
        return {} if ref in held or math.isnan(sp) else {ref: shape(ref, sp, dt)}

    def set(self, parameter, value):
        if parameter not in self._SETTABLE:
            allowed = ", ".join(self._SETTABLE)
            raise ValueError(f"a condenser loop sets {allowed}, not {parameter!r}")
        self.params = dataclasses.replace(self.params, **{parameter: value})
        self.overrides[parameter] = value
