"""Standard coal equivalent (kgce) by GB/T 2589-2020 (docs/energy-accounting.md, "Coal").

The equivalent value of electricity (当量值) is the standard's fixed 0.1229 kgce/kWh (its
heat, 3600 kJ/kWh, over 29307 kJ/kgce). The equal value (等价值) is the year's coal burnt
per kWh supplied, published by the statistics bureau: a site's figure, never a default
here. Heat is by its heat; natural gas by the supplier's calorific value, which the site
gives (the standard lists a range, about 1.1000-1.3300 kgce/m3, no single figure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KJ_PER_KGCE = 29_307.0  # 7000 kcal: one kilogram of standard coal

# kgce per unit, by medium and unit. Electricity: the equivalent value. Heat
# and cooling bought from a district network: their heat. Water: not an energy, but a
# consumable whose energy the standard lists (新水 0.2571 kgce/t, unconfirmed): counted
# only if a site asks for it (`water: true`).
EQUIVALENT: Mapping[tuple[str, str], float] = {
    ("electricity", "kWh"): 0.1229,
    ("electricity", "MWh"): 122.9,
    ("heat", "GJ"): 1e6 / KJ_PER_KGCE,
    ("heat", "MJ"): 1e3 / KJ_PER_KGCE,
    ("heat", "kWh"): 3600 / KJ_PER_KGCE,
    ("cooling", "GJ"): 1e6 / KJ_PER_KGCE,
    ("cooling", "MJ"): 1e3 / KJ_PER_KGCE,
    ("cooling", "kWh"): 3600 / KJ_PER_KGCE,
    ("water", "t"): 0.2571,
    ("water", "m3"): 0.2571,
}


@dataclass(frozen=True, slots=True)
class CoalFactors:
    """How a site converts: the electricity method and its own figures where it has them."""

    electricity: str = "equivalent"  # or "equal" (等价值), with equal_kgce_per_kwh
    equal_kgce_per_kwh: float | None = None  # e.g. the year's 供电标准煤耗
    gas_kgce_per_m3: float | None = None  # from the supplier's calorific value
    water: bool = False  # count water as a consumable

    def factor(self, medium: str, unit: str) -> float | None:
        """kgce per unit; None: not counted (water unless asked) or unknown."""
        if medium == "water" and not self.water:
            return None
        if medium == "electricity" and self.electricity == "equal":
            if self.equal_kgce_per_kwh is None:
                raise ValueError("the equal-value method needs the year's kgce per kWh")
            return self.equal_kgce_per_kwh * (1000 if unit == "MWh" else 1)
        if medium == "gas":
            if self.gas_kgce_per_m3 is None:
                raise ValueError("natural gas needs the supplier's kgce per m3")
            return self.gas_kgce_per_m3
        return EQUIVALENT.get((medium, unit))

    def kgce(self, medium: str, unit: str, amount: float) -> float | None:
        factor = self.factor(medium, unit)
        return None if factor is None else amount * factor
