"""State machines: trim-and-respond timing, request counting, chiller staging scenarios."""

from __future__ import annotations

import itertools
import math

import pytest

from control_loops.kernels import trim_respond_params
from control_loops.sequences import (
    Staging,
    StagingParams,
    TrimRespond,
    ValveRequests,
    chw_reset_requests,
    dp_reset_requests,
)

# ---- trim and respond timing: a G36-style worked example -------------------------------------

# CHW supply temperature reset: 5.5..10 °C, trim +0.2 K, respond -0.3 K per request above 2
# ignored, at most -0.8 K per step; start at 6.7 °C, hold 10 min after enable, step 2 min.
CHW = trim_respond_params(5.5, 10.0, 0.2, -0.3, -0.8, 2)


def test_worked_example_chw_reset():
    tr = TrimRespond(CHW, initial=6.7, delay=600, time_step=120)
    # Held at the initial value through the delay, whatever the requests.
    for t in range(0, 600, 60):
        assert tr.step(9, t) == 6.7
    # No requests: climbs by the trim at each time step, not in between.
    assert tr.step(0, 600) == pytest.approx(6.9)
    assert tr.step(0, 660) == pytest.approx(6.9)
    assert tr.step(0, 720) == pytest.approx(7.1)
    # Requests at or below the ignored count still trim.
    assert tr.step(2, 840) == pytest.approx(7.3)
    # 3 requests: 0.2 - 0.3 = -0.1.
    assert tr.step(3, 960) == pytest.approx(7.2)
    # 5 requests: 0.2 - 0.9 = -0.7.
    assert tr.step(5, 1080) == pytest.approx(6.5)
    # 12 requests: 0.2 - 3.0 capped at -0.8.
    assert tr.step(12, 1200) == pytest.approx(5.7)
    # Bounded below by sp_min.
    assert tr.step(12, 1320) == pytest.approx(5.5)
    assert tr.step(12, 1440) == pytest.approx(5.5)
    # And above by sp_max after a long quiet spell.
    t = 1560
    for _ in range(40):
        sp = tr.step(0, t)
        t += 120
    assert sp == 10.0


def test_dp_reset_goes_the_other_way():
    # DP setpoint (kPa): trim -2, respond +3 per request above 1, at most +8.
    tr = TrimRespond(trim_respond_params(20, 100, -2, 3, 8, 1), initial=60, delay=0, time_step=60)
    assert tr.step(0, 0) == 58
    assert tr.step(3, 60) == 62  # -2 + 2 * 3
    assert tr.step(10, 120) == 70  # capped at +8


def test_late_call_applies_one_update_and_keeps_the_grid():
    tr = TrimRespond(CHW, initial=7.0, delay=0, time_step=120)
    assert tr.step(0, 0) == pytest.approx(7.2)
    # The runner stalled for 10 minutes: one update, not five.
    assert tr.step(0, 600) == pytest.approx(7.4)
    assert tr.step(0, 700) == pytest.approx(7.4)
    assert tr.step(0, 720) == pytest.approx(7.6)


def test_disable_resets_to_initial_and_restarts_the_delay():
    tr = TrimRespond(CHW, initial=7.0, delay=300, time_step=120)
    tr.step(0, 0)
    tr.step(0, 300)
    assert tr.setpoint == pytest.approx(7.2)
    tr.disable()
    assert tr.setpoint == 7.0
    assert tr.step(0, 1000) == 7.0
    assert tr.step(0, 1299) == 7.0
    assert tr.step(0, 1300) == pytest.approx(7.2)


def test_trim_respond_class_validates():
    with pytest.raises(ValueError, match="initial setpoint"):
        TrimRespond(CHW, initial=12.0)
    with pytest.raises(ValueError, match="time_step"):
        TrimRespond(CHW, initial=7.0, time_step=0)
    with pytest.raises(ValueError, match="opposite signs"):
        TrimRespond((5.5, 10.0, 0.2, 0.3, 0.8, 2), initial=7.0)


# ---- request counting ----------------------------------------------------------------------


def test_valve_requests_latch_above_95_until_below_85():
    v = ValveRequests()
    assert v.flags([50.0, 96.0]) == [False, True]
    assert v.flags([90.0, 90.0]) == [False, True]  # 90 % does not start one, keeps one
    assert v.flags([96.0, 86.0]) == [True, True]
    assert v.flags([96.0, 84.0]) == [True, False]
    assert v.count([math.nan, 90.0]) == 0  # stale valve: no request, latch dropped
    assert v.count([90.0, 90.0]) == 0


def test_chw_reset_requests_escalate_with_supply_air_excess():
    v = ValveRequests()
    positions = [100.0, 100.0, 100.0, 40.0, 40.0]
    excess = [3.5, 2.2, 0.5, 0.0, math.nan]
    assert chw_reset_requests(v, positions, excess) == 3 + 2 + 1 + 0 + 0
    assert chw_reset_requests(v, [88.0] * 5) == 3  # the latched three, one each
    with pytest.raises(ValueError, match="one value per valve"):
        chw_reset_requests(v, positions, [0.0])


def test_dp_requests_keep_their_own_latches():
    chw, dp = ValveRequests(), ValveRequests(high=90, low=70)
    positions = [92.0, 80.0]
    assert chw_reset_requests(chw, positions) == 0
    assert dp_reset_requests(dp, positions) == 1
    with pytest.raises(ValueError, match="low"):
        ValveRequests(high=80, low=90)


# ---- staging --------------------------------------------------------------------------------

FAST = StagingParams(
    stage_up_plr=0.9,
    stage_up_delay=300,
    stage_down_plr=0.8,
    stage_down_delay=600,
    failsafe_dt=1.0,
    failsafe_dp_fraction=0.8,
    failsafe_delay=300,
    min_hold=900,
)
CAP = [1000.0, 1000.0, 1000.0]


class Plant:
    """Drives a Staging with a load profile; records every decision."""

    def __init__(self, staging, caps=CAP, hours=(0.0, 0.0, 0.0), available=(True,) * 3):
        self.staging, self.caps = staging, list(caps)
        self.hours, self.available = list(hours), list(available)
        self.chw, self.chw_sp, self.dp, self.dp_sp = 7.0, 7.0, 60.0, 60.0
        self.log: list[tuple[float, float, object]] = []

    def step(self, load, t):
        d = self.staging.step(
            load, self.caps, self.available, self.hours,
            self.chw, self.chw_sp, self.dp, self.dp_sp, t,
        )  # fmt: skip
        self.log.append((t, load, d))
        return d

    def changes(self):
        return [(t, d) for t, _, d in self.log if d.changed]


def test_ramp_up_stages_one_at_a_time_respecting_delay_and_hold():
    plant = Plant(Staging(FAST))
    # 0 -> 2900 kW over 4 hours, a step every minute.
    for k in range(0, 240 * 60 + 1, 60):
        plant.step(2900.0 * k / (240 * 60), k)
    changes = plant.changes()
    assert [len(d.on) for _, d in changes] == [1, 2, 3]
    assert changes[0][0] == 0 and "start lead" in changes[0][1].reason
    for (t_prev, prev), (t, d) in itertools.pairwise(changes):
        assert len(d.on) == len(prev.on) + 1
        assert t - t_prev >= FAST.min_hold
        assert "stage up" in d.reason
        # The PLR of the previous stage exceeded 0.9 at every step of the delay window.
        cap = sum(CAP[i] for i in prev.on)
        window = [load for tt, load, _ in plant.log if t - FAST.stage_up_delay <= tt <= t]
        assert all(load / cap > 0.9 for load in window)
        # ...and the stage up came at the first moment it could: one step earlier the
        # condition had not yet held for the delay.
        earlier = [load for tt, load, _ in plant.log if tt == t - FAST.stage_up_delay - 60]
        assert earlier[0] / cap <= 0.9
    assert all(len(d.on) <= 3 for _, _, d in plant.log)


def test_ramp_down_stops_when_the_rest_would_run_below_staging_plr():
    hours = [100.0, 300.0, 200.0]
    plant = Plant(Staging(FAST, running=[0, 1, 2]), hours=hours)
    for k in range(0, 300 * 60 + 1, 60):
        plant.step(2900.0 - 2800.0 * k / (300 * 60), k)
    changes = plant.changes()
    assert [d.on for _, d in changes] == [(0, 2), (0,)]  # most hours stop first: 1, then 2
    for t, d in changes:
        assert "stage down" in d.reason
        cap_after = sum(CAP[i] for i in d.on)
        window = [load for tt, load, _ in plant.log if t - FAST.stage_down_delay <= tt <= t]
        assert all(load / cap_after < 0.8 for load in window)
    assert changes[1][0] - changes[0][0] >= FAST.min_hold
    # Never below min_running, however low the load.
    for k in range(300 * 60, 400 * 60, 60):
        assert plant.step(10.0, k).on == (0,)


def test_no_change_between_the_thresholds():
    # 2 chillers at PLR 0.85: neither stage up (> 0.9) nor down (1700 / 1000 > 0.8).
    plant = Plant(Staging(FAST, running=[0, 1]))
    for k in range(0, 7200, 60):
        assert not plant.step(1700.0, k).changed
    assert plant.log[-1][2].reason == "steady"
    assert plant.log[-1][2].plr == pytest.approx(0.85)


def test_failsafe_on_warm_supply_water():
    plant = Plant(Staging(FAST, running=[0]))
    plant.chw = 8.5  # setpoint 7 + failsafe_dt 1 exceeded; PLR only 0.6
    decisions = [plant.step(600.0, k) for k in range(0, 400, 60)]
    assert not any(d.changed for d in decisions[:5])  # 0..240 s: not yet 300 s
    assert decisions[5].changed and decisions[5].on == (0, 1)
    assert decisions[5].reason.startswith("failsafe stage up: CHW supply 8.5")


def test_failsafe_on_low_dp_and_short_excursions_are_ignored():
    plant = Plant(Staging(FAST, running=[0]))
    for k in range(0, 3000, 60):
        # Low DP for 4 minutes out of every 5: never 300 s in a row.
        plant.dp = 40.0 if k % 300 else 60.0
        assert not plant.step(600.0, k).changed
    # Low since 2760 s: at 3060 s it has lasted 300 s.
    plant.dp = 40.0
    assert not plant.step(600.0, 3000).changed
    d = plant.step(600.0, 3060)
    assert d.changed and d.on == (0, 1) and "DP 40 < 0.8 x setpoint 60" in d.reason


def test_failsafe_blocks_stage_down():
    plant = Plant(Staging(FAST, running=[0, 1]))
    plant.chw = 8.2  # warm water at low load: something is wrong, keep both running
    plant.available = [True, True, False]
    for k in range(0, 3600, 60):
        d = plant.step(500.0, k)
        assert d.on == (0, 1)
    assert d.reason == "stage up wanted, no standby"


def test_fault_replaces_a_running_chiller_at_once_even_within_hold():
    hours = [500.0, 100.0, 300.0]
    plant = Plant(Staging(FAST), hours=hours)
    assert plant.step(500.0, 0).on == (1,)  # fewest run hours leads
    plant.available = [True, False, True]
    d = plant.step(500.0, 60)
    assert d.changed and d.on == (2,)  # standby with fewest hours of those left
    assert "chiller 1 unavailable, replaced by 2" in d.reason
    plant.available = [False, False, False]
    d = plant.step(500.0, 120)
    assert d.on == () and "no standby" in d.reason
    d = plant.step(500.0, 180)
    assert d.on == () and d.reason == "no chiller available"
    plant.available = [True, False, False]
    assert plant.step(500.0, 240).on == (0,)


def test_rotation_by_run_hours():
    hours = [900.0, 50.0, 400.0]
    plant = Plant(Staging(FAST), hours=hours)
    assert plant.step(950.0, 0).on == (1,)
    t = 60
    while len(plant.log[-1][2].on) < 2:
        plant.step(950.0, t)
        t += 60
    assert plant.log[-1][2].on == (1, 2)  # next fewest hours
    # Now chiller 2 has run longest: it is the one to stop.
    plant.hours = [900.0, 50.0, 1000.0]
    while len(plant.log[-1][2].on) > 1:
        plant.step(300.0, t)
        t += 60
    assert plant.log[-1][2].on == (1,)


def test_never_more_chillers_than_available():
    plant = Plant(Staging(FAST), available=(True, False, True))
    for k in range(0, 6 * 3600, 60):
        d = plant.step(3000.0, k)
        assert set(d.on) <= {0, 2}
    assert d.on == (0, 2) and d.reason == "stage up wanted, no standby"


def test_nan_inputs_make_no_stage_change():
    plant = Plant(Staging(FAST, running=[0, 1]))
    plant.chw = math.nan
    plant.dp = math.nan
    for k in range(0, 7200, 60):
        d = plant.step(math.nan, k)
        assert not d.changed and d.on == (0, 1)
    assert math.isnan(d.plr)


def test_unknown_run_hours_start_last_and_stop_first():
    plant = Plant(Staging(FAST), hours=(math.nan, 10.0, 20.0))
    assert plant.step(100.0, 0).on == (1,)


def test_staging_input_validation():
    s = Staging(FAST)
    with pytest.raises(ValueError, match="one value each"):
        s.step(100.0, [1000.0, 1000.0], [True], [0.0, 0.0], 7, 7, 60, 60, 0)
    with pytest.raises(ValueError, match="capacities"):
        s.step(100.0, [1000.0, 0.0], [True, True], [0.0, 0.0], 7, 7, 60, 60, 0)
    with pytest.raises(ValueError, match="stage_down_plr"):
        StagingParams(stage_up_plr=0.8, stage_down_plr=0.85)
    with pytest.raises(ValueError, match="min_running"):
        StagingParams(min_running=0)
