"""The plant room: equipment wired into loops, stepped in simulated time, exposed as tags.

Tags are "<equipment>.<quantity>" (e.g. "chiller-1.chws_temp"); the table in `tags.yaml`
is the whole interface the protocol servers see, bound here with the few computed values
and setters it names (COMPUTED, SETTERS). Physics lives in the equipment, load,
electrical and sewage modules; this module only connects them.
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from simulators.clock import SimClock
from simulators.config import KW_PER_RT, WATER_CP, PlantConfig
from simulators.electrical import Substation
from simulators.equipment import Chiller, Pump, SystemCurve, TowerCell, solve_parallel_pumps
from simulators.load import BuildingLoad, Weather
from simulators.local_control import CondenserLoop, PressureLoop
from simulators.sensors import ActiveFault, SensorFault
from simulators.sewage import SewageMonitor
from simulators.tags import Binding, TagInfo, Value, bind, load_table

# Water in a loop with no flow slowly settles toward the outdoor wet bulb.
_STAGNANT_TIME_CONSTANT_S = 4 * 3600.0


def _lag(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """Exact first-order step toward target: stable for any dt."""
    return value + (target - value) * (1.0 - math.exp(-dt_s / tau_s))


class PlantRoom:
    def __init__(
        self, config: PlantConfig | None = None, seed: int = 0, clock: SimClock | None = None
    ) -> None:
        self.config = config = config if config is not None else PlantConfig()
        self.seed = seed
        self.clock = clock if clock is not None else SimClock()

        def rng(name: str) -> random.Random:
            # One stream per subsystem: a change in one does not reshuffle the others.
            return random.Random(f"{seed}:{name}")

        self.chillers = [Chiller(c, config.chws_setpoint) for c in config.chillers]
        self.chw_pumps = [Pump(c) for c in config.chw_pumps]
        self.cw_pumps = [Pump(c) for c in config.cw_pumps]
        self.towers = [TowerCell(c) for c in config.towers]
        self.weather = Weather(config.weather, rng("weather"))
        self.load = BuildingLoad(config.load, rng("load"))
        self.substation = Substation(config.electrical, rng("electrical"))
        self.sewage = SewageMonitor(config.sewage, rng("sewage"), rng("sewage-nutrients"))

        self.chws_setpoint = config.chws_setpoint
        self.dp_setpoint = config.dp_setpoint_kpa
        self.cws_setpoint = config.cws_setpoint
        self.dp_control = config.dp_control
        self.cw_control = config.cw_control
        self._dp_loop = PressureLoop(config.dp_gains, self.chw_pumps)
        self._cw_loop = CondenserLoop(config.cw_gains, self.towers)

        chw = config.chw_loop
        self._k_valve = chw.design_dp_kpa / chw.design_flow_ls**2
        self._k_chw_fixed = (
            chw.design_head_kpa - chw.design_dp_kpa - chw.static_head_kpa
        ) / chw.design_flow_ls**2
        cw = config.cw_loop
        self._cw_curve = SystemCurve(
            cw.static_head_kpa, (cw.design_head_kpa - cw.static_head_kpa) / cw.design_flow_ls**2
        )

        # Loop state: starts settled at setpoint and design condenser temperature.
        self.valve = 0.6
        self.chws_temp = config.chws_setpoint
        self.chwr_temp = config.chws_setpoint + chw.design_delta_t
        self.chw_flow = 0.0
        self.dp = 0.0
        self.cws_temp = self.weather.wet_bulb + 4.0
        self.cwr_temp = self.cws_temp
        self.cw_flow = 0.0
        self._cw_speeds: tuple[float, ...] | None = None
        self.delivered_kw = 0.0
        self.building_cooling_kwh = 0.0
        self.load.update(self.clock.hour_of_day, self.weather, 0.0)
        self._hydraulics()  # the local loops' first sample sees a real DP

        self._faults: dict[str, ActiveFault] = {}
        self._tags = bind(load_table(), self, COMPUTED, SETTERS)
        self.tags: dict[str, TagInfo] = {name: b.info for name, b in self._tags.items()}

    # --- public interface -------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        if not dt_s >= 0:
            raise ValueError(f"dt_s must be non-negative, got {dt_s}")
        substeps = max(1, math.ceil(dt_s / self.config.max_substep_s))
        for _ in range(substeps):
            self._substep(dt_s / substeps)
        for fault in self._faults.values():
            fault.step()

    def read(self, tag: str) -> Value:
        value = self._binding(tag).get()
        fault = self._faults.get(tag)
        return fault.reported(value, self.clock.elapsed_s) if fault else value

    def read_true(self, tag: str) -> Value:
        """The process value, ignoring any injected sensor fault (for tests and debugging)."""
        return self._binding(tag).get()

    def write(self, tag: str, value: Value | str) -> None:
        """A value a server received (text too: a Modbus string register); ValueError when
        the tag does not take it."""
        binding = self._binding(tag)
        if binding.set is None:
            raise PermissionError(f"{tag} is read-only")
        binding.set(_validated(tag, binding.info, value))

    def snapshot(self) -> dict[str, Value]:
        return {tag: self.read(tag) for tag in self._tags}

    def inject(self, tag: str, fault: SensorFault | None) -> None:
        binding = self._binding(tag)
        if fault is None:
            self._faults.pop(tag, None)
            return
        if binding.info.writable:
            raise ValueError(f"{tag} is a command, not a sensor")
        if binding.info.kind != "analog" and fault.kind != "stuck":
            raise ValueError(f"only a stuck fault applies to the {binding.info.kind} tag {tag}")
        if fault.kind == "stuck" and fault.value is not None:
            # A stuck binary or multistate reports a value of its own kind.
            stuck = _validated(tag, replace(binding.info, min=None, max=None), fault.value)
            fault = replace(fault, value=int(stuck) if binding.info.kind == "multistate" else stuck)
        seed = f"{self.seed}:fault:{zlib.crc32(tag.encode())}"
        self._faults[tag] = ActiveFault(fault, self.clock.elapsed_s, binding.get(), seed)

    async def run(self, tick_s: float = 1.0) -> None:
        """Step in real time: each tick_s of wall time advances tick_s x speed simulated."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += tick_s
            await asyncio.sleep(max(deadline - loop.time(), 0.0))
            if loop.time() - deadline > tick_s:  # fell behind: skip ahead, no catch-up storm
                deadline = loop.time()
            self.step(tick_s * self.clock.speed)

    # --- physics ------------------------------------------------------------------------------

    def _substep(self, dt: float) -> None:
        self.clock.advance(dt)
        hour = self.clock.hour_of_day
        self.weather.update(hour, dt)
        self.load.update(hour, self.weather, dt)
        self._local_control(dt)
        for pump in (*self.chw_pumps, *self.cw_pumps):
            pump.ramp(dt)
        for cell in self.towers:
            cell.ramp(dt)
        for chiller in self.chillers:
            chiller.sequence(dt)
        self._hydraulics()
        self._chilled_water(dt)
        self._condenser_water(dt)
        self._valves(dt)
        self.substation.update(self.plant_power_kw, self.load.occupancy, dt)
        self.sewage.update(hour, dt)

    def _local_control(self, dt: float) -> None:
        """Equipment loops act on the last substep's measurements, like sampled controllers."""
        self._dp_loop.step(self.dp_control, self.dp_setpoint - self.dp, dt)
        self._cw_loop.step(self.cw_control, self.cws_temp - self.cws_setpoint, dt)

    def _hydraulics(self) -> None:
        chw = self.config.chw_loop
        k = self._k_chw_fixed + self._k_valve / self.valve**2
        self.chw_flow = solve_parallel_pumps(self.chw_pumps, SystemCurve(chw.static_head_kpa, k))
        self.dp = self._k_valve / self.valve**2 * self.chw_flow**2
        # The condenser system curve is fixed: re-solve only when a pump speed changes.
        speeds = tuple(p.speed for p in self.cw_pumps)
        if speeds != self._cw_speeds:
            self.cw_flow = solve_parallel_pumps(self.cw_pumps, self._cw_curve)
            self._cw_speeds = speeds

    def _chilled_water(self, dt: float) -> None:
        cfg = self.config.chw_loop
        flow = self.chw_flow
        # Coils deliver the demand unless flow is short or the supply is too warm to absorb it.
        if flow > 0:
            coil_limit = flow * WATER_CP * max(cfg.coil_max_return_temp - self.chws_temp, 0.0)
            self.delivered_kw = min(self.load.demand_kw, coil_limit)
            self.chwr_temp = self.chws_temp + self.delivered_kw / (flow * WATER_CP)
        else:
            self.delivered_kw = 0.0
        self.building_cooling_kwh += self.delivered_kw * dt / 3600.0

        online = [c for c in self.chillers if c.online]
        chw_design = sum(c.config.design_chw_flow_ls for c in online)
        cw_design = sum(c.config.design_cw_flow_ls for c in online)
        mixed = 0.0
        for chiller in self.chillers:
            if chiller in online:
                chw_share = flow * chiller.config.design_chw_flow_ls / chw_design
                cw_share = self.cw_flow * chiller.config.design_cw_flow_ls / cw_design
            else:
                chw_share = cw_share = 0.0
            chiller.operate(chw_share, self.chwr_temp, cw_share, self.cws_temp, dt)
            mixed += chw_share * chiller.chws_temp
        # With no chiller online the water bypasses, unchanged.
        mixed = mixed / flow if online and flow > 0 else self.chwr_temp
        # Supply header mixes over the loop's transport time (volume / flow).
        if flow > 0:
            self.chws_temp = _lag(self.chws_temp, mixed, dt, cfg.volume_m3 * 1000.0 / flow)
        else:
            self.chws_temp = _lag(
                self.chws_temp, self.weather.wet_bulb, dt, _STAGNANT_TIME_CONSTANT_S
            )

    def _condenser_water(self, dt: float) -> None:
        flow = self.cw_flow
        rejected = sum(c.heat_rejected_kw for c in self.chillers)
        wet_bulb = self.weather.wet_bulb
        if flow <= 0:
            self.cwr_temp = self.cws_temp
            for tower in self.towers:
                tower.cool(0.0, self.cws_temp, wet_bulb)
            self.cws_temp = _lag(self.cws_temp, wet_bulb, dt, _STAGNANT_TIME_CONSTANT_S)
            return
        self.cwr_temp = self.cws_temp + rejected / (flow * WATER_CP)
        per_cell = flow / len(self.towers)  # water is spread over every cell
        leaving = sum(t.cool(per_cell, self.cwr_temp, wet_bulb) for t in self.towers)
        leaving /= len(self.towers)
        volume_l = self.config.cw_loop.volume_m3 * 1000.0
        self.cws_temp = _lag(self.cws_temp, leaving, dt, volume_l / flow)

    def _valves(self, dt: float) -> None:
        """Air-handler valves, in aggregate, open until flow meets the load at design ΔT."""
        cfg = self.config.chw_loop
        needed = self.load.demand_kw / (WATER_CP * cfg.design_delta_t)
        error = (needed - self.chw_flow) / cfg.design_flow_ls
        self.valve += error * dt / cfg.valve_time_constant_s
        self.valve = min(max(self.valve, cfg.min_valve_fraction), 1.0)

    # --- aggregates ---------------------------------------------------------------------------

    @property
    def chiller_power_kw(self) -> float:
        return sum(c.power_kw for c in self.chillers)

    @property
    def pump_power_kw(self) -> float:
        return sum(p.power_kw for p in (*self.chw_pumps, *self.cw_pumps))

    @property
    def tower_power_kw(self) -> float:
        return sum(t.fan_power_kw for t in self.towers)

    @property
    def plant_power_kw(self) -> float:
        return self.chiller_power_kw + self.pump_power_kw + self.tower_power_kw

    @property
    def cooling_kw(self) -> float:
        return sum(c.load_kw for c in self.chillers)

    @property
    def plant_kw_per_ton(self) -> float:
        rt = self.cooling_kw / KW_PER_RT
        return self.plant_power_kw / rt if rt > 1.0 else 0.0

    # --- tags ---------------------------------------------------------------------------------

    def _binding(self, tag: str) -> Binding:
        try:
            return self._tags[tag]
        except KeyError:
            raise KeyError(f"unknown tag {tag!r}") from None


def _set_chiller_enable(chiller: Chiller, value: Value) -> None:
    chiller.set_enable(bool(value))  # disabling also resets a trip


def _set_plant_chws(plant: PlantRoom, value: Value) -> None:
    # The plant-wide setpoint is written through to every chiller.
    plant.chws_setpoint = float(value)
    for chiller in plant.chillers:
        chiller.chws_setpoint = float(value)


# What tags.yaml names for tags that are not a plain attribute read or a cast write.
COMPUTED: dict[str, Callable[[PlantRoom], Value]] = {
    "cooling_rt": lambda plant: plant.cooling_kw / KW_PER_RT,
    "chillers_running": lambda plant: sum(c.running for c in plant.chillers),
    "cooling_energy_kwh": lambda plant: sum(c.cooling_kwh for c in plant.chillers),
    "unmet_kw": lambda plant: max(plant.load.demand_kw - plant.delivered_kw, 0.0),
}
SETTERS: dict[str, Callable[[Any, Value], None]] = {
    "chiller_enable": _set_chiller_enable,
    "plant_chws_setpoint": _set_plant_chws,
}


def _validated(tag: str, info: TagInfo, value: Value | str) -> Value:
    """The value to write, or ValueError; the plant is untouched until this passes."""
    if info.kind == "binary":
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            return bool(value)
        raise ValueError(f"{tag} is binary, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{tag} needs a finite number, got {value!r}")
    if (info.min is not None and value < info.min) or (info.max is not None and value > info.max):
        raise ValueError(f"{tag}: {value} is outside [{info.min}, {info.max}]")
    return value
