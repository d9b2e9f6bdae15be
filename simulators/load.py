"""Exogenous drivers of the plant: weather, the hospital's cooling load, and their noise.

Also holds the few psychrometric relations the weather and the cooling towers share.
"""

from __future__ import annotations

import itertools
import math
import random

from simulators.config import LoadConfig, WeatherConfig

# --- psychrometrics (sea level unless a pressure is given) ------------------------------------

PSYCHROMETER_A = 0.000662  # 1/K, aspirated psychrometer coefficient


def saturation_pressure_kpa(t_c: float) -> float:
    """Magnus formula over water; within 0.1 % from 0 to 50 °C."""
    return 0.61094 * math.exp(17.625 * t_c / (t_c + 243.04))


def humidity_ratio(vapour_kpa: float, pressure_kpa: float = 101.325) -> float:
    return 0.622 * vapour_kpa / (pressure_kpa - vapour_kpa)


def moist_air_enthalpy(t_c: float, w: float) -> float:
    """kJ per kg of dry air."""
    return 1.006 * t_c + w * (2501.0 + 1.86 * t_c)


def saturation_enthalpy(t_c: float, pressure_kpa: float = 101.325) -> float:
    return moist_air_enthalpy(t_c, humidity_ratio(saturation_pressure_kpa(t_c), pressure_kpa))


def relative_humidity(dry_bulb: float, wet_bulb: float, pressure_kpa: float = 101.325) -> float:
    """Percent, from the psychrometer equation."""
    vapour = saturation_pressure_kpa(wet_bulb) - PSYCHROMETER_A * pressure_kpa * (
        dry_bulb - wet_bulb
    )
    return max(0.0, min(100.0, 100.0 * vapour / saturation_pressure_kpa(dry_bulb)))


# --- noise ----------------------------------------------------------------------------------


class OUNoise:
    """Ornstein-Uhlenbeck process: zero-mean, standard deviation sigma, memory tau.

    Exact discretisation, so the statistics do not depend on the step size.
    """

    def __init__(self, rng: random.Random, sigma: float, tau_s: float) -> None:
        self._rng = rng
        self.sigma = sigma
        self.tau_s = tau_s
        self.value = 0.0

    def step(self, dt_s: float) -> float:
        a = math.exp(-dt_s / self.tau_s)
        self.value = a * self.value + self.sigma * math.sqrt(1.0 - a * a) * self._rng.gauss()
        return self.value


# --- daily shapes ---------------------------------------------------------------------------


def diurnal_fraction(hour: float, hour_min: float, hour_max: float) -> float:
    """0 at hour_min, 1 at hour_max, half-cosines in between (rise and fall may differ)."""
    rise = (hour_max - hour_min) % 24.0
    since_min = (hour - hour_min) % 24.0
    if since_min <= rise:
        return 0.5 - 0.5 * math.cos(math.pi * since_min / rise)
    fall = 24.0 - rise
    return 0.5 + 0.5 * math.cos(math.pi * (since_min - rise) / fall)


# Outpatient activity (0..1) by hour: clinics 08:00-12:00 and 14:00-17:30, wards until late.
_OCCUPANCY = (
    (0.0, 0.0), (6.0, 0.05), (7.0, 0.3), (8.0, 0.8), (9.5, 1.0), (11.5, 1.0), (12.5, 0.7),
    (14.0, 0.95), (16.5, 0.9), (18.0, 0.5), (20.0, 0.3), (22.0, 0.1), (24.0, 0.0),
)  # fmt: skip


def occupancy(hour: float) -> float:
    hour %= 24.0
    for (h0, v0), (h1, v1) in itertools.pairwise(_OCCUPANCY):
        if hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return 0.0


# --- weather and load -----------------------------------------------------------------------


class Weather:
    """Outdoor dry bulb, wet bulb and relative humidity over a repeating day."""

    def __init__(self, config: WeatherConfig, rng: random.Random) -> None:
        self.config = config
        self._noise = OUNoise(rng, config.noise_k, 3600.0)
        self.dry_bulb = config.dry_bulb_min
        self.wet_bulb = config.wet_bulb_min
        self.rh = 100.0
        self.update(0.0, 0.0)

    def update(self, hour: float, dt_s: float) -> None:
        c = self.config
        f = diurnal_fraction(hour, c.hour_min, c.hour_max)
        noise = self._noise.step(dt_s) if dt_s > 0 else self._noise.value
        self.dry_bulb = c.dry_bulb_min + f * (c.dry_bulb_max - c.dry_bulb_min) + noise
        # Wet bulb moves less than dry bulb and can never exceed it.
        wet = c.wet_bulb_min + f * (c.wet_bulb_max - c.wet_bulb_min) + 0.5 * noise
        self.wet_bulb = min(wet, self.dry_bulb)
        self.rh = relative_humidity(self.dry_bulb, self.wet_bulb, c.pressure_kpa)


class BuildingLoad:
    """Cooling the hospital asks of the chilled-water loop (kW thermal).

    load = peak x (floor + (1 - floor) x clamp(w x weather_factor + (1 - w) x occupancy))
    x (1 + noise); the floor is the 24 h base of theatres, ICU, imaging and data rooms.
    """

    def __init__(self, config: LoadConfig, rng: random.Random) -> None:
        self.config = config
        self._noise = OUNoise(rng, config.noise_fraction, config.noise_time_constant_s)
        self.demand_kw = 0.0
        self.occupancy = 0.0
        # Set from the simulator's control file: a scenario ("the load jumps to 3,600 kW")
        # that does not wait for the simulated weather. None: the model above.
        self.override_kw: float | None = None

    def weather_factor(self, weather: Weather) -> float:
        c = self.config
        dry = (weather.dry_bulb - c.balance_dry_bulb) / (c.design_dry_bulb - c.balance_dry_bulb)
        wet = (weather.wet_bulb - c.balance_wet_bulb) / (c.design_wet_bulb - c.balance_wet_bulb)
        # Sensible (envelope) and latent (fresh-air dehumidification) halves.
        return min(max(0.5 * dry + 0.5 * wet, 0.0), 1.2)

    def update(self, hour: float, weather: Weather, dt_s: float) -> None:
        c = self.config
        self.occupancy = occupancy(hour)
        noise = self._noise.step(dt_s) if dt_s > 0 else self._noise.value
        fixed = self.override_kw if self.override_kw is not None else c.constant_kw
        if fixed is not None:
            self.demand_kw = fixed
            return
        w = c.weather_weight
        variable = w * self.weather_factor(weather) + (1.0 - w) * self.occupancy
        fraction = c.floor_fraction + (1.0 - c.floor_fraction) * min(max(variable, 0.0), 1.1)
        self.demand_kw = max(c.peak_kw * fraction * (1.0 + noise), 0.0)
