"""numba control kernels: agreement with the plain-Python references, PID behaviour on a
first-order-plus-dead-time plant, trim and respond, condenser setpoint, lazy import."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_loops import kernels
from control_loops.kernels import REVERSE, CondenserParams, condenser_setpoint, pid_params
from tests.control_loops import reference as ref

REPO = Path(__file__).resolve().parents[2]

# ---- import stays cheap ------------------------------------------------------------------


def test_importing_kernels_and_sequences_does_not_import_numba(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["EDGE_AGENT_NUMBA_CACHE"] = str(tmp_path / "nb")
    code = (
        "import sys\n"
        "import control_loops.kernels, control_loops.sequences\n"
        "assert 'numba' not in sys.modules\n"
        "control_loops.kernels.warm_up()\n"
        "assert 'numba' in sys.modules\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "nb").rglob("*.nbi")), "kernels were not cached in our dir"


# ---- PID against the reference -----------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False)
maybe_nan = st.one_of(finite, st.just(math.nan), st.just(math.inf))


@st.composite
def pid_row(draw):
    lo = draw(st.floats(-100, 100))
    hi = lo + draw(st.floats(0.1, 200))
    return [
        draw(st.floats(0, 50)),  # kp
        draw(st.sampled_from([0.0, 1.0, 30.0, 600.0])),  # ti
        draw(st.sampled_from([0.0, 0.5, 10.0])),  # td
        draw(st.sampled_from([0.0, 5.0, 20.0])),  # td_filter
        lo,
        hi,
        draw(st.sampled_from([1.0, -1.0])),
        draw(st.sampled_from([0.0, 0.01, 0.5, 5.0])),  # tracking
    ]


@st.composite
def pid_case(draw):
    n = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 25))
    params = [draw(pid_row()) for _ in range(n)]
    init = [
        [draw(finite), draw(maybe_nan), draw(finite), draw(st.one_of(finite, st.just(math.nan)))]
        for _ in range(n)
    ]
    seq = [
        (
            [draw(finite) for _ in range(n)],
            [draw(maybe_nan) for _ in range(n)],
            [draw(st.booleans()) for _ in range(n)],
            [draw(maybe_nan) for _ in range(n)],
        )
        for _ in range(steps)
    ]
    dt = draw(st.sampled_from([0.1, 1.0, 5.0]))
    return params, init, seq, dt


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pid_case())
def test_pid_step_matches_reference(case):
    params, init, seq, dt = case
    n = len(params)
    p = np.array(params)
    state = np.array(init)
    ref_state = [list(row) for row in init]
    out = np.empty(n)
    ref_out = [0.0] * n
    for sp, y, auto, manual in seq:
        kernels.pid_step(
            p, state, np.array(sp), np.array(y), np.array(auto), np.array(manual), dt, out
        )
        ref.pid_step(params, ref_state, sp, y, auto, manual, dt, ref_out)
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(state, np.array(ref_state), rtol=1e-12, atol=1e-9)
        # The state is never poisoned: integral and derivative stay finite whatever the
        # inputs (prev measurement may be the NaN sentinel, prev output NaN before any).
        assert np.all(np.isfinite(state[:, [0, 2]]))


def _arrays(n, sp=0.0, y=0.0, auto=True, manual=0.0):
    return (
        np.full(n, sp, float),
        np.full(n, y, float),
        np.full(n, auto, bool),
        np.full(n, manual, float),
    )


def test_pid_shape_and_dt_errors_are_clear():
    p = np.vstack([pid_params(1.0, 10.0)] * 3)
    state = kernels.pid_state(3)
    sp, y, auto, man = _arrays(3)
    out = np.empty(3)
    with pytest.raises(ValueError, match="params must have shape"):
        kernels.pid_step(p[:2], state, sp, y, auto, man, 1.0, out)
    with pytest.raises(ValueError, match="state must have shape"):
        kernels.pid_step(p, state[:, :3].copy(), sp, y, auto, man, 1.0, out)
    with pytest.raises(ValueError, match="setpoint and measurement"):
        kernels.pid_step(p, state, sp[:2], y, auto, man, 1.0, out)
    with pytest.raises(ValueError, match="dt must be > 0"):
        kernels.pid_step(p, state, sp, y, auto, man, 0.0, out)
    with pytest.raises(ValueError, match="dt must be > 0"):
        kernels.pid_step(p, state, sp, y, auto, man, math.nan, out)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kp": -1.0}, "kp must be finite and >= 0"),
        ({"kp": 1.0, "ti": math.nan}, "ti must be finite"),
        ({"kp": 1.0, "out_min": 10.0, "out_max": 10.0}, "out_min must be below out_max"),
        ({"kp": 1.0, "direction": 0.5}, "direction must be"),
        ({"kp": 1.0, "tracking": -0.1}, "tracking must be"),
    ],
)
def test_pid_params_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pid_params(**kwargs)


def test_pid_params_columns_and_default_tracking():
    row = pid_params(2.0, ti=60.0, td=5.0)
    assert dict(zip(kernels.PID_PARAMS, row, strict=True)) == {
        "kp": 2.0,
        "ti": 60.0,
        "td": 5.0,
        "td_filter": 10.0,
        "out_min": 0.0,
        "out_max": 100.0,
        "direction": 1.0,
        "tracking": pytest.approx(2 / 60),
    }
    assert pid_params(1.0)[7] == 0.0  # no integral: nothing to track
    assert kernels.PID_STATE == ("integral", "prev_measurement", "derivative", "prev_output")


# ---- PID on a first-order-plus-dead-time plant ---------------------------------------------

# A heating-like plant: +1 % output raises the measurement by 0.2 K; tau 60 s, dead 10 s.
GAIN, TAU, DEAD, DT = 0.2, 60.0, 10.0, 1.0
# SIMC tuning with tau_c = dead time: kp = tau / (K (tau_c + dead)), ti = min(tau, 8 dead).
KP, TI = TAU / (GAIN * 2 * DEAD), 60.0


def simulate(params, sp_at, steps, auto_at=None, manual=0.0, guard=True, use_reference=False):
    """Close the loop on the plant (starting at 20 °C); returns (measurements, outputs)."""
    plant = ref.Fopdt(GAIN, TAU, DEAD, DT, base=20.0)
    p = np.array([params])
    state = kernels.pid_state(1)
    ref_state = list(state[0])
    out = np.empty(1)
    ys, us = [], []
    y = plant.y
    for k in range(steps):
        sp = sp_at(k)
        auto = True if auto_at is None else k >= auto_at
        if use_reference:
            u = ref.pid_one(list(params), ref_state, sp, y, auto, manual, DT, windup_guard=guard)
        else:
            kernels.pid_step(
                p,
                state,
                np.array([sp]),
                np.array([y]),
                np.array([auto]),
                np.array([manual]),
                DT,
                out,
            )
            u = out[0]
        y = plant.step(u)
        ys.append(y)
        us.append(u)
    return np.array(ys), np.array(us)


def test_pi_settles_to_setpoint_with_no_steady_state_error():
    params = pid_params(KP, TI, direction=REVERSE)
    ys, us = simulate(params, lambda k: 26.0, 1500)
    assert abs(ys[-1] - 26.0) < 1e-3
    assert np.all(np.abs(ys[-300:] - 26.0) < 1e-2)
    # Output settles where the plant needs it: (26 - 20) / 0.2 = 30 %.
    assert us[-1] == pytest.approx(30.0, abs=0.01)
    # Well damped: overshoot below 10 % of the step.
    assert ys.max() < 26.0 + 0.6


def test_pi_rejects_a_load_disturbance():
    params = pid_params(KP, TI, direction=REVERSE)
    plant = ref.Fopdt(GAIN, TAU, DEAD, DT, base=20.0)
    # At step 600 the plant's base drops by 2 K (e.g. more heat loss): the integral must
    # find the new output, 40 %.
    sp = 26.0
    p = np.array([params])
    state, out = kernels.pid_state(1), np.empty(1)
    y = plant.y
    for k in range(2000):
        if k == 600:
            plant.base = 18.0
        kernels.pid_step(p, state, np.array([sp]), np.array([y]), *_arrays(1)[2:], DT, out)
        y = plant.step(out[0])
    assert abs(y - sp) < 1e-3
    assert out[0] == pytest.approx(40.0, abs=0.01)


def _recovery_time(ys, start, sp, band=0.2):
    """Steps after ``start`` until ys stays within band of sp."""
    outside = np.flatnonzero(np.abs(ys[start:] - sp) > band)
    return 0 if outside.size == 0 else int(outside[-1]) + 1


@pytest.mark.parametrize("tracking", [None, 0.0], ids=["back-calculation", "clamp"])
def test_anti_windup_recovers_faster_than_an_output_clamp_alone(tracking):
    # The output range 0..50 % gives at most +10 K. For 15 minutes the setpoint asks
    # for +15 K (unreachable: the output sits at 50 %), then drops to +6 K.
    def sp_at(k):
        return 35.0 if k < 900 else 26.0

    params = pid_params(KP, TI, out_max=50.0, direction=REVERSE, tracking=tracking)
    ys, us = simulate(params, sp_at, 2500)
    ys_wind, us_wind = simulate(params, sp_at, 2500, use_reference=True, guard=False)
    assert np.all(us[800:900] == 50.0) and np.all(us_wind[800:900] == 50.0)
    t_guard = _recovery_time(ys, 900, 26.0)
    t_wind = _recovery_time(ys_wind, 900, 26.0)
    # Without anti-windup the integrator spent 15 minutes winding up and holds the output
    # at 50 % long after the setpoint came down.
    assert t_guard < t_wind / 3, (t_guard, t_wind)
    assert t_guard < 300
    # And the guarded loop still settles exactly.
    assert abs(ys[-1] - 26.0) < 1e-3


def test_derivative_on_measurement_gives_no_kick_on_a_setpoint_step():
    params = pid_params(KP, TI, td=15.0, out_min=-1e3, out_max=1e3, direction=REVERSE)
    p = np.array([params])
    state, out = kernels.pid_state(1, output=30.0), np.empty(1)
    sp, y, auto, man = _arrays(1, sp=26.0, y=26.0)
    for _ in range(5):
        kernels.pid_step(p, state, sp, y, auto, man, DT, out)
    before = out[0]
    kernels.pid_step(p, state, sp + 2.0, y, auto, man, DT, out)
    # Only proportional plus one integral step: kp * 2 (1 + dt / ti); no derivative term.
    assert out[0] - before == pytest.approx(KP * 2.0 * (1 + DT / TI), rel=1e-12)
    assert state[0, 2] == 0.0
    # The derivative is alive: the same step in the measurement does kick.
    state2, out2 = kernels.pid_state(1, output=30.0), np.empty(1)
    for _ in range(5):
        kernels.pid_step(p, state2, sp, y, auto, man, DT, out2)
    kernels.pid_step(p, state2, sp, y - 2.0, auto, man, DT, out2)
    kick = KP * 15.0 * 10.0 / (15.0 + 10.0 * DT) * 2.0
    assert out2[0] - before == pytest.approx(KP * 2.0 * (1 + DT / TI) + kick, rel=1e-12)


def test_manual_to_auto_is_bumpless():
    params = pid_params(KP, TI, td=5.0, direction=REVERSE)
    # Ten minutes in manual at 40 % (the measurement drifts to 28 K, far from the 24 K
    # setpoint), then auto.
    ys, us = simulate(params, lambda k: 24.0, 1500, auto_at=600, manual=40.0)
    assert np.all(us[:600] == 40.0)
    e = 24.0 - ys[599]  # the error the first auto step sees
    assert abs(KP * e) > 50  # a proportional bump would be huge...
    # ...but the output moves by one integral step plus the measurement's last change.
    drift = KP * abs(ys[599] - ys[598]) * (1 + 5.0)
    assert abs(us[600] - 40.0) <= abs(KP * DT / TI * e) + drift
    assert abs(us[600] - 40.0) < 1.01
    assert abs(ys[-1] - 24.0) < 1e-2


def test_manual_output_is_clamped_and_nan_manual_holds():
    p = np.array([pid_params(1.0, 10.0, out_min=0.0, out_max=100.0)])
    state, out = kernels.pid_state(1), np.empty(1)
    sp, y, _, _ = _arrays(1, sp=7.0, y=7.0)
    manual = np.array([130.0])
    kernels.pid_step(p, state, sp, y, np.array([False]), manual, DT, out)
    assert out[0] == 100.0
    kernels.pid_step(p, state, sp, y, np.array([False]), np.array([math.nan]), DT, out)
    assert out[0] == 100.0
    assert state[0, 0] == 100.0  # integrator tracks the held output (error is zero)


def test_nan_measurement_holds_output_and_never_poisons_state():
    params = pid_params(KP, TI, td=5.0, direction=REVERSE)
    p = np.array([params])
    state, out = kernels.pid_state(1, output=30.0), np.empty(1)
    sp, y, auto, man = _arrays(1, sp=26.0, y=25.0)
    for _ in range(10):
        kernels.pid_step(p, state, sp, y, auto, man, DT, out)
    held, integral = out[0], state[0, 0]
    for bad in (math.nan, math.inf, -math.inf):
        kernels.pid_step(p, state, sp, np.array([bad]), auto, man, DT, out)
        assert out[0] == held
        assert state[0, 0] == integral
    kernels.pid_step(p, state, np.array([math.nan]), y, auto, man, DT, out)
    assert out[0] == held
    # Back with a valid value: a finite output, no derivative spike from the gap.
    kernels.pid_step(p, state, sp, y, auto, man, DT, out)
    assert np.all(np.isfinite(state[0, [0, 2, 3]]))
    assert abs(out[0] - held) < KP * 1.0 * DT / TI + 1e-9 + abs(state[0, 2])


def test_fresh_state_holds_nan_until_a_valid_measurement():
    p = np.array([pid_params(1.0, 10.0)])
    state, out = kernels.pid_state(1), np.empty(1)
    sp, _, auto, man = _arrays(1, sp=7.0)
    kernels.pid_step(p, state, sp, np.array([math.nan]), auto, man, DT, out)
    assert math.isnan(out[0])  # no output yet: the runner must not write
    kernels.pid_step(p, state, sp, np.array([8.0]), auto, man, DT, out)
    assert out[0] == pytest.approx(1.0 + 0.1)


def test_many_loops_step_independently():
    rng = np.random.default_rng(7)
    n = 200
    params = np.vstack(
        [pid_params(rng.uniform(0.5, 5), rng.choice([0.0, 60.0]), direction=rng.choice([1, -1]))
         for _ in range(n)]
    )  # fmt: skip
    state = kernels.pid_state(n, output=rng.uniform(0, 100, n))
    ref_state = [list(r) for r in state]
    out, ref_out = np.empty(n), [0.0] * n
    for _ in range(20):
        sp, y = rng.uniform(5, 10, n), rng.uniform(5, 10, n)
        auto, man = rng.random(n) < 0.8, rng.uniform(0, 100, n)
        kernels.pid_step(params, state, sp, y, auto, man, 2.0, out)
        ref.pid_step(params, ref_state, sp, y, auto, man, 2.0, ref_out)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)


# ---- trim and respond ------------------------------------------------------------------------

CHW = kernels.trim_respond_params(5.5, 10.0, 0.2, -0.3, -0.8, 2)
DP = kernels.trim_respond_params(20.0, 100.0, -2.0, 3.0, 8.0, 1)


@st.composite
def tr_params(draw):
    sp_min = draw(st.floats(-50, 50))
    sp_max = sp_min + draw(st.floats(0.1, 100))
    trim = draw(st.floats(0.01, 5)) * draw(st.sampled_from([1, -1]))
    respond = -math.copysign(draw(st.floats(0.01, 5)), trim)
    max_response = math.copysign(draw(st.floats(0.01, 20)), respond)
    ignored = draw(st.integers(0, 5))
    return kernels.trim_respond_params(sp_min, sp_max, trim, respond, max_response, ignored)


@settings(max_examples=500, deadline=None)
@given(tr_params(), st.floats(-100, 100), st.integers(0, 30))
def test_trim_respond_matches_reference(params, sp, requests):
    got = kernels.trim_respond(sp, requests, params)
    assert got == pytest.approx(ref.trim_respond(sp, requests, params), rel=1e-12, abs=1e-12)
    assert params[0] <= got <= params[1]


def test_trim_respond_signs_for_chw_and_dp():
    # CHW supply temperature: no requests -> warmer by trim; requests -> colder.
    assert kernels.trim_respond(7.0, 0, CHW) == pytest.approx(7.2)
    assert kernels.trim_respond(7.0, 2, CHW) == pytest.approx(7.2)  # 2 ignored
    assert kernels.trim_respond(7.0, 3, CHW) == pytest.approx(6.9)  # 0.2 - 0.3
    assert kernels.trim_respond(7.0, 5, CHW) == pytest.approx(6.3)  # 0.2 - 0.9 = -0.7
    assert kernels.trim_respond(7.0, 20, CHW) == pytest.approx(6.2)  # capped at -0.8
    assert kernels.trim_respond(9.9, 0, CHW) == 10.0
    assert kernels.trim_respond(5.6, 20, CHW) == 5.5
    # DP: no requests -> lower by trim; requests -> higher.
    assert kernels.trim_respond(60.0, 0, DP) == pytest.approx(58.0)
    assert kernels.trim_respond(60.0, 3, DP) == pytest.approx(64.0)  # -2 + 3 * 2
    assert kernels.trim_respond(60.0, 9, DP) == pytest.approx(68.0)  # capped at +8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10.0, 5.0, 0.1, -0.1, -0.2, 2), "sp_min"),
        ((5.0, 10.0, 0.1, 0.1, 0.2, 2), "opposite signs"),
        ((5.0, 10.0, 0.0, -0.1, -0.2, 2), "opposite signs"),
        ((5.0, 10.0, 0.1, -0.1, 0.2, 2), "sign of respond"),
        ((5.0, 10.0, 0.1, -0.1, -0.2, -1), "ignored_requests"),
        ((5.0, math.nan, 0.1, -0.1, -0.2, 2), "finite"),
    ],
)
def test_trim_respond_params_are_validated(args, message):
    with pytest.raises(ValueError, match=message):
        kernels.trim_respond_params(*args)


def test_trim_respond_rejects_a_nan_setpoint():
    with pytest.raises(ValueError, match="setpoint must be finite"):
        kernels.trim_respond(math.nan, 0, CHW)


# ---- condenser water -------------------------------------------------------------------------


def test_condenser_approach_mode_shrinks_at_low_load_and_clamps():
    p = CondenserParams()  # approach 4 K at full load, 2.5 K at none; 18..32 °C; floor 2 K
    assert condenser_setpoint("approach", 22.0, 7.0, 1.0, p) == pytest.approx(26.0)
    assert condenser_setpoint("approach", 22.0, 7.0, 0.0, p) == pytest.approx(24.5)
    assert condenser_setpoint("approach", 22.0, 7.0, 0.5, p) == pytest.approx(25.25)
    assert condenser_setpoint("approach", 22.0, 7.0, 3.0, p) == pytest.approx(26.0)
    assert condenser_setpoint("approach", 5.0, 7.0, 1.0, p) == 18.0  # cold day: cw_min
    assert condenser_setpoint("approach", 29.0, 7.0, 1.0, p) == 32.0  # cw_max
    # Very humid: the wet-bulb floor wins over cw_max (the tower cannot do better).
    assert condenser_setpoint("approach", 31.0, 7.0, 1.0, p) == pytest.approx(33.0)
    assert condenser_setpoint("approach", 22.0, 7.0, math.nan, p) == pytest.approx(26.0)
    assert math.isnan(condenser_setpoint("approach", math.nan, 7.0, 1.0, p))


def test_condenser_lift_mode_and_floor():
    p = CondenserParams(lift=18.0)
    assert condenser_setpoint("lift", 15.0, 7.0, 0.5, p) == pytest.approx(25.0)
    assert condenser_setpoint("lift", 15.0, 0.0, 0.5, p) == 18.0
    assert condenser_setpoint("lift", 24.0, 7.0, 0.5, p) == pytest.approx(26.0)  # floor
    assert condenser_setpoint("lift", math.nan, 7.0, 0.5, p) == pytest.approx(25.0)
    assert math.isnan(condenser_setpoint("lift", 20.0, math.nan, 0.5, p))
    with pytest.raises(ValueError, match="approach' or 'lift"):
        condenser_setpoint("fixed", 20.0, 7.0, 0.5, p)  # type: ignore[arg-type]


def test_condenser_params_are_validated():
    with pytest.raises(ValueError, match="cw_min"):
        CondenserParams(cw_min=30.0, cw_max=20.0)
    with pytest.raises(ValueError, match="min_approach"):
        CondenserParams(min_approach=3.0, low_load_approach=2.5)


def test_warm_up_runs_every_kernel():
    assert kernels.warm_up() >= 0.0
    assert kernels._kernels is not None
