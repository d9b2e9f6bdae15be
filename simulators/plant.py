"""The plant room: equipment wired into loops, stepped in simulated time, exposed as tags.

Tags are "<equipment>.<quantity>" (e.g. "chiller-1.chws_temp"); the table in `_build_tags`
is the whole interface the protocol servers see. Physics lives in the equipment, load,
electrical and sewage modules; this module only connects them.
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from simulators.clock import SimClock
from simulators.config import KW_PER_RT, WATER_CP, PlantConfig
from simulators.electrical import Substation
from simulators.equipment import Chiller, Pump, SystemCurve, TowerCell, solve_parallel_pumps
from simulators.load import BuildingLoad, Weather
from simulators.local_control import CondenserLoop, PressureLoop
from simulators.sensors import ActiveFault, SensorFault
from simulators.sewage import SewageMonitor

Value = float | int | bool
# Water in a loop with no flow slowly settles toward the outdoor wet bulb.
_STAGNANT_TIME_CONSTANT_S = 4 * 3600.0


@dataclass(frozen=True)
class TagInfo:
    unit: str
    writable: bool
    min: float | None
    max: float | None
    description: str
    kind: str  # "analog" | "binary" | "multistate"


@dataclass(frozen=True)
class _Binding:
    info: TagInfo
    get: Callable[[], Value]
    set: Callable[[Value], None] | None


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
        self.sewage = SewageMonitor(config.sewage, rng("sewage"))

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
        self._tags = self._build_tags()
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

    def write(self, tag: str, value: Value) -> None:
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
        for machine in (*self.chw_pumps, *self.cw_pumps, *self.towers):
            machine.ramp(dt)
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

    def _binding(self, tag: str) -> _Binding:
        try:
            return self._tags[tag]
        except KeyError:
            raise KeyError(f"unknown tag {tag!r}") from None

    def _set_plant_chws(self, value: Value) -> None:
        # The plant-wide setpoint is written through to every chiller.
        self.chws_setpoint = float(value)
        for chiller in self.chillers:
            chiller.chws_setpoint = float(value)

    def _build_tags(self) -> dict[str, _Binding]:
        tags: dict[str, _Binding] = {}

        def add(
            name: str,
            unit: str,
            description: str,
            get: Callable[[], Value],
            *,
            kind: str = "analog",
            set: Callable[[Value], None] | None = None,
            lo: float | None = None,
            hi: float | None = None,
        ) -> None:
            info = TagInfo(unit, set is not None, lo, hi, description, kind)
            tags[name] = _Binding(info, get, set)

        def setter(
            obj: object, attribute: str, cast: Callable[[Value], Value]
        ) -> Callable[[Value], None]:
            return lambda value: setattr(obj, attribute, cast(value))

        for ch in self.chillers:
            p = ch.config.id
            add(
                f"{p}.enable",
                "",
                "enable command",
                lambda ch=ch: ch.enable,
                kind="binary",
                set=lambda v, ch=ch: ch.set_enable(bool(v)),
            )
            add(
                f"{p}.chws_setpoint",
                "°C",
                "leaving chilled-water setpoint",
                lambda ch=ch: ch.chws_setpoint,
                set=setter(ch, "chws_setpoint", float),
                lo=4.0,
                hi=15.0,
            )
            add(
                f"{p}.run_status", "", "compressor running", lambda ch=ch: ch.running, kind="binary"
            )
            add(f"{p}.fault", "", "tripped (reset: disable)", lambda ch=ch: ch.fault, kind="binary")
            add(
                f"{p}.status",
                "",
                "0 off, 1 starting, 2 running, 3 fault",
                lambda ch=ch: int(ch.state),
                kind="multistate",
                lo=0,
                hi=3,
            )
            add(
                f"{p}.alarm_code",
                "",
                "0 none, 1 low CHW flow, 2 low CW flow, 3 high condenser",
                lambda ch=ch: int(ch.alarm),
                kind="multistate",
                lo=0,
                hi=3,
            )
            add(f"{p}.chws_temp", "°C", "leaving chilled water", lambda ch=ch: ch.chws_temp)
            add(f"{p}.chwr_temp", "°C", "entering chilled water", lambda ch=ch: ch.chwr_temp)
            add(f"{p}.cws_temp", "°C", "entering condenser water", lambda ch=ch: ch.cws_temp)
            add(f"{p}.cwr_temp", "°C", "leaving condenser water", lambda ch=ch: ch.cwr_temp)
            add(f"{p}.chw_flow", "L/s", "evaporator flow", lambda ch=ch: ch.chw_flow)
            add(f"{p}.cw_flow", "L/s", "condenser flow", lambda ch=ch: ch.cw_flow)
            add(f"{p}.load_kw", "kW", "cooling delivered", lambda ch=ch: ch.load_kw)
            add(f"{p}.load_rt", "RT", "cooling delivered", lambda ch=ch: ch.load_rt)
            add(f"{p}.capacity_kw", "kW", "available capacity now", lambda ch=ch: ch.capacity_kw)
            add(f"{p}.plr", "%", "part-load ratio", lambda ch=ch: 100.0 * ch.plr, lo=0, hi=120)
            add(f"{p}.power_kw", "kW", "compressor input power", lambda ch=ch: ch.power_kw)
            add(f"{p}.kw_per_ton", "kW/RT", "efficiency", lambda ch=ch: ch.kw_per_ton)
            add(f"{p}.current_pct", "%RLA", "motor current", lambda ch=ch: ch.current_pct)
            add(f"{p}.energy_kwh", "kWh", "electrical energy", lambda ch=ch: ch.energy_kwh)
            add(f"{p}.cooling_kwh", "kWh", "cooling energy", lambda ch=ch: ch.cooling_kwh)
            add(f"{p}.run_hours", "h", "compressor run hours", lambda ch=ch: ch.run_hours)

        for pump in (*self.chw_pumps, *self.cw_pumps):
            p = pump.config.id
            add(
                f"{p}.enable",
                "",
                "run command",
                lambda pump=pump: pump.enable,
                kind="binary",
                set=setter(pump, "enable", bool),
            )
            add(
                f"{p}.speed_cmd",
                "%",
                "speed command (0 = stop)",
                lambda pump=pump: pump.speed_cmd,
                set=setter(pump, "speed_cmd", float),
                lo=0.0,
                hi=100.0,
            )
            add(
                f"{p}.speed",
                "%",
                "drive output speed",
                lambda pump=pump: pump.speed,
                lo=0.0,
                hi=100.0,
            )
            add(f"{p}.run_status", "", "running", lambda pump=pump: pump.running, kind="binary")
            add(f"{p}.flow", "L/s", "pump flow", lambda pump=pump: pump.flow)
            add(f"{p}.head", "kPa", "pump head", lambda pump=pump: pump.head)
            add(f"{p}.power_kw", "kW", "drive input power", lambda pump=pump: pump.power_kw)

        for tower in self.towers:
            p = tower.config.id
            add(
                f"{p}.fan_speed_cmd",
                "%",
                "fan speed command (0 = stop)",
                lambda t=tower: t.fan_speed_cmd,
                set=setter(tower, "fan_speed_cmd", float),
                lo=0.0,
                hi=100.0,
            )
            add(
                f"{p}.fan_speed",
                "%",
                "fan drive speed",
                lambda t=tower: t.fan_speed,
                lo=0.0,
                hi=100.0,
            )
            add(f"{p}.fan_run", "", "fan running", lambda t=tower: t.fan_running, kind="binary")
            add(f"{p}.fan_power_kw", "kW", "fan input power", lambda t=tower: t.fan_power_kw)
            add(f"{p}.entering_temp", "°C", "hot water in", lambda t=tower: t.entering_temp)
            add(f"{p}.leaving_temp", "°C", "cold water out", lambda t=tower: t.leaving_temp)
            add(f"{p}.water_flow", "L/s", "water through the cell", lambda t=tower: t.water_flow)
            add(f"{p}.heat_rejected_kw", "kW", "heat rejected", lambda t=tower: t.heat_rejected_kw)

        add(
            "plant.chws_setpoint",
            "°C",
            "plant chilled-water setpoint (writes every chiller)",
            lambda: self.chws_setpoint,
            set=self._set_plant_chws,
            lo=4.0,
            hi=15.0,
        )
        add(
            "plant.dp_setpoint",
            "kPa",
            "differential-pressure setpoint (pump drives hold it when dp_control is on)",
            lambda: self.dp_setpoint,
            set=setter(self, "dp_setpoint", float),
            lo=20.0,
            hi=300.0,
        )
        add(
            "plant.cws_setpoint",
            "°C",
            "condenser-water supply setpoint (fans hold it when cw_control is on)",
            lambda: self.cws_setpoint,
            set=setter(self, "cws_setpoint", float),
            lo=15.0,
            hi=35.0,
        )
        add(
            "plant.dp_control",
            "",
            "pump drives hold plant.dp at plant.dp_setpoint (false: follow speed_cmd)",
            lambda: self.dp_control,
            kind="binary",
            set=setter(self, "dp_control", bool),
        )
        add(
            "plant.cw_control",
            "",
            "tower fans hold plant.cws_temp at plant.cws_setpoint (false: follow fan_speed_cmd)",
            lambda: self.cw_control,
            kind="binary",
            set=setter(self, "cw_control", bool),
        )
        add("plant.chws_temp", "°C", "supply header", lambda: self.chws_temp)
        add("plant.chwr_temp", "°C", "return header", lambda: self.chwr_temp)
        add("plant.chw_flow", "L/s", "chilled-water flow", lambda: self.chw_flow)
        add("plant.dp", "kPa", "index-circuit differential pressure", lambda: self.dp)
        add("plant.cws_temp", "°C", "condenser supply (from towers)", lambda: self.cws_temp)
        add("plant.cwr_temp", "°C", "condenser return (to towers)", lambda: self.cwr_temp)
        add("plant.cw_flow", "L/s", "condenser-water flow", lambda: self.cw_flow)
        add("plant.cooling_kw", "kW", "cooling from all chillers", lambda: self.cooling_kw)
        add(
            "plant.cooling_rt",
            "RT",
            "cooling from all chillers",
            lambda: self.cooling_kw / KW_PER_RT,
        )
        add("plant.chiller_power_kw", "kW", "all chillers", lambda: self.chiller_power_kw)
        add("plant.pump_power_kw", "kW", "all pumps", lambda: self.pump_power_kw)
        add("plant.tower_power_kw", "kW", "all tower fans", lambda: self.tower_power_kw)
        add("plant.power_kw", "kW", "plant total", lambda: self.plant_power_kw)
        add("plant.kw_per_ton", "kW/RT", "plant efficiency", lambda: self.plant_kw_per_ton)
        add(
            "plant.chillers_running",
            "",
            "number of chillers running",
            lambda: sum(c.running for c in self.chillers),
            kind="multistate",
            lo=0,
            hi=len(self.chillers),
        )
        add(
            "plant.energy_kwh",
            "kWh",
            "plant electrical energy",
            lambda: self.substation.plant_energy_kwh,
        )
        add(
            "plant.cooling_energy_kwh",
            "kWh",
            "cooling from all chillers",
            lambda: sum(c.cooling_kwh for c in self.chillers),
        )

        add("building.cooling_load_kw", "kW", "cooling demand", lambda: self.load.demand_kw)
        add(
            "building.delivered_kw",
            "kW",
            "cooling delivered by the coils",
            lambda: self.delivered_kw,
        )
        add(
            "building.unmet_kw",
            "kW",
            "demand not met",
            lambda: max(self.load.demand_kw - self.delivered_kw, 0.0),
        )
        add(
            "building.valve_pct",
            "%",
            "aggregate air-handler valve opening",
            lambda: 100.0 * self.valve,
            lo=0.0,
            hi=100.0,
        )
        add(
            "building.cooling_energy_kwh",
            "kWh",
            "cooling delivered",
            lambda: self.building_cooling_kwh,
        )

        add("weather.dry_bulb", "°C", "outdoor dry bulb", lambda: self.weather.dry_bulb)
        add("weather.wet_bulb", "°C", "outdoor wet bulb", lambda: self.weather.wet_bulb)
        add(
            "weather.rh",
            "%",
            "outdoor relative humidity",
            lambda: self.weather.rh,
            lo=0.0,
            hi=100.0,
        )

        sub = self.substation
        add("meter-main.active_power_kw", "kW", "transformer secondary", lambda: sub.active_kw)
        add("meter-main.reactive_power_kvar", "kvar", "", lambda: sub.reactive_kvar)
        add("meter-main.apparent_power_kva", "kVA", "", lambda: sub.apparent_kva)
        add("meter-main.power_factor", "", "", lambda: sub.power_factor, lo=0.0, hi=1.0)
        add("meter-main.energy_kwh", "kWh", "active energy import", lambda: sub.energy_kwh)
        add("meter-main.reactive_energy_kvarh", "kvarh", "", lambda: sub.reactive_kvarh)
        for n, phase in enumerate("abc"):
            add(
                f"meter-main.voltage_{phase}",
                "V",
                f"phase {phase} to neutral",
                lambda n=n: sub.voltages[n],
            )
            add(f"meter-main.current_{phase}", "A", f"phase {phase}", lambda n=n: sub.currents[n])
        add("meter-main.frequency", "Hz", "", lambda: sub.config.frequency_hz)
        add("meter-plant.active_power_kw", "kW", "chiller plant feeder", lambda: sub.plant_kw)
        add("meter-plant.energy_kwh", "kWh", "chiller plant feeder", lambda: sub.plant_energy_kwh)
        add("transformer-1.loading_pct", "%", "apparent power / rating", lambda: sub.loading_pct)
        add("transformer-1.winding_temp", "°C", "hottest winding", lambda: sub.winding_temp)
        add("transformer-1.ambient_temp", "°C", "transformer room", lambda: sub.config.room_temp)

        sew = self.sewage
        add("sewage.flow", "m³/h", "effluent flow", lambda: sew.flow_m3h)
        add("sewage.total_volume", "m³", "effluent totaliser", lambda: sew.total_m3)
        add("sewage.ph", "pH", "effluent pH", lambda: sew.ph, lo=0.0, hi=14.0)
        add(
            "sewage.residual_chlorine",
            "mg/L",
            "total residual chlorine, contact-tank outlet",
            lambda: sew.residual_chlorine,
        )
        add("sewage.cod", "mg/L", "chemical oxygen demand", lambda: sew.cod)
        add("sewage.ss", "mg/L", "suspended solids", lambda: sew.ss)
        add(
            "sewage.chlorine_dose_setpoint",
            "mg/L",
            "flow-paced hypochlorite dose",
            lambda: sew.dose_mgl,
            set=setter(sew, "dose_mgl", float),
            lo=0.0,
            hi=100.0,
        )
        return tags


def _validated(tag: str, info: TagInfo, value: Value) -> Value:
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
