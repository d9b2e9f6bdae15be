"""numba kernels of the plant control loops (see ``control_loops.kernels``).

Imported lazily by the wrappers in ``control_loops.kernels``: importing this module imports
numba (through ``control_loops.jit`` so the on-disk cache lands in a writable dir) and loads
or compiles the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from control_loops.jit import numba

_nb = numba()
njit = _nb.njit
Arr = np.ndarray

# Column indices (kernels.PID_PARAMS / kernels.PID_STATE name them).
KP, TI, TD, NF, LO, HI, DIR, KT = range(8)
INTEG, YPREV, DERIV, UPREV = range(4)


@njit(cache=True)
def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


@njit(cache=True, error_model="numpy")
def _derivative(
    kp: float, td: float, nf: float, direction: float, d_prev: float, dy: float, dt: float
) -> float:
    """Filtered derivative of the measurement, in output units (derivative on measurement).

    Backward difference of kp*td*dir*dy/dt through a first-order filter of time constant
    td/N; N = 0 means unfiltered.
    """
    if td <= 0.0:
        return 0.0
    if nf <= 0.0:
        return kp * td * direction * dy / dt
    den = td + nf * dt
    return (td / den) * d_prev + (kp * td * nf / den) * (direction * dy)


# Scalars in and out: a helper taking the arrays costs a refcount round trip per loop,
# which is ten times the arithmetic.
@njit(cache=True, error_model="numpy")
def _pid_one(
    kp: float,
    ti: float,
    td: float,
    nf: float,
    lo: float,
    hi: float,
    direction: float,
    kt: float,
    integ: float,
    y_prev: float,
    d_prev: float,
    u_prev: float,
    sp: float,
    y: float,
    auto: bool,
    manual: float,
    dt: float,
) -> tuple[float, float, float, float]:
    """One loop's step; returns (output, integral, previous measurement, derivative)."""
    valid = math.isfinite(y) and math.isfinite(sp)
    # A missing previous measurement counts as no change.
    dy = y - y_prev if math.isfinite(y_prev) else 0.0
    if not auto:
        # Manual: follow the operator's value (within limits); the integrator tracks it so
        # that the switch to auto starts from the same output.
        u = _clamp(manual, lo, hi) if math.isfinite(manual) else u_prev
        if valid:
            d = _derivative(kp, td, nf, direction, d_prev, dy, dt)
            if math.isfinite(u):
                integ = u - kp * direction * (y - sp) - d
            return u, integ, y, d
        if math.isfinite(u):
            integ = u
        return u, integ, np.nan, 0.0
    if not valid:
        # Hold the last output; forget the previous measurement so the derivative does not
        # see the whole gap as one step when the measurement returns.
        return u_prev, integ, np.nan, d_prev
    e = direction * (y - sp)
    prop = kp * e
    d = _derivative(kp, td, nf, direction, d_prev, dy, dt)
    i_new = integ
    if ti > 0.0:
        i_new += kp * dt / ti * e
    v = prop + i_new + d
    u = _clamp(v, lo, hi)
    if ti > 0.0:
        if kt > 0.0:
            # Back-calculation: bleed the integrator toward the saturated output.
            i_new += min(kt * dt, 1.0) * (u - v)
        elif v > hi:
            # Clamp: integrate up to the saturation point, never further than it was.
            i_new = min(i_new, max(integ, hi - prop - d))
        elif v < lo:
            i_new = max(i_new, min(integ, lo - prop - d))
    return u, i_new, y, d


@njit(cache=True, error_model="numpy")
def pid_step(
    params: Arr,
    state: Arr,
    setpoint: Arr,
    measurement: Arr,
    auto: Arr,
    manual_output: Arr,
    dt: float,
    out: Arr,
) -> None:
    """One step of N PID loops; ``state`` and ``out`` are updated in place."""
    n = out.shape[0]
    if params.shape[0] != n or params.shape[1] != 8:
        raise ValueError("pid_step: params must have shape (N, 8)")
    if state.shape[0] != n or state.shape[1] != 4:
        raise ValueError("pid_step: state must have shape (N, 4)")
    if setpoint.shape[0] != n or measurement.shape[0] != n:
        raise ValueError("pid_step: setpoint and measurement must have shape (N,)")
    if auto.shape[0] != n or manual_output.shape[0] != n:
        raise ValueError("pid_step: auto and manual_output must have shape (N,)")
    if not dt > 0.0:
        raise ValueError("pid_step: dt must be > 0")
    p = params
    for k in range(n):
        u, integ, y_prev, d = _pid_one(
            p[k, KP], p[k, TI], p[k, TD], p[k, NF], p[k, LO], p[k, HI], p[k, DIR], p[k, KT],
            state[k, INTEG], state[k, YPREV], state[k, DERIV], state[k, UPREV],
            setpoint[k], measurement[k], auto[k], manual_output[k], dt,
        )  # fmt: skip
        state[k, INTEG] = integ
        state[k, YPREV] = y_prev
        state[k, DERIV] = d
        state[k, UPREV] = u
        out[k] = u


@njit(cache=True)
def trim_respond(
    setpoint: float,
    requests: float,
    sp_min: float,
    sp_max: float,
    trim: float,
    respond: float,
    max_response: float,
    ignored: float,
) -> float:
    """One trim-and-respond update (see ``kernels.trim_respond``)."""
    change = trim
    excess = requests - ignored
    if excess > 0.0:
        change = trim + respond * excess
        # The net change may not exceed max_response in the respond direction.
        change = min(change, max_response) if respond > 0.0 else max(change, max_response)
    return _clamp(setpoint + change, sp_min, sp_max)
