"""Plain-numpy brute force for the OCL tests: every feasible point on a fine PLR grid."""

from __future__ import annotations

import numpy as np

STEP = 0.001


def curve(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """kW of chiller c at PLRs x (any shape)."""
    return c[0] + x * (c[1] + x * (c[2] + x * c[3]))


def _axis(lo: float) -> np.ndarray:
    return np.unique(np.append(np.arange(lo, 1.0, STEP), 1.0))


def _subset_best(co: np.ndarray, q: np.ndarray, load: float, lo: float) -> float:
    """Least kW with every chiller in co running: all but the last on the grid, the last
    takes the rest exactly (so every point is feasible)."""
    m = q.size
    grids = np.meshgrid(*([_axis(lo)] * (m - 1)), indexing="ij") if m > 1 else []
    flat = [g.ravel() for g in grids]
    rest = load - sum((q[k] * flat[k] for k in range(m - 1)), start=np.zeros(1))
    last = rest / q[-1]
    # An ulp of slack so loads exactly at a range end are not lost to rounding.
    ok = (last >= lo - 1e-12) & (last <= 1.0 + 1e-12)
    if not ok.any():
        return np.inf
    kw = curve(co[-1], np.clip(last[ok], lo, 1.0))
    for k in range(m - 1):
        kw = kw + curve(co[k], flat[k][ok])
    return float(kw.min())


def brute_force(
    co: np.ndarray, q: np.ndarray, load: float, lo: float, allow_off: bool = True
) -> float:
    """Least kW over all on/off subsets on the STEP grid (n <= 3 keeps it under ~1 M points)."""
    n = q.size
    if load == 0 and allow_off:
        return 0.0
    best = np.inf
    for mask in range(1, 1 << n) if allow_off else [(1 << n) - 1]:
        idx = [i for i in range(n) if mask >> i & 1]
        best = min(best, _subset_best(co[idx], q[idx], load, lo))
    return best
