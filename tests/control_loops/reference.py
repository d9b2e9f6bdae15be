"""Plain-Python references of the control kernels, written from docs/control.md.

One loop at a time, lists and floats only: slow, but easy to check by eye. The tests
compare the numba kernels against these, and benchmarks/loops.py times ``pid_step``.
"""

from __future__ import annotations

import math


def _derivative(kp, td, nf, direction, d_prev, y, y_prev, dt):
    if td <= 0:
        return 0.0
    dy = 0.0 if math.isnan(y_prev) or math.isinf(y_prev) else direction * (y - y_prev)
    if nf <= 0:
        return kp * td * dy / dt
    return td / (td + nf * dt) * d_prev + kp * td * nf / (td + nf * dt) * dy


def pid_one(p, s, sp, y, auto, manual, dt, windup_guard=True):
    """One step of one loop; ``s`` (a list of 4) is updated, the output returned.

    windup_guard=False gives a PID that only clamps its output (no anti-windup at all):
    the baseline the anti-windup tests compare against.
    """
    kp, ti, td, nf, lo, hi, direction, kt = p
    valid = math.isfinite(y) and math.isfinite(sp)
    if not auto:
        u = min(max(manual, lo), hi) if math.isfinite(manual) else s[3]
        if valid:
            d = _derivative(kp, td, nf, direction, s[2], y, s[1], dt)
            if math.isfinite(u):
                s[0] = u - kp * direction * (y - sp) - d
            s[1], s[2] = y, d
        else:
            if math.isfinite(u):
                s[0] = u
            s[1], s[2] = math.nan, 0.0
        s[3] = u
        return u
    if not valid:
        s[1] = math.nan
        return s[3]
    e = direction * (y - sp)
    prop = kp * e
    d = _derivative(kp, td, nf, direction, s[2], y, s[1], dt)
    before = s[0]
    integ = before + (kp * dt / ti * e if ti > 0 else 0.0)
    v = prop + integ + d
    u = min(max(v, lo), hi)
    if ti > 0 and windup_guard:
        if kt > 0:
            integ += min(kt * dt, 1.0) * (u - v)
        elif v > hi:
            # The integrator may reach the saturation point but not go further than it was.
            integ = min(integ, max(before, hi - prop - d))
        elif v < lo:
            integ = max(integ, min(before, lo - prop - d))
    s[0], s[1], s[2], s[3] = integ, y, d, u
    return u


def pid_step(params, state, setpoint, measurement, auto, manual_output, dt, out, **kw):
    """The vectorised API in a plain loop (arrays or lists)."""
    for k in range(len(out)):
        s = list(state[k])
        out[k] = pid_one(
            params[k], s, setpoint[k], measurement[k], auto[k], manual_output[k], dt, **kw
        )
        state[k] = s


def trim_respond(setpoint, requests, params):
    sp_min, sp_max, trim, respond, max_response, ignored = params
    if requests > ignored:
        change = trim + respond * (requests - ignored)
        if abs(change) > abs(max_response) and (change > 0) == (max_response > 0):
            change = max_response
    else:
        change = trim
    return min(max(setpoint + change, sp_min), sp_max)


class Fopdt:
    """First order plus dead time plant: tau dy/dt = gain * u(t - dead) - (y - base).

    Exact discretisation for a zero-order-held input, dead time in whole steps.
    """

    def __init__(self, gain, tau, dead, dt, base=0.0, y0=None):
        self.gain, self.base = gain, base
        self.alpha = math.exp(-dt / tau)
        self.queue = [0.0] * max(round(dead / dt), 0)
        self.y = base if y0 is None else y0

    def step(self, u):
        self.queue.append(u)
        u_late = self.queue.pop(0)
        target = self.base + self.gain * u_late
        self.y = target + (self.y - target) * self.alpha
        return self.y
