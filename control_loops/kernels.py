"""Control kernels of the chilled-water plant: vectorised PID, trim and respond, condenser
water setpoint. See docs/control.md.

numba is imported (and the kernels loaded from the on-disk cache or compiled) on the first
call of a kernel, never at import: importing this module costs only numpy.

Sign conventions
----------------
PID ``direction``: +1 = direct acting (output rises when the measurement rises above the
setpoint: cooling valve, tower fan), -1 = reverse acting (heating valve, pump speed on a
DP that should rise). The error is ``direction * (measurement - setpoint)``.

Trim and respond: ``trim`` is added every time step, ``respond`` per request above the
ignored ones; they have opposite signs. For chilled-water supply temperature reset the trim
is positive (warmer water, less chiller energy) and respond negative (colder water when
coils ask); for the DP setpoint the trim is negative (less pump energy) and respond
positive. ``max_response`` has the sign of ``respond``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

PID_PARAMS = ("kp", "ti", "td", "td_filter", "out_min", "out_max", "direction", "tracking")
PID_STATE = ("integral", "prev_measurement", "derivative", "prev_output")
DIRECT = 1.0
REVERSE = -1.0
TRIM_RESPOND_PARAMS = ("sp_min", "sp_max", "trim", "respond", "max_response", "ignored_requests")

_kernels: ModuleType | None = None


def _load() -> ModuleType:
    global _kernels
    if _kernels is None:
        from control_loops import _loop_kernels

        _kernels = _loop_kernels
    return _kernels


# ---- PID --------------------------------------------------------------------------------


def pid_params(
    kp: float,
    ti: float = 0.0,
    td: float = 0.0,
    td_filter: float = 10.0,
    out_min: float = 0.0,
    out_max: float = 100.0,
    direction: float = DIRECT,
    tracking: float | None = None,
) -> np.ndarray:
    """One row of PID parameters (columns ``PID_PARAMS``), validated.

    kp in output units per measurement unit; ti, td in seconds (ti = 0: no integral action,
    td = 0: no derivative); td_filter is N, the derivative filter time constant is td / N
    (0: unfiltered). tracking is the back-calculation gain in 1/s; None picks 2 / ti (a
    tracking time of half the integral time), 0 clamps the integrator instead.
    """
    if tracking is None:
        tracking = 2.0 / ti if ti > 0 else 0.0
    row = np.array([kp, ti, td, td_filter, out_min, out_max, direction, tracking], np.float64)
    check_pid_params(row[None, :])
    return row


def check_pid_params(params: np.ndarray) -> None:
    """Raise ValueError naming the first bad loop and column of an (N, 8) params array."""
    params = np.asarray(params)
    if params.ndim != 2 or params.shape[1] != len(PID_PARAMS):
        raise ValueError(f"PID params must have shape (N, 8), got {params.shape}")
    for k, row in enumerate(params):
        values = dict(zip(PID_PARAMS, (float(x) for x in row), strict=True))
        bad = [name for name, x in values.items() if not math.isfinite(x)]
        bad += [n for n in ("kp", "ti", "td", "td_filter", "tracking") if values[n] < 0]
        if bad:
            raise ValueError(f"PID loop {k}: {bad[0]} must be finite and >= 0")
        if not values["out_min"] < values["out_max"]:
            raise ValueError(f"PID loop {k}: out_min must be below out_max")
        if values["direction"] not in (DIRECT, REVERSE):
            raise ValueError(f"PID loop {k}: direction must be +1 (direct) or -1 (reverse)")


def pid_state(n: int, output: float | np.ndarray | None = None) -> np.ndarray:
    """Fresh state for n loops (columns ``PID_STATE``).

    ``output`` is the actuator's present value (for a bumpless start in auto); without it
    the integrator starts at 0 and the held output, until the first valid step, is NaN.
    """
    state = np.zeros((n, len(PID_STATE)))
    state[:, 1] = np.nan
    if output is None:
        state[:, 3] = np.nan
    else:
        state[:, 0] = output
        state[:, 3] = output
    return state


def pid_step(
    params: np.ndarray,
    state: np.ndarray,
    setpoint: np.ndarray,
    measurement: np.ndarray,
    auto: np.ndarray,
    manual_output: np.ndarray,
    dt: float,
    out: np.ndarray,
) -> None:
    """Step N PID loops by dt seconds; writes ``out`` and updates ``state`` in place.

    Derivative on measurement (a setpoint step gives no kick), anti-windup by
    back-calculation (tracking > 0) or integrator clamping (tracking = 0). While ``auto`` is
    false the output follows ``manual_output`` clamped to the limits, and the integrator
    tracks it so the switch to auto is bumpless. A non-finite measurement or setpoint holds
    the previous output and leaves the integrator untouched. Shapes are checked (ValueError);
    params are not: check them once with ``check_pid_params``.
    """
    k = _kernels or _load()
    k.pid_step(params, state, setpoint, measurement, auto, manual_output, dt, out)


# ---- trim and respond -------------------------------------------------------------------


def trim_respond_params(
    sp_min: float,
    sp_max: float,
    trim: float,
    respond: float,
    max_response: float,
    ignored_requests: float = 2,
) -> tuple[float, float, float, float, float, float]:
    """A validated trim-and-respond params tuple (see the module doc for the signs)."""
    p = (
        float(sp_min), float(sp_max), float(trim), float(respond), float(max_response),
        float(ignored_requests),
    )  # fmt: skip
    if not all(math.isfinite(x) for x in p):
        raise ValueError(f"trim-and-respond params must be finite, got {p}")
    if not sp_min < sp_max:
        raise ValueError(f"sp_min ({sp_min:g}) must be below sp_max ({sp_max:g})")
    if trim == 0 or respond == 0 or (trim > 0) == (respond > 0):
        raise ValueError(f"trim ({trim:g}) and respond ({respond:g}) must have opposite signs")
    if max_response == 0 or (max_response > 0) != (respond > 0):
        raise ValueError(
            f"max_response ({max_response:g}) must have the sign of respond ({respond:g})"
        )
    if ignored_requests < 0:
        raise ValueError(f"ignored_requests must be >= 0, got {ignored_requests:g}")
    return p


def trim_respond(setpoint: float, requests: float, params: tuple) -> float:
    """The setpoint after one trim-and-respond time step (G36 style).

    params = (sp_min, sp_max, trim, respond, max_response, ignored_requests). With R
    requests and I ignored: R <= I changes the setpoint by ``trim``; R > I by
    ``trim + respond * (R - I)``, limited to ``max_response`` in the respond direction.
    The result is clamped to [sp_min, sp_max]. Signs: see the module doc.
    """
    if not math.isfinite(setpoint):
        raise ValueError(f"trim_respond: setpoint must be finite, got {setpoint}")
    sp_min, sp_max, trim, respond, max_response, ignored = params
    k = _kernels or _load()
    return k.trim_respond(
        float(setpoint),
        float(requests),
        float(sp_min),
        float(sp_max),
        float(trim),
        float(respond),
        float(max_response),
        float(ignored),
    )


# ---- condenser water --------------------------------------------------------------------


@dataclass(frozen=True)
class CondenserParams:
    """Condenser water supply setpoint rules (°C and K).

    approach mode: CW supply = wet-bulb + approach, the approach falling linearly from
    ``design_approach`` at full load to ``low_load_approach`` at zero load (an oversized
    tower gets closer at part load). lift mode: CW supply = CHW supply + ``lift``.
    """

    design_approach: float = 4.0
    low_load_approach: float = 2.5
    lift: float = 20.0
    cw_min: float = 18.0
    cw_max: float = 32.0
    min_approach: float = 2.0

    def __post_init__(self) -> None:
        values: tuple[float, ...] = (self.design_approach, self.low_load_approach, self.lift)
        values += (self.cw_min, self.cw_max, self.min_approach)
        if not all(math.isfinite(x) for x in values):
            raise ValueError("condenser params must be finite")
        if not self.cw_min < self.cw_max:
            raise ValueError(f"cw_min ({self.cw_min:g}) must be below cw_max ({self.cw_max:g})")
        if not 0 <= self.min_approach <= self.low_load_approach <= self.design_approach:
            raise ValueError("need 0 <= min_approach <= low_load_approach <= design_approach")
        if self.lift <= 0:
            raise ValueError(f"lift must be > 0, got {self.lift:g}")


def condenser_setpoint(
    mode: Literal["approach", "lift"],
    wetbulb_c: float,
    chw_supply_c: float,
    load_fraction: float,
    params: CondenserParams,
) -> float:
    """Condenser water supply temperature setpoint, °C.

    Clamped to [cw_min, cw_max], then raised to wet-bulb + min_approach if below it: a
    tower cannot make water colder than that, and asking for it only runs the fans flat out
    (so on a very humid day the floor wins over cw_max). NaN in an input the mode needs gives
    NaN (the runner's stale-input handling applies); in lift mode an unknown wet-bulb only
    skips the floor, in approach mode an unknown load uses the design approach.
    """
    if mode == "approach":
        if math.isnan(load_fraction):
            approach = params.design_approach
        else:
            frac = min(max(load_fraction, 0.0), 1.0)
            span = params.design_approach - params.low_load_approach
            approach = params.low_load_approach + span * frac
        target = wetbulb_c + approach
    elif mode == "lift":
        target = chw_supply_c + params.lift
    else:
        raise ValueError(f"condenser mode must be 'approach' or 'lift', got {mode!r}")
    if math.isnan(target):
        return math.nan
    target = min(max(target, params.cw_min), params.cw_max)
    if not math.isnan(wetbulb_c):
        target = max(target, wetbulb_c + params.min_approach)
    return target


# ---- warm-up ----------------------------------------------------------------------------


def warm_up() -> float:
    """Load (or compile) every kernel and run one step of each; returns seconds taken.

    Call at agent start so the first control period is not the one that pays for numba.
    """
    started = time.perf_counter()
    n = 2
    params = np.vstack([pid_params(2.0, 60.0, 5.0), pid_params(1.0, direction=REVERSE)])
    state = pid_state(n)
    out = np.empty(n)
    sp = np.array([7.0, 50.0])
    meas = np.array([7.5, 45.0])
    pid_step(params, state, sp, meas, np.array([True, False]), np.array([0.0, 30.0]), 1.0, out)
    trim_respond(7.0, 3, trim_respond_params(6.0, 12.0, 0.1, -0.15, -0.4, 2))
    condenser_setpoint("approach", 20.0, 7.0, 0.5, CondenserParams())
    return time.perf_counter() - started
