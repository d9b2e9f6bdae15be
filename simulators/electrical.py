"""Substation: one dry-type transformer feeding the plant and other building loads, and its
main meter (secondary side)."""

from __future__ import annotations

import math
import random

from simulators.config import ElectricalConfig
from simulators.load import OUNoise

_PHASE_SHARE = (0.345, 0.330, 0.325)  # a slightly unbalanced low-voltage distribution


class Substation:
    def __init__(self, config: ElectricalConfig, rng: random.Random) -> None:
        self.config = config
        self._other_noise = OUNoise(rng, 0.03, 600.0)
        self._voltage_noise = OUNoise(rng, 0.003, 120.0)
        self.plant_kw = 0.0
        self.other_kw = config.other_load_base_kw
        self.active_kw = 0.0
        self.power_factor = config.pf_min
        self.winding_temp = config.room_temp
        self.energy_kwh = 0.0
        self.reactive_kvarh = 0.0
        self.plant_energy_kwh = 0.0
        # Two feeders among the other loads, read by DL/T 645 sub-meters.
        self.lighting_kw = 0.0
        self.kitchen_kw = 0.0
        self.lighting_energy_kwh = 0.0
        self.kitchen_energy_kwh = 0.0
        # Per phase (L1, L2, L3).
        self.voltages: tuple[float, ...] = (config.nominal_voltage_ln,) * 3
        self.currents: tuple[float, ...] = (0.0, 0.0, 0.0)

    @property
    def apparent_kva(self) -> float:
        return self.active_kw / self.power_factor

    @property
    def reactive_kvar(self) -> float:
        return self.apparent_kva * math.sqrt(max(1.0 - self.power_factor**2, 0.0))

    @property
    def lighting_current_a(self) -> float:
        return self._feeder_amps(self.lighting_kw)

    @property
    def kitchen_current_a(self) -> float:
        return self._feeder_amps(self.kitchen_kw)

    def _feeder_amps(self, kw: float) -> float:
        """Phase current of a balanced three-phase feeder at the substation's power factor."""
        return kw * 1000.0 / (3.0 * self.voltages[0] * self.power_factor)

    @property
    def loading_pct(self) -> float:
        return 100.0 * self.apparent_kva / self.config.transformer_kva

    def update(self, plant_kw: float, occupancy: float, dt_s: float) -> None:
        c = self.config
        other = c.other_load_base_kw + (c.other_load_peak_kw - c.other_load_base_kw) * occupancy
        self.plant_kw = plant_kw
        self.other_kw = max(other * (1.0 + self._other_noise.step(dt_s)), 0.0)
        self.active_kw = plant_kw + self.other_kw
        # Motor loads run at a poor power factor when lightly loaded; VFDs and the capacitor
        # bank lift it as load grows.
        load_fraction = self.active_kw / c.transformer_kva
        self.power_factor = c.pf_min + (c.pf_max - c.pf_min) * (1 - math.exp(-load_fraction / 0.3))
        k = self.apparent_kva / c.transformer_kva
        # IEC 60076-12 style: steady winding rise ∝ K^(2q), reached with one time constant.
        target = c.room_temp + c.rated_winding_rise_k * k**c.winding_exponent
        self.winding_temp += (target - self.winding_temp) * (
            1.0 - math.exp(-dt_s / c.winding_time_constant_s)
        )
        hours = dt_s / 3600.0
        self.energy_kwh += self.active_kw * hours
        self.reactive_kvarh += self.reactive_kvar * hours
        self.plant_energy_kwh += plant_kw * hours
        self.lighting_kw = self.other_kw * c.lighting_share
        self.kitchen_kw = self.other_kw * c.kitchen_share
        self.lighting_energy_kwh += self.lighting_kw * hours
        self.kitchen_energy_kwh += self.kitchen_kw * hours
        sag = 1.0 + c.voltage_regulation * (0.5 - k) + self._voltage_noise.step(dt_s)
        self.voltages = tuple(c.nominal_voltage_ln * sag * (1.0 + d) for d in (0.0, -0.004, 0.003))
        total_amps = self.apparent_kva * 1000.0 / (3.0 * c.nominal_voltage_ln * sag)
        self.currents = tuple(3.0 * share * total_amps for share in _PHASE_SHARE)
