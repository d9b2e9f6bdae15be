"""Hospital sewage-treatment monitor: effluent flow, pH, residual chlorine, COD, SS, ammonia
nitrogen, total phosphorus and water temperature, each instrument with its status register.

Disinfection is flow-paced hypochlorite: residual chlorine = dose - demand, where demand grows
with the organic load (COD), smoothed by the contact tank (first-order, tau = volume / flow).
GB 18466 asks for a total residual chlorine of 2-8 mg/L at the contact-tank outlet.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields

from simulators.analyzers import Analyzer, Status
from simulators.config import SewageConfig
from simulators.load import OUNoise, diurnal_fraction

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class SewageAnalyzers:
    """The monitor's instruments; the tag table reads `analyzers.<name>.value` / `.status`."""

    flow: Analyzer
    ph: Analyzer
    residual_chlorine: Analyzer
    cod: Analyzer
    ss: Analyzer
    nh3n: Analyzer
    tp: Analyzer
    water_temp: Analyzer

    def by_name(self) -> dict[str, Analyzer]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SewageMonitor:
    """`rng` drives the original quantities, `nutrient_rng` ammonia, phosphorus and water
    temperature: a stream of their own, so adding them left a seed's other values as they were."""

    def __init__(
        self, config: SewageConfig, rng: random.Random, nutrient_rng: random.Random
    ) -> None:
        self.config = config
        tau = config.drift_time_constant_s
        # Slow drifts (influent composition) plus fast measurement noise.
        self._ph = OUNoise(rng, config.ph_sigma, tau)
        self._cod = OUNoise(rng, config.cod_sigma_mgl, tau)
        self._ss = OUNoise(rng, config.ss_sigma_mgl, tau)
        self._flow_noise = OUNoise(rng, 0.05, 600.0)
        self._fast = OUNoise(rng, 1.0, 60.0)
        self._nh3n = OUNoise(nutrient_rng, config.nh3n_sigma_mgl, tau)
        self._tp = OUNoise(nutrient_rng, config.tp_sigma_mgl, tau)
        self._water_temp = OUNoise(nutrient_rng, config.water_temp_sigma_k, 3600.0)
        self.dose_mgl = config.chlorine_dose_mgl
        self.flow_m3h = config.mean_flow_m3h
        self.ph = config.ph_mean
        self.cod = config.cod_mean_mgl
        self.ss = config.ss_mean_mgl
        self.nh3n = config.nh3n_mean_mgl
        self.tp = config.tp_mean_mgl
        self.water_temp = config.water_temp_mean
        self.residual_chlorine = max(self._target_chlorine(), 0.0)
        self.total_m3 = 0.0
        a = config.analyzers
        self.analyzers = SewageAnalyzers(
            flow=Analyzer(a.flow, lambda: self.flow_m3h),
            ph=Analyzer(a.ph, lambda: self.ph),
            residual_chlorine=Analyzer(a.residual_chlorine, lambda: self.residual_chlorine),
            cod=Analyzer(a.cod, lambda: self.cod),
            ss=Analyzer(a.ss, lambda: self.ss),
            nh3n=Analyzer(a.nh3n, lambda: self.nh3n),
            tp=Analyzer(a.tp, lambda: self.tp),
            water_temp=Analyzer(a.water_temp, lambda: self.water_temp),
        )

    def set_states(self, states: Mapping[str, Status | None]) -> None:
        """Every instrument's state (None: measuring), e.g. from `analyzers.parse_states`."""
        for name, analyzer in self.analyzers.by_name().items():
            analyzer.set_state(states[name])

    def _target_chlorine(self) -> float:
        c = self.config
        demand = c.chlorine_demand_base_mgl + c.chlorine_demand_per_cod * self.cod
        return max(self.dose_mgl - demand, 0.0)

    def update(self, hour: float, dt_s: float) -> None:
        c = self.config
        # Morning peak (ward rounds, laundry) near 10:00, low at 03:00.
        shape = diurnal_fraction(hour, 3.0, 10.0)
        factor = c.min_factor + (c.peak_factor - c.min_factor) * shape
        self.flow_m3h = max(c.mean_flow_m3h * factor * (1.0 + self._flow_noise.step(dt_s)), 0.0)
        fast = self._fast.step(dt_s)
        self.ph = min(max(c.ph_mean + self._ph.step(dt_s) + 0.02 * fast, 0.0), 14.0)
        # Organic and nutrient load follows the daytime activity.
        daytime = 0.8 + 0.4 * shape
        self.cod = max(c.cod_mean_mgl * daytime + self._cod.step(dt_s), 5.0)
        self.ss = max(c.ss_mean_mgl * daytime + self._ss.step(dt_s), 1.0)
        self.nh3n = max(c.nh3n_mean_mgl * daytime + self._nh3n.step(dt_s), 0.1)
        self.tp = max(c.tp_mean_mgl * daytime + self._tp.step(dt_s), 0.02)
        # The tanks' water lags the day's air: coolest at 06:00, warmest at 16:00.
        warm = 2.0 * diurnal_fraction(hour, 6.0, 16.0) - 1.0
        self.water_temp = (
            c.water_temp_mean + c.water_temp_swing_k * warm + self._water_temp.step(dt_s)
        )
        tau_s = c.contact_tank_m3 / max(self.flow_m3h, 0.1) * 3600.0
        self.residual_chlorine += (self._target_chlorine() - self.residual_chlorine) * (
            1.0 - math.exp(-dt_s / tau_s)
        )
        if self.analyzers.flow.measuring:  # the meter's totaliser counts what it measures
            self.total_m3 += self.flow_m3h * dt_s / 3600.0
