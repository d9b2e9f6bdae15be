"""State machines around the kernels: trim-and-respond timing, request counting, chiller
staging. Plain Python: they run once per control period on a handful of values. See
docs/control.md for the rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from control_loops.kernels import trim_respond, trim_respond_params

# ---- trim and respond -------------------------------------------------------------------


class TrimRespond:
    """A trim-and-respond setpoint with G36 timing.

    On enable (the first ``step`` after construction or ``disable``) the setpoint is
    ``initial`` and held for ``delay`` seconds; from then on it is updated once every
    ``time_step`` seconds by ``kernels.trim_respond``. Steps in between return the held
    setpoint. A late call applies one update, not one per missed time step: the requests
    counted now say nothing about the missed periods.
    """

    def __init__(
        self,
        params: Sequence[float],
        initial: float,
        delay: float = 600.0,
        time_step: float = 120.0,
    ) -> None:
        self.params = trim_respond_params(*params)
        sp_min, sp_max = self.params[0], self.params[1]
        if not (math.isfinite(initial) and sp_min <= initial <= sp_max):
            raise ValueError(f"initial setpoint {initial} must be within [{sp_min}, {sp_max}]")
        if not (delay >= 0 and time_step > 0):
            raise ValueError(f"need delay >= 0 and time_step > 0, got {delay}, {time_step}")
        self.initial = float(initial)
        self.delay = float(delay)
        self.time_step = float(time_step)
        self.setpoint = self.initial
        self._next: float | None = None  # time of the next update; None = disabled

    def disable(self) -> None:
        """Device off: back to the initial setpoint; the next step starts the delay anew."""
        self.setpoint = self.initial
        self._next = None

    def step(self, requests: float, now_s: float) -> float:
        """The setpoint at ``now_s`` given the requests counted now."""
        if self._next is None:
            self._next = now_s + self.delay
        if now_s >= self._next:
            self.setpoint = trim_respond(self.setpoint, requests, self.params)
            # Next update on the original grid, skipping missed periods.
            missed = math.floor((now_s - self._next) / self.time_step)
            self._next += (missed + 1) * self.time_step
        return self.setpoint


class ValveRequests:
    """Requests from valve positions with hysteresis, as G36 counts them for coils.

    A valve above ``high`` % makes one request and keeps making it until it falls below
    ``low`` %. A NaN position (stale point) makes no request and drops the latch.
    """

    def __init__(self, high: float = 95.0, low: float = 85.0) -> None:
        if not low < high:
            raise ValueError(f"low ({low}) must be below high ({high})")
        self.high, self.low = float(high), float(low)
        self._latched: list[bool] = []

    def flags(self, positions: Sequence[float]) -> list[bool]:
        """Per-valve request flags for this step (updates the latches)."""
        if len(self._latched) != len(positions):
            self._latched = [False] * len(positions)
        for i, pos in enumerate(positions):
            if math.isnan(pos) or pos < self.low:
                self._latched[i] = False
            elif pos > self.high:
                self._latched[i] = True
        return list(self._latched)

    def count(self, positions: Sequence[float]) -> int:
        return sum(self.flags(positions))


def chw_reset_requests(
    valves: ValveRequests,
    positions: Sequence[float],
    supply_air_excess_k: Sequence[float] | None = None,
) -> int:
    """Chilled-water supply temperature reset requests from cooling coils (G36).

    Per coil: 3 requests when its supply air is 3 K or more above setpoint, 2 when 2 K or
    more, otherwise 1 while its valve request (``valves``) is latched. G36 wants the excess
    to have lasted 2 minutes: pass it already filtered (e.g. the minimum over 2 minutes).
    """
    flags = valves.flags(positions)
    excess = supply_air_excess_k or [math.nan] * len(positions)
    if len(excess) != len(positions):
        raise ValueError("supply_air_excess_k must have one value per valve")
    total = 0
    for flag, dt in zip(flags, excess, strict=True):
        if dt >= 3.0:
            total += 3
        elif dt >= 2.0:
            total += 2
        else:
            total += int(flag)
    return total


def dp_reset_requests(valves: ValveRequests, positions: Sequence[float]) -> int:
    """Pump DP setpoint reset requests: one per latched valve (keep a separate
    ``ValveRequests`` from the temperature reset so each has its own thresholds)."""
    return valves.count(positions)


# ---- chiller staging --------------------------------------------------------------------


@dataclass(frozen=True)
class StagingParams:
    """Chiller staging rules; times in seconds, temperatures in K, PLRs as fractions."""

    stage_up_plr: float = 0.9
    stage_up_delay: float = 600.0
    stage_down_plr: float = 0.8
    stage_down_delay: float = 900.0
    failsafe_dt: float = 1.0
    failsafe_dp_fraction: float = 0.8
    failsafe_delay: float = 900.0
    min_hold: float = 900.0
    min_running: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.stage_down_plr < self.stage_up_plr:
            raise ValueError(
                f"need 0 < stage_down_plr ({self.stage_down_plr}) < stage_up_plr "
                f"({self.stage_up_plr}), or the plant would stage up and down in turn"
            )
        delays = (self.stage_up_delay, self.stage_down_delay, self.failsafe_delay, self.min_hold)
        if not all(math.isfinite(x) and x >= 0 for x in delays):
            raise ValueError("staging delays and min_hold must be finite and >= 0")
        if not (self.failsafe_dt > 0 and 0 < self.failsafe_dp_fraction <= 1):
            raise ValueError("need failsafe_dt > 0 and 0 < failsafe_dp_fraction <= 1")
        if self.min_running < 1:
            raise ValueError("min_running must be >= 1")


@dataclass(frozen=True)
class StagingDecision:
    """The chillers that should run (indices, ascending), why, and whether that changed."""

    on: tuple[int, ...]
    reason: str
    changed: bool
    plr: float  # load / capacity of the chillers in ``on`` (NaN when none or load unknown)


def _hours(run_hours: Sequence[float], i: int) -> float:
    h = float(run_hours[i])
    return math.inf if math.isnan(h) else h  # unknown hours: start last, stop first


class Staging:
    """Chiller staging state machine; call ``step`` once per control period.

    The plant is taken as enabled while ``step`` is called: at least ``min_running``
    available chillers run. Rules, in order of precedence:

    1. A running chiller that is unavailable (faulted, locked out) is replaced at once by
       the available standby with the fewest run hours.
    2. Fewer than ``min_running`` running: the lead (fewest run hours) starts at once.
    3. No change within ``min_hold`` of the last one.
    4. Failsafe stage up: CHW supply above setpoint + ``failsafe_dt``, or DP below
       ``failsafe_dp_fraction`` of its setpoint, for ``failsafe_delay``.
    5. Stage up: load / running capacity above ``stage_up_plr`` for ``stage_up_delay``.
    6. Stage down: load / (running capacity less the chiller with most run hours) below
       ``stage_down_plr`` for ``stage_down_delay``, and no stage-up condition present.

    Each condition's timer starts when it becomes true and is cleared when it turns false
    or the stage changes. NaN inputs make the conditions that need them false.
    """

    def __init__(self, params: StagingParams | None = None, running: Sequence[int] = ()) -> None:
        self.params = params or StagingParams()
        self.on: set[int] = set(running)
        self.last_change: float | None = None
        self._since: dict[str, float] = {}

    def _changed(self, now_s: float) -> None:
        self.last_change = now_s
        self._since.clear()

    def _timer(self, name: str, cond: bool, now_s: float) -> float:
        """Seconds the condition has held (-1 when it does not hold)."""
        if not cond:
            self._since.pop(name, None)
            return -1.0
        return now_s - self._since.setdefault(name, now_s)

    def _decide(self, reason: str, changed: bool, load: float, cap: Sequence[float]):
        on = tuple(sorted(self.on))
        total = sum(cap[i] for i in on)
        plr = load / total if total > 0 else math.nan
        return StagingDecision(on, reason, changed, plr)

    def step(
        self,
        load_kw: float,
        capacity_kw: Sequence[float],
        available: Sequence[bool],
        run_hours: Sequence[float],
        chw_supply_c: float,
        chw_setpoint_c: float,
        dp: float,
        dp_setpoint: float,
        now_s: float,
    ) -> StagingDecision:
        n = len(capacity_kw)
        if len(available) != n or len(run_hours) != n:
            raise ValueError("capacity_kw, available and run_hours must have one value each")
        if not all(math.isfinite(c) and c > 0 for c in capacity_kw):
            raise ValueError(f"chiller capacities must be finite and > 0, got {capacity_kw}")
        p = self.params
        self.on = {i for i in self.on if 0 <= i < n}
        standby = sorted(
            (i for i in range(n) if available[i] and i not in self.on),
            key=lambda i: (_hours(run_hours, i), i),
        )

        # 1. Replace unavailable running chillers at once.
        faulted = sorted(i for i in self.on if not available[i])
        if faulted:
            notes = []
            for i in faulted:
                self.on.discard(i)
                if standby:
                    j = standby.pop(0)
                    self.on.add(j)
                    notes.append(f"chiller {i} unavailable, replaced by {j}")
                else:
                    notes.append(f"chiller {i} unavailable, no standby")
            self._changed(now_s)
            return self._decide("; ".join(notes), True, load_kw, capacity_kw)

        # 2. Minimum number running.
        if len(self.on) < p.min_running and standby:
            started = []
            while len(self.on) < p.min_running and standby:
                j = standby.pop(0)
                self.on.add(j)
                started.append(j)
            self._changed(now_s)
            names = ", ".join(map(str, started))
            return self._decide(f"start lead chiller {names}", True, load_kw, capacity_kw)
        if not self.on:
            return self._decide("no chiller available", False, load_kw, capacity_kw)

        cap_on = sum(capacity_kw[i] for i in self.on)
        plr = load_kw / cap_on
        lag = max(self.on, key=lambda i: (_hours(run_hours, i), i))
        cap_after = cap_on - capacity_kw[lag]
        plr_after = load_kw / cap_after if cap_after > 0 else math.inf
        hot = chw_supply_c > chw_setpoint_c + p.failsafe_dt
        low_dp = dp < p.failsafe_dp_fraction * dp_setpoint
        up = plr > p.stage_up_plr
        t_fail = self._timer("failsafe", hot or low_dp, now_s)
        t_up = self._timer("up", up, now_s)
        can_down = len(self.on) > p.min_running and not (hot or low_dp or up)
        t_down = self._timer("down", can_down and plr_after < p.stage_down_plr, now_s)

        last = self.last_change
        if last is not None and now_s - last < p.min_hold:  # held
            left = p.min_hold - (now_s - last)
            return self._decide(f"hold ({left:.0f} s left)", False, load_kw, capacity_kw)
        if standby and t_fail >= p.failsafe_delay:
            why = (
                f"CHW supply {chw_supply_c:.1f} > setpoint {chw_setpoint_c:.1f} + {p.failsafe_dt:g}"
                if hot
                else f"DP {dp:.3g} < {p.failsafe_dp_fraction:g} x setpoint {dp_setpoint:.3g}"
            )
            return self._stage_up(
                standby[0], f"failsafe stage up: {why}", now_s, load_kw, capacity_kw
            )
        if standby and t_up >= p.stage_up_delay:
            why = f"stage up: PLR {plr:.2f} > {p.stage_up_plr:g} for {t_up:.0f} s"
            return self._stage_up(standby[0], why, now_s, load_kw, capacity_kw)
        if t_down >= p.stage_down_delay:
            self.on.discard(lag)
            self._changed(now_s)
            why = (
                f"stage down: stop chiller {lag}, PLR after {plr_after:.2f} "
                f"< {p.stage_down_plr:g} for {t_down:.0f} s"
            )
            return self._decide(why, True, load_kw, capacity_kw)
        if (up or hot or low_dp) and not standby:
            return self._decide("stage up wanted, no standby", False, load_kw, capacity_kw)
        return self._decide("steady", False, load_kw, capacity_kw)

    def _stage_up(self, j: int, why: str, now_s: float, load: float, cap: Sequence[float]):
        self.on.add(j)
        self._changed(now_s)
        return self._decide(f"{why}; start chiller {j}", True, load, cap)
