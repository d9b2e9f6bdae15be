"""numba kernels of the optimal chiller loading solver (see ``control_loops.ocl``).

Imported lazily by ``ocl.solve``: importing this module imports numba (through
``control_loops.jit`` so the on-disk cache lands in a writable dir) and loads or compiles
the kernels.
"""

from __future__ import annotations

import numpy as np

from control_loops.jit import numba

_nb = numba()
njit = _nb.njit
Arr = np.ndarray

# A pair move must win more than this (relative) to count: stops float-noise ping-pong.
_GAIN_RTOL = 1e-14
_MAX_SWEEPS = 200


@njit(cache=True)
def power(co: Arr, i: int, x: float) -> float:
    """kW of chiller i running at PLR x (Horner)."""
    return co[i, 0] + x * (co[i, 1] + x * (co[i, 2] + x * co[i, 3]))


@njit(cache=True)
def _slope(co: Arr, i: int, x: float) -> float:
    return co[i, 1] + x * (2.0 * co[i, 2] + 3.0 * co[i, 3] * x)


@njit(cache=True)
def _clip(x: float, lo: float) -> float:
    return min(max(x, lo), 1.0)


@njit(cache=True)
def _shift(
    q: Arr, x: Arr, i: int, j: int, lo: float, t: float, tlo: float, thi: float, s: float
) -> tuple[float, float]:
    """PLRs of i and j after moving load t from j to i; bound hits snap exactly."""
    qi, qj = q[i], q[j]
    if t == tlo:
        if tlo == (lo - x[i]) * qi:
            xi = lo
            return xi, _clip((s - qi * xi) / qj, lo)
        xj = 1.0
        return _clip((s - qj * xj) / qi, lo), xj
    if t == thi:
        if thi == (1.0 - x[i]) * qi:
            xi = 1.0
            return xi, _clip((s - qi * xi) / qj, lo)
        xj = lo
        return _clip((s - qj * xj) / qi, lo), xj
    xi = _clip(x[i] + t / qi, lo)
    return xi, _clip((s - qi * xi) / qj, lo)


@njit(cache=True)
def pair_move(co: Arr, q: Arr, x: Arr, i: int, j: int, lo: float) -> float:
    """Globally best transfer of load between chillers i and j, the others held.

    The pair's power is a cubic in the load moved, t, so its minimum over the feasible
    interval of t is at an end or at a root of the quadratic derivative: exact, no search.
    Applies the move when it wins and returns the kW saved (0 when none).
    """
    qi, qj = q[i], q[j]
    s = qi * x[i] + qj * x[j]
    tlo = max((lo - x[i]) * qi, (x[j] - 1.0) * qj)
    thi = min((1.0 - x[i]) * qi, (x[j] - lo) * qj)
    base = power(co, i, x[i]) + power(co, j, x[j])
    if not thi > tlo:
        return 0.0
    p, r = 1.0 / qi, 1.0 / qj
    # d(power)/dt = a2 t^2 + a1 t + a0, from Taylor expansion of both slopes at t = 0.
    a2 = 3.0 * (co[i, 3] * p**3 - co[j, 3] * r**3)
    a1 = p * p * (2.0 * co[i, 2] + 6.0 * co[i, 3] * x[i])
    a1 += r * r * (2.0 * co[j, 2] + 6.0 * co[j, 3] * x[j])
    a0 = p * _slope(co, i, x[i]) - r * _slope(co, j, x[j])
    cands = np.empty(4)
    cands[0], cands[1] = tlo, thi
    nc = 2
    if a2 != 0.0:
        disc = a1 * a1 - 4.0 * a2 * a0
        if disc >= 0.0:
            # Cancellation-free quadratic roots.
            h = -0.5 * (a1 + np.copysign(np.sqrt(disc), a1))
            if h != 0.0:
                cands[nc] = h / a2
                cands[nc + 1] = a0 / h
                nc += 2
    elif a1 != 0.0:
        cands[nc] = -a0 / a1
        nc += 1
    best, bi, bj = base, x[i], x[j]
    for k in range(nc):
        t = cands[k]
        if not (tlo <= t <= thi):
            continue
        xi, xj = _shift(q, x, i, j, lo, t, tlo, thi, s)
        val = power(co, i, xi) + power(co, j, xj)
        if val < best:
            best, bi, bj = val, xi, xj
    gain = base - best
    if gain > _GAIN_RTOL * (1.0 + abs(base)):
        x[i], x[j] = bi, bj
        return gain
    return 0.0


@njit(cache=True)
def polish(co: Arr, q: Arr, x: Arr, idx: Arr, lo: float) -> None:
    """Pair moves over all pairs of running chillers until a full sweep gains nothing.

    The result is pairwise globally optimal, which implies the KKT conditions (equal
    marginal kW per unit load across chillers off their bounds).
    """
    m = idx.size
    for _ in range(_MAX_SWEEPS):
        gained = False
        for a in range(m):
            for b in range(a + 1, m):
                if pair_move(co, q, x, idx[a], idx[b], lo) > 0.0:
                    gained = True
        if not gained:
            break


@njit(cache=True)
def _free(x: float, lo: float) -> bool:
    # Off its bounds by more than float dust (a pair move can leave 1 - 2**-52).
    return lo + 1e-9 < x < 1.0 - 1e-9


@njit(cache=True)
def newton_kkt(co: Arr, q: Arr, x: Arr, idx: Arr, lo: float) -> None:
    """Newton steps on equal marginal kW (kW_i' / Q_i = mu) over chillers off their bounds.

    Pair sweeps converge linearly and stop at ~1e-7 relative spread of the marginals; this
    finishes the job quadratically. Load balance is kept: sum Q_i dx_i = 0 by choice of mu.
    A step that would leave the box or meet a flat curvature is not taken.
    """
    for _ in range(3):
        num = den = 0.0
        nfree = 0
        for k in range(idx.size):
            i = idx[k]
            if _free(x[i], lo):
                h = 2.0 * co[i, 2] + 6.0 * co[i, 3] * x[i]
                if h == 0.0:
                    return
                num += q[i] * _slope(co, i, x[i]) / h
                den += q[i] * q[i] / h
                nfree += 1
        if nfree < 2 or den == 0.0:
            return
        mu = num / den
        for k in range(idx.size):
            i = idx[k]
            if _free(x[i], lo):
                h = 2.0 * co[i, 2] + 6.0 * co[i, 3] * x[i]
                if not lo < x[i] + (mu * q[i] - _slope(co, i, x[i])) / h < 1.0:
                    return
        for k in range(idx.size):
            i = idx[k]
            if _free(x[i], lo):
                h = 2.0 * co[i, 2] + 6.0 * co[i, 3] * x[i]
                x[i] += (mu * q[i] - _slope(co, i, x[i])) / h


@njit(cache=True)
def fix_sum(q: Arr, x: Arr, idx: Arr, lo: float, load: float) -> bool:
    """Put float residue of sum(q x) - load on chillers with room; False if it cannot."""
    for _ in range(2):
        for k in range(idx.size):
            i = idx[k]
            resid = load
            for kk in range(idx.size):
                resid -= q[idx[kk]] * x[idx[kk]]
            if resid == 0.0:
                return True
            x[i] = _clip(x[i] + resid / q[i], lo)
    resid = load
    for kk in range(idx.size):
        resid -= q[idx[kk]] * x[idx[kk]]
    return abs(resid) <= 1e-12 * max(abs(load), 1.0)


@njit(cache=True)
def total(co: Arr, x: Arr, idx: Arr) -> float:
    """kW of the running chillers idx."""
    out = 0.0
    for k in range(idx.size):
        out += power(co, idx[k], x[idx[k]])
    return out


@njit(cache=True)
def _options(q: Arr, j: int, lo: float, step: float, grid: int, cell: Arr, plr: Arr) -> int:
    """Running options of chiller j for the DP: its PLRs on grid cells, plus its exact
    bounds on their nearest cells. Optima often sit at a bound, which the grid alone misses
    by up to a step: with steep or concave curves that costs more than the grid error
    elsewhere and can hide the right basin. Returns the number of options."""
    kmin = max(int(np.ceil(lo * q[j] / step - 1e-9)), 1)
    kmax = min(int(np.floor(q[j] / step + 1e-9)), grid)
    cnt = 0
    for kk in range(kmin, kmax + 1):
        cell[cnt], plr[cnt] = kk, kk * step / q[j]
        cnt += 1
    for bound in (lo, 1.0):
        kk = max(int(np.rint(bound * q[j] / step)), 1)
        if kk <= grid:
            cell[cnt], plr[cnt] = kk, bound
            cnt += 1
    return cnt


@njit(cache=True)
def dp_start(
    co: Arr, q: Arr, load: float, lo: float, allow_off: bool, grid: int
) -> tuple[Arr, bool]:
    """Best loading on a grid of load / grid steps (min-plus DP over chillers, off included).

    Returns (x, found); x is the grid optimum's PLRs (0 = off). Bound options sit on their
    nearest cell, so sum(q x) may miss the load by half a step per chiller: it only seeds
    a polish (after fix_sum), catching basins a start at equal PLR misses.
    """
    n = q.size
    step = load / grid
    inf = np.inf
    best = np.full(grid + 1, inf)
    best[0] = 0.0
    choice = np.zeros((n, grid + 1), dtype=np.int64)  # option index + 1; 0 = off
    cells = np.zeros((n, grid + 2), dtype=np.int64)
    plrs = np.zeros((n, grid + 2))
    nxt = np.empty(grid + 1)
    for j in range(n):
        cnt = _options(q, j, lo, step, grid, cells[j], plrs[j])
        for k in range(grid + 1):
            nxt[k] = best[k] if allow_off else inf
            choice[j, k] = 0
        for o in range(cnt):
            kk = cells[j, o]
            cost = power(co, j, plrs[j, o])
            for k in range(kk, grid + 1):
                val = best[k - kk] + cost
                if val < nxt[k]:
                    nxt[k] = val
                    choice[j, k] = o + 1
        best[:] = nxt
    x = np.zeros(n)
    if best[grid] == inf:
        return x, False
    k = grid
    for j in range(n - 1, -1, -1):
        o = choice[j, k] - 1
        if o >= 0:
            x[j] = _clip(plrs[j, o], lo)
            k -= cells[j, o]
    return x, True


@njit(cache=True)
def _running(mask: int, n: int) -> Arr:
    cnt = 0
    for i in range(n):
        if mask >> i & 1:
            cnt += 1
    idx = np.empty(cnt, dtype=np.int64)
    cnt = 0
    for i in range(n):
        if mask >> i & 1:
            idx[cnt] = i
            cnt += 1
    return idx


@njit(cache=True)
def _try(
    co: Arr, q: Arr, x: Arr, idx: Arr, lo: float, load: float, best_x: Arr, best_p: float
) -> float:
    """Polish x over the running set idx; returns the better of it and best_p."""
    if not fix_sum(q, x, idx, lo, load):
        return best_p
    polish(co, q, x, idx, lo)
    if not fix_sum(q, x, idx, lo, load):
        return best_p
    p = total(co, x, idx)
    # Only a Newton result that is feasible and no worse replaces the polished one.
    xn = x.copy()
    newton_kkt(co, q, xn, idx, lo)
    if fix_sum(q, xn, idx, lo, load):
        pn = total(co, xn, idx)
        if pn <= p:
            x[:] = xn
            p = pn
    if p < best_p:
        best_x[:] = x
        return p
    return best_p


@njit(cache=True)
def solve(
    co: Arr, q: Arr, load: float, lo: float, allow_off: bool, grid: int
) -> tuple[Arr, float, bool]:
    """Global minimum over every on/off subset; returns (plr, kW, found)."""
    n = q.size
    best_x = np.zeros(n)
    best_p = np.inf
    tol = 1e-12
    first = 1 if allow_off else (1 << n) - 1
    x = np.zeros(n)
    for mask in range(first, 1 << n):
        idx = _running(mask, n)
        cap = 0.0
        for k in range(idx.size):
            cap += q[idx[k]]
        if load > cap * (1.0 + tol) or load < lo * cap * (1.0 - tol):
            continue
        x[:] = 0.0
        share = _clip(load / cap, lo)
        for k in range(idx.size):
            x[idx[k]] = share
        best_p = _try(co, q, x, idx, lo, load, best_x, best_p)
    if grid > 0 and load > 0.0:
        xd, found = dp_start(co, q, load, lo, allow_off, grid)
        if found:
            mask = 0
            for i in range(n):
                if xd[i] > 0.0:
                    mask |= 1 << i
            best_p = _try(co, q, xd, _running(mask, n), lo, load, best_x, best_p)
    return best_x, best_p, best_p < np.inf
