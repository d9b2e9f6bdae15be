"""Configuration of the control loops (`loops:`) and of equipment protection (`protection:`).

Pure pydantic: importing this module imports neither numpy nor numba, so that loading a
config (and the CLI) stays fast. The runner turns these models into kernel parameters.
Times are seconds (`Duration`/`Gap`: "30s", "5m"); values are in the points' units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from control_loops.plant_spec import Resolved, resolve
from edge_agent.config.base import Duration, Gap, Id, Limits, Model
from edge_agent.i18n import _

_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_POINT_REF = re.compile(rf"^{_ID}\.{_ID}$")


def _point_ref(value: str) -> str:
    if not _POINT_REF.match(value):
        raise ValueError(f"expected a point as device.point (e.g. ch-1.chws_sp), got {value!r}")
    return value


PointRef = Annotated[str, AfterValidator(_point_ref)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class SafeValue(Model):
    """Safe state: write this value to every output."""

    value: float | bool


# hold: leave the outputs where they are; release: give them back to the equipment's own
# control (or to a lower source); {value: x}: drive them to x.
SafeState = Literal["hold", "release"] | SafeValue


class LoopBase(Model):
    id: Id
    period: Duration = 5.0
    enabled: bool = True
    safe_state: SafeState = "hold"
    # An input whose source timestamp is older than this counts as stale. None: only the
    # cache's own judgement (not refreshed within its device's stale limit).
    stale_after: Duration | None = None
    limits: Limits | None = None  # clamp on every analog output
    max_step: Positive | None = None  # largest change of an analog output per period
    deadband: NonNegative = 0.0  # write only when the output moved more than this
    # A fallback: this loop stands by (writes nothing) while any of these loops is in
    # control, and takes its outputs back when they are disabled or in their safe state.
    yields_to: tuple[Id, ...] = ()

    def inputs(self) -> dict[str, str]:
        """Input name -> point (every point the loop reads)."""
        return {}

    def outputs(self) -> list[str]:
        """Points the loop writes."""
        return []

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        """(key path within the loop, point, written?) for every point referenced."""
        return iter(())


class PidLoop(LoopBase):
    """A PID controller: measurement -> output, towards a setpoint point or constant."""

    type: Literal["pid"]
    measurement: PointRef
    setpoint: Finite | PointRef
    output: PointRef
    kp: NonNegative
    ti: Gap = 0.0  # integral time; 0: no integral action
    td: Gap = 0.0  # derivative time; 0: no derivative action
    td_filter: NonNegative = 10.0
    tracking: NonNegative | None = None  # back-calculation gain (1/s); None: 2 / ti
    out_min: Finite = 0.0
    out_max: Finite = 100.0
    max_rate: Positive | None = None  # output units per second
    direction: Literal["direct", "reverse"] = "direct"

    @model_validator(mode="after")
    def _range(self) -> PidLoop:
        if not self.out_min < self.out_max:
            raise ValueError(f"out_min ({self.out_min:g}) must be below out_max ({self.out_max:g})")
        return self

    def inputs(self) -> dict[str, str]:
        found = {"measurement": self.measurement}
        if isinstance(self.setpoint, str):
            found["setpoint"] = self.setpoint
        return found

    def outputs(self) -> list[str]:
        return [self.output]

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        yield ("measurement",), self.measurement, False
        if isinstance(self.setpoint, str):
            yield ("setpoint",), self.setpoint, False
        yield ("output",), self.output, True


class _TrimRespondLoop(LoopBase):
    """Trim and respond of a setpoint from valve positions or a request-count point."""

    output: PointRef
    valves: tuple[PointRef, ...] = ()  # valve positions, %
    requests: PointRef | None = None  # or a point that counts the requests
    valve_high: Finite = 95.0
    valve_low: Finite = 85.0
    # While this point is false (plant off), the setpoint returns to `initial`.
    enabled_by: PointRef | None = None
    initial: Finite
    sp_min: Finite
    sp_max: Finite
    trim: Finite
    respond: Finite
    max_response: Finite
    ignored_requests: NonNegative = 2
    delay: Gap = 600.0
    time_step: Duration = 120.0

    @model_validator(mode="after")
    def _consistent(self) -> _TrimRespondLoop:
        if bool(self.valves) == (self.requests is not None):
            raise ValueError(_("give either valves (positions) or requests (a count point)"))
        if not self.valve_low < self.valve_high:
            raise ValueError(f"valve_low ({self.valve_low:g}) must be below valve_high")
        if not self.sp_min < self.sp_max:
            raise ValueError(f"sp_min ({self.sp_min:g}) must be below sp_max ({self.sp_max:g})")
        if not self.sp_min <= self.initial <= self.sp_max:
            raise ValueError(f"initial ({self.initial:g}) must be within sp_min..sp_max")
        if self.trim == 0 or self.respond == 0 or (self.trim > 0) == (self.respond > 0):
            raise ValueError(_("trim and respond must be non-zero and have opposite signs"))
        if self.max_response == 0 or (self.max_response > 0) != (self.respond > 0):
            raise ValueError(_("max_response must have the sign of respond"))
        return self

    def inputs(self) -> dict[str, str]:
        found = {f"valve{i}": ref for i, ref in enumerate(self.valves)}
        if self.requests is not None:
            found["requests"] = self.requests
        if self.enabled_by is not None:
            found["enabled_by"] = self.enabled_by
        return found

    def outputs(self) -> list[str]:
        return [self.output]

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        for i, ref in enumerate(self.valves):
            yield ("valves", i), ref, False
        if self.requests is not None:
            yield ("requests",), self.requests, False
        if self.enabled_by is not None:
            yield ("enabled_by",), self.enabled_by, False
        yield ("output",), self.output, True


class ChwResetLoop(_TrimRespondLoop):
    """CHW supply temperature reset: trim warmer (+), respond colder (-)."""

    type: Literal["chw_reset"]


class DpResetLoop(_TrimRespondLoop):
    """Pump DP setpoint reset: trim lower (-), respond higher (+)."""

    type: Literal["dp_reset"]


class Chiller(Model):
    run: PointRef  # run command (binary, writable)
    status: PointRef  # running status (binary)
    capacity_kw: Positive
    available: PointRef | None = None  # true while the chiller may run (no fault)
    run_hours: PointRef | None = None  # unknown hours: started last, stopped first


class StagingLoop(LoopBase):
    """Chiller staging (sequences.Staging) on the plant load; writes the run commands."""

    type: Literal["staging"]
    chillers: tuple[Chiller, ...] = Field(min_length=1)
    load: PointRef  # plant load, kW
    chw_supply: PointRef
    chw_setpoint: Finite | PointRef
    dp: PointRef | None = None
    dp_setpoint: Finite | PointRef | None = None
    stage_up_plr: Fraction = 0.9
    stage_up_delay: Gap = 600.0
    stage_down_plr: Fraction = 0.8
    stage_down_delay: Gap = 900.0
    failsafe_dt: Positive = 1.0
    failsafe_dp_fraction: Fraction = 0.8
    failsafe_delay: Gap = 900.0
    min_hold: Gap = 900.0
    min_running: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> StagingLoop:
        if not self.stage_down_plr < self.stage_up_plr:
            raise ValueError(
                f"stage_down_plr ({self.stage_down_plr:g}) must be below stage_up_plr "
                f"({self.stage_up_plr:g}), or the plant would stage up and down in turn"
            )
        if (self.dp is None) != (self.dp_setpoint is None):
            raise ValueError(_("give dp and dp_setpoint together"))
        if isinstance(self.safe_state, SafeValue):
            raise ValueError(_("a staging loop's safe_state is hold or release"))
        return self

    def inputs(self) -> dict[str, str]:
        found = {"load": self.load, "chw_supply": self.chw_supply}
        for name in ("chw_setpoint", "dp", "dp_setpoint"):
            value = getattr(self, name)
            if isinstance(value, str):
                found[name] = value
        for i, chiller in enumerate(self.chillers):
            found[f"status{i}"] = chiller.status
            if chiller.available is not None:
                found[f"available{i}"] = chiller.available
            if chiller.run_hours is not None:
                found[f"run_hours{i}"] = chiller.run_hours
        return found

    def outputs(self) -> list[str]:
        return [c.run for c in self.chillers]

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        for name in ("load", "chw_supply", "chw_setpoint", "dp", "dp_setpoint"):
            value = getattr(self, name)
            if isinstance(value, str):
                yield (name,), value, False
        for i, chiller in enumerate(self.chillers):
            yield ("chillers", i, "run"), chiller.run, True
            yield ("chillers", i, "status"), chiller.status, False
            for name in ("available", "run_hours"):
                ref = getattr(chiller, name)
                if ref is not None:
                    yield ("chillers", i, name), ref, False


class CondenserLoop(LoopBase):
    """Condenser water supply setpoint from wet-bulb (approach) or CHW supply (lift)."""

    type: Literal["condenser"]
    output: PointRef
    mode: Literal["approach", "lift"] = "approach"
    wetbulb: PointRef | None = None
    chw_supply: PointRef | None = None
    load_fraction: PointRef | None = None  # approach mode; unknown: the design approach
    design_approach: NonNegative = 4.0
    low_load_approach: NonNegative = 2.5
    lift: Positive = 20.0
    cw_min: Finite = 18.0
    cw_max: Finite = 32.0
    min_approach: NonNegative = 2.0

    @model_validator(mode="after")
    def _consistent(self) -> CondenserLoop:
        if self.mode == "approach" and self.wetbulb is None:
            raise ValueError(_("approach mode needs a wetbulb point"))
        if self.mode == "lift" and self.chw_supply is None:
            raise ValueError(_("lift mode needs a chw_supply point"))
        if not self.cw_min < self.cw_max:
            raise ValueError(f"cw_min ({self.cw_min:g}) must be below cw_max ({self.cw_max:g})")
        if not self.min_approach <= self.low_load_approach <= self.design_approach:
            raise ValueError(_("need min_approach <= low_load_approach <= design_approach"))
        return self

    def inputs(self) -> dict[str, str]:
        names = ("wetbulb", "chw_supply", "load_fraction")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def outputs(self) -> list[str]:
        return [self.output]

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        for name, ref in self.inputs().items():
            yield (name,), ref, False
        yield ("output",), self.output, True


class OptimizerLoop(LoopBase):
    """The whole-plant optimizer (control_loops.plant_loop): chiller line-up, supply and DP
    setpoints, pumps and tower cells, on models it fits from measured data."""

    type: Literal["optimizer"]
    period: Duration = 300.0  # optimisation period (sooner when the load moves or it runs warm)
    sequence_step: Duration = 10.0  # the loop is stepped (sequence, model feed) this often
    refit_every: Duration = 3600.0
    # Samples taken before it first acts (then it refits and acts on the fitted models; a
    # model without enough varied data stays nominal). 0: act at once on nominal models.
    min_samples: int = Field(120, ge=0)
    fit_min_samples: int = Field(120, ge=4)  # per model (ModelFitter.min_samples)
    stage_hold: Gap = 1800.0  # a new line-up is kept this long unless it cannot carry the load
    pre_start: Gap = 120.0  # running chillers pre-cool this long before another one starts
    start_dip: NonNegative = 1.0  # K colder while a start is under way
    soft_load: Gap = 300.0  # a started chiller must run this long before another one stops
    replan_load: NonNegative = 0.08  # re-optimise early when the load moved this fraction
    replan_warm: Positive = 1.0  # ... or the supply runs this many K above its setpoint
    bounds: dict[str, Any] = Field(default_factory=dict)  # plant_spec.OptimizerLimits fields
    plant: dict[str, Any]  # plant_spec.PlantSpec: the site's equipment schedule
    # role -> point (plant_spec.ROLES, COMMAND_ROLES); absent or null: not read or written.
    points: dict[str, PointRef | None] = Field(default_factory=dict)
    _resolved: Resolved | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> OptimizerLoop:
        if self.limits is not None or self.max_step is not None:
            raise ValueError(
                "an optimizer loop takes its bounds under `bounds`, not limits/max_step"
            )
        if isinstance(self.safe_state, SafeValue):
            raise ValueError(_("an optimizer loop's safe_state is hold or release"))
        # ValueError with the cause when inconsistent (plant_spec imports no numpy).
        self._resolved = resolve(self.plant, self.bounds, self.stage_hold, self.points)
        return self

    @property
    def resolved(self) -> Resolved:
        """The schedule, the limits and the role -> point maps."""
        assert self._resolved is not None  # set by the validator
        return self._resolved

    def inputs(self) -> dict[str, str]:
        return dict(self.resolved.inputs)

    def outputs(self) -> list[str]:
        return list(self.resolved.outputs.values())

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        for name, ref in self.resolved.inputs.items():
            yield ("points", name), ref, False
        for name, ref in self.resolved.outputs.items():
            yield ("points", name), ref, True


LoopConfig = Annotated[
    PidLoop | ChwResetLoop | DpResetLoop | StagingLoop | CondenserLoop | OptimizerLoop,
    Field(discriminator="type"),
]


# ---- equipment protection ---------------------------------------------------------------


class MinFlow(Model):
    point: PointRef  # chilled-water flow through the machine
    value: Finite  # below this: no start, and a running machine is stopped after `delay`
    delay: Gap = 10.0


class EquipmentProtection(Model):
    """Limits on starting and stopping one machine, whoever commands it."""

    id: Id
    run_command: PointRef  # the writable run command (binary)
    running: PointRef  # its running status (binary)
    min_on: Gap = 0.0
    min_off: Gap = 0.0
    max_starts_per_hour: int | None = Field(None, ge=1)
    min_flow: MinFlow | None = None

    def refs(self) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
        yield ("run_command",), self.run_command, True
        yield ("running",), self.running, False
        if self.min_flow is not None:
            yield ("min_flow", "point"), self.min_flow.point, False


def finite(value: object) -> float | None:
    """A reading's value as a finite float (booleans count as 0/1), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
