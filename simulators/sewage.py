"""Hospital sewage-treatment monitor: effluent flow, pH, residual chlorine, COD and SS.

Disinfection is flow-paced hypochlorite: residual chlorine = dose - demand, where demand grows
with the organic load (COD), smoothed by the contact tank (first-order, tau = volume / flow).
GB 18466 asks for a total residual chlorine of 2-8 mg/L at the contact-tank outlet.
"""

from __future__ import annotations

import math
import random

from simulators.config import SewageConfig
from simulators.load import OUNoise, diurnal_fraction

SECONDS_PER_DAY = 86400.0


class SewageMonitor:
    def __init__(self, config: SewageConfig, rng: random.Random) -> None:
        self.config = config
        tau = config.drift_time_constant_s
        # Slow drifts (influent composition) plus fast measurement noise.
        self._ph = OUNoise(rng, config.ph_sigma, tau)
        self._cod = OUNoise(rng, config.cod_sigma_mgl, tau)
        self._ss = OUNoise(rng, config.ss_sigma_mgl, tau)
        self._flow_noise = OUNoise(rng, 0.05, 600.0)
        self._fast = OUNoise(rng, 1.0, 60.0)
        self.dose_mgl = config.chlorine_dose_mgl
        self.flow_m3h = config.mean_flow_m3h
        self.ph = config.ph_mean
        self.cod = config.cod_mean_mgl
        self.ss = config.ss_mean_mgl
        self.residual_chlorine = max(self._target_chlorine(), 0.0)
        self.total_m3 = 0.0

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
        # Organic load follows the daytime activity.
        self.cod = max(c.cod_mean_mgl * (0.8 + 0.4 * shape) + self._cod.step(dt_s), 5.0)
        self.ss = max(c.ss_mean_mgl * (0.8 + 0.4 * shape) + self._ss.step(dt_s), 1.0)
        tau_s = c.contact_tank_m3 / max(self.flow_m3h, 0.1) * 3600.0
        self.residual_chlorine += (self._target_chlorine() - self.residual_chlorine) * (
            1.0 - math.exp(-dt_s / tau_s)
        )
        self.total_m3 += self.flow_m3h * dt_s / 3600.0
