"""Plant models fitted from samples, and the whole-plant optimizer built on them."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import energy
from control_loops.models import (
    WATER_CP,
    ChillerFit,
    FittedPlantModel,
    ModelFitter,
    PumpFit,
    SampleBuffer,
    TowerFit,
    role,
)
from control_loops.optimizer import OptimizerLimits, PlantOptimizer, PlantSetpoints, pump_group
from simulators.plant import PlantRoom

SPEC = energy.hospital_spec()


def _chiller_samples(rng: np.random.Generator, truth: ChillerFit, n: int, noise_kw: float):
    """Role dicts for chiller 0 only, from a known model."""
    cap_rated = truth.spec.capacity_kw
    for _ in range(n):
        chws, ecwt = rng.uniform(5.5, 10.0), rng.uniform(18.0, 33.0)
        _, _, _, cap = truth.quadratic(np.array(chws), np.array(ecwt))
        load = rng.uniform(0.25, 0.95) * float(cap)
        kw = float(truth.power(np.array(load), np.array(chws), np.array(ecwt)))
        yield {
            role("chiller_running", 0): 1.0,
            role("chiller_load_kw", 0): load,
            role("chiller_kw", 0): kw + rng.normal(0, noise_kw),
            role("chiller_plr", 0): 100.0 * load / float(cap),
            role("chiller_chws_c", 0): chws,
            role("chiller_ecwt_c", 0): ecwt,
        }
    del cap_rated


def test_fitter_recovers_chiller_parameters_from_noisy_samples() -> None:
    rng = np.random.default_rng(7)
    spec = SPEC.chillers[0]
    # A plant unlike the nominal model: other sensitivities and part-load shape.
    theta = spec.rated_kw * np.array(
        [0.15, 0.35, 0.45, -0.01, 0.012, -0.025, 0.03, 0.001, 0.0004, -0.0008]
    )
    kappa = np.array([0.98, 0.035, -0.01, -0.0005, -0.0002, 0.0003])
    truth = ChillerFit(spec, theta, kappa)
    fitter = ModelFitter(SPEC)
    for sample in _chiller_samples(rng, truth, 3000, noise_kw=3.0):
        fitter.add(sample)
    report = fitter.refit()
    q = report.quality["chiller[0]"]
    assert q.fitted and q.r2 > 0.99
    assert q.n <= 6 * 600  # bounded memory
    fit = fitter.model.chillers[0]
    # The parameters, and (what matters) the predictions over the operating range.
    np.testing.assert_allclose(fit.theta[:3], theta[:3], rtol=0.03)
    np.testing.assert_allclose(fit.kappa[:3], kappa[:3], rtol=0.02, atol=1e-3)
    grid = np.array(list(itertools.product([0.35, 0.6, 0.9], [5.5, 7.0, 9.0], [20.0, 26.0, 32.0])))
    load = grid[:, 0] * spec.capacity_kw
    want = truth.power(load, grid[:, 1], grid[:, 2])
    got = fit.power(load, grid[:, 1], grid[:, 2])
    assert np.max(np.abs(got - want) / want) < 0.01
    # The other chillers have no data: nominal, and the report says why.
    assert not report.quality["chiller[1]"].fitted
    assert "samples" in report.quality["chiller[1]"].reason
    np.testing.assert_array_equal(
        fitter.model.chillers[1].theta, ChillerFit.nominal(SPEC.chillers[1]).theta
    )


def test_fitter_keeps_the_nominal_chiller_model_without_varied_data() -> None:
    fitter = ModelFitter(SPEC)
    for k in range(2000):  # a fixed-setpoint plant: CHWS never moves
        fitter.add(
            {
                role("chiller_running", 0): 1,
                role("chiller_load_kw", 0): 2000.0 + k % 500,
                role("chiller_kw", 0): 400.0 + 0.1 * (k % 500),
                role("chiller_plr", 0): 60.0,
                role("chiller_chws_c", 0): 7.0,
                role("chiller_ecwt_c", 0): 29.0 + (k % 7),
            }
        )
    q = fitter.refit().quality["chiller[0]"]
    assert not q.fitted and "varies too little" in q.reason
    nominal = ChillerFit.nominal(SPEC.chillers[0])
    np.testing.assert_array_equal(fitter.model.chillers[0].theta, nominal.theta)


def test_fitter_recovers_pump_and_tower_models() -> None:
    rng = np.random.default_rng(3)
    pump = PumpFit(SPEC.chw_pumps[0], h0=380.0, a=0.0028, c=np.array([5.0, 40.0, 30.0, -12.0]))
    tower = TowerFit(
        SPEC.towers[0], np.array([-0.1, 0.55, -0.5, 0.02]), 0.1, np.array([0, 1.0, 2.0, 27.0])
    )
    fitter = ModelFitter(SPEC)
    for _ in range(4000):
        s = rng.uniform(0.35, 1.0)
        q = rng.uniform(0.4, 1.3) * 170 * s
        head = pump.h0 * s * s - pump.a * q * q
        sample = {
            role("chw_pump_speed", 0): 100 * s,
            role("chw_pump_flow", 0): q,
            role("chw_pump_head", 0): head + rng.normal(0, 0.5),
            role("chw_pump_kw", 0): float(pump.power(np.array(s), np.array(q)))
            + rng.normal(0, 0.2),
        }
        fan = rng.choice([0.0, rng.uniform(0.2, 1.0)])
        flow, wb, t_in = rng.uniform(100, 200), rng.uniform(14, 29), 0.0
        t_in = wb + rng.uniform(3, 12)
        eff = float(tower.effectiveness(np.array(fan), np.array(flow), wb))
        sample |= {
            "wetbulb_c": wb,
            role("tower_speed", 0): 100 * fan,
            role("tower_flow", 0): flow,
            role("tower_in_c", 0): t_in,
            role("tower_out_c", 0): t_in - eff * (t_in - wb) + rng.normal(0, 0.02),
            role("tower_kw", 0): float(tower.fan_power(np.array(fan))) + rng.normal(0, 0.1),
        }
        fitter.add(sample)
    report = fitter.refit()
    assert report.quality["chw_pump[0]"].fitted and report.quality["tower[0]"].fitted
    fit = fitter.model.chw_pumps[0]
    assert fit.h0 == pytest.approx(pump.h0, rel=0.01) and fit.a == pytest.approx(pump.a, rel=0.03)
    s, q = np.array([0.5, 0.8, 1.0]), np.array([80.0, 150.0, 190.0])
    np.testing.assert_allclose(fit.power(s, q), pump.power(s, q), rtol=0.02)
    t = fitter.model.towers[0]
    assert t.natural_draft == pytest.approx(0.1)
    np.testing.assert_allclose(t.t, tower.t, atol=0.03)
    speeds = np.array([0.0, 0.3, 0.6, 1.0])
    np.testing.assert_allclose(t.fan_power(speeds), tower.fan_power(speeds), atol=0.3)


def test_sample_buffer_is_bounded_and_keeps_rare_conditions() -> None:
    buf = SampleBuffer([1.0], per_bin=4, max_bins=10)
    buf.add([50.5], [50.5])  # one rare condition...
    for k in range(10_000):  # ...then a long steady run in few bins
        buf.add([k % 3], [k % 3])
    assert len(buf) <= 4 * 10
    assert 50.5 in buf.array()[:, 0]


# ---- the optimizer --------------------------------------------------------------------------


def _trained_model() -> FittedPlantModel:
    """A model unlike the nominal one: the nominal model with some parameters moved."""
    base = FittedPlantModel.nominal(SPEC)
    chillers = tuple(
        ChillerFit(c.spec, c.theta * np.array([1.1, 0.9, 1.05, 1, 1, 1.2, 0.8, 1, 1, 1]), c.kappa)
        for c in base.chillers
    )
    return FittedPlantModel(
        SPEC, chillers, base.chw_pumps, base.cw_pumps, base.towers, base.hydronic
    )


def _evaluate(model: FittedPlantModel, load: float, wb: float, sp: PlantSetpoints) -> float:
    """Plant kW of a set of decisions, composed independently of the optimizer's search:
    the tower/chiller heat balance iterated to convergence."""
    chw_flow = model.chw_flow(load)
    use = list(range(sp.chw_pumps))
    head = model.chw_head(np.array([chw_flow]), sp.dp_setpoint)
    _, chw_kw, ok = pump_group(model, "chw", use, np.array([chw_flow]), head, 0.3)
    assert ok[0]
    cw_pumps = [j for j, on in enumerate(sp.cw_pumps_on) if on]
    cw = np.array([sp.cw_flow_ls])
    _, cw_kw, ok = pump_group(model, "cw", cw_pumps, cw, model.cw_head(cw), 0.3)
    assert ok[0]
    n_cells = len(SPEC.towers)
    speeds = [sp.tower_fan_pct / 100 if k < sp.tower_cells else 0.0 for k in range(n_cells)]
    fan_kw = sum(float(model.tower_fan_power(k, np.array(s))) for k, s in enumerate(speeds))
    on = [i for i, o in enumerate(sp.chillers_on) if o]
    ch_kw = 0.2 * load
    for _ in range(30):
        rng = (load + ch_kw) / (sp.cw_flow_ls * WATER_CP)
        eff = np.mean(
            [
                model.tower_effectiveness(k, np.array(s), sp.cw_flow_ls / n_cells, wb, 0)
                for k, s in enumerate(speeds)
            ]
        )
        ecwt = max(wb + rng * (1 - eff) / eff, OptimizerLimits().cws_min)
        ch_kw = 0.0
        for i in on:
            a, b, c, cap = model.chiller_quadratic(i, np.array(sp.chws_setpoint), np.array(ecwt))
            L = sp.chiller_plr[i] * float(cap)
            ch_kw += float(a + b * L + c * L * L)
    return ch_kw + float(chw_kw[0] + cw_kw[0]) + fan_kw


def _brute_force(model: FittedPlantModel, limits: OptimizerLimits, load: float, wb: float) -> float:
    """Least kW over the same decision grid, every chiller loading on a 0.02 PLR grid."""
    opt = PlantOptimizer(limits, model)  # only for its grids and the separable pump decision
    chw_flow = model.chw_flow(load)
    dp = min(
        max(
            model.dp_required(chw_flow, limits.valve_target) * (1 + limits.dp_margin), limits.dp_min
        ),
        limits.dp_max,
    )
    head = model.chw_head(np.array([chw_flow]), dp)
    chw_kw = min(
        float(kw[0]) if ok[0] else math.inf
        for n in (1, 2, 3)
        for _, kw, ok in [pump_group(model, "chw", list(range(n)), np.array([chw_flow]), head, 0.3)]
    )
    best = math.inf
    n_cells = len(SPEC.towers)
    for size in (1, 2, 3):
        for subset in itertools.combinations(range(3), size):
            design_cw = sum(SPEC.chillers[i].design_cw_flow_ls for i in subset)
            if chw_flow < limits.min_chw_flow_fraction * sum(
                SPEC.chillers[i].design_chw_flow_ls for i in subset
            ):
                continue
            pumps = sorted({SPEC.chillers[i].cw_pump for i in subset})
            grid = np.arange(limits.plr_min, limits.plr_max + 1e-9, 0.02)
            shares = (
                np.array(list(itertools.product(grid, repeat=size - 1)))
                if size > 1
                else np.zeros((1, 0))
            )
            for ratio in limits.cw_flow_ratios:
                cw = np.array([ratio * design_cw])
                _, cw_kw, ok = pump_group(model, "cw", pumps, cw, model.cw_head(cw), 0.3)
                if not ok[0]:
                    continue
                for cells, speed in zip(opt._tower_cells, opt._tower_speed, strict=True):
                    speeds = [speed if k < cells else 0.0 for k in range(n_cells)]
                    eff = np.mean(
                        [
                            model.tower_effectiveness(k, np.array(s), cw[0] / n_cells, wb, 0)
                            for k, s in enumerate(speeds)
                        ]
                    )
                    fan = sum(
                        float(model.tower_fan_power(k, np.array(s))) for k, s in enumerate(speeds)
                    )
                    for chws in opt._chws:
                        ch_kw = 0.2 * load
                        for _ in range(6):
                            ecwt = wb + (load + ch_kw) / (cw[0] * WATER_CP) * (1 - eff) / eff
                            if ecwt > limits.cws_max:
                                ch_kw = math.inf
                                break
                            ecwt = max(ecwt, limits.cws_min)
                            q = [
                                model.chiller_quadratic(i, np.array(chws), np.array(ecwt))
                                for i in subset
                            ]
                            caps = np.array([float(x[3]) for x in q])
                            if caps.sum() * limits.plr_max < load * (1 + limits.load_margin):
                                ch_kw = math.inf
                                break
                            loads = shares * caps[:-1] if size > 1 else np.zeros((1, 0))
                            last = load - loads.sum(axis=1)
                            okl = (last >= limits.plr_min * caps[-1] - 1e-9) & (
                                last <= limits.plr_max * caps[-1] + 1e-9
                            )
                            if not okl.any():
                                ch_kw = math.inf
                                break
                            all_loads = np.column_stack([loads[okl], last[okl]])
                            kw = sum(
                                float(x[0])
                                + float(x[1]) * all_loads[:, k]
                                + float(x[2]) * all_loads[:, k] ** 2
                                for k, x in enumerate(q)
                            )
                            ch_kw = float(np.min(kw))
                        best = min(best, ch_kw + fan + float(cw_kw[0]) + chw_kw)
    return best


@pytest.mark.parametrize("load,wb", [(2600.0, 15.0), (4300.0, 26.0), (6300.0, 27.5)])
def test_optimizer_is_never_worse_than_a_brute_force_grid(load: float, wb: float) -> None:
    limits = OptimizerLimits(chws_step=0.5, fan_step=0.2, cw_flow_ratios=(0.8, 1.0, 1.2))
    model = _trained_model()
    sp = PlantOptimizer(limits, model).optimize(load, wb)
    assert sp.feasible
    mine = _evaluate(model, load, wb, sp)
    assert mine == pytest.approx(sp.total_kw, rel=2e-3)  # its own prediction holds up
    brute = _brute_force(model, limits, load, wb)
    assert mine <= brute * (1 + 1e-3), (mine, brute)


def test_limits_hold_over_random_conditions() -> None:
    rng = np.random.default_rng(11)
    limits = OptimizerLimits(chws_max=8.5, dp_min=40.0)
    opt = PlantOptimizer(limits, _trained_model())
    caps = np.array([c.capacity_kw for c in SPEC.chillers])
    for _ in range(40):
        fault = rng.random(3) < 0.2
        running = rng.random(3) < 0.5
        measured = {role("chiller_fault", i): float(fault[i]) for i in range(3)}
        measured |= {role("chiller_running", i): float(running[i]) for i in range(3)}
        available = caps[~fault].sum()
        load = float(rng.uniform(0.2, 1.1) * caps.sum())
        sp = opt.optimize(load, float(rng.uniform(8, 30)), measured)
        on = np.array(sp.chillers_on)
        assert not np.any(on & fault), "a tripped chiller was planned to run"
        assert limits.chws_min <= sp.chws_setpoint <= limits.chws_max
        assert sp.dp_setpoint >= limits.dp_min
        assert limits.cws_min <= sp.cws_setpoint <= limits.cws_max
        assert 1 <= sp.chw_pumps <= len(SPEC.chw_pumps) and on.sum() <= 3
        if sp.feasible:
            planned = sum(sp.chiller_plr[i] * _cap(opt, i, sp) for i in range(3))
            assert planned == pytest.approx(load, rel=1e-6)  # the load is covered
            assert all(
                limits.plr_min - 1e-9 <= p <= limits.plr_max + 1e-9
                for p in np.array(sp.chiller_plr)[on]
            )
            # The mix of the per-chiller setpoints is the plant setpoint.
            flows = np.array([c.design_chw_flow_ls for c in SPEC.chillers]) * on
            mix = float(np.dot(flows, sp.chiller_chws_setpoints) / flows.sum())
            assert mix == pytest.approx(sp.chws_setpoint, abs=1e-6)
        else:
            assert load > 0.75 * available  # only a load near or past capacity is infeasible
            assert list(on) == list(~fault)


def _cap(opt: PlantOptimizer, i: int, sp: PlantSetpoints) -> float:
    ecwt = max(sp.cws_setpoint, opt.limits.cws_min)
    return float(opt.models.chiller_quadratic(i, np.array(sp.chws_setpoint), np.array(ecwt))[3])


def test_optimizer_is_deterministic_fast_and_rejects_bad_inputs() -> None:
    opt = PlantOptimizer(OptimizerLimits(), _trained_model())
    first = opt.optimize(5000.0, 27.0)
    assert opt.optimize(5000.0, 27.0) == first
    times = []
    for _ in range(5):
        started = time.perf_counter()
        opt.optimize(5000.0, 27.0)
        times.append(time.perf_counter() - started)
    assert min(times) < 0.05
    with pytest.raises(ValueError, match="load_kw"):
        opt.optimize(math.nan, 27.0)
    with pytest.raises(ValueError, match="wetbulb"):
        opt.optimize(4000.0, math.inf)
    infeasible = opt.optimize(50_000.0, 27.0)
    assert not infeasible.feasible and all(infeasible.chillers_on)
    assert "exceeds" in infeasible.note
    idle = opt.optimize(0.0, 27.0)  # no load: the smallest chiller, and a note saying why
    assert not idle.feasible and idle.chillers_on == (False, False, True)
    assert "below the minimum" in idle.note
    # A tripped condenser pump takes its chiller out.
    sp = opt.optimize(3000.0, 27.0, {role("cw_pump_fault", 0): 1.0})
    assert not sp.chillers_on[0]


def test_a_new_lineup_is_held_unless_it_cannot_carry_the_load() -> None:
    opt = PlantOptimizer(OptimizerLimits(), _trained_model())
    high = opt.optimize(6500.0, 27.0, now_s=0.0)
    assert sum(high.chillers_on) >= 2
    held = opt.optimize(2600.0, 27.0, now_s=600.0)
    assert held.chillers_on == high.chillers_on
    # Unless it cannot run at all: two chillers would starve below their minimum flow.
    assert sum(opt.optimize(1500.0, 27.0, now_s=700.0).chillers_on) == 1
    opt = PlantOptimizer(OptimizerLimits(), _trained_model())
    opt.optimize(6500.0, 27.0, now_s=0.0)
    free = opt.optimize(2600.0, 27.0, now_s=4000.0)
    assert sum(free.chillers_on) < sum(high.chillers_on)
    # Past the hold, a line-up too small for the load is replaced at once.
    assert sum(opt.optimize(6800.0, 27.0, now_s=4100.0).chillers_on) >= 2


def test_role_points_name_real_plant_tags() -> None:
    plant = PlantRoom()
    points = energy.role_points(SPEC)
    for tag in points.values():
        plant.read(tag)  # KeyError on a typo
    assert points["chws_c"] == "plant.chws_temp"


def test_quick_energy_benchmark_closed_loop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Fitted models from identification days, then the optimizer runs the plant: the CHW
    supply stays within its limit and the plant uses less energy than the baseline."""
    out = energy.main(["--quick", "--out", str(tmp_path / "energy.png")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["optimizer_kwh"] == out["optimizer_kwh"]
    assert (tmp_path / "energy.png").stat().st_size > 10_000
    for day in ("design", "mild"):
        d = out["days"][day]
        assert d["unmet_hours"]["optimizer"] <= d["unmet_hours"]["baseline"]
        assert d["valve_saturated_hours"]["optimizer"] == 0  # the coils get their water
        assert d["chiller_trips"]["optimizer"] == 0
        assert d["optimizer_kwh"] < d["baseline_kwh"]
    # The top-level figures are the whole run: both days together.
    for strategy in energy.STRATEGIES:
        days = sum(out["days"][day][f"{strategy}_kwh"] for day in ("design", "mild"))
        assert out[f"{strategy}_kwh"] == pytest.approx(days, abs=0.2)
    assert all(v["fitted"] for v in out["fit"].values())
