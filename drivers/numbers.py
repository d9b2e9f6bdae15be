"""How numbers from the field are presented."""

from __future__ import annotations

import math

# A float32 carries 24 bits, about 7 significant decimal digits: 6.67 sent as float32 is
# 6.670000076293945 in a double, but the device meant 6.67.
FLOAT32_DIGITS = 7


def float32_meant(value: float) -> float:
    """A float32 as the decimal it stands for (non-finite values unchanged)."""
    return float(f"{value:.{FLOAT32_DIGITS}g}") if math.isfinite(value) else value
