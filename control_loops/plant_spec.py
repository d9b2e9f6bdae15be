"""The plant optimizer's configuration, without numerics: the equipment schedule (what the
drawings say, never fitted), the optimizer's bounds, the roles an `optimizer` loop reads and
writes, and how its configuration resolves into them. `control_loops.config` validates an
optimizer loop with this module at load time, so loading a config imports no numpy.

No site data lives here: a site's schedule and the point of each role are its
configuration (the demo hospital's: configs/control/plant/).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from edge_agent.config.base import Id, Model

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# Role names of a measured sample, "[i]" = equipment index (0-based, schedule order).
ROLES = {
    "load_kw": "cooling the building asks of the plant (BMS demand), kW",
    "wetbulb_c": "outdoor wet bulb, °C",
    "chws_c": "CHW supply header, °C",
    "chwr_c": "CHW return header, °C",
    "cws_c": "condenser supply header (from towers), °C",
    "cwr_c": "condenser return header, °C",
    "chw_flow": "CHW header flow, L/s",
    "cw_flow": "condenser header flow, L/s",
    "dp_kpa": "index-circuit differential pressure, kPa",
    "valve_pct": "most-open (or aggregate) air-handler valve, %",
    "plant_kw": "plant electrical power, kW",
    "pump_kw": "all pumps, kW",
    "tower_kw": "all tower fans, kW",
    "chiller_kw[i]": "chiller input power, kW",
    "chiller_load_kw[i]": "chiller cooling, kW",
    "chiller_plr[i]": "chiller part-load ratio, % (load / capacity now)",
    "chiller_chws_c[i]": "chiller leaving chilled water, °C",
    "chiller_ecwt_c[i]": "chiller entering condenser water, °C",
    "chiller_running[i]": "compressor running, 0/1",
    "chiller_fault[i]": "tripped, 0/1",
    "chw_pump_kw[j]": "CHW pump drive power, kW",
    "chw_pump_speed[j]": "CHW pump speed, %",
    "chw_pump_flow[j]": "CHW pump flow, L/s",
    "chw_pump_head[j]": "CHW pump head, kPa",
    "cw_pump_kw[j]": "condenser pump drive power, kW",
    "cw_pump_speed[j]": "condenser pump speed, %",
    "cw_pump_flow[j]": "condenser pump flow, L/s",
    "cw_pump_head[j]": "condenser pump head, kPa",
    "tower_kw[k]": "tower cell fan power, kW",
    "tower_speed[k]": "tower cell fan speed, %",
    "tower_in_c[k]": "tower cell entering water, °C",
    "tower_out_c[k]": "tower cell leaving water, °C",
    "tower_flow[k]": "tower cell water flow, L/s",
}


def role(name: str, index: int) -> str:
    return f"{name}[{index}]"


# ---- equipment schedule (what the drawings say; never fitted) -----------------------------


class ChillerSpec(Model):
    id: Id
    capacity_kw: Positive  # nameplate cooling at the rating point
    rated_kw: Positive  # nameplate input power at the rating point
    design_chw_flow_ls: Positive
    design_cw_flow_ls: Positive
    cw_pump: int = Field(ge=0)  # index of its (headered, staged-with-it) condenser pump


class PumpSpec(Model):
    id: Id
    design_flow_ls: Positive
    design_head_kpa: Positive
    min_speed: Annotated[float, Field(ge=0, lt=1)] = 0.3


class TowerSpec(Model):
    id: Id
    fan_kw: Positive
    design_water_flow_ls: Positive
    design_approach_k: Positive = 4.0
    design_range_k: Positive = 5.0


class PlantSpec(Model):
    chillers: list[ChillerSpec] = Field(min_length=1)
    chw_pumps: list[PumpSpec] = Field(min_length=1)
    cw_pumps: list[PumpSpec] = Field(min_length=1)
    towers: list[TowerSpec] = Field(min_length=1)
    chw_design_flow_ls: Positive
    chw_design_head_kpa: Positive
    chw_design_dp_kpa: Positive
    design_delta_t_k: Positive = 5.0
    cw_design_flow_ls: Positive
    cw_design_head_kpa: Positive
    cw_static_head_kpa: Annotated[float, Field(ge=0)] = 0.0


# What an optimizer loop writes, "[i]"/"[j]"/"[k]" as in ROLES.
COMMAND_ROLES = {
    "chws_setpoint": "plant CHW supply setpoint, °C",
    "cws_setpoint": "plant condenser supply setpoint, °C",
    "dp_setpoint": "index-circuit differential pressure setpoint, kPa",
    "chiller_enable[i]": "chiller run command",
    "chiller_setpoint[i]": "chiller leaving CHW setpoint, °C",
    "chw_pump_enable[j]": "CHW pump run command",
    "chw_pump_speed_cmd[j]": "CHW pump speed command, %",
    "cw_pump_enable[j]": "condenser pump run command",
    "cw_pump_speed_cmd[j]": "condenser pump speed command, %",
    "tower_fan_cmd[k]": "tower cell fan speed command, %",
}
# Read too, but not a measurement: the state of a run command the loop writes.
STATE_ROLES = {"chiller_enabled[i]": "chiller run command as read back, 0/1"}


Temp = Annotated[float, Field(ge=-10, le=60, allow_inf_nan=False)]
Frac = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class OptimizerLimits(Model):
    """Bounds of the decisions and the comfort/safety margins the optimizer keeps."""

    chws_min: Temp = 5.5
    # Hospital: dehumidification (theatres, isolation rooms) caps the CHW supply reset.
    chws_max: Temp = 9.0
    chws_step: Annotated[float, Field(gt=0, le=2)] = 0.25
    cws_min: Temp = 18.0  # lowest entering condenser water the chillers accept
    cws_max: Temp = 32.0
    dp_min: Annotated[float, Field(gt=0)] = 30.0  # kPa, worst-case coil's floor
    dp_max: Annotated[float, Field(gt=0)] = 250.0
    dp_margin: Annotated[float, Field(ge=0, le=1)] = 0.1  # on the model's required DP
    # kPa/s a written DP setpoint may fall (a rise goes at once). A step down, together with
    # a CHW pump stopping, collapses the flow for a moment while the drives wind back and
    # the coil valves open: enough to trip chillers near their minimum evaporator flow.
    dp_fall_rate: Annotated[float, Field(gt=0)] = 0.1
    valve_target: Frac = 0.9  # most-open valve kept at this opening (authority left)
    plr_min: Frac = 0.3
    plr_max: Frac = 0.95
    load_margin: Annotated[float, Field(ge=0, le=1)] = 0.08  # capacity kept above the load
    min_chw_flow_fraction: Frac = 0.35  # per running chiller, of its design flow
    cw_flow_ratios: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)  # x design of running
    fan_min: Frac = 0.2
    fan_step: Annotated[float, Field(gt=0, le=0.5)] = 0.05
    stage_change_kw: Annotated[float, Field(ge=0)] = 15.0  # hysteresis against cycling
    # A new chiller line-up is kept this long (unless it cannot carry the load): starts and
    # stops disturb the supply temperature, and compressors have anti-recycle timers.
    min_stage_hold_s: Annotated[float, Field(ge=0)] = 1800.0
    max_starts: Annotated[int, Field(ge=1)] = 1  # chillers started by one line-up change
    chiller_offset_max: Annotated[float, Field(ge=0, le=5)] = 1.0  # K, per-chiller setpoints
    # What the chillers' setpoint registers accept (configs/maps: 5-12 °C).
    chiller_setpoint_range: tuple[Temp, Temp] = (5.0, 12.0)

    @model_validator(mode="after")
    def _ordered(self) -> OptimizerLimits:
        if not (self.chws_min <= self.chws_max and self.cws_min <= self.cws_max):
            raise ValueError("chws_min/cws_min must not exceed chws_max/cws_max")
        if not (self.dp_min <= self.dp_max and self.plr_min < self.plr_max):
            raise ValueError("need dp_min <= dp_max and plr_min < plr_max")
        if not self.cw_flow_ratios or min(self.cw_flow_ratios) <= 0:
            raise ValueError("cw_flow_ratios must be positive")
        return self


# ---- roles of a schedule ------------------------------------------------------------------


def expand(templates: Mapping[str, str], spec: PlantSpec) -> Iterator[str]:
    """The roles of `templates` for the equipment of `spec` ("chiller_kw[i]" -> one per
    chiller, in schedule order)."""
    counts = {"chiller": len(spec.chillers), "chw_pump": len(spec.chw_pumps),
              "cw_pump": len(spec.cw_pumps), "tower": len(spec.towers)}  # fmt: skip
    for template in templates:
        name, _, index = template.partition("[")
        if not index:
            yield name
            continue
        group = next(g for g in ("chw_pump", "cw_pump", "chiller", "tower") if name.startswith(g))
        yield from (role(name, n) for n in range(counts[group]))


def critical_roles(spec: PlantSpec) -> list[str]:
    """Inputs without which the loop cannot act: a bad one puts it in its safe state. The
    rest only feed the models (a missing one leaves a gap in a fit)."""
    found = ["load_kw", "wetbulb_c", "chws_c"]
    for i in range(len(spec.chillers)):
        found += [role(r, i) for r in ("chiller_running", "chiller_fault", "chiller_enabled")]
    return found


@dataclass(frozen=True)
class Resolved:
    spec: PlantSpec
    limits: OptimizerLimits
    inputs: dict[str, str]  # measured (and state) role -> point
    outputs: dict[str, str]  # command role -> point
    critical: frozenset[str] = field(default_factory=frozenset)


def errors(exc: ValidationError, where: str) -> str:
    """The first problem of a validation error, as `where.path: message`."""
    first = exc.errors()[0]
    path = ".".join(str(p) for p in (where, *first["loc"]))
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {first['msg']}{more}"


def resolve(
    plant: Mapping[str, Any],
    bounds: Mapping[str, Any],
    stage_hold: float,
    points: Mapping[str, str | None],
) -> Resolved:
    """An optimizer loop's schedule, limits and role -> point maps (its `plant`, `bounds`,
    `stage_hold` and `points`); ValueError when wrong. A role the config does not map (or
    maps to null) is not read or written; the critical ones must be mapped."""
    try:
        spec = PlantSpec.model_validate(plant)
    except ValidationError as exc:
        raise ValueError(errors(exc, "plant")) from None
    if "min_stage_hold_s" in bounds:
        raise ValueError("give the staging hold as stage_hold, not bounds.min_stage_hold_s")
    try:
        limits = OptimizerLimits.model_validate({**bounds, "min_stage_hold_s": stage_hold})
    except ValidationError as exc:
        raise ValueError(errors(exc, "bounds")) from None
    commands = list(expand(COMMAND_ROLES, spec))
    known = [*expand(ROLES, spec), *expand(STATE_ROLES, spec), *commands]
    unknown = sorted(set(points) - set(known))
    if unknown:
        raise ValueError(f"points: unknown role(s) {', '.join(unknown)} (roles: docs/control.md)")
    critical = critical_roles(spec)
    missing = [r for r in critical if points.get(r) is None]
    if missing:
        raise ValueError(f"points: the loop cannot act without {', '.join(missing)}")
    mapped = {r: p for r in known if (p := points.get(r)) is not None}
    inputs = {r: p for r, p in mapped.items() if r not in commands}
    outputs = {r: p for r, p in mapped.items() if r in commands}
    return Resolved(spec, limits, inputs, outputs, frozenset(critical))
