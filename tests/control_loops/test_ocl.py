"""Optimal chiller loading: hand cases, validation, and global optimality vs brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_loops import ocl
from tests.control_loops.brute import brute_force, curve

LO = 0.3


def check_feasible(res: ocl.OclResult, co, q, load, lo=LO, allow_off=True) -> None:
    """Constraints hold exactly and power is the curves' value at the returned PLRs."""
    co, q = np.asarray(co, float), np.asarray(q, float)
    assert res.plr.shape == res.on.shape == q.shape
    assert res.on.dtype == bool
    np.testing.assert_array_equal(res.on, res.plr > 0)
    running = res.plr[res.on]
    assert np.all(running >= lo) and np.all(running <= 1.0)
    if not allow_off:
        assert res.on.all()
    assert abs(res.plr @ q - load) <= 1e-9 * max(load, 1.0)
    expected = sum(curve(co[i], res.plr[i]) for i in np.flatnonzero(res.on))
    assert res.power == pytest.approx(expected, rel=1e-12, abs=1e-12)


# ---- hand-computed cases -------------------------------------------------------------


def test_identical_convex_chillers_share_equally():
    co = [[10, 50, 20, 5]] * 2
    res = ocl.solve(co, [100, 100], 120)
    np.testing.assert_allclose(res.plr, [0.6, 0.6], atol=1e-9)
    assert res.power == pytest.approx(2 * (10 + 30 + 7.2 + 1.08))


def test_concave_curve_prefers_one_chiller_fully_loaded():
    # kW = 10 + 80 PLR - 30 PLR^2 (concave): for 100 units one chiller at 1.0 costs 60 kW,
    # two at 0.5 cost 2 * 42.5 = 85 kW.
    co = [[10, 80, -30, 0]] * 2
    res = ocl.solve(co, [100, 100], 100)
    assert sorted(res.plr.tolist()) == [0.0, 1.0]
    assert res.power == pytest.approx(60.0)


def test_concave_curves_both_running_go_to_opposite_bounds():
    # 120 units need both: (0.3, 0.9) costs 31.3 + 57.7 = 89 kW; (0.6, 0.6) costs 94.4 kW.
    res = ocl.solve([[10, 80, -30, 0]] * 2, [100, 100], 120)
    assert sorted(res.plr.tolist()) == pytest.approx([0.3, 0.9])
    assert res.power == pytest.approx(89.0)


def test_off_chiller_draws_nothing_even_with_negative_constant():
    # A negative constant must not make "on at PLR 0" look attractive: off is exactly 0 kW.
    co = [[-50, 100, 0, 0], [5, 100, 0, 0]]
    res = ocl.solve(co, [100, 100], 100)
    check_feasible(res, co, [100, 100], 100)
    # Running both: -50 + 5 + 100 * (x1 + x2) = 55 at best; chiller 0 alone: 50.
    assert res.power == pytest.approx(50.0)
    assert res.on.tolist() == [True, False]


def test_linear_curves_load_the_cheaper_marginal_first():
    co = [[0, 100, 0, 0], [0, 50, 0, 0]]
    res = ocl.solve(co, [100, 100], 150, allow_off=False)
    np.testing.assert_allclose(res.plr, [0.5, 1.0], atol=1e-12)


def test_three_concave_chillers_need_a_cyclic_swap():
    # Found by stress testing: pair moves from equal PLR stop at (1, 0.5, 0.5) = 320.7 kW;
    # reaching (0.45, 0.46, 1) needs all three to move at once. The DP seed finds it.
    co = [[-34.2, 174.6, -80.2, -57.5], [50.3, 250.1, 27.6, -51.1], [45.2, 282.7, -106.4, -91.5]]
    q, load = [174.0, 958.0, 241.0], 760.0
    res = ocl.solve(co, q, load, plr_min=0.45, allow_off=False)
    check_feasible(res, co, q, load, lo=0.45, allow_off=False)
    assert res.plr[2] == 1.0
    assert res.power <= brute_force(np.array(co), np.array(q), load, 0.45, False)
    assert res.power == pytest.approx(319.1071770716907, abs=1e-6)


def test_optimum_at_bounds_off_the_dp_grid():
    # Found by stress testing: the optimum runs chiller 0 at 1.0 and chiller 1 at plr_min,
    # neither on the DP's load grid. Rounding them inward cost more than adding chiller 2
    # saved, so the DP picked {0, 1} (102.99 kW) until bounds became DP options.
    co = [
        [-29.75375474, 137.1846243, -45.16395643, -56.09192471],
        [27.74154446, 198.83604487, -132.21818446, -11.65528248],
        [42.95892848, -23.57952661, -10.39800991, 32.94802874],
    ]
    q, load = [633.60855565, 764.2397276, 554.82174751], 1231.0511941559928
    res = ocl.solve(co, q, load, plr_min=0.2)
    check_feasible(res, co, q, load, lo=0.2)
    np.testing.assert_allclose(res.plr, [1.0, 0.2, 0.80132889], atol=1e-7)
    assert res.power <= brute_force(np.array(co), np.array(q), load, 0.2) + 1e-9


def test_allow_off_false_runs_every_chiller():
    co = [[10, 80, -30, 0]] * 3
    res = ocl.solve(co, [100, 100, 100], 100, allow_off=False)
    check_feasible(res, co, [100] * 3, 100, allow_off=False)
    assert res.on.all()
    # Two at the minimum, the third takes the rest (concave: extremes win).
    assert sorted(res.plr.tolist()) == pytest.approx([0.3, 0.3, 0.4])


def test_zero_load_all_off():
    res = ocl.solve([[10, 50, 20, 5]] * 3, [100, 200, 300], 0)
    assert res.power == 0.0
    assert not res.on.any()
    assert res.plr.tolist() == [0.0, 0.0, 0.0]


def test_full_load_and_exact_minimums():
    co, q = [[10, 50, 20, 5], [3, 40, -10, 8]], [100, 250]
    full = ocl.solve(co, q, 350)
    np.testing.assert_array_equal(full.plr, [1.0, 1.0])
    low = ocl.solve(co, q, 0.3 * 350, allow_off=False)
    np.testing.assert_allclose(low.plr, [0.3, 0.3], atol=1e-12)
    check_feasible(low, co, q, 0.3 * 350, allow_off=False)


# ---- infeasible loads and bad inputs -------------------------------------------------

CO2, Q2 = [[10, 50, 20, 5]] * 2, [100, 1000]


@pytest.mark.parametrize(
    ("load", "allow_off"),
    [
        (-1.0, True),
        (1100.5, True),  # above total capacity
        (10.0, True),  # between 0 and the smallest minimum (30)
        (200.0, True),  # gap between [30, 100] and [300, 1100]
        (320.0, False),  # below the sum of minimums (330)
        (0.0, False),
    ],
)
def test_infeasible_load_raises(load, allow_off):
    with pytest.raises(ValueError, match=r"load .* cannot be met.*reachable"):
        ocl.solve(CO2, Q2, load, allow_off=allow_off)


def test_infeasible_message_lists_reachable_ranges():
    with pytest.raises(ValueError, match=r"\[30, 100\], \[300, 1100\]"):
        ocl.solve(CO2, Q2, 200.0)


@pytest.mark.parametrize(
    ("coeffs", "caps", "load", "plr_min", "match"),
    [
        ([[1, 2, 3]], [100], 50, 0.3, "shape"),
        ([], [], 0, 0.3, "shape"),
        ([[1, 2, 3, 4]], [100, 200], 50, 0.3, "capacities must have shape"),
        ([[1, 2, np.nan, 4]], [100], 50, 0.3, "finite"),
        ([[1, 2, 3, 4]], [np.nan], 50, 0.3, "capacities"),
        ([[1, 2, 3, 4]], [-5], 50, 0.3, "capacities"),
        ([[1, 2, 3, 4]], [100], np.nan, 0.3, "load must be finite"),
        ([[1, 2, 3, 4]], [100], 50, 0.0, "plr_min"),
        ([[1, 2, 3, 4]], [100], 50, 1.5, "plr_min"),
        ([[1, 2, 3, 4]] * 13, [100] * 13, 50, 0.3, "at most"),
    ],
)
def test_bad_inputs_raise(coeffs, caps, load, plr_min, match):
    with pytest.raises(ValueError, match=match):
        ocl.solve(coeffs, caps, load, plr_min=plr_min)


def test_plr_min_one_means_on_or_off():
    co = [[10, 50, 20, 5]] * 3
    res = ocl.solve(co, [100, 200, 300], 400, plr_min=1.0)
    assert sorted(res.plr.tolist()) == [0.0, 1.0, 1.0]
    assert res.on.tolist() == [True, False, True]


# ---- global optimality against brute force -------------------------------------------

# Mixed convexity, negative constants and slopes: local solvers fall into the wrong basin.
coef = st.tuples(
    st.floats(-40, 60), st.floats(-50, 300), st.floats(-200, 200), st.floats(-150, 150)
)


@st.composite
def plants(draw, n_min, n_max):
    n = draw(st.integers(n_min, n_max))
    co = np.array(draw(st.lists(coef, min_size=n, max_size=n)), dtype=float)
    q = np.array(draw(st.lists(st.floats(50, 1000), min_size=n, max_size=n)))
    lo = draw(st.sampled_from([0.2, 0.3, 0.45]))
    allow_off = draw(st.booleans())
    # A load some subset can meet: its capacity range, end points included.
    mask = (1 << n) - 1 if not allow_off else draw(st.integers(1, (1 << n) - 1))
    cap = sum(q[i] for i in range(n) if mask >> i & 1)
    t = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)))
    return co, q, cap * (lo + t * (1 - lo)), lo, allow_off


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plants(1, 2))
def test_never_worse_than_exhaustive_grid_small(plant):
    check_against_grid(plant)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plants(3, 3))
def test_never_worse_than_exhaustive_grid_three(plant):
    check_against_grid(plant)


def check_against_grid(plant):
    co, q, load, lo, allow_off = plant
    res = ocl.solve(co, q, load, plr_min=lo, allow_off=allow_off)
    check_feasible(res, co, q, load, lo, allow_off)
    ref = brute_force(co, q, load, lo, allow_off)
    assert np.isfinite(ref), "brute force found no feasible point: the case is vacuous"
    assert res.power <= ref + 1e-9 * (1 + abs(ref))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plants(4, 6), st.integers(0, 2**16))
def test_never_worse_than_scipy_multistart(plant, seed):
    pytest.importorskip("scipy")
    from benchmarks.ocl import reference_solve

    co, q, load, lo, allow_off = plant
    res = ocl.solve(co, q, load, plr_min=lo, allow_off=allow_off)
    check_feasible(res, co, q, load, lo, allow_off)
    _, ref = reference_solve(co, q, load, lo, allow_off, starts=3, seed=seed)
    # The reference's points are repaired to exact feasibility, so this is a fair check.
    assert res.power <= ref + 1e-9 * (1 + abs(ref))


@settings(max_examples=40, deadline=None)
@given(plants(4, 8), st.integers(0, 2**32 - 1))
def test_never_worse_than_random_feasible_points(plant, seed):
    from benchmarks.ocl import repair

    co, q, load, lo, allow_off = plant
    res = ocl.solve(co, q, load, plr_min=lo, allow_off=allow_off)
    check_feasible(res, co, q, load, lo, allow_off)
    rng = np.random.default_rng(seed)
    n = q.size
    for _ in range(200):
        on = rng.random(n) < 0.6 if allow_off else np.ones(n, dtype=bool)
        if not (on.any() and lo * q[on].sum() <= load <= q[on].sum()):
            continue
        x = repair(rng.uniform(lo, 1, on.sum()), q[on], load, lo)
        if x is None:
            continue
        kw = sum(curve(c, v) for c, v in zip(co[on], x, strict=True))
        assert res.power <= kw + 1e-9 * (1 + abs(kw))
