"""Whole-plant optimizer: the setpoints that cover a load for the least predicted plant kW.

    fitter = ModelFitter(spec)                     # control_loops.models
    fitter.add(sample)                             # every time step: role -> value
    fitter.refit()                                 # every hour or so
    opt = PlantOptimizer(OptimizerLimits(), fitter.model)
    sp = opt.optimize(load_kw, wetbulb_c, measured=sample)   # every few minutes

Decisions: which chillers run (subset) and their loading (`ocl.solve`), CHW supply
setpoint, condenser supply setpoint (through the tower cells in service and their fan
speed), condenser flow (pump speed), DP setpoint and number of CHW pumps. The search is an
exhaustive, vectorised grid over every chiller subset x CHW supply x tower option (cells,
speed) x condenser flow; the chiller loading inside it is the exact equal-marginal loading
of convex quadratic curves (bisection on the marginal kW); the chosen point is then loaded
by `ocl.solve`, which is the global optimum whatever the curves' shape. The CHW pump
decision (DP, count) is separable and solved on its own. Everything is deterministic.
The model is any `models.PlantModel`: fitted (`ModelFitter.model`) or, for a benchmark's
oracle, the true equations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from control_loops import ocl
from control_loops.models import WATER_CP, PlantModel
from control_loops.plant_spec import OptimizerLimits, role

_BISECT = 40


@dataclass(frozen=True)
class PlantSetpoints:
    """What to write, and what the model predicts for it (kW, L/s, %)."""

    chillers_on: tuple[bool, ...]
    chiller_plr: tuple[float, ...]  # planned PLR (0 when off)
    chiller_chws_setpoints: tuple[float, ...]  # per chiller: realises the planned loading
    chws_setpoint: float
    cws_setpoint: float
    dp_setpoint: float
    chw_pumps: int  # how many CHW pumps run (the lowest-numbered available ones)
    cw_pumps_on: tuple[bool, ...]
    cw_pump_speed_pct: float
    tower_cells: int  # cells with fans in service (0: fans may all stop)
    tower_fan_pct: float  # predicted fan speed of the cells in service
    chw_flow_ls: float
    cw_flow_ls: float
    predicted_kw: dict[str, float] = field(default_factory=dict)
    feasible: bool = True
    note: str = ""

    @property
    def total_kw(self) -> float:
        return self.predicted_kw.get("total", math.nan)


def _water_fill(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray, load: float
) -> np.ndarray:
    """Least Σ(a + b L + c L²) with Σ L = load, lo <= L <= hi, c > 0; arrays (m, ...).

    Equal marginal kW: L_i(λ) = clip((λ − b_i) / 2c_i, lo_i, hi_i), and Σ L_i(λ) is
    piecewise linear in λ with breaks where a chiller reaches a bound. Evaluating it at the
    2m breaks and interpolating in the bracketing segment gives the exact λ (no iteration).
    Returns the total kW (inf where the load is outside [Σ lo, Σ hi]).
    """
    c = np.maximum(c, 1e-12)
    breaks = np.sort(np.concatenate([b + 2 * c * lo, b + 2 * c * hi]), axis=0)  # (2m, ...)
    sums = np.clip((breaks[:, None] - b[None]) / (2 * c[None]), lo[None], hi[None]).sum(axis=1)
    k = np.clip((sums <= load).sum(axis=0) - 1, 0, breaks.shape[0] - 2)[None]
    x0, x1 = np.take_along_axis(breaks, k, 0)[0], np.take_along_axis(breaks, k + 1, 0)[0]
    s0, s1 = np.take_along_axis(sums, k, 0)[0], np.take_along_axis(sums, k + 1, 0)[0]
    span = s1 - s0
    lam = np.where(span > 0, x0 + (load - s0) * (x1 - x0) / np.where(span > 0, span, 1), x0)
    loads = np.clip((lam - b) / (2 * c), lo, hi)
    kw = (a + b * loads + c * loads * loads).sum(axis=0)
    ok = (lo.sum(axis=0) <= load * (1 + 1e-9)) & (hi.sum(axis=0) >= load * (1 - 1e-9))
    return np.where(ok, kw, np.inf)


def pump_group(
    model: PlantModel,
    group: str,
    pumps: Sequence[int],
    flow: np.ndarray,
    head: np.ndarray,
    min_speed: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pumps in parallel at one speed delivering `flow` against `head` (arrays).

    Returns (speed fraction, kW, feasible). Below the pumps' minimum speed they run at the
    minimum (the DP then rides above its setpoint); above full speed it is infeasible.
    """
    flow = np.asarray(flow, dtype=float)
    head = np.asarray(head, dtype=float)
    curves = [model.pump_curve(group, j) for j in pumps]

    def delivered(s: np.ndarray) -> np.ndarray:
        return sum(np.sqrt(np.maximum(h0 * s * s - head, 0.0) / a) for h0, a in curves)

    lo = np.zeros_like(flow)
    hi = np.full_like(flow, 1.5)
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        short = delivered(mid) < flow
        lo = np.where(short, mid, lo)
        hi = np.where(short, hi, mid)
    s = np.maximum(0.5 * (lo + hi), min_speed)
    kw = np.zeros_like(flow)
    for j, (h0, a) in zip(pumps, curves, strict=True):
        q = np.sqrt(np.maximum(h0 * s * s - head, 0.0) / a)
        kw = kw + model.pump_power(group, j, s, q)
    return s, kw, s <= 1.0 + 1e-9


class PlantOptimizer:
    def __init__(self, limits: OptimizerLimits, models: PlantModel) -> None:
        self.limits = limits
        self.models = models
        sp = models.spec
        lim = limits
        n = round((lim.chws_max - lim.chws_min) / lim.chws_step)
        self._chws = np.unique(
            np.append(lim.chws_min + lim.chws_step * np.arange(n + 1), lim.chws_max)
        )
        self._chws = self._chws[self._chws <= lim.chws_max + 1e-9]
        speeds = np.arange(lim.fan_min, 1.0 + 1e-9, lim.fan_step)
        n_cells = len(sp.towers)
        # Tower options: (cells in service, fan speed); (0, 0) = every fan stopped.
        options = [(0, 0.0)] + [(m, float(s)) for m in range(1, n_cells + 1) for s in speeds]
        self._tower_cells = np.array([m for m, _ in options])
        self._tower_speed = np.array([s for _, s in options])
        # cell speeds per option, shape (cells, options)
        self._cell_speed = np.array(
            [np.where(self._tower_cells > k, self._tower_speed, 0.0) for k in range(n_cells)]
        )
        self._ratios = np.asarray(sorted(lim.cw_flow_ratios), dtype=float)
        self._lineup: tuple[int, ...] | None = None  # last planned chiller subset
        self._lineup_since = -math.inf

    def update_models(self, models: PlantModel) -> None:
        if models.spec != self.models.spec:
            raise ValueError("the new models describe a different plant")
        self.models = models

    # ---- public -------------------------------------------------------------------------

    def optimize(
        self,
        load_kw: float,
        wetbulb_c: float,
        measured: Mapping[str, float] | None = None,
        now_s: float | None = None,
    ) -> PlantSetpoints:
        """Setpoints for the least predicted plant kW at this load and wet bulb.

        `measured` (role -> value) supplies which chillers run now ("chiller_running[i]",
        for the staging hysteresis) and which are tripped ("chiller_fault[i]", excluded),
        and likewise "chw_pump_fault[j]" / "cw_pump_fault[j]". Raises ValueError only for
        non-finite or negative inputs; a load beyond the available capacity gives every
        available chiller at full capacity with `feasible=False`.
        """
        if not (math.isfinite(load_kw) and load_kw >= 0):
            raise ValueError(f"load_kw must be finite and >= 0, got {load_kw}")
        if not math.isfinite(wetbulb_c):
            raise ValueError(f"wetbulb_c must be finite, got {wetbulb_c}")
        measured = measured or {}
        m, lim, spec = self.models, self.limits, self.models.spec
        load = max(load_kw, 1.0)
        flow = m.chw_flow(load)

        dp, chw_n, chw_kw = self._chw_pumps(flow, measured)
        # A chiller runs only with its own condenser pump.
        available = [
            i
            for i, c in enumerate(spec.chillers)
            if not _flag(measured, role("chiller_fault", i))
            and not _flag(measured, role("cw_pump_fault", c.cw_pump))
        ]
        running = {
            i for i in range(len(spec.chillers)) if _flag(measured, role("chiller_running", i))
        }

        subsets = [
            s for n in range(1, len(available) + 1) for s in itertools.combinations(available, n)
        ]
        lineup = self._lineup
        held = (
            [lineup]  # the line-up of the last stage change, kept for min_stage_hold_s
            if lineup is not None
            and now_s is not None
            and lineup in subsets
            and now_s - self._lineup_since < lim.min_stage_hold_s
            else []
        )
        # Start at most max_starts chillers at once: a starting chiller passes its share of
        # the flow uncooled, and two at once warm the supply beyond what the others can offset.
        gradual = [s for s in subsets if not running or len(set(s) - running) <= lim.max_starts]
        best = None
        for candidates in (held, gradual, subsets):
            best = self._best(candidates, load, flow, wetbulb_c, running)
            if best is not None:  # else: the held or gradual line-ups cannot carry the load
                break
        if best is not None and now_s is not None and best[1] != self._lineup:
            self._lineup, self._lineup_since = best[1], now_s
        if best is None:
            return self._fallback(load, flow, wetbulb_c, available, dp, chw_n, chw_kw)
        _, subset, (ix, it, ir), parts = best
        return self._result(subset, ix, it, ir, load, flow, wetbulb_c, dp, chw_n, chw_kw, parts)

    def _best(
        self,
        subsets: Sequence[tuple[int, ...]],
        load: float,
        flow: float,
        wb: float,
        running: set[int],
    ) -> tuple[float, tuple[int, ...], tuple[int, int, int], dict[str, float]] | None:
        best = None
        for subset in subsets:
            found = self._subset(subset, load, flow, wb)
            if found is None:
                continue
            total, index, parts = found
            if running and set(subset) != running:
                total += self.limits.stage_change_kw
            if best is None or total < best[0] - 1e-9:
                best = (total, subset, index, parts)
        return best

    # ---- pieces --------------------------------------------------------------------------

    def _chw_pumps(self, flow: float, measured: Mapping[str, float]) -> tuple[float, int, float]:
        """DP setpoint (least that keeps the most-open valve at its target) and the pump
        count with the least kW for it."""
        m, lim, spec = self.models, self.limits, self.models.spec
        dp = m.dp_required(flow, lim.valve_target) * (1 + lim.dp_margin)
        dp = float(min(max(dp, lim.dp_min), lim.dp_max))
        pumps = [
            j for j in range(len(spec.chw_pumps)) if not _flag(measured, role("chw_pump_fault", j))
        ]
        head = m.chw_head(np.array([flow]), dp)
        best = (math.inf, len(pumps))
        for count in range(1, len(pumps) + 1):
            use = pumps[:count]
            min_speed = max(spec.chw_pumps[j].min_speed for j in use)
            _, kw, ok = pump_group(m, "chw", use, np.array([flow]), head, min_speed)
            if ok[0] and kw[0] < best[0] - 1e-9:
                best = (float(kw[0]), count)
        return dp, best[1], best[0] if math.isfinite(best[0]) else 0.0

    def _cw(self, subset: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """Condenser flow, pump speed, pump kW per flow ratio (inf where infeasible)."""
        m, spec = self.models, self.models.spec
        pumps = sorted({spec.chillers[i].cw_pump for i in subset})
        design = sum(spec.chillers[i].design_cw_flow_ls for i in subset)
        flow = self._ratios * design
        min_speed = max(spec.cw_pumps[j].min_speed for j in pumps)
        s, kw, ok = pump_group(m, "cw", pumps, flow, m.cw_head(flow), min_speed)
        return flow, s, np.where(ok, kw, np.inf), pumps

    def _ecwt(self, wb: float, rejected: np.ndarray, cw_flow: np.ndarray) -> np.ndarray:
        """Condenser supply for heat `rejected` (kW) with flow `cw_flow`, per tower option.

        rejected broadcasts against (options, ratios); result (…, options, ratios)."""
        m, n_cells = self.models, len(self.models.spec.towers)
        per_cell = cw_flow / n_cells  # water is spread over every cell
        rng = rejected / (cw_flow * WATER_CP)
        t_in = wb + rng / 0.5
        for _ in range(2):  # the true model's effectiveness depends on T_in a little
            eff = (
                sum(
                    m.tower_effectiveness(k, self._cell_speed[k][:, None], per_cell, wb, t_in)
                    for k in range(n_cells)
                )
                / n_cells
            )
            t_in = wb + rng / eff
        return wb + rng * (1.0 - eff) / eff

    def _fan_kw(self) -> np.ndarray:
        m = self.models
        total = m.tower_fan_power(0, self._cell_speed[0])  # a plant has towers (its spec says)
        for k in range(1, len(m.spec.towers)):
            total = total + m.tower_fan_power(k, self._cell_speed[k])
        return total

    def _chiller_kw(
        self, subset: Sequence[int], load: float, chws: np.ndarray, ecwt: np.ndarray
    ) -> np.ndarray:
        lim, m = self.limits, self.models
        quads = [m.chiller_quadratic(i, chws, ecwt) for i in subset]
        shape = np.broadcast(chws, ecwt).shape
        a, b, c, cap = (np.stack([np.broadcast_to(q[k], shape) for q in quads]) for k in range(4))
        kw = _water_fill(a, b, c, lim.plr_min * cap, lim.plr_max * cap, load)
        # Keep capacity in hand for the load to grow until the next optimisation.
        return np.where(cap.sum(axis=0) * lim.plr_max >= load * (1 + lim.load_margin), kw, np.inf)

    def _subset(
        self, subset: tuple[int, ...], load: float, flow: float, wb: float
    ) -> tuple[float, tuple[int, int, int], dict[str, float]] | None:
        lim, spec = self.limits, self.models.spec
        design_chw = sum(spec.chillers[i].design_chw_flow_ls for i in subset)
        if flow < lim.min_chw_flow_fraction * design_chw:
            return None
        cw_flow, _, cw_kw, _ = self._cw(subset)
        if not np.isfinite(cw_kw).any():
            return None
        chws = self._chws[:, None, None]
        # Two passes: the heat rejected includes the chillers' own power.
        rejected = np.full((1, 1, 1), load * 1.2)
        for _ in range(2):
            ecwt = self._ecwt(wb, rejected, cw_flow[None, None, :])  # (x|1, options, ratios)
            ok = ecwt <= lim.cws_max
            ecwt = np.maximum(ecwt, lim.cws_min)
            ch_kw = self._chiller_kw(subset, load, chws, ecwt)
            ch_kw = np.where(ok, ch_kw, np.inf)
            rejected = load + np.where(np.isfinite(ch_kw), ch_kw, 0.2 * load)
        fan = self._fan_kw()[None, :, None]
        total = ch_kw + fan + cw_kw[None, None, :]
        flat = int(np.argmin(total))
        if not np.isfinite(total.flat[flat]):
            return None
        ix, it, ir = np.unravel_index(flat, total.shape)
        parts = {
            "chillers": float(ch_kw[ix, it, ir]),
            "towers": float(fan[0, it, 0]),
            "cw_pumps": float(cw_kw[ir]),
            "ecwt": float(ecwt[ix, it, ir]),
        }
        return float(total.flat[flat]), (int(ix), int(it), int(ir)), parts

    def _result(
        self,
        subset: tuple[int, ...],
        ix: int,
        it: int,
        ir: int,
        load: float,
        flow: float,
        wb: float,
        dp: float,
        chw_n: int,
        chw_kw: float,
        parts: dict[str, float],
    ) -> PlantSetpoints:
        m, lim, spec = self.models, self.limits, self.models.spec
        chws = float(self._chws[ix])
        ecwt = parts["ecwt"]
        a, b, c, cap = (
            np.array([float(v) for v in col])
            for col in zip(
                *(m.chiller_quadratic(i, np.array(chws), np.array(ecwt)) for i in subset),
                strict=True,
            )
        )
        cap_eff = cap * lim.plr_max
        # kW(p) for p = L / cap_eff: a + b cap_eff p + c cap_eff² p².
        coeffs = np.column_stack([a, b * cap_eff, c * cap_eff**2, np.zeros_like(a)])
        try:
            res = ocl.solve(
                coeffs, cap_eff, load, plr_min=lim.plr_min / lim.plr_max, allow_off=False
            )
            loads = res.plr * cap_eff
            ch_kw = res.power
        except ValueError:  # the grid said feasible; a float edge case: equal PLR
            loads = cap * load / cap.sum()
            ch_kw = float(np.sum(a + b * loads + c * loads**2))
        cw_flow, cw_speed, cw_kw, pumps = self._cw(subset)
        n = len(spec.chillers)
        plr = [0.0] * n
        on = [False] * n
        for k, i in enumerate(subset):
            plr[i] = float(loads[k] / cap[k])
            on[i] = True
        setpoints = self._chiller_setpoints(subset, loads, chws, load, flow)
        kw = {
            "chillers": float(ch_kw),
            "chw_pumps": chw_kw,
            "cw_pumps": float(cw_kw[ir]),
            "towers": parts["towers"],
        }
        kw["total"] = sum(kw.values())
        cells = int(self._tower_cells[it])
        return PlantSetpoints(
            chillers_on=tuple(on),
            chiller_plr=tuple(plr),
            chiller_chws_setpoints=setpoints,
            chws_setpoint=chws,
            cws_setpoint=float(min(max(ecwt, lim.cws_min), lim.cws_max)),
            dp_setpoint=dp,
            chw_pumps=chw_n,
            cw_pumps_on=tuple(j in pumps for j in range(len(spec.cw_pumps))),
            cw_pump_speed_pct=float(100.0 * cw_speed[ir]),
            tower_cells=cells,
            tower_fan_pct=float(100.0 * self._tower_speed[it]),
            chw_flow_ls=flow,
            cw_flow_ls=float(cw_flow[ir]),
            predicted_kw=kw,
        )

    def _chiller_setpoints(
        self, subset: Sequence[int], loads: np.ndarray, chws: float, load: float, flow: float
    ) -> tuple[float, ...]:
        """Leaving setpoints per chiller that give the planned loads when the header flow
        splits in proportion to design flow; their flow-weighted mix is `chws`."""
        spec, lim = self.models.spec, self.limits
        design = np.array([spec.chillers[i].design_chw_flow_ls for i in subset])
        q = flow * design / design.sum()
        offsets = load / (flow * WATER_CP) - loads / (q * WATER_CP)
        worst = float(np.max(np.abs(offsets))) if offsets.size else 0.0
        if worst > lim.chiller_offset_max:  # scaling keeps the mix at chws
            offsets = offsets * lim.chiller_offset_max / worst
        out = [chws] * len(spec.chillers)
        for k, i in enumerate(subset):
            lo, hi = lim.chiller_setpoint_range
            out[i] = float(min(max(chws + offsets[k], lo), hi))
        return tuple(out)

    def _fallback(
        self,
        load: float,
        flow: float,
        wb: float,
        available: list[int],
        dp: float,
        chw_n: int,
        chw_kw: float,
    ) -> PlantSetpoints:
        """No subset covers the load with margin: run every available chiller, coldest
        allowed water, condenser as cold as the towers make it."""
        lim, spec = self.limits, self.models.spec
        n = len(spec.chillers)
        subset = tuple(available)
        note = f"load {load:.0f} kW exceeds the available chillers' capacity with margin"
        smallest = min(available, key=lambda i: spec.chillers[i].capacity_kw, default=None)
        if smallest is not None and load < spec.chillers[smallest].capacity_kw * lim.plr_max / 2:
            # Too little load (or flow) for any line-up's minimum: the smallest chiller runs.
            subset = (smallest,)
            note = f"load {load:.0f} kW is below the minimum of every chiller line-up"
        on = tuple(i in subset for i in range(n))
        pumps = sorted({spec.chillers[i].cw_pump for i in subset})
        return PlantSetpoints(
            chillers_on=on,
            chiller_plr=tuple(lim.plr_max if o else 0.0 for o in on),
            chiller_chws_setpoints=(lim.chws_min,) * n,
            chws_setpoint=lim.chws_min,
            cws_setpoint=float(min(max(wb + 3.0, lim.cws_min), lim.cws_max)),
            dp_setpoint=dp,
            chw_pumps=chw_n,
            cw_pumps_on=tuple(j in pumps for j in range(len(spec.cw_pumps))),
            cw_pump_speed_pct=100.0,
            tower_cells=len(spec.towers),
            tower_fan_pct=100.0,
            chw_flow_ls=flow,
            cw_flow_ls=math.nan,
            predicted_kw={"chw_pumps": chw_kw, "total": math.nan},
            feasible=False,
            note=note,
        )


def _flag(measured: Mapping[str, float], key: str) -> bool:
    value = measured.get(key)
    try:
        return value is not None and math.isfinite(float(value)) and float(value) >= 0.5
    except (TypeError, ValueError):
        return False
