"""Optimal chiller loading: numba solver (warm) against a pure-Python/SciPy multi-start.

The reference visits the same on/off subsets and runs SciPy's SLSQP from several starts on
each: the obvious way to get a global answer from a local solver. Both are timed on the
same random plants (concave curves and negative constants included) in the same run.

    cd /work/main && .venv/bin/python -m benchmarks.ocl

Last line: one JSON object (us_per_solve_{3,6,10}, reference_us_per_solve_{3,6,10},
speedup_vs_reference = the smallest per-size ratio of reference time to solver time,
worst_gap_kw = solver kW - reference kW, largest over all plants; > 0 would be a miss).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from control_loops import ocl

SIZES = (3, 6, 10)
PLANTS = 5  # random plants per size
SOLVER_REPEATS = 40
REFERENCE_STARTS = 4
PLR_MIN = 0.3


def random_plant(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Curves with mixed convexity and sign of the constant, capacities, a feasible load."""
    coeffs = np.column_stack(
        [
            rng.uniform(-20, 60, n),
            rng.uniform(50, 400, n),
            rng.uniform(-150, 150, n),
            rng.uniform(-80, 80, n),
        ]
    )
    caps = rng.uniform(200, 1500, n)
    return coeffs, caps, float(rng.uniform(0.35, 0.9) * caps.sum())


def _curve(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    return c[:, 0] + x * (c[:, 1] + x * (c[:, 2] + x * c[:, 3]))


def repair(x: np.ndarray, q: np.ndarray, load: float, plr_min: float) -> np.ndarray | None:
    """Clip x to [plr_min, 1] and spread the load residual over chillers with room, so the
    reference is judged on exactly feasible points (SLSQP's slack would flatter it)."""
    x = np.clip(x, plr_min, 1.0)
    for _ in range(2 * x.size):
        resid = load - x @ q
        if abs(resid) <= 1e-12 * load:
            return x
        room = (1.0 - x) if resid > 0 else (x - plr_min)
        if room.sum() <= 0:
            return None
        x = np.clip(x + resid * room / (room @ q), plr_min, 1.0)
    return x if abs(load - x @ q) <= 1e-10 * load else None


def reference_solve(
    coeffs: np.ndarray,
    caps: np.ndarray,
    load: float,
    plr_min: float = PLR_MIN,
    allow_off: bool = True,
    starts: int = REFERENCE_STARTS,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """SLSQP multi-start on every feasible on/off subset; returns (plr, kW)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    n = len(caps)
    best_x, best_p = np.zeros(n), np.inf
    masks = range(1, 1 << n) if allow_off else [(1 << n) - 1]
    for mask in masks:
        idx = np.array([i for i in range(n) if mask >> i & 1])
        c, q = coeffs[idx], caps[idx]
        if not plr_min * q.sum() <= load <= q.sum():
            continue
        cons = {"type": "eq", "fun": lambda x, q=q: x @ q - load, "jac": lambda x, q=q: q}
        for s in range(starts):
            x0 = np.full(idx.size, load / q.sum()) if s == 0 else rng.uniform(plr_min, 1, idx.size)
            res = minimize(
                lambda x, c=c: _curve(c, x).sum(),
                x0,
                jac=lambda x, c=c: c[:, 1] + x * (2 * c[:, 2] + 3 * c[:, 3] * x),
                bounds=[(plr_min, 1.0)] * idx.size,
                constraints=[cons],
                method="SLSQP",
                options={"ftol": 1e-12, "maxiter": 200},
            )
            x = repair(res.x, q, load, plr_min)
            if x is None:
                continue
            p = float(_curve(c, x).sum())
            if p < best_p:
                best_x = np.zeros(n)
                best_x[idx] = x
                best_p = p
    return best_x, best_p


def _time(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    rng = np.random.default_rng(2026)
    out: dict[str, float] = {}
    speedups = []
    worst_gap = -np.inf
    for n in SIZES:
        plants = [random_plant(rng, n) for _ in range(PLANTS)]
        for co, q, load in plants:
            ocl.solve(co, q, load)  # compile or load from cache: timings are warm
        us = [_time(lambda p=p: ocl.solve(*p), SOLVER_REPEATS) for p in plants]
        ref_reps = 1 if n >= 10 else 2
        ref_us = [_time(lambda p=p: reference_solve(*p), ref_reps) for p in plants]
        for co, q, load in plants:
            worst_gap = max(
                worst_gap, ocl.solve(co, q, load).power - reference_solve(co, q, load)[1]
            )
        out[f"us_per_solve_{n}"] = round(float(np.mean(us)), 1)
        out[f"reference_us_per_solve_{n}"] = round(float(np.mean(ref_us)), 1)
        speedups.append(float(np.mean(ref_us) / np.mean(us)))
        print(f"n={n}: solver {np.mean(us):.1f} us, reference {np.mean(ref_us):.0f} us", flush=True)
    out["speedup_vs_reference"] = round(min(speedups), 1)
    # > 0 would mean the reference found a cheaper loading than the solver.
    out["worst_gap_kw"] = float(f"{worst_gap:.3g}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
