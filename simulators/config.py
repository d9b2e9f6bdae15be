"""Parameters of the simulated plant room, with defaults for a 3-chiller hospital plant.

Defaults describe a plausible plant in Guangzhou: 2 x 1,000 RT + 1 x 500 RT water-cooled
centrifugal chillers, headered chilled-water and condenser-water pumps, three tower cells, a
2,500 kVA dry-type transformer and the sewage-treatment monitor. Every physical equation that
uses these numbers is described in docs/simulator.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from edge_agent.config.base import Id, Model

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Celsius = Annotated[float, Field(ge=-30, le=60, allow_inf_nan=False)]

KW_PER_RT = 3.51685  # 1 refrigeration ton = 12,000 Btu/h
WATER_CP = 4.19  # kJ/(kg K); 1 L of water ~ 1 kg at plant temperatures


class Biquadratic(Model):
    """f(x, y) = c0 + c1 x + c2 x² + c3 y + c4 y² + c5 x y, inputs clamped to their ranges."""

    c: tuple[Finite, Finite, Finite, Finite, Finite, Finite]
    x_range: tuple[Finite, Finite]
    y_range: tuple[Finite, Finite]

    def __call__(self, x: float, y: float) -> float:
        x = min(max(x, self.x_range[0]), self.x_range[1])
        y = min(max(y, self.y_range[0]), self.y_range[1])
        c = self.c
        return c[0] + c[1] * x + c[2] * x * x + c[3] * y + c[4] * y * y + c[5] * x * y


class Polynomial(Model):
    """f(x) = c0 + c1 x + c2 x² + ...; x clamped to x_range."""

    c: tuple[Finite, ...] = Field(min_length=1)
    x_range: tuple[Finite, Finite]

    def __call__(self, x: float) -> float:
        x = min(max(x, self.x_range[0]), self.x_range[1])
        result = 0.0
        for coefficient in reversed(self.c):  # Horner
            result = result * x + coefficient
        return result


# DOE-2 electric EIR chiller curves of the form published for centrifugal chillers in the
# DOE-2 / EnergyPlus reference data; x = leaving chilled-water °C, y = entering condenser °C.
# Both are 1.00 at the rating point 6.67 °C / 29.44 °C (44 °F / 85 °F).
CENTRIFUGAL_CAPFT = Biquadratic(
    c=(0.257896, 0.0389016, -0.00021708, 0.0468684, -0.00094284, -0.00034344),
    x_range=(4.0, 15.0),
    y_range=(15.0, 38.0),
)
CENTRIFUGAL_EIRFT = Biquadratic(
    c=(0.933884, -0.058212, 0.00450036, 0.00243, 0.000486, -0.001215),
    x_range=(4.0, 15.0),
    y_range=(15.0, 38.0),
)
CENTRIFUGAL_EIRFPLR = Polynomial(c=(0.222903, 0.313387, 0.46371), x_range=(0.0, 1.2))


class ChillerConfig(Model):
    id: Id
    capacity_rt: Positive = 1000.0
    kw_per_rt: Positive = 0.60  # at the rating point, full load
    rated_chws: Celsius = 6.67
    rated_ecwt: Celsius = 29.44
    design_chw_delta_t: Positive = 5.0  # K, sizes the design evaporator flow
    design_cw_delta_t: Positive = 5.0  # K, sizes the design condenser flow
    min_plr: Fraction = 0.15  # below this the chiller false-loads (hot-gas bypass)
    min_flow_fraction: Fraction = 0.3  # flow switch trips below this share of design flow
    trip_ecwt: Celsius = 38.0  # high condenser pressure trip, as entering condenser °C
    start_delay_s: NonNegative = 120.0  # pre-lube and vane check before the compressor runs
    soft_load_s: NonNegative = 300.0  # capacity limit ramps 0 -> 100 % over this time
    capft: Biquadratic = CENTRIFUGAL_CAPFT
    eirft: Biquadratic = CENTRIFUGAL_EIRFT
    eirfplr: Polynomial = CENTRIFUGAL_EIRFPLR
    enabled: bool = False  # initial state; an enabled chiller starts the run already running

    @property
    def capacity_kw(self) -> float:
        return self.capacity_rt * KW_PER_RT

    @property
    def rated_power_kw(self) -> float:
        return self.capacity_rt * self.kw_per_rt

    @property
    def design_chw_flow_ls(self) -> float:
        return self.capacity_kw / (WATER_CP * self.design_chw_delta_t)

    @property
    def design_cw_flow_ls(self) -> float:
        return (self.capacity_kw + self.rated_power_kw) / (WATER_CP * self.design_cw_delta_t)


class PumpConfig(Model):
    id: Id
    design_flow_ls: Positive
    design_head_kpa: Positive
    shutoff_head_ratio: Annotated[float, Field(gt=1, le=2)] = 1.25  # H0 / H at design point
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.80  # pump, at its best point
    drive_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.93  # motor x VFD
    min_speed_pct: Percent = 30.0
    ramp_pct_per_s: Positive = 4.0  # VFD acceleration
    enabled: bool = False
    speed_cmd: Percent = 80.0


class LoopConfig(Model):
    """System curve H = static + k Q² (plus a control-valve term on the chilled-water side)."""

    design_flow_ls: Positive
    design_head_kpa: Positive
    static_head_kpa: NonNegative = 0.0  # closed loop: 0; open tower loop: the lift
    volume_m3: Positive  # water in the loop: its thermal mass and transport delay


class ChilledWaterLoopConfig(LoopConfig):
    design_flow_ls: Positive = 340.0
    design_head_kpa: Positive = 300.0
    volume_m3: Positive = 80.0
    # Differential pressure across the index circuit at design flow with valves wide open.
    design_dp_kpa: Positive = 100.0
    design_delta_t: Positive = 5.0  # K the air-handler valves modulate for
    valve_time_constant_s: Positive = 60.0
    min_valve_fraction: Annotated[float, Field(gt=0, le=1)] = 0.05
    # Coils cannot warm water above roughly the air they cool: caps delivered cooling.
    coil_max_return_temp: Celsius = 18.0

    @model_validator(mode="after")
    def _dp_below_head(self) -> ChilledWaterLoopConfig:
        if self.design_dp_kpa + self.static_head_kpa >= self.design_head_kpa:
            raise ValueError("design_dp_kpa + static_head_kpa must be below design_head_kpa")
        return self


class CondenserLoopConfig(LoopConfig):
    design_flow_ls: Positive = 500.0
    design_head_kpa: Positive = 250.0
    static_head_kpa: NonNegative = 50.0
    volume_m3: Positive = 40.0

    @model_validator(mode="after")
    def _static_below_head(self) -> CondenserLoopConfig:
        if self.static_head_kpa >= self.design_head_kpa:
            raise ValueError("static_head_kpa must be below design_head_kpa")
        return self


class TowerConfig(Model):
    id: Id
    design_water_flow_ls: Positive = 170.0
    design_wet_bulb: Celsius = 28.0
    design_approach: Positive = 4.0  # K, leaving water above wet bulb at design
    design_range: Positive = 5.0  # K, entering minus leaving water at design
    design_lg_ratio: Positive = 1.2  # water / air mass flow at design
    fan_kw: Positive = 30.0
    min_fan_pct: Percent = 20.0
    natural_draft_fraction: Fraction = 0.1  # airflow with the fan stopped
    ramp_pct_per_s: Positive = 4.0
    fan_speed_cmd: Percent = 70.0


class PIGains(Model):
    """A PI controller: output += kp x error now, and kp x error x dt / ti_s over time."""

    kp: Positive  # output % per unit of error
    ti_s: Positive  # integral time: the integral repeats the proportional action once per ti_s


class WeatherConfig(Model):
    """One repeating day: a diurnal cosine between min (at hour_min) and max (at hour_max)."""

    dry_bulb_min: Celsius = 27.5
    dry_bulb_max: Celsius = 34.5
    wet_bulb_min: Celsius = 26.0
    wet_bulb_max: Celsius = 28.0
    hour_min: Annotated[float, Field(ge=0, lt=24)] = 5.0
    hour_max: Annotated[float, Field(ge=0, lt=24)] = 15.0
    noise_k: NonNegative = 0.3  # standard deviation of slow weather noise
    pressure_kpa: Positive = 101.325

    @model_validator(mode="after")
    def _ordered(self) -> WeatherConfig:
        if self.dry_bulb_min > self.dry_bulb_max or self.wet_bulb_min > self.wet_bulb_max:
            raise ValueError("min above max")
        if self.wet_bulb_max > self.dry_bulb_max or self.wet_bulb_min > self.dry_bulb_min:
            raise ValueError("wet bulb above dry bulb")
        if self.hour_min == self.hour_max:
            raise ValueError("hour_min equals hour_max")
        return self


# Guangzhou / Shenzhen summer design day and a mild spring day.
DESIGN_DAY = WeatherConfig()
MILD_DAY = WeatherConfig(dry_bulb_min=18.0, dry_bulb_max=24.0, wet_bulb_min=14.0, wet_bulb_max=17.0)


class LoadConfig(Model):
    peak_kw: Positive = 7000.0  # ~2,000 RT building peak on the design day
    # Theatres, ICU, imaging and data rooms never switch off.
    floor_fraction: Fraction = 0.4
    weather_weight: Fraction = 0.55  # share of the variable part driven by weather
    # Weather factor is 0 at the balance point and 1 at the design day peak.
    balance_dry_bulb: Celsius = 18.0
    balance_wet_bulb: Celsius = 14.0
    design_dry_bulb: Celsius = 34.5
    design_wet_bulb: Celsius = 28.0
    noise_fraction: NonNegative = 0.02
    noise_time_constant_s: Positive = 900.0
    constant_kw: NonNegative | None = None  # a fixed load instead of the daily profile

    @model_validator(mode="after")
    def _design_above_balance(self) -> LoadConfig:
        if (
            self.design_dry_bulb <= self.balance_dry_bulb
            or self.design_wet_bulb <= self.balance_wet_bulb
        ):
            raise ValueError("design temperatures must be above the balance temperatures")
        return self


class ElectricalConfig(Model):
    transformer_kva: Positive = 2500.0
    other_load_base_kw: NonNegative = 150.0  # other building loads on the same transformer
    other_load_peak_kw: NonNegative = 400.0
    pf_min: Annotated[float, Field(gt=0, le=1)] = 0.88  # light load
    pf_max: Annotated[float, Field(gt=0, le=1)] = 0.96  # heavy load
    rated_winding_rise_k: Positive = 100.0  # class F cast-resin at rated load
    winding_exponent: Positive = 1.6  # rise ∝ K^(2q), q = 0.8 for natural air cooling
    winding_time_constant_s: Positive = 2700.0
    room_temp: Celsius = 30.0
    nominal_voltage_ln: Positive = 230.0
    voltage_regulation: Fraction = 0.04  # voltage drop from no load to rated load
    frequency_hz: Positive = 50.0
    # Shares of the other building loads behind the two DL/T 645 sub-meters (a lighting
    # floor's distribution board and the kitchen's); metering only: no load changes.
    lighting_share: Fraction = 0.08
    kitchen_share: Fraction = 0.12


class AnalyzerConfig(Model):
    """One instrument of the sewage monitor: its measuring range and test values."""

    range: tuple[Finite, Finite]  # above the top the instrument reports "over range" (6)
    standard: Finite  # what it reads while calibrating: the standard solution or signal
    manual: Finite | None = None  # the manual value; None: the last value before "manual"

    @model_validator(mode="after")
    def _standard_in_range(self) -> AnalyzerConfig:
        low, high = self.range
        if not low < high:
            raise ValueError("range must be [low, high] with low below high")
        if not low <= self.standard <= high:
            raise ValueError("standard must be inside the range")
        return self


class SewageAnalyzersConfig(Model):
    """Every instrument of the monitor, named as the control file and the tags name them.
    Ranges and standards are a typical vendor's (an assumption: docs/simulator.md)."""

    flow: AnalyzerConfig = AnalyzerConfig(range=(0.0, 100.0), standard=50.0)  # m3/h
    ph: AnalyzerConfig = AnalyzerConfig(range=(0.0, 14.0), standard=6.86)  # buffer
    residual_chlorine: AnalyzerConfig = AnalyzerConfig(range=(0.0, 10.0), standard=5.0)
    cod: AnalyzerConfig = AnalyzerConfig(range=(0.0, 500.0), standard=100.0)  # mg/L
    ss: AnalyzerConfig = AnalyzerConfig(range=(0.0, 500.0), standard=100.0)
    nh3n: AnalyzerConfig = AnalyzerConfig(range=(0.0, 50.0), standard=10.0)
    tp: AnalyzerConfig = AnalyzerConfig(range=(0.0, 5.0), standard=1.0)
    water_temp: AnalyzerConfig = AnalyzerConfig(range=(0.0, 50.0), standard=25.0)  # °C


class SewageConfig(Model):
    mean_flow_m3h: Positive = 35.0  # ~1,000 beds at ~0.85 m3/bed/day
    peak_factor: Positive = 1.6
    min_factor: Positive = 0.4
    contact_tank_m3: Positive = 60.0
    chlorine_dose_mgl: NonNegative = 30.0  # flow-paced hypochlorite dose (available Cl)
    chlorine_demand_base_mgl: NonNegative = 22.0  # consumed by the effluent
    chlorine_demand_per_cod: NonNegative = 0.06
    ph_mean: Annotated[float, Field(ge=0, le=14)] = 7.3
    ph_sigma: NonNegative = 0.25
    cod_mean_mgl: Positive = 50.0
    cod_sigma_mgl: NonNegative = 10.0
    ss_mean_mgl: Positive = 18.0
    ss_sigma_mgl: NonNegative = 5.0
    nh3n_mean_mgl: Positive = 10.0  # ammonia nitrogen of treated hospital effluent
    nh3n_sigma_mgl: NonNegative = 1.5
    tp_mean_mgl: Positive = 1.2  # total phosphorus
    tp_sigma_mgl: NonNegative = 0.2
    water_temp_mean: Celsius = 24.0
    water_temp_swing_k: NonNegative = 1.0  # half the daily range: coolest 06:00, warmest 16:00
    water_temp_sigma_k: NonNegative = 0.1
    drift_time_constant_s: Positive = 4 * 3600.0
    analyzers: SewageAnalyzersConfig = SewageAnalyzersConfig()


def _default_chillers() -> list[ChillerConfig]:
    return [
        ChillerConfig(id="chiller-1", capacity_rt=1000, enabled=True),
        ChillerConfig(id="chiller-2", capacity_rt=1000, enabled=True),
        ChillerConfig(id="chiller-3", capacity_rt=500),
    ]


def _default_chw_pumps() -> list[PumpConfig]:
    return [
        PumpConfig(id="chw-pump-1", design_flow_ls=170, design_head_kpa=300, enabled=True),
        PumpConfig(id="chw-pump-2", design_flow_ls=170, design_head_kpa=300, enabled=True),
        PumpConfig(id="chw-pump-3", design_flow_ls=170, design_head_kpa=300),
    ]


def _default_cw_pumps() -> list[PumpConfig]:
    return [
        PumpConfig(
            id="cw-pump-1", design_flow_ls=200, design_head_kpa=250, enabled=True, speed_cmd=100
        ),
        PumpConfig(
            id="cw-pump-2", design_flow_ls=200, design_head_kpa=250, enabled=True, speed_cmd=100
        ),
        PumpConfig(id="cw-pump-3", design_flow_ls=100, design_head_kpa=250, speed_cmd=100),
    ]


def _default_towers() -> list[TowerConfig]:
    return [TowerConfig(id=f"tower-{n}") for n in (1, 2, 3)]


class PlantConfig(Model):
    chillers: list[ChillerConfig] = Field(default_factory=_default_chillers, min_length=1)
    chw_pumps: list[PumpConfig] = Field(default_factory=_default_chw_pumps, min_length=1)
    cw_pumps: list[PumpConfig] = Field(default_factory=_default_cw_pumps, min_length=1)
    towers: list[TowerConfig] = Field(default_factory=_default_towers, min_length=1)
    chw_loop: ChilledWaterLoopConfig = ChilledWaterLoopConfig()
    cw_loop: CondenserLoopConfig = CondenserLoopConfig()
    weather: WeatherConfig = DESIGN_DAY
    load: LoadConfig = LoadConfig()
    electrical: ElectricalConfig = ElectricalConfig()
    sewage: SewageConfig = SewageConfig()
    chws_setpoint: Annotated[float, Field(ge=4, le=15)] = 6.67
    dp_setpoint_kpa: Annotated[float, Field(ge=20, le=300)] = 80.0
    cws_setpoint: Annotated[float, Field(ge=15, le=35)] = 30.0
    # Equipment-level loops (simulators/local_control.py). Off by default, so a plant built
    # from defaults keeps following its speed commands; configs/sim/hospital.yaml turns them on.
    dp_control: bool = False  # CHW pump drives hold plant.dp at dp_setpoint_kpa
    cw_control: bool = False  # tower fans hold plant.cws_temp at cws_setpoint
    dp_gains: PIGains = PIGains(kp=0.1, ti_s=10.0)  # % speed per kPa
    cw_gains: PIGains = PIGains(kp=20.0, ti_s=60.0)  # % fan speed per K
    max_substep_s: Annotated[float, Field(gt=0, le=60)] = 5.0  # keeps explicit updates stable

    @model_validator(mode="after")
    def _unique_ids(self) -> PlantConfig:
        ids = [
            item.id
            for group in (self.chillers, self.chw_pumps, self.cw_pumps, self.towers)
            for item in group
        ]
        reserved = {
            "plant",
            "building",
            "weather",
            "sewage",
            "meter-main",
            "meter-plant",
            "meter-lighting",
            "meter-kitchen",
            "transformer-1",
        }
        duplicates = sorted({i for i in ids if ids.count(i) > 1} | (set(ids) & reserved))
        if duplicates:
            raise ValueError(f"duplicate or reserved equipment ids: {', '.join(duplicates)}")
        return self
