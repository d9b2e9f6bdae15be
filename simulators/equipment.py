"""Chillers, pumps and cooling-tower cells: the physics of one machine each.

Units: flow L/s (≈ kg/s of water), head and pressure kPa, power kW, temperature °C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from simulators.config import KW_PER_RT, WATER_CP, ChillerConfig, PumpConfig, TowerConfig
from simulators.load import saturation_enthalpy


def slew(current: float, target: float, max_change: float) -> float:
    """Move toward target by at most max_change (a drive's acceleration limit)."""
    return (
        min(current + max_change, target) if target > current else max(current - max_change, target)
    )


def drive_target(command: float, local_speed: float | None, min_pct: float) -> float:
    """Speed a drive heads for: a local loop's output when one is set, else the command.

    0 stops the drive; anything else runs it at least at its minimum speed.
    """
    wanted = command if local_speed is None else local_speed
    return max(wanted, min_pct) if wanted > 0 else 0.0


# --- chillers -------------------------------------------------------------------------------


class ChillerState(IntEnum):
    OFF = 0
    STARTING = 1
    RUNNING = 2
    FAULT = 3


class ChillerAlarm(IntEnum):
    NONE = 0
    LOW_CHW_FLOW = 1
    LOW_CW_FLOW = 2
    HIGH_CONDENSER = 3


def chiller_power_kw(config: ChillerConfig, load_kw: float, chws: float, ecwt: float) -> float:
    """DOE-2 EIR model: P = Pref x EIRFT(chws, ecwt) x EIRFPLR(PLR) x CAPFT(chws, ecwt).

    Below the minimum PLR the compressor false-loads, so power stays at the min-PLR value.
    """
    available = config.capacity_kw * config.capft(chws, ecwt)
    plr = max(load_kw / available, config.min_plr)
    return (
        config.rated_power_kw
        * config.capft(chws, ecwt)
        * config.eirft(chws, ecwt)
        * config.eirfplr(plr)
    )


class Chiller:
    """One water-cooled chiller that holds its leaving water at setpoint within capacity."""

    def __init__(self, config: ChillerConfig, chws_setpoint: float) -> None:
        self.config = config
        self.enable = config.enabled
        self.chws_setpoint = chws_setpoint
        # An initially enabled chiller is already running, so a run starts in steady state.
        self.state = ChillerState.RUNNING if config.enabled else ChillerState.OFF
        self.capacity_limit = 1.0 if config.enabled else 0.0
        self.alarm = ChillerAlarm.NONE
        self._start_timer_s = 0.0
        self.chw_flow = 0.0
        self.cw_flow = 0.0
        self.chwr_temp = chws_setpoint
        self.chws_temp = chws_setpoint
        self.cws_temp = 30.0
        self.cwr_temp = 30.0
        self.load_kw = 0.0
        self.capacity_kw = config.capacity_kw
        self.power_kw = 0.0
        self.energy_kwh = 0.0
        self.cooling_kwh = 0.0
        self.run_hours = 0.0

    # Derived values the tag table reads.
    @property
    def running(self) -> bool:
        return self.state == ChillerState.RUNNING

    @property
    def fault(self) -> bool:
        return self.state == ChillerState.FAULT

    @property
    def online(self) -> bool:
        """Isolation valves open: the chiller takes a share of both loops' flow."""
        return self.state in (ChillerState.STARTING, ChillerState.RUNNING)

    @property
    def load_rt(self) -> float:
        return self.load_kw / KW_PER_RT

    @property
    def plr(self) -> float:
        return self.load_kw / self.capacity_kw if self.capacity_kw > 0 else 0.0

    @property
    def kw_per_ton(self) -> float:
        return self.power_kw / self.load_rt if self.load_rt > 1.0 else 0.0

    @property
    def current_pct(self) -> float:
        """Motor current as % of rated load amps, roughly proportional to power."""
        return 100.0 * self.power_kw / self.config.rated_power_kw

    def set_enable(self, enable: bool) -> None:
        # Disabling also resets a latched fault, like the reset on a chiller panel.
        if not enable:
            self.state = ChillerState.OFF
            self.alarm = ChillerAlarm.NONE
            self.capacity_limit = 0.0
        elif self.state == ChillerState.OFF:
            self.state = ChillerState.STARTING
            self._start_timer_s = 0.0
        self.enable = enable

    def sequence(self, dt_s: float) -> None:
        """Start-up delay, then soft loading of the capacity limit."""
        if self.state == ChillerState.STARTING:
            self._start_timer_s += dt_s
            if self._start_timer_s >= self.config.start_delay_s:
                self.state = ChillerState.RUNNING
        if self.state == ChillerState.RUNNING:
            ramp = dt_s / self.config.soft_load_s if self.config.soft_load_s > 0 else 1.0
            self.capacity_limit = min(1.0, self.capacity_limit + ramp)

    def _trip(self, alarm: ChillerAlarm) -> None:
        self.state = ChillerState.FAULT
        self.alarm = alarm
        self.capacity_limit = 0.0

    def operate(
        self, chw_flow: float, chwr: float, cw_flow: float, cws: float, dt_s: float
    ) -> None:
        """Cool chw_flow entering at chwr, rejecting heat into cw_flow entering at cws."""
        c = self.config
        self.chw_flow, self.chwr_temp, self.cw_flow, self.cws_temp = chw_flow, chwr, cw_flow, cws
        if self.online:
            if chw_flow < c.min_flow_fraction * c.design_chw_flow_ls:
                self._trip(ChillerAlarm.LOW_CHW_FLOW)
            elif cw_flow < c.min_flow_fraction * c.design_cw_flow_ls:
                self._trip(ChillerAlarm.LOW_CW_FLOW)
            elif self.running and cws > c.trip_ecwt:
                self._trip(ChillerAlarm.HIGH_CONDENSER)
        # The curves see the last leaving temperature: above setpoint when capacity runs out.
        chws_for_curves = max(self.chws_setpoint, self.chws_temp)
        self.capacity_kw = c.capacity_kw * c.capft(chws_for_curves, cws)
        if self.running and chw_flow > 0:
            wanted = chw_flow * WATER_CP * (chwr - self.chws_setpoint)
            self.load_kw = min(max(wanted, 0.0), self.capacity_kw * self.capacity_limit)
            self.chws_temp = chwr - self.load_kw / (chw_flow * WATER_CP)
            self.power_kw = chiller_power_kw(c, self.load_kw, chws_for_curves, cws)
        else:
            self.load_kw = 0.0
            self.chws_temp = chwr
            self.power_kw = 0.0
        # Hermetic motor: all electrical input ends up in the condenser water.
        rejected = self.load_kw + self.power_kw
        self.cwr_temp = cws + rejected / (cw_flow * WATER_CP) if cw_flow > 0 else cws
        hours = dt_s / 3600.0
        self.energy_kwh += self.power_kw * hours
        self.cooling_kwh += self.load_kw * hours
        if self.running:
            self.run_hours += hours

    @property
    def heat_rejected_kw(self) -> float:
        return self.load_kw + self.power_kw


# --- pumps and hydraulics -------------------------------------------------------------------


_BISECTIONS = 32  # head resolution: shut-off head / 2**32


@dataclass(frozen=True)
class SystemCurve:
    """Head the piping needs: H = static + k Q² (kPa, L/s)."""

    static_kpa: float
    k: float

    def head(self, flow: float) -> float:
        return self.static_kpa + self.k * flow * flow

    def flow(self, head: float) -> float:
        return math.sqrt(max(head - self.static_kpa, 0.0) / self.k)


class Pump:
    """Variable-speed centrifugal pump: a parabolic curve scaled by the affinity laws.

    At full speed H = H0 - a Q²; at speed ratio s, H = H0 s² - a Q². Efficiency depends on
    Q / (s Qd) only, so it is constant along an affinity parabola and power scales with s³.
    """

    def __init__(self, config: PumpConfig) -> None:
        self.config = config
        self.enable = config.enabled
        self.speed_cmd = config.speed_cmd
        # Set by the plant's DP loop while it runs; None: the drive follows speed_cmd.
        self.local_speed: float | None = None
        self.speed = self.target_speed()  # % actual, from the drive
        self.shutoff_kpa = config.shutoff_head_ratio * config.design_head_kpa
        self.curve_coefficient = (
            self.shutoff_kpa - config.design_head_kpa
        ) / config.design_flow_ls**2
        self.flow = 0.0
        self.head = 0.0
        self.power_kw = 0.0

    @property
    def running(self) -> bool:
        return self.speed > 0.0

    @property
    def commanded_on(self) -> bool:
        """Run command: enabled with a non-zero speed command, whoever sets the speed."""
        return self.enable and self.speed_cmd > 0

    def target_speed(self) -> float:
        if not self.commanded_on:
            return 0.0
        return drive_target(self.speed_cmd, self.local_speed, self.config.min_speed_pct)

    def ramp(self, dt_s: float) -> None:
        self.speed = slew(self.speed, self.target_speed(), self.config.ramp_pct_per_s * dt_s)

    def shutoff_at_speed(self) -> float:
        s = self.speed / 100.0
        return self.shutoff_kpa * s * s

    def flow_at(self, head: float) -> float:
        """Flow delivered against head; zero once the head exceeds shut-off (check valve)."""
        s = self.speed / 100.0
        return math.sqrt(max(self.shutoff_kpa * s * s - head, 0.0) / self.curve_coefficient)

    def shaft_efficiency(self, flow: float) -> float:
        s = self.speed / 100.0
        x = flow / (s * self.config.design_flow_ls) if s > 0 else 0.0
        return self.config.efficiency * max(x * (2.0 - x), 0.2)

    def set_operating_point(self, flow: float, head: float) -> None:
        self.flow, self.head = flow, head
        if flow <= 0.0:
            self.power_kw = 0.0
            return
        hydraulic_kw = flow / 1000.0 * head  # m³/s x kPa
        self.power_kw = hydraulic_kw / self.shaft_efficiency(flow) / self.config.drive_efficiency


def solve_parallel_pumps(pumps: list[Pump], system: SystemCurve) -> float:
    """Operating point of pumps in parallel on one header; sets each pump's point.

    Bisection on the common head: pump flows fall and system flow rises with head.
    Returns the total flow.
    """
    # (shut-off head at this speed, curve coefficient) of each running pump.
    curves = [(p.shutoff_at_speed(), p.curve_coefficient) for p in pumps if p.speed > 0]
    high = max((shutoff for shutoff, _ in curves), default=0.0)
    low = system.static_kpa
    if high <= low:
        for pump in pumps:
            pump.set_operating_point(0.0, 0.0)
        return 0.0
    sqrt, static, k = math.sqrt, system.static_kpa, system.k
    for _ in range(_BISECTIONS):
        head = 0.5 * (low + high)
        supplied = 0.0
        for shutoff, a in curves:
            if shutoff > head:
                supplied += sqrt((shutoff - head) / a)
        if supplied * supplied * k > head - static:
            low = head
        else:
            high = head
    head = 0.5 * (low + high)
    total = 0.0
    for pump in pumps:
        flow = pump.flow_at(head)
        pump.set_operating_point(flow, head if flow > 0 else 0.0)
        total += flow
    return total


# --- cooling towers -------------------------------------------------------------------------


def counterflow_effectiveness(ntu: float, capacity_ratio: float) -> float:
    if abs(1.0 - capacity_ratio) < 1e-9:
        return ntu / (1.0 + ntu)
    e = math.exp(-ntu * (1.0 - capacity_ratio))
    return (1.0 - e) / (1.0 - capacity_ratio * e)


def counterflow_ntu(effectiveness: float, capacity_ratio: float) -> float:
    if abs(1.0 - capacity_ratio) < 1e-9:
        return effectiveness / (1.0 - effectiveness)
    return math.log((1.0 - capacity_ratio * effectiveness) / (1.0 - effectiveness)) / (
        1.0 - capacity_ratio
    )


def effective_air_cp(t_water: float, wet_bulb: float) -> float:
    """Slope of the saturated-air enthalpy line between wet bulb and water (kJ/(kg K))."""
    if abs(t_water - wet_bulb) < 0.05:
        t_water = wet_bulb + 0.05
    return (saturation_enthalpy(t_water) - saturation_enthalpy(wet_bulb)) / (t_water - wet_bulb)


class TowerCell:
    """One induced-draft counterflow cell: effectiveness-NTU with a Merkel-style NTU.

    Air-side NTU = c (m_w / m_a)^0.4 (Merkel KaV/L ∝ (L/G)^-0.6); c is fitted so the cell
    meets its design approach and range at the design wet bulb. Fan power ∝ speed³.
    """

    EXPONENT = 0.4

    def __init__(self, config: TowerConfig) -> None:
        self.config = config
        self.fan_speed_cmd = config.fan_speed_cmd
        # Set by the plant's condenser-water loop while it runs; None: follow fan_speed_cmd.
        self.local_speed: float | None = None
        self.fan_speed = self.target_speed()
        self.air_design = config.design_water_flow_ls / config.design_lg_ratio  # kg/s
        self._ntu_coefficient = self._fit_ntu_coefficient()
        self.water_flow = 0.0
        self.entering_temp = config.design_wet_bulb
        self.leaving_temp = config.design_wet_bulb
        self.heat_rejected_kw = 0.0

    def _fit_ntu_coefficient(self) -> float:
        c = self.config
        t_in = c.design_wet_bulb + c.design_approach + c.design_range
        water_cap = c.design_water_flow_ls * WATER_CP
        air_cap = self.air_design * effective_air_cp(t_in, c.design_wet_bulb)
        c_min, c_max = min(water_cap, air_cap), max(water_cap, air_cap)
        effectiveness = water_cap * c.design_range / (c_min * (c.design_range + c.design_approach))
        if effectiveness >= 1.0:
            raise ValueError(f"{c.id}: design approach and range are not achievable")
        ua = counterflow_ntu(effectiveness, c_min / c_max) * c_min
        return ua / (air_cap * (c.design_water_flow_ls / self.air_design) ** self.EXPONENT)

    @property
    def commanded_on(self) -> bool:
        """A zero command locks the fan out, even under local control (cell out of service)."""
        return self.fan_speed_cmd > 0

    def target_speed(self) -> float:
        if not self.commanded_on:
            return 0.0
        return drive_target(self.fan_speed_cmd, self.local_speed, self.config.min_fan_pct)

    def ramp(self, dt_s: float) -> None:
        self.fan_speed = slew(
            self.fan_speed, self.target_speed(), self.config.ramp_pct_per_s * dt_s
        )

    @property
    def fan_running(self) -> bool:
        return self.fan_speed > 0.0

    @property
    def fan_power_kw(self) -> float:
        return self.config.fan_kw * (self.fan_speed / 100.0) ** 3

    def cool(self, water_flow: float, t_in: float, wet_bulb: float) -> float:
        """Leaving water temperature for water_flow entering at t_in."""
        self.water_flow, self.entering_temp = water_flow, t_in
        c = self.config
        air = self.air_design * max(self.fan_speed / 100.0, c.natural_draft_fraction)
        if water_flow <= 0.0 or air <= 0.0:
            self.heat_rejected_kw = 0.0
            self.leaving_temp = t_in
            return t_in
        water_cap = water_flow * WATER_CP
        air_cap = air * effective_air_cp(t_in, wet_bulb)
        ua = self._ntu_coefficient * air_cap * (water_flow / air) ** self.EXPONENT
        c_min, c_max = min(water_cap, air_cap), max(water_cap, air_cap)
        effectiveness = counterflow_effectiveness(ua / c_min, c_min / c_max)
        self.heat_rejected_kw = effectiveness * c_min * (t_in - wet_bulb)
        self.leaving_temp = t_in - self.heat_rejected_kw / water_cap
        return self.leaving_temp
