"""Equipment models of a chilled-water plant, fitted from measured samples.

The plant optimizer (`control_loops.optimizer`) predicts plant power from these models. Each
model is linear in its parameters and fitted by numpy least squares (no SciPy at run time),
with a weak ridge pull toward a nominal model built from the equipment schedule (nameplate
capacity, rated kW/RT, design flows and heads). Until a model has seen enough *varied* data,
the nominal model is used as is. Forms (units: kW, L/s, kPa, °C; speeds as fractions):

- chiller:  P = θ·[1, l, l², x, y, l x, l y, x², y², x y],  l = load / rated capacity,
            x = CHW supply − 6.67, y = entering condenser − 29.44 (the rating point);
            capacity / rated = [1, x, y, x², y², x y]·κ.  Quadratic in load, convex (θ2 > 0).
- pump:     H = h0 s² − a q²  (curve);  P = c0 s³ + c1 s² q̂ + c2 s q̂² + c3 q̂³,  q̂ = q / q_design
            (homogeneous cubic: the affinity laws hold exactly).
- hydronics: CHW flow = β·load; index DP = k_v Q² / v² (valve opening v); pump head =
            DP + k_f Q²; condenser head = h_s + k Q².
- tower cell: effectiveness ε = (T_in − T_out) / (T_in − T_wb) with
            ln(−ln(1 − ε)) = t0 + t1 ln(max(s, s_nd)) + t2 ln(q / q_design) + t3 (T_wb − 25);
            fan P = [1, s, s², s³]·f. The approach follows from the range: with water flow F and
            heat rejected Q, R = Q / (F c_p) and T_out − T_wb = R (1 − ε) / ε.

Measured samples are dicts keyed by role names (`plant_spec.ROLES` documents them).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from control_loops.plant_spec import ChillerSpec, PlantSpec, PumpSpec, TowerSpec, role

WATER_CP = 4.19  # kJ/(kg K); 1 L of water ~ 1 kg
RATED_CHWS = 6.67  # °C, AHRI rating point (44 °F / 85 °F)
RATED_ECWT = 29.44
_RIDGE = 1e-4  # weight of the pull toward the nominal model, relative to the data
T = TypeVar("T")

# ---- what the optimizer needs of a model ---------------------------------------------------


class PlantModel(Protocol):
    """Vectorised plant model: every method broadcasts its array arguments."""

    @property
    def spec(self) -> PlantSpec: ...  # read only: fitted models are frozen

    def chiller_quadratic(
        self, i: int, chws: np.ndarray, ecwt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, c, capacity): kW = a + b L + c L² for load L in [0, capacity] kW."""
        ...

    def chw_flow(self, load_kw: float) -> float: ...

    def dp_required(self, flow_ls: float, valve_open: float) -> float:
        """Index DP that passes flow_ls with the valves open to valve_open (fraction)."""
        ...

    def chw_head(self, flow_ls: np.ndarray, dp_kpa: float) -> np.ndarray: ...

    def cw_head(self, flow_ls: np.ndarray) -> np.ndarray: ...

    def pump_curve(self, group: str, j: int) -> tuple[float, float]:
        """(h0, a) of H = h0 s² − a q² for pump j of group 'chw' or 'cw'."""
        ...

    def pump_power(self, group: str, j: int, speed: np.ndarray, flow: np.ndarray) -> np.ndarray: ...

    def tower_effectiveness(
        self, k: int, speed: np.ndarray, flow_ls: np.ndarray, wetbulb: float, t_in: np.ndarray
    ) -> np.ndarray: ...

    def tower_fan_power(self, k: int, speed: np.ndarray) -> np.ndarray: ...


# ---- least squares with a pull toward the nominal parameters -------------------------------


@dataclass(frozen=True)
class FitQuality:
    """How a model was obtained: fitted (with R² on its samples) or nominal (and why)."""

    fitted: bool
    n: int
    r2: float
    reason: str


def ridge_fit(
    x: np.ndarray, y: np.ndarray, prior: np.ndarray, weight: float = _RIDGE
) -> tuple[np.ndarray, float]:
    """Least squares pulled weakly toward `prior`; returns (θ, R² on the samples).

    Columns are scaled to unit RMS first, so `weight` means the same for every column: a
    direction the data do not excite stays at its prior instead of wandering off.
    """
    scale = np.sqrt(np.mean(x * x, axis=0))
    scale[scale == 0] = 1.0
    xs = x / scale
    lam = math.sqrt(weight * len(y))
    a = np.vstack([xs, lam * np.eye(x.shape[1])])
    b = np.concatenate([y, lam * prior * scale])
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    theta = coef / scale
    resid = y - x @ theta
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / total if total > 0 else 0.0
    return theta, r2


class SampleBuffer:
    """Bounded memory that keeps varied data: samples are binned on their features and each
    bin keeps its newest `per_bin`; past `max_bins`, the bin updated longest ago goes. So a
    week of steady operation does not flush the few hours that excited a model."""

    def __init__(self, widths: Sequence[float], per_bin: int = 8, max_bins: int = 600) -> None:
        self.widths = np.asarray(widths, dtype=float)
        self.per_bin = per_bin
        self.max_bins = max_bins
        self._bins: OrderedDict[tuple[int, ...], deque[tuple[float, ...]]] = OrderedDict()

    def add(self, features: Sequence[float], row: Sequence[float]) -> None:
        key = tuple(int(v) for v in np.floor(np.asarray(features) / self.widths))
        bin_ = self._bins.get(key)
        if bin_ is None:
            if len(self._bins) >= self.max_bins:
                self._bins.popitem(last=False)
            bin_ = self._bins[key] = deque(maxlen=self.per_bin)
        else:
            self._bins.move_to_end(key)
        bin_.append(tuple(float(v) for v in row))

    def __len__(self) -> int:
        return sum(len(b) for b in self._bins.values())

    def array(self) -> np.ndarray:
        rows = [r for b in self._bins.values() for r in b]
        return np.asarray(rows, dtype=float) if rows else np.empty((0, 0))


def _spread_ok(columns: Sequence[np.ndarray], minimum: Sequence[float]) -> str:
    """'' when each column varies at least as much as asked (std), else the reason."""
    for i, (col, need) in enumerate(zip(columns, minimum, strict=True)):
        if float(np.std(col)) < need:
            return f"input {i} varies too little (std {np.std(col):.3g} < {need:g})"
    return ""


# ---- chillers ------------------------------------------------------------------------------


def chiller_basis(l: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # noqa: E741
    one = np.ones_like(l)
    return np.stack([one, l, l * l, x, y, l * x, l * y, x * x, y * y, x * y], axis=-1)


def capacity_basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)


@dataclass(frozen=True)
class ChillerFit:
    spec: ChillerSpec
    theta: np.ndarray  # kW, over chiller_basis
    kappa: np.ndarray  # capacity / nameplate, over capacity_basis

    @classmethod
    def nominal(cls, spec: ChillerSpec) -> ChillerFit:
        # Generic centrifugal: best kW/RT near 70 % load, ~3 %/K for CHW, ~2 %/K condenser.
        p = spec.rated_kw
        theta = p * np.array([0.2, 0.3, 0.5, 0.0, 0.0, -0.03, 0.022, 0.0, 0.0, 0.0])
        kappa = np.array([1.0, 0.03, -0.008, 0.0, 0.0, 0.0])
        return cls(spec, theta, kappa)

    def quadratic(
        self, chws: np.ndarray, ecwt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(chws, dtype=float) - RATED_CHWS
        y = np.asarray(ecwt, dtype=float) - RATED_ECWT
        t, lr = self.theta, self.spec.capacity_kw
        a = t[0] + t[3] * x + t[4] * y + t[7] * x * x + t[8] * y * y + t[9] * x * y
        b = (t[1] + t[5] * x + t[6] * y) / lr
        c = np.full(np.broadcast(x, y).shape, t[2] / (lr * lr))
        k = self.kappa
        cap = lr * (k[0] + k[1] * x + k[2] * y + k[3] * x * x + k[4] * y * y + k[5] * x * y)
        return a, b, c, np.maximum(cap, 0.05 * lr)

    def power(self, load_kw: np.ndarray, chws: np.ndarray, ecwt: np.ndarray) -> np.ndarray:
        a, b, c, _ = self.quadratic(chws, ecwt)
        return a + b * load_kw + c * load_kw * load_kw


def fit_chiller(spec: ChillerSpec, data: np.ndarray, min_samples: int) -> tuple[ChillerFit, str]:
    """data columns: load_kw, chws, ecwt, kW, capacity_kw. Returns (fit, '' or why not)."""
    nominal = ChillerFit.nominal(spec)
    if len(data) < min_samples:
        return nominal, f"{len(data)} samples < {min_samples}"
    load, chws, ecwt, kw, cap = data.T
    l, x, y = load / spec.capacity_kw, chws - RATED_CHWS, ecwt - RATED_ECWT  # noqa: E741
    why = _spread_ok([l, x, y], [0.05, 0.3, 0.8])
    if why:
        return nominal, why
    basis = chiller_basis(l, x, y)
    theta, _ = ridge_fit(basis, kw, nominal.theta)
    if theta[2] <= 0.02 * spec.rated_kw:
        # Keep the part-load curve convex (the optimizer's loading relies on it): pin l².
        theta2 = 0.02 * spec.rated_kw
        cols = [0, 1, 3, 4, 5, 6, 7, 8, 9]
        sub, _ = ridge_fit(basis[:, cols], kw - theta2 * l * l, nominal.theta[cols])
        theta = np.insert(sub, 2, theta2)
    kappa, _ = ridge_fit(capacity_basis(x, y), cap / spec.capacity_kw, nominal.kappa)
    return ChillerFit(spec, theta, kappa), ""


# ---- pumps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PumpFit:
    spec: PumpSpec
    h0: float
    a: float
    c: np.ndarray  # over [s³, s² q̂, s q̂², q̂³]

    @classmethod
    def nominal(cls, spec: PumpSpec, efficiency: float = 0.72) -> PumpFit:
        h0 = 1.2 * spec.design_head_kpa
        a = 0.2 * spec.design_head_kpa / spec.design_flow_ls**2
        qd = spec.design_flow_ls
        # P = q (h0 s² − a q²) / η / 1000 with q = q̂ qd.
        c = np.array([0.0, h0 * qd, 0.0, -a * qd**3]) / (1000.0 * efficiency)
        return cls(spec, h0, a, c)

    def power(self, speed: np.ndarray, flow: np.ndarray) -> np.ndarray:
        q = np.asarray(flow, dtype=float) / self.spec.design_flow_ls
        s = np.asarray(speed, dtype=float)
        c = self.c
        return np.maximum(s * s * (c[0] * s + c[1] * q) + q * q * (c[2] * s + c[3] * q), 0.0)


def pump_power_basis(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.stack([s**3, s * s * q, s * q * q, q**3], axis=-1)


def fit_pump(spec: PumpSpec, data: np.ndarray, min_samples: int) -> tuple[PumpFit, str]:
    """data columns: speed (fraction), flow L/s, head kPa, kW."""
    nominal = PumpFit.nominal(spec)
    if len(data) < min_samples:
        return nominal, f"{len(data)} samples < {min_samples}"
    s, q, h, kw = data.T
    why = _spread_ok([s, q / (s * spec.design_flow_ls)], [0.02, 0.02])
    if why:
        return nominal, why
    curve, _ = ridge_fit(np.stack([s * s, -q * q], axis=-1), h, np.array([nominal.h0, nominal.a]))
    c, _ = ridge_fit(pump_power_basis(s, q / spec.design_flow_ls), kw, nominal.c)
    if curve[0] <= 0 or curve[1] <= 0:
        return nominal, "pump curve fit is not physical"
    return PumpFit(spec, float(curve[0]), float(curve[1]), c), ""


# ---- hydronics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HydronicFit:
    flow_per_kw: float  # CHW L/s per kW of load (1 / (c_p ΔT))
    k_valve: float  # DP = k_valve Q² / v²
    k_fixed: float  # pump head = DP + k_fixed Q²
    cw_static: float  # condenser head = cw_static + cw_k Q²
    cw_k: float

    @classmethod
    def nominal(cls, spec: PlantSpec) -> HydronicFit:
        q, qc = spec.chw_design_flow_ls, spec.cw_design_flow_ls
        return cls(
            flow_per_kw=1.0 / (WATER_CP * spec.design_delta_t_k),
            k_valve=spec.chw_design_dp_kpa / q**2,
            k_fixed=(spec.chw_design_head_kpa - spec.chw_design_dp_kpa) / q**2,
            cw_static=spec.cw_static_head_kpa,
            cw_k=(spec.cw_design_head_kpa - spec.cw_static_head_kpa) / qc**2,
        )


def _through_origin(x: np.ndarray, y: np.ndarray, prior: float) -> tuple[float, float]:
    theta, r2 = ridge_fit(x[:, None], y, np.array([prior]))
    return float(theta[0]), r2


# ---- towers ------------------------------------------------------------------------------------

NATURAL_DRAFT_GRID = (0.05, 0.075, 0.1, 0.15, 0.2)


@dataclass(frozen=True)
class TowerFit:
    spec: TowerSpec
    t: np.ndarray  # effectiveness: [t0, t1 ln a, t2 ln q̂, t3 (wb − 25)]
    natural_draft: float
    fan: np.ndarray  # fan kW over [1, s, s², s³]

    @classmethod
    def nominal(cls, spec: TowerSpec) -> TowerFit:
        eff = spec.design_range_k / (spec.design_range_k + spec.design_approach_k)
        t = np.array([math.log(-math.log(1.0 - eff)), 0.6, -0.6, 0.0])
        return cls(spec, t, 0.1, np.array([0.0, 0.0, 0.0, spec.fan_kw]))

    def effectiveness(self, speed: np.ndarray, flow_ls: np.ndarray, wetbulb: float) -> np.ndarray:
        a = np.maximum(np.asarray(speed, dtype=float), self.natural_draft)
        q = np.maximum(np.asarray(flow_ls, dtype=float), 1e-6) / self.spec.design_water_flow_ls
        z = self.t[0] + self.t[1] * np.log(a) + self.t[2] * np.log(q) + self.t[3] * (wetbulb - 25)
        return np.clip(1.0 - np.exp(-np.exp(z)), 1e-3, 0.999)

    def fan_power(self, speed: np.ndarray) -> np.ndarray:
        s = np.asarray(speed, dtype=float)
        f = self.fan
        kw = f[0] + s * (f[1] + s * (f[2] + s * f[3]))
        return np.where(s > 0, np.maximum(kw, 0.0), 0.0)


def fit_tower(spec: TowerSpec, data: np.ndarray, min_samples: int) -> tuple[TowerFit, str, float]:
    """data columns: speed (fraction), water flow L/s, T_in, T_out, wet bulb, fan kW.
    Returns (fit, '' or why not, R² of the effectiveness fit)."""
    nominal = TowerFit.nominal(spec)
    if len(data) < min_samples:
        return nominal, f"{len(data)} samples < {min_samples}", 0.0
    s, q, t_in, t_out, wb, kw = data.T
    eff = (t_in - t_out) / (t_in - wb)
    why = _spread_ok([np.maximum(s, 0.1)], [0.05])
    if why:
        return nominal, why, 0.0
    z = np.log(-np.log(1.0 - eff))
    qn = np.log(q / spec.design_water_flow_ls)
    best: tuple[float, np.ndarray, float] | None = None
    # The airflow with the fan stopped is not linear in anything: pick it on a grid.
    grid = NATURAL_DRAFT_GRID if np.any(s == 0) else (nominal.natural_draft,)
    for nd in grid:
        basis = np.stack([np.ones_like(s), np.log(np.maximum(s, nd)), qn, wb - 25.0], axis=-1)
        t, r2 = ridge_fit(basis, z, nominal.t)
        if best is None or r2 > best[2]:
            best = (nd, t, r2)
    assert best is not None
    nd, t, r2 = best
    run = s > 0
    fan = nominal.fan
    if np.count_nonzero(run) >= 10:
        fan, _ = ridge_fit(
            np.stack([np.ones(run.sum()), s[run], s[run] ** 2, s[run] ** 3], axis=-1),
            kw[run],
            nominal.fan,
        )
    return TowerFit(spec, t, nd, fan), "", r2


# ---- the fitted plant model --------------------------------------------------------------------


@dataclass(frozen=True)
class FittedPlantModel:
    """PlantModel from fitted (or nominal) equipment models."""

    spec: PlantSpec
    chillers: tuple[ChillerFit, ...]
    chw_pumps: tuple[PumpFit, ...]
    cw_pumps: tuple[PumpFit, ...]
    towers: tuple[TowerFit, ...]
    hydronic: HydronicFit

    @classmethod
    def nominal(cls, spec: PlantSpec) -> FittedPlantModel:
        return cls(
            spec,
            tuple(ChillerFit.nominal(c) for c in spec.chillers),
            tuple(PumpFit.nominal(p) for p in spec.chw_pumps),
            tuple(PumpFit.nominal(p) for p in spec.cw_pumps),
            tuple(TowerFit.nominal(t) for t in spec.towers),
            HydronicFit.nominal(spec),
        )

    def chiller_quadratic(
        self, i: int, chws: np.ndarray, ecwt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.chillers[i].quadratic(chws, ecwt)

    def chw_flow(self, load_kw: float) -> float:
        return self.hydronic.flow_per_kw * load_kw

    def dp_required(self, flow_ls: float, valve_open: float) -> float:
        return self.hydronic.k_valve * flow_ls * flow_ls / (valve_open * valve_open)

    def chw_head(self, flow_ls: np.ndarray, dp_kpa: float) -> np.ndarray:
        return dp_kpa + self.hydronic.k_fixed * np.asarray(flow_ls) ** 2

    def cw_head(self, flow_ls: np.ndarray) -> np.ndarray:
        return self.hydronic.cw_static + self.hydronic.cw_k * np.asarray(flow_ls) ** 2

    def _pumps(self, group: str) -> tuple[PumpFit, ...]:
        return self.chw_pumps if group == "chw" else self.cw_pumps

    def pump_curve(self, group: str, j: int) -> tuple[float, float]:
        p = self._pumps(group)[j]
        return p.h0, p.a

    def pump_power(self, group: str, j: int, speed: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return self._pumps(group)[j].power(speed, flow)

    def tower_effectiveness(
        self, k: int, speed: np.ndarray, flow_ls: np.ndarray, wetbulb: float, t_in: np.ndarray
    ) -> np.ndarray:
        return self.towers[k].effectiveness(speed, flow_ls, wetbulb)

    def tower_fan_power(self, k: int, speed: np.ndarray) -> np.ndarray:
        return self.towers[k].fan_power(speed)


# ---- the fitter ----------------------------------------------------------------------------------


def _get(sample: Mapping[str, float], key: str) -> float:
    value = sample.get(key, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


@dataclass(frozen=True)
class FitReport:
    """Per model name ('chiller[0]', 'chw_pump[1]', 'tower[0]', 'chw_valve', ...)."""

    quality: dict[str, FitQuality]

    def summary(self) -> dict[str, dict[str, object]]:
        return {
            name: {"fitted": q.fitted, "n": q.n, "r2": round(q.r2, 4), "reason": q.reason}
            for name, q in self.quality.items()
        }


class ModelFitter:
    """Accumulates measured samples (role dicts, one per time step) and fits the models.

    `add` costs a few dict look-ups per sample; `refit` a few small least-squares solves.
    Memory is bounded (SampleBuffer per model). `model` is the latest fitted-or-nominal
    PlantModel; `report` says, per model, whether it is fitted and how well.
    """

    def __init__(
        self,
        spec: PlantSpec,
        min_samples: int = 120,
        per_bin: int = 6,
        max_bins: int = 600,
    ) -> None:
        self.spec = spec
        self.min_samples = min_samples
        nb = {"per_bin": per_bin, "max_bins": max_bins}
        # Bins: chillers by (load 5 %, CHWS 0.5 K, ECWT 1 K); pumps by (speed 5 %, flow 5 %);
        # towers by (speed 5 %, flow 10 %, wet bulb 1 K, range 1 K).
        self._chillers = [
            SampleBuffer([0.05 * c.capacity_kw, 0.5, 1.0], **nb) for c in spec.chillers
        ]
        self._chw_pumps = [
            SampleBuffer([0.05, 0.05 * p.design_flow_ls], **nb) for p in spec.chw_pumps
        ]
        self._cw_pumps = [
            SampleBuffer([0.05, 0.05 * p.design_flow_ls], **nb) for p in spec.cw_pumps
        ]
        self._towers = [
            SampleBuffer([0.05, 0.1 * t.design_water_flow_ls, 1.0, 1.0], **nb) for t in spec.towers
        ]
        q = spec.chw_design_flow_ls
        self._flow = SampleBuffer([0.02 * q * WATER_CP * spec.design_delta_t_k], **nb)
        self._valve = SampleBuffer([0.02 * q, 0.03], **nb)
        self._head = SampleBuffer([0.02 * q], **nb)
        self._cw_head = SampleBuffer([0.02 * spec.cw_design_flow_ls], **nb)
        self.samples_seen = 0
        self.model: FittedPlantModel = FittedPlantModel.nominal(spec)
        self.report = FitReport({})

    def add(self, sample: Mapping[str, float]) -> None:
        """Take one time step of measurements; invalid or missing values are skipped."""
        self.samples_seen += 1
        g = lambda key: _get(sample, key)  # noqa: E731
        for i, buf in enumerate(self._chillers):
            self._add_chiller(buf, i, g)
        for group, bufs in (("chw_pump", self._chw_pumps), ("cw_pump", self._cw_pumps)):
            for j, buf in enumerate(bufs):
                s = g(role(f"{group}_speed", j)) / 100.0
                q, h, kw = (g(role(f"{group}_{n}", j)) for n in ("flow", "head", "kw"))
                if _finite(s, q, h, kw) and s > 0.05 and q > 1.0 and h > 0 and kw > 0:
                    buf.add((s, q), (s, q, h, kw))
        wb = g("wetbulb_c")
        for k, buf in enumerate(self._towers):
            s = g(role("tower_speed", k)) / 100.0
            q, t_in, t_out, kw = (g(role(f"tower_{n}", k)) for n in ("flow", "in_c", "out_c", "kw"))
            if not _finite(s, q, t_in, t_out, wb, kw) or q < 5.0 or t_in - wb < 1.5:
                continue
            eff = (t_in - t_out) / (t_in - wb)
            if 0.02 < eff < 0.98:
                buf.add((s, q, wb, t_in - t_out), (s, q, t_in, t_out, wb, kw))
        load, flow, dp, valve = g("load_kw"), g("chw_flow"), g("dp_kpa"), g("valve_pct") / 100.0
        if _finite(load, flow) and load > 0 and flow > 1 and (not _finite(valve) or valve < 0.95):
            self._flow.add((load,), (load, flow))
        if _finite(flow, dp, valve) and flow > 1 and dp > 0 and 0.2 < valve < 0.98:
            self._valve.add((flow, valve), (flow, valve, dp))
        heads = [g(role("chw_pump_head", j)) for j in range(len(self.spec.chw_pumps))]
        heads = [h for h in heads if _finite(h) and h > 0]
        if heads and _finite(flow, dp) and flow > 1:
            self._head.add((flow,), (flow, max(heads) - dp))
        cw_flow = g("cw_flow")
        cw_heads = [g(role("cw_pump_head", j)) for j in range(len(self.spec.cw_pumps))]
        cw_heads = [h for h in cw_heads if _finite(h) and h > 0]
        if cw_heads and _finite(cw_flow) and cw_flow > 1:
            self._cw_head.add((cw_flow,), (cw_flow, max(cw_heads)))

    def _add_chiller(self, buf: SampleBuffer, i: int, g: Callable[[str], float]) -> None:
        spec = self.spec.chillers[i]
        running = g(role("chiller_running", i))
        load, kw, plr = (g(role(f"chiller_{n}", i)) for n in ("load_kw", "kw", "plr"))
        chws, ecwt = g(role("chiller_chws_c", i)), g(role("chiller_ecwt_c", i))
        if not _finite(running, load, kw, plr, chws, ecwt) or running < 0.5 or kw <= 0:
            return
        # Below ~20 % a centrifugal false-loads (hot-gas bypass): not the curve we want.
        if load < 0.2 * spec.capacity_kw or plr < 1.0:
            return
        cap = load / (plr / 100.0)
        buf.add((load, chws, ecwt), (load, chws, ecwt, kw, cap))

    def refit(self) -> FitReport:
        """Fit every model that has enough varied data; the rest stay nominal."""
        spec, n_min = self.spec, self.min_samples
        quality: dict[str, FitQuality] = {}
        chillers = []
        for i, (c, buf) in enumerate(zip(spec.chillers, self._chillers, strict=True)):
            data = buf.array()
            chiller, why = fit_chiller(c, data, n_min)
            r2 = (
                _r2(chiller.power(data[:, 0], data[:, 1], data[:, 2]), data[:, 3]) if not why else 0
            )
            quality[f"chiller[{i}]"] = FitQuality(not why, len(data), r2, why)
            chillers.append(chiller)
        pumps: dict[str, list[PumpFit]] = {}
        for group, specs, bufs in (
            ("chw_pump", spec.chw_pumps, self._chw_pumps),
            ("cw_pump", spec.cw_pumps, self._cw_pumps),
        ):
            pumps[group] = []
            for j, p in enumerate(specs):
                # Identical pumps (same design point) share their samples.
                same = [
                    b.array()
                    for s2, b in zip(specs, bufs, strict=True)
                    if (s2.design_flow_ls, s2.design_head_kpa)
                    == (p.design_flow_ls, p.design_head_kpa)
                    and len(b)
                ]
                data = np.vstack(same) if same else np.empty((0, 4))
                pump, why = fit_pump(p, data, n_min // 2)
                r2 = _r2(pump.power(data[:, 0], data[:, 1]), data[:, 3]) if not why else 0
                quality[f"{group}[{j}]"] = FitQuality(not why, len(data), r2, why)
                pumps[group].append(pump)
        towers = []
        same = [b.array() for b in self._towers if len(b)]
        tdata = np.vstack(same) if same else np.empty((0, 6))
        for k, t in enumerate(spec.towers):
            tower, why, r2 = fit_tower(t, tdata, n_min)
            quality[f"tower[{k}]"] = FitQuality(not why, len(tdata), r2, why)
            towers.append(tower)
        hydronic = self._fit_hydronic(quality)
        self.model = FittedPlantModel(
            spec, tuple(chillers), tuple(pumps["chw_pump"]), tuple(pumps["cw_pump"]),
            tuple(towers), hydronic,
        )  # fmt: skip
        self.report = FitReport(quality)
        return self.report

    def _fit_hydronic(self, quality: dict[str, FitQuality]) -> HydronicFit:
        nominal = HydronicFit.nominal(self.spec)
        values: dict[str, float] = {}
        n_min = self.min_samples // 2

        def one(
            name: str, buf: SampleBuffer, fit: Callable[[np.ndarray], tuple[T, float]], default: T
        ) -> T:
            data = buf.array()
            if len(data) < n_min:
                quality[name] = FitQuality(False, len(data), 0.0, f"{len(data)} samples < {n_min}")
                return default
            value, r2 = fit(data)
            quality[name] = FitQuality(True, len(data), r2, "")
            return value

        values["flow_per_kw"] = one(
            "chw_flow",
            self._flow,
            lambda d: _through_origin(d[:, 0], d[:, 1], nominal.flow_per_kw),
            nominal.flow_per_kw,
        )
        values["k_valve"] = one(
            "chw_valve",
            self._valve,
            lambda d: _through_origin(d[:, 0] ** 2 / d[:, 1] ** 2, d[:, 2], nominal.k_valve),
            nominal.k_valve,
        )
        values["k_fixed"] = one(
            "chw_head",
            self._head,
            lambda d: _through_origin(d[:, 0] ** 2, d[:, 1], nominal.k_fixed),
            nominal.k_fixed,
        )

        def cw(d: np.ndarray) -> tuple[tuple[float, float], float]:
            theta, r2 = ridge_fit(
                np.stack([np.ones(len(d)), d[:, 0] ** 2], axis=-1),
                d[:, 1],
                np.array([nominal.cw_static, nominal.cw_k]),
            )
            return (float(theta[0]), float(theta[1])), r2

        cw_static, cw_k = one("cw_head", self._cw_head, cw, (nominal.cw_static, nominal.cw_k))
        return HydronicFit(
            values["flow_per_kw"], values["k_valve"], values["k_fixed"], cw_static, cw_k
        )


def _r2(predicted: np.ndarray, measured: np.ndarray) -> float:
    total = float(np.sum((measured - measured.mean()) ** 2))
    resid = measured - predicted
    return 1.0 - float(resid @ resid) / total if total > 0 else 0.0
