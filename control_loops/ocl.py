"""Optimal chiller loading (OCL): share a cooling load among chillers for the least kW.

Each chiller i has a part-load curve ``kW_i = a + b*PLR + c*PLR**2 + d*PLR**3`` and a
capacity ``Q_i``. ``solve`` minimises the plant's kW subject to ``sum(PLR_i * Q_i) == load``
with each chiller off (PLR 0, 0 kW) or running at ``plr_min <= PLR_i <= 1``. Curves may be
concave or have negative constants, so the solver searches globally; see docs/ocl.md.

numba is imported (and the kernels loaded) on the first call only.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

MAX_CHILLERS = 12  # every on/off subset is visited: 2**n grows fast
DP_GRID = 400  # load steps of the seeding DP (docs/ocl.md: accuracy)
_kernels: ModuleType | None = None


@dataclass(frozen=True)
class OclResult:
    """PLR per chiller (0 when off), plant kW, and which chillers run."""

    plr: np.ndarray
    power: float
    on: np.ndarray


def _load_kernels() -> ModuleType:
    global _kernels
    if _kernels is None:
        from control_loops import _ocl_kernels

        _kernels = _ocl_kernels
    return _kernels


def _check_inputs(
    coeffs: object, capacities: object, load: float, plr_min: float
) -> tuple[np.ndarray, np.ndarray]:
    co = np.ascontiguousarray(coeffs, dtype=np.float64)
    q = np.ascontiguousarray(capacities, dtype=np.float64)
    if co.ndim != 2 or co.shape[1] != 4 or co.shape[0] == 0:
        raise ValueError(f"coeffs must have shape (n, 4) with n >= 1, got {co.shape}")
    if q.shape != (co.shape[0],):
        raise ValueError(f"capacities must have shape ({co.shape[0]},), got {q.shape}")
    if co.shape[0] > MAX_CHILLERS:
        raise ValueError(f"at most {MAX_CHILLERS} chillers are supported, got {co.shape[0]}")
    if not np.all(np.isfinite(co)):
        raise ValueError("coeffs must be finite (no NaN or inf)")
    if not np.all(np.isfinite(q)) or not np.all(q > 0):
        raise ValueError(f"capacities must be finite and > 0, got {q.tolist()}")
    if not np.isfinite(load):
        raise ValueError(f"load must be finite, got {load}")
    if not (np.isfinite(plr_min) and 0 < plr_min <= 1):
        raise ValueError(f"plr_min must be in (0, 1], got {plr_min}")
    return co, q


def reachable(capacities: np.ndarray, plr_min: float, allow_off: bool) -> list[tuple[float, float]]:
    """Disjoint load intervals the plant can meet, in ascending order (0 alone when off)."""
    q = np.asarray(capacities, dtype=np.float64)
    n = q.size
    if not allow_off:
        return [(plr_min * q.sum(), q.sum())]
    spans = []
    for mask in range(1, 1 << n):
        cap = sum(q[i] for i in range(n) if mask >> i & 1)
        spans.append((plr_min * cap, cap))
    merged = [(0.0, 0.0)]
    for lo, hi in sorted(spans):
        if lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _infeasible(load: float, q: np.ndarray, plr_min: float, allow_off: bool) -> ValueError:
    spans = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in reachable(q, plr_min, allow_off))
    mode = "some chillers may be off" if allow_off else "all chillers running"
    return ValueError(
        f"load {load:g} cannot be met with plr_min={plr_min:g} ({mode}); reachable: {spans}"
    )


def solve(
    coeffs: object,
    capacities: object,
    load: float,
    plr_min: float = 0.3,
    allow_off: bool = True,
) -> OclResult:
    """Globally least-kW loading of the chillers for ``load`` (same unit as capacities).

    Raises ValueError on malformed inputs and on a load no on/off combination can meet.
    """
    load = float(load)
    plr_min = float(plr_min)
    co, q = _check_inputs(coeffs, capacities, load, plr_min)
    n = q.size
    if load < 0 or load > q.sum() * (1 + 1e-12) or (load == 0 and not allow_off):
        raise _infeasible(load, q, plr_min, allow_off)
    if load == 0 and allow_off:
        return OclResult(np.zeros(n), 0.0, np.zeros(n, dtype=bool))
    kernels = _load_kernels()
    plr, _, found = kernels.solve(co, q, load, plr_min, bool(allow_off), DP_GRID)
    if not found:
        raise _infeasible(load, q, plr_min, allow_off)
    on = plr > 0
    # Recomputed here so power is exactly the curves at the returned PLRs.
    kw = float(sum(np.polyval(co[i, ::-1], plr[i]) for i in np.flatnonzero(on)))
    return OclResult(plr, kw, on)
