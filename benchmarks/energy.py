"""Whole-plant energy: four control strategies on the simulated hospital plant, one day each.

    cd /work/main && .venv/bin/python -m benchmarks.energy [--quick]

The plant (simulators.PlantRoom, configs/sim/hospital.yaml: equipment loops for DP and
condenser water on) is stepped in-process, STEP_S simulated seconds per control period,
from 22:00 (two hours of warm-up, the same for every strategy) through a whole day, for the
design day and a mild day. Strategies act only by writing command/setpoint tags and reading
measured tags through `PlantIO`; the oracle alone also reads the simulator's internals:

- baseline: CHW supply 7 °C, condenser supply 30 °C (the commissioning value of
  configs/sim/hospital.yaml) and DP fixed at the loop's design DP (100 kPa: the least that
  passes the design flow with the valves wide open), equal loading, staging at 90 % of
  running capacity (sequences.Staging), one CHW and one CW pump per chiller, constant-speed
  condenser pumps, all tower cells in service;
- g36: the G36 plant reset, one trim-and-respond variable from valve requests
  (sequences.TrimRespond, ValveRequests) that raises the DP setpoint over its first half
  and lowers the CHW supply over its second, staging by part-load ratio (sequences.Staging),
  condenser supply by approach to wet bulb (kernels.condenser_setpoint), CHW pumps staged by
  flow, condenser pumps trimmed to the design flow of the running chillers;
- optimizer: control_loops.optimizer.PlantOptimizer every 5 simulated minutes (sooner when
  the load moves by 8 % or the supply runs warm), on models fitted by ModelFitter from
  measured samples only: two identification days (a design-weather and a mild-weather day
  with other seeds, setpoints stepped at random every 40 min and the chiller line-up every
  2 h), then it keeps learning on the test day (refit every hour);
- oracle: the same optimizer over the same decisions, re-run every step on the simulator's
  true equations and true load and wet bulb (`TruePlantModel`).

Last line: one JSON object. Top-level *_kwh / savings / unmet / kw_per_ton keys are the
whole benchmark (both days); `days` holds each day on its own; `chart` is a PNG of plant kW
and kW/RT per strategy. `valve_saturated_hours` counts hours with the air-handler valves
(aggregate) 99 % open or more: the coils then get less water than they ask for, which the
simulator's coil forgives (docs/energy.md) but a building does not.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

from control_loops import kernels, sequences
from control_loops.models import ModelFitter
from control_loops.optimizer import PlantOptimizer, PlantSetpoints
from control_loops.plant_loop import (
    PRE_START_S,
    SOFT_LOAD_S,
    START_DIP_K,
    ChillerSequence,
    FallLimiter,
    cell_commands,
    chw_pump_commands,
    lineup_commands,
    plant_commands,
)
from control_loops.plant_spec import COMMAND_ROLES, ROLES, OptimizerLimits, PlantSpec, expand, role
from simulators.clock import SimClock
from simulators.config import DESIGN_DAY, KW_PER_RT, MILD_DAY, PlantConfig, WeatherConfig
from simulators.equipment import TowerCell
from simulators.plant import PlantRoom
from simulators.site import load_sim_config

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
SIM_CONFIG = REPO / "configs" / "sim" / "hospital.yaml"
STEP_S = 60.0  # control period; the plant integrates in 5 s substeps inside
WARMUP_H = 2.0
UNMET_TOLERANCE_K = 0.5  # CHW supply above chws_max by more than this counts as unmet
VALVE_SATURATED_PCT = 99.0  # aggregate valve this open: the coils ask for more water
LIMITS = OptimizerLimits()
DAYS = {"design": (DESIGN_DAY, 1), "mild": (MILD_DAY, 2)}
TRAINING = ((DESIGN_DAY, 11), (MILD_DAY, 12))
STRATEGIES = ("baseline", "g36", "optimizer", "oracle")


# The equipment schedule (nameplate data an engineer has from the drawings) and the point
# of each role: the agent's optimizer loop is configured with the same files.
PLANT_CONFIG = REPO / "configs" / "control" / "plant"
POINTS: dict[str, str] = yaml.safe_load((PLANT_CONFIG / "points.yaml").read_text())


def hospital_spec() -> PlantSpec:
    return PlantSpec.model_validate(yaml.safe_load((PLANT_CONFIG / "schedule.yaml").read_text()))


def role_points(spec: PlantSpec) -> dict[str, str]:
    """Measured role -> simulator tag (the agent's point names are the simulator's tags)."""
    return {r: POINTS[r] for r in expand(ROLES, spec)}


COMMANDS = {r: POINTS[r] for r in expand(COMMAND_ROLES, hospital_spec())}  # role -> tag


# ---- the plant as a strategy sees it -------------------------------------------------------


class PlantIO:
    """Measured tags to read, command tags to write: all a strategy may touch."""

    def __init__(self, plant: PlantRoom) -> None:
        self._plant = plant

    def read(self, tag: str) -> float:
        return float(self._plant.read(tag))

    def write(self, tag: str, value: float | bool) -> None:
        if self._plant.read(tag) != value:
            self._plant.write(tag, value)


def measure(io: PlantIO, points: dict[str, str]) -> dict[str, float]:
    return {r: io.read(tag) for r, tag in points.items()}


class Actuators:
    """Writes a plant line-up through `PlantIO` with control_loops.plant_loop's sequence
    (chillers with their condenser pumps, start before stop), CHW pumps, tower cells in
    service. Shared by every strategy; the agent's optimizer loop uses the same code."""

    def __init__(self, spec: PlantSpec) -> None:
        self.spec = spec
        self.sequence = ChillerSequence(PRE_START_S, SOFT_LOAD_S)
        self.dp_out = FallLimiter(LIMITS.dp_fall_rate)

    def _write(self, io: PlantIO, commands: dict[str, bool | float]) -> None:
        for name, value in commands.items():
            io.write(COMMANDS[name], value)

    def chillers(self, io: PlantIO, wanted: set[int], now: float, cw_speed_pct: float) -> set[int]:
        spec = self.spec
        running = {i for i, c in enumerate(spec.chillers) if int(io.read(f"{c.id}.status")) == 2}
        enabled = {i for i, c in enumerate(spec.chillers) if io.read(f"{c.id}.enable")}
        after = self.sequence.step(wanted, enabled, running, now)
        self._write(io, lineup_commands(spec, after, cw_speed_pct))
        return after

    def loaded(self, chillers: set[int], now: float) -> bool:
        """Every one of these chillers has run at least SOFT_LOAD_S."""
        return self.sequence.loaded(chillers, now)

    def chw_pumps(self, io: PlantIO, count: int) -> None:
        self._write(io, chw_pump_commands(self.spec, count))

    def cells(self, io: PlantIO, count: int) -> None:
        self._write(io, cell_commands(self.spec, count))


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


# ---- strategies ------------------------------------------------------------------------------


class Strategy:
    name = "?"

    def __init__(self, spec: PlantSpec) -> None:
        self.spec = spec
        self.points = role_points(spec)
        self.act = Actuators(spec)

    def start(self, io: PlantIO) -> None:
        io.write("plant.dp_control", True)
        io.write("plant.cw_control", True)

    def control(self, io: PlantIO, now: float, sample: dict[str, float]) -> None:
        raise NotImplementedError

    def _staging_inputs(self, io: PlantIO, sample: dict[str, float]) -> tuple:
        n = len(self.spec.chillers)
        caps = [c.capacity_kw for c in self.spec.chillers]
        available = [sample[role("chiller_fault", i)] < 0.5 for i in range(n)]
        hours = [io.read(f"{c.id}.run_hours") for c in self.spec.chillers]
        return caps, available, hours


class Baseline(Strategy):
    """A fixed-setpoint plant as commissioned: the common way hospitals run."""

    name = "baseline"
    CHWS, CWS = 7.0, 30.0

    def __init__(self, spec: PlantSpec) -> None:
        super().__init__(spec)
        # A fixed DP must pass the design flow at the design load: below the design DP the
        # valves saturate at peak and the coils are starved (80 kPa: 8 h at 100 % open).
        self.dp = spec.chw_design_dp_kpa
        self.staging = sequences.Staging(
            sequences.StagingParams(stage_up_plr=0.9, stage_down_plr=0.8), running=(0, 1)
        )

    def start(self, io: PlantIO) -> None:
        super().start(io)
        io.write("plant.chws_setpoint", self.CHWS)
        io.write("plant.cws_setpoint", self.CWS)
        io.write("plant.dp_setpoint", self.dp)
        self.act.cells(io, len(self.spec.towers))

    def control(self, io: PlantIO, now: float, sample: dict[str, float]) -> None:
        caps, available, hours = self._staging_inputs(io, sample)
        decision = self.staging.step(
            sample["load_kw"], caps, available, hours, sample["chws_c"], self.CHWS,
            sample["dp_kpa"], self.dp, now,
        )  # fmt: skip
        enabled = self.act.chillers(io, set(decision.on), now, 100.0)
        for c in self.spec.chillers:
            io.write(f"{c.id}.chws_setpoint", self.CHWS)
        self.act.chw_pumps(io, len(enabled))


class G36(Strategy):
    """ASHRAE Guideline 36 style: resets from valve requests, PLR staging, approach."""

    name = "g36"

    def __init__(self, spec: PlantSpec, limits: OptimizerLimits) -> None:
        super().__init__(spec)
        self.limits = limits
        # G36 plant reset: one trim-and-respond variable, 0-100 %. Its first half raises the
        # DP setpoint from its minimum to its design value, its second half lowers the CHW
        # supply from its maximum to its minimum. One aggregate air-handler valve in this
        # plant, so no request is ignored.
        self.reset = sequences.TrimRespond((0.0, 100.0, -2.0, 3.0, 7.0, 0), initial=50.0)
        # DP top: the design flow passes with the valves 90 % open (what balancing sets).
        self.dp_range = (limits.dp_min, spec.chw_design_dp_kpa / limits.valve_target**2)
        self.valves = sequences.ValveRequests(95.0, 85.0)
        self.staging = sequences.Staging(
            sequences.StagingParams(stage_up_plr=0.9, stage_down_plr=0.8), running=(0, 1)
        )
        self.condenser = kernels.CondenserParams(cw_min=limits.cws_min, cw_max=limits.cws_max)
        self.cw_speed = 100.0
        self.chw_pumps = 2
        self._pump_timer = 0.0

    def start(self, io: PlantIO) -> None:
        super().start(io)
        self.act.cells(io, len(self.spec.towers))

    def control(self, io: PlantIO, now: float, sample: dict[str, float]) -> None:
        spec = self.spec
        reset = self.reset.step(self.valves.count([sample["valve_pct"]]), now)
        lim, (dp_lo, dp_hi) = self.limits, self.dp_range
        dp = dp_lo + (dp_hi - dp_lo) * min(reset / 50.0, 1.0)
        chws = lim.chws_max - (lim.chws_max - lim.chws_min) * max(reset - 50.0, 0.0) / 50.0
        caps, available, hours = self._staging_inputs(io, sample)
        decision = self.staging.step(
            sample["load_kw"], caps, available, hours, sample["chws_c"], chws,
            sample["dp_kpa"], dp, now,
        )  # fmt: skip
        enabled = self.act.chillers(io, set(decision.on), now, self.cw_speed)
        plr = sample["load_kw"] / sum(caps[i] for i in enabled)
        cws = kernels.condenser_setpoint("approach", sample["wetbulb_c"], chws, plr, self.condenser)
        io.write("plant.chws_setpoint", round(chws, 2))
        for c in spec.chillers:
            io.write(f"{c.id}.chws_setpoint", round(chws, 2))
        io.write("plant.dp_setpoint", round(dp, 1))
        io.write("plant.cws_setpoint", round(_clamp(cws, 15.0, 35.0), 2))
        # Condenser pumps: trim the speed toward the running chillers' design flow.
        target = sum(spec.chillers[i].design_cw_flow_ls for i in enabled)
        error = (target - sample["cw_flow"]) / target
        self.cw_speed = _clamp(self.cw_speed + 25.0 * error, 40.0, 100.0)
        # CHW pumps staged by flow (5 min of the condition before a change).
        flow, per_pump = sample["chw_flow"], spec.chw_pumps[0].design_flow_ls
        want = self.chw_pumps
        if flow > 0.9 * self.chw_pumps * per_pump:
            want = self.chw_pumps + 1
        elif self.chw_pumps > 1 and flow < 0.7 * (self.chw_pumps - 1) * per_pump:
            want = self.chw_pumps - 1
        want = int(_clamp(want, 1, len(spec.chw_pumps)))
        self._pump_timer = self._pump_timer + STEP_S if want != self.chw_pumps else 0.0
        if self._pump_timer >= 300.0:
            self.chw_pumps, self._pump_timer = want, 0.0
        self.act.chw_pumps(io, self.chw_pumps)


def apply_setpoints(io: PlantIO, act: Actuators, sp: PlantSetpoints, now: float) -> None:
    wanted = {i for i, on in enumerate(sp.chillers_on) if on}
    enabled = act.chillers(io, wanted, now, sp.cw_pump_speed_pct)
    complete = enabled == wanted and act.loaded(wanted, now)
    commands = plant_commands(act.spec, LIMITS, sp, enabled, complete, START_DIP_K)
    act.dp_out.limit(commands, STEP_S, io.read("plant.dp_setpoint"))
    act._write(io, commands)


class Optimized(Strategy):
    """PlantOptimizer on fitted models; keeps learning while it runs."""

    name = "optimizer"
    PERIOD_S = 300.0
    REFIT_S = 3600.0

    def __init__(self, spec: PlantSpec, limits: OptimizerLimits, fitter: ModelFitter) -> None:
        super().__init__(spec)
        self.fitter = fitter
        self.opt = PlantOptimizer(limits, fitter.model)
        self.limits = limits
        self.sp: PlantSetpoints | None = None
        self._last = -math.inf
        self._last_refit = 0.0
        self._loads: deque[float] = deque(maxlen=int(self.PERIOD_S / STEP_S))
        self._planned_load = 0.0
        self.solve_ms: list[float] = []

    def control(self, io: PlantIO, now: float, sample: dict[str, float]) -> None:
        self.fitter.add(sample)
        if now - self._last_refit >= self.REFIT_S:
            self.fitter.refit()
            self.opt.update_models(self.fitter.model)
            self._last_refit = now
        self._loads.append(sample["load_kw"])
        load = statistics.fmean(self._loads)
        due = now - self._last >= self.PERIOD_S
        moved = abs(load - self._planned_load) > 0.08 * max(self._planned_load, 1.0)
        warm = self.sp is not None and sample["chws_c"] > self.sp.chws_setpoint + 1.0
        if due or moved or warm:
            started = time.perf_counter()
            self.sp = self.opt.optimize(load, sample["wetbulb_c"], sample, now)
            self.solve_ms.append(1000 * (time.perf_counter() - started))
            self._last, self._planned_load = now, load
        assert self.sp is not None
        apply_setpoints(io, self.act, self.sp, now)


class Oracle(Strategy):
    """Full knowledge: true equations, true load and wet bulb, re-optimised every step."""

    name = "oracle"

    def __init__(self, spec: PlantSpec, limits: OptimizerLimits, plant: PlantRoom) -> None:
        super().__init__(spec)
        self.plant = plant
        self.opt = PlantOptimizer(limits, TruePlantModel(spec, plant.config))

    def control(self, io: PlantIO, now: float, sample: dict[str, float]) -> None:
        true_load, true_wb = self.plant.load.demand_kw, self.plant.weather.wet_bulb
        sp = self.opt.optimize(true_load, true_wb, sample, now)
        apply_setpoints(io, self.act, sp, now)


# ---- the oracle's model: the simulator's own equations, vectorised ---------------------------


def _saturation_enthalpy(t: np.ndarray, p: float = 101.325) -> np.ndarray:
    pw = 0.61094 * np.exp(17.625 * t / (t + 243.04))
    w = 0.622 * pw / (p - pw)
    return 1.006 * t + w * (2501.0 + 1.86 * t)


def _biquad(curve: object, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    c = curve.c  # type: ignore[attr-defined]
    x = np.clip(x, *curve.x_range)  # type: ignore[attr-defined]
    y = np.clip(y, *curve.y_range)  # type: ignore[attr-defined]
    return c[0] + c[1] * x + c[2] * x * x + c[3] * y + c[4] * y * y + c[5] * x * y


class TruePlantModel:
    """models.PlantModel with the simulator's parameters and equations (docs/simulator.md)."""

    def __init__(self, spec: PlantSpec, config: PlantConfig) -> None:
        self.spec = spec
        self.config = config
        chw = config.chw_loop
        self._k_valve = chw.design_dp_kpa / chw.design_flow_ls**2
        self._k_fixed = (chw.design_head_kpa - chw.design_dp_kpa) / chw.design_flow_ls**2
        cw = config.cw_loop
        self._cw = (
            cw.static_head_kpa,
            (cw.design_head_kpa - cw.static_head_kpa) / cw.design_flow_ls**2,
        )
        self._cells = [TowerCell(t) for t in config.towers]

    def chiller_quadratic(self, i: int, chws: np.ndarray, ecwt: np.ndarray) -> tuple:
        c = self.config.chillers[i]
        capft = _biquad(c.capft, np.asarray(chws, float), np.asarray(ecwt, float))
        eirft = _biquad(c.eirft, np.asarray(chws, float), np.asarray(ecwt, float))
        cap = c.capacity_kw * capft
        p0 = c.rated_power_kw * capft * eirft
        e = c.eirfplr.c
        return p0 * e[0], p0 * e[1] / cap, p0 * e[2] / cap**2, cap

    def chw_flow(self, load_kw: float) -> float:
        return load_kw / (4.19 * self.config.chw_loop.design_delta_t)

    def dp_required(self, flow_ls: float, valve_open: float) -> float:
        return self._k_valve * flow_ls * flow_ls / (valve_open * valve_open)

    def chw_head(self, flow_ls: np.ndarray, dp_kpa: float) -> np.ndarray:
        return dp_kpa + self._k_fixed * np.asarray(flow_ls) ** 2

    def cw_head(self, flow_ls: np.ndarray) -> np.ndarray:
        return self._cw[0] + self._cw[1] * np.asarray(flow_ls) ** 2

    def _pump(self, group: str, j: int):
        return (self.config.chw_pumps if group == "chw" else self.config.cw_pumps)[j]

    def pump_curve(self, group: str, j: int) -> tuple[float, float]:
        p = self._pump(group, j)
        h0 = p.shutoff_head_ratio * p.design_head_kpa
        return h0, (h0 - p.design_head_kpa) / p.design_flow_ls**2

    def pump_power(self, group: str, j: int, speed: np.ndarray, flow: np.ndarray) -> np.ndarray:
        p = self._pump(group, j)
        h0, a = self.pump_curve(group, j)
        s, q = np.asarray(speed, float), np.asarray(flow, float)
        head = h0 * s * s - a * q * q
        x = q / np.maximum(s * p.design_flow_ls, 1e-9)
        eff = p.efficiency * np.maximum(x * (2 - x), 0.2)
        return np.where(q > 0, q / 1000.0 * head / eff / p.drive_efficiency, 0.0)

    def tower_effectiveness(
        self, k: int, speed: np.ndarray, flow_ls: np.ndarray, wetbulb: float, t_in: np.ndarray
    ) -> np.ndarray:
        cell = self._cells[k]
        c = cell.config
        air = cell.air_design * np.maximum(np.asarray(speed, float), c.natural_draft_fraction)
        q = np.maximum(np.asarray(flow_ls, float), 1e-6)
        t_in = np.maximum(np.asarray(t_in, float), wetbulb + 0.05)
        cpe = (_saturation_enthalpy(t_in) - _saturation_enthalpy(np.asarray(wetbulb))) / (
            t_in - wetbulb
        )
        water_cap = q * 4.19
        air_cap = air * cpe
        ua = cell._ntu_coefficient * air_cap * (q / air) ** TowerCell.EXPONENT
        c_min, c_max = np.minimum(water_cap, air_cap), np.maximum(water_cap, air_cap)
        cr = c_min / c_max
        ntu = ua / c_min
        e = np.exp(-ntu * (1 - cr))
        eff = np.where(np.abs(1 - cr) < 1e-9, ntu / (1 + ntu), (1 - e) / (1 - cr * e))
        return np.clip(eff * c_min / water_cap, 1e-3, 0.999)

    def tower_fan_power(self, k: int, speed: np.ndarray) -> np.ndarray:
        s = np.asarray(speed, float)
        return self.config.towers[k].fan_kw * s**3


# ---- identification days ---------------------------------------------------------------------


class Identification(Strategy):
    """Commissioning-style identification: setpoints stepped at random, line-up rotated."""

    name = "identification"

    def __init__(self, spec: PlantSpec, seed: int) -> None:
        super().__init__(spec)
        self.rng = np.random.default_rng(seed)
        self.next_setpoints = 0.0
        self.next_lineup = 0.0
        self.wanted: set[int] = {0, 1}
        self.cw_speed, self.pumps, self.cells = 100.0, 2, 3

    def _lineup(self, load: float) -> set[int]:
        spec = self.spec
        options = []
        for mask in range(1, 1 << len(spec.chillers)):
            subset = {i for i in range(len(spec.chillers)) if mask >> i & 1}
            cap = sum(spec.chillers[i].capacity_kw for i in subset)
            if 1.15 * load <= cap and load >= 0.3 * cap:
                options.append(subset)
        if not options:
            return set(range(len(spec.chillers)))
        return options[int(self.rng.integers(len(options)))]

    def control(self, io: PlantIO, now: float, sample: dict[str, float]) -> None:
        spec, rng, load = self.spec, self.rng, sample["load_kw"]
        cap = sum(spec.chillers[i].capacity_kw for i in self.wanted)
        if now >= self.next_lineup or load > 0.95 * cap:
            self.wanted = self._lineup(load)
            self.next_lineup = now + 7200.0
        if now >= self.next_setpoints:
            wb = sample["wetbulb_c"]
            io.write("plant.chws_setpoint", float(np.round(rng.uniform(5.5, 9.5) * 4) / 4))
            io.write("plant.cws_setpoint", round(_clamp(wb + rng.uniform(1.5, 8.0), 18.0, 33.0), 1))
            io.write("plant.dp_setpoint", round(float(rng.uniform(40.0, 160.0)), 0))
            self.cw_speed = float(rng.uniform(65.0, 100.0))
            self.pumps = int(rng.integers(1, len(spec.chw_pumps) + 1))
            self.cells = int(rng.integers(1, len(spec.towers) + 1))
            self.next_setpoints = now + 2400.0
        enabled = self.act.chillers(io, self.wanted, now, self.cw_speed)
        chws = io.read("plant.chws_setpoint")
        for c in spec.chillers:
            io.write(f"{c.id}.chws_setpoint", chws)
        # Enough pumps for the flow: one pump cannot carry a two-chiller load.
        self.act.chw_pumps(
            io, max(self.pumps, math.ceil(sample["chw_flow"] / 220.0), len(enabled) - 1)
        )
        self.act.cells(io, self.cells)


# ---- running a day -----------------------------------------------------------------------------


def plant_for(weather: WeatherConfig, seed: int) -> PlantRoom:
    config, _ = load_sim_config(SIM_CONFIG)
    plant_cfg = config.plant.model_copy(update={"weather": weather})
    start = datetime(2026, 7, 1) - timedelta(hours=WARMUP_H)
    return PlantRoom(plant_cfg, seed=seed, clock=SimClock(start=start))


@dataclass
class DayResult:
    kwh: float = 0.0
    cooling_kwh: float = 0.0
    unmet_hours: float = 0.0
    unmet_kwh: float = 0.0
    valve_saturated_hours: float = 0.0
    trips: int = 0
    hours: list[float] = field(default_factory=list)
    kw: list[float] = field(default_factory=list)
    kw_per_ton: list[float] = field(default_factory=list)
    chws: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def plant_kw_per_ton(self) -> float:
        rt_h = self.cooling_kwh / KW_PER_RT
        return self.kwh / rt_h if rt_h > 0 else math.nan


def run_day(
    make: Callable[[PlantRoom], Strategy],
    weather: WeatherConfig,
    seed: int,
    hours: float,
    on_sample: Callable[[dict[str, float]], None] | None = None,
    chws_limit: float = LIMITS.chws_max,
) -> DayResult:
    started = time.perf_counter()
    plant = plant_for(weather, seed)
    io = PlantIO(plant)
    strategy = make(plant)
    strategy.start(io)
    points = strategy.points
    out = DayResult()
    warm_steps = int(WARMUP_H * 3600 / STEP_S)
    steps = warm_steps + int(hours * 3600 / STEP_S)
    e0 = c0 = 0.0
    was_faulted = [False] * len(strategy.spec.chillers)
    for n in range(steps):
        now = plant.clock.elapsed_s
        sample = measure(io, points)
        strategy.control(io, now, sample)
        if on_sample is not None:
            on_sample(sample)
        plant.step(STEP_S)
        if n + 1 == warm_steps:
            e0, c0 = io.read("plant.energy_kwh"), io.read("plant.cooling_energy_kwh")
        if n + 1 <= warm_steps:
            continue
        chws = io.read("plant.chws_temp")
        if chws > chws_limit + UNMET_TOLERANCE_K:
            out.unmet_hours += STEP_S / 3600
        out.unmet_kwh += io.read("building.unmet_kw") * STEP_S / 3600
        if io.read("building.valve_pct") >= VALVE_SATURATED_PCT:
            out.valve_saturated_hours += STEP_S / 3600
        for i, c in enumerate(strategy.spec.chillers):
            faulted = io.read(f"{c.id}.fault") > 0.5
            out.trips += faulted and not was_faulted[i]
            was_faulted[i] = faulted
        out.hours.append((n + 1 - warm_steps) * STEP_S / 3600)
        out.kw.append(io.read("plant.power_kw"))
        out.kw_per_ton.append(io.read("plant.kw_per_ton"))
        out.chws.append(chws)
    out.kwh = io.read("plant.energy_kwh") - e0
    out.cooling_kwh = io.read("plant.cooling_energy_kwh") - c0
    out.wall_s = time.perf_counter() - started
    out.strategy = strategy  # type: ignore[attr-defined]
    return out


def train(spec: PlantSpec, hours: float) -> ModelFitter:
    """Identification days (other seeds than the test days): the optimizer's only data."""
    fitter = ModelFitter(spec)
    for weather, seed in TRAINING:
        run_day(lambda _p, s=seed: Identification(spec, s), weather, seed, hours, fitter.add)
    fitter.refit()
    return fitter


# ---- report ------------------------------------------------------------------------------------


def _pct(a: float, b: float) -> float:
    return round(100.0 * (a - b) / a, 2) if a else math.nan


def summarise(results: dict[str, DayResult]) -> dict[str, object]:
    kwh = {s: r.kwh for s, r in results.items()}
    return {
        **{f"{s}_kwh": round(v, 1) for s, v in kwh.items()},
        "savings_pct": _pct(kwh["baseline"], kwh["optimizer"]),
        "g36_savings_pct": _pct(kwh["baseline"], kwh["g36"]),
        "gap_to_oracle_pct": round(100.0 * (kwh["optimizer"] - kwh["oracle"]) / kwh["oracle"], 2),
        "unmet_hours": {s: round(r.unmet_hours, 3) for s, r in results.items()},
        "unmet_cooling_kwh": {s: round(r.unmet_kwh, 1) for s, r in results.items()},
        "valve_saturated_hours": {s: round(r.valve_saturated_hours, 2) for s, r in results.items()},
        "kw_per_ton": {s: round(r.plant_kw_per_ton, 4) for s, r in results.items()},
        "cooling_kwh": {s: round(r.cooling_kwh, 0) for s, r in results.items()},
        "chiller_trips": {s: r.trips for s, r in results.items()},
    }


def whole_run(days: dict[str, dict[str, DayResult]]) -> dict[str, DayResult]:
    """Each strategy's totals over every day of the benchmark."""
    totals: dict[str, DayResult] = {}
    for results in days.values():
        for name, r in results.items():
            t = totals.setdefault(name, DayResult())
            t.kwh += r.kwh
            t.cooling_kwh += r.cooling_kwh
            t.unmet_hours += r.unmet_hours
            t.unmet_kwh += r.unmet_kwh
            t.valve_saturated_hours += r.valve_saturated_hours
            t.trips += r.trips
    return totals


def chart(days: dict[str, dict[str, DayResult]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(days), figsize=(6 * len(days), 7), sharex=True, squeeze=False)
    window = max(int(900 / STEP_S), 1)  # 15-minute means
    kernel = np.ones(window) / window
    for col, (day, results) in enumerate(days.items()):
        for name, r in results.items():
            h = np.asarray(r.hours)
            for row, series in enumerate((r.kw, r.kw_per_ton)):
                y = np.convolve(np.asarray(series), kernel, mode="valid")  # trailing means
                label = f"{name} ({r.kwh:,.0f} kWh)" if row == 0 else name
                axes[row][col].plot(h[window - 1 :], y, label=label)
        axes[0][col].set_title(f"{day} day: plant power (trailing 15-min mean)")
        axes[0][col].set_ylabel("kW")
        axes[1][col].set_ylabel("plant kW/RT")
        axes[1][col].set_xlabel("hour of day")
        axes[0][col].legend(fontsize=8)
        axes[1][col].legend(fontsize=8)
        for row in (0, 1):
            axes[row][col].grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6-hour days, for tests")
    parser.add_argument("--out", type=Path, default=OUT / "energy.png", help="chart path")
    parser.add_argument(
        "--chws-max",
        type=float,
        default=LIMITS.chws_max,
        help="CHW supply upper limit, °C (hospital dehumidification; a sensitivity knob)",
    )
    args = parser.parse_args(argv)
    limits = LIMITS.model_copy(update={"chws_max": args.chws_max})
    hours = 6.0 if args.quick else 24.0
    started = time.perf_counter()
    spec = hospital_spec()
    fitter = train(spec, hours)
    print(
        f"trained on {fitter.samples_seen} samples in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    days: dict[str, dict[str, DayResult]] = {}
    solve_ms: list[float] = []
    for day, (weather, seed) in DAYS.items():
        makers: dict[str, Callable[[PlantRoom], Strategy]] = {
            "baseline": lambda _p: Baseline(spec),
            "g36": lambda _p: G36(spec, limits),
            "optimizer": lambda _p: Optimized(spec, limits, copy.deepcopy(fitter)),
            "oracle": lambda p: Oracle(spec, limits, p),
        }
        days[day] = {}
        for name, make in makers.items():
            r = run_day(make, weather, seed, hours, chws_limit=limits.chws_max)
            days[day][name] = r
            if name == "optimizer":
                solve_ms += r.strategy.solve_ms  # type: ignore[attr-defined]
            print(
                f"{day:6s} {name:9s} {r.kwh:8.0f} kWh  {r.plant_kw_per_ton:.3f} kW/RT  "
                f"unmet {r.unmet_hours:.2f} h  valves saturated {r.valve_saturated_hours:.2f} h  "
                f"trips {r.trips}  ({r.wall_s:.1f} s)",
                flush=True,
            )
    summaries = {day: summarise(results) for day, results in days.items()}
    out: dict[str, object] = summarise(whole_run(days))
    out["days"] = summaries
    out["hours_per_day"] = hours
    out["chws_max"] = limits.chws_max
    out["optimizer_ms_mean"] = round(statistics.fmean(solve_ms), 1) if solve_ms else None
    out["optimizer_ms_max"] = round(max(solve_ms), 1) if solve_ms else None
    out["fit"] = {
        name: {"fitted": q.fitted, "n": q.n, "r2": round(q.r2, 4)}
        for name, q in fitter.report.quality.items()
    }
    out["chart"] = str(chart(days, args.out))
    out["runtime_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
