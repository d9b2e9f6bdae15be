"""The optimizer loop's config, and the line-up write sequence it shares with the benchmark."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from benchmarks.energy import POINTS as HOSPITAL_POINTS
from benchmarks.energy import hospital_spec
from control_loops.config import LoopConfig, OptimizerLoop
from control_loops.optimizer import PlantSetpoints
from control_loops.plant_loop import START_DIP_K, ChillerSequence, FallLimiter, plant_commands
from control_loops.plant_spec import OptimizerLimits, role
from edge_agent.config.loader import load_config
from simulators.site import PlantSite, load_sim_config
from tests.harness import REPO

LOOP = TypeAdapter(LoopConfig)
HOSPITAL_PLANT = hospital_spec().model_dump()


def optimizer(**fields) -> OptimizerLoop:
    """An optimizer loop on the demo hospital's schedule and points (configs/control/plant/),
    with `points` given here overriding the hospital's."""
    points = {**HOSPITAL_POINTS, **fields.pop("points", {})}
    body = {"id": "opt", "type": "optimizer", "plant": HOSPITAL_PLANT, "points": points}
    loop = LOOP.validate_python({**body, **fields})
    assert isinstance(loop, OptimizerLoop)
    return loop


# ---- config -----------------------------------------------------------------------------


def test_the_hospital_schedule_and_points_read_and_write_the_hospital_plant():
    loop = optimizer()
    assert (loop.period, loop.sequence_step, loop.refit_every) == (300.0, 10.0, 3600.0)
    inputs, outputs = loop.inputs(), loop.outputs()
    assert inputs["load_kw"] == "building.cooling_load_kw"
    assert inputs[role("chiller_running", 2)] == "chiller-3.run_status"
    assert inputs[role("chiller_enabled", 0)] == "chiller-1.enable"
    for ref in ("plant.chws_setpoint", "plant.cws_setpoint", "plant.dp_setpoint",
                "chiller-2.enable", "chiller-2.chws_setpoint", "cw-pump-3.enable",
                "tower-1.fan_speed_cmd"):  # fmt: skip
        assert ref in outputs
    assert loop.resolved.limits.min_stage_hold_s == 1800.0
    written = {ref for _, ref, w in loop.refs() if w}
    assert written == set(outputs)


def test_points_override_and_null_leaves_an_output_alone():
    loop = optimizer(points={"chws_setpoint": None, "load_kw": "bms.load"}, stage_hold="10m")
    assert "plant.chws_setpoint" not in loop.outputs()
    assert loop.inputs()["load_kw"] == "bms.load"
    assert loop.resolved.limits.min_stage_hold_s == 600.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"points": {"no_such_role": "a.b"}}, "unknown role"),
        ({"points": {"wetbulb_c": None}}, "cannot act without wetbulb_c"),
        ({"bounds": {"chws_min": 10.0, "chws_max": 8.0}}, "chws_min"),
        ({"bounds": {"chws_max": "warm"}}, "bounds.chws_max"),
        ({"bounds": {"min_stage_hold_s": 5}}, "stage_hold"),
        ({"limits": {"min": 0, "max": 1}}, "bounds"),
        ({"safe_state": {"value": 1}}, "hold or release"),
        ({"plant": {"chillers": []}}, "plant.chillers"),
        ({"min_samples": -1}, "min_samples"),
    ],
)
def test_bad_configs_are_refused_with_the_cause(fields, message):
    with pytest.raises(ValidationError, match=message):
        optimizer(**fields)


def test_no_site_comes_with_the_library():
    """A loop without the site's schedule, or without the point of a role it cannot act
    without, is refused: nothing defaults to the demo hospital."""
    with pytest.raises(ValidationError, match="plant"):
        LOOP.validate_python({"id": "opt", "type": "optimizer"})
    with pytest.raises(ValidationError, match="cannot act without load_kw"):
        LOOP.validate_python({"id": "opt", "type": "optimizer", "plant": HOSPITAL_PLANT})


def test_the_shipped_site_has_the_optimizer_disabled_beside_the_simple_loops():
    config = load_config(REPO / "configs" / "hospital-site.yaml")
    loops = {lp.id: lp for lp in config.loops}
    opt = loops["plant-optimizer"]
    assert isinstance(opt, OptimizerLoop) and not opt.enabled
    assert {"chiller-1.enable", "plant.dp_setpoint", "plant.chws_setpoint"} <= set(opt.outputs())
    # One automatic writer per point at a time: the simple loops that share the supply
    # setpoints with the optimizer stand by while it is in control.
    shared = {
        lp.id for lp in config.loops if lp.id != opt.id and set(lp.outputs()) & set(opt.outputs())
    }
    assert shared == {"chw-reset", "cw-approach"}
    assert all(loops[i].enabled and loops[i].yields_to == ("plant-optimizer",) for i in shared)


# ---- the sequence ------------------------------------------------------------------------


def test_a_start_waits_for_the_pre_cooling_and_a_stop_for_the_started_chiller():
    seq = ChillerSequence(pre_start_s=120, soft_load_s=300)
    # Running: 0. Wanted: 1 instead (start 1, then stop 0).
    assert seq.step({1}, {0}, {0}, now=0) == {0}  # asked for: pre-cooling first
    assert seq.waiting(60) == {1: 60.0}
    assert seq.step({1}, {0}, {0}, now=119) == {0}
    assert seq.step({1}, {0}, {0}, now=120) == {0, 1}  # started, 0 still runs
    assert seq.step({1}, {0, 1}, {0}, now=150) == {0, 1}  # 1 not running yet
    assert seq.step({1}, {0, 1}, {0, 1}, now=200) == {0, 1}  # running, not loaded yet
    assert seq.step({1}, {0, 1}, {0, 1}, now=499) == {0, 1}
    assert seq.step({1}, {0, 1}, {0, 1}, now=500) == {1}  # loaded 300 s: 0 may stop


def test_a_stop_alone_waits_until_the_remaining_chillers_have_run_soft_load():
    seq = ChillerSequence(pre_start_s=120, soft_load_s=300)
    assert seq.step({0}, {0, 1}, {0, 1}, now=0) == {0, 1}  # 0 first seen running now
    assert seq.step({0}, {0, 1}, {0, 1}, now=300) == {0}
    # A chiller that trips leaves the running set: its timer starts again.
    seq2 = ChillerSequence(pre_start_s=0, soft_load_s=300)
    seq2.step({0}, {0, 1}, {0, 1}, now=0)
    seq2.step({0}, {0, 1}, {1}, now=100)
    assert seq2.step({0}, {0, 1}, {0, 1}, now=350) == {0, 1}


def _plan(on=(True, False, False), per_chiller=(8.5, 9.0, 9.0)) -> PlantSetpoints:
    return PlantSetpoints(
        chillers_on=on, chiller_plr=(0.7, 0, 0), chiller_chws_setpoints=per_chiller,
        chws_setpoint=9.0, cws_setpoint=29.123, dp_setpoint=400.0, chw_pumps=2,
        cw_pumps_on=(True, False, False), cw_pump_speed_pct=12.0, tower_cells=0,
        tower_fan_pct=0.0, chw_flow_ls=150.0, cw_flow_ls=160.0,
    )  # fmt: skip


def test_commands_pre_cool_until_the_line_up_is_complete():
    spec, limits = hospital_spec(), OptimizerLimits()
    starting = plant_commands(spec, limits, _plan(), enabled={0, 1}, complete=False)
    assert starting[role("chiller_setpoint", 0)] == 9.0 - START_DIP_K
    assert starting[role("chiller_enable", 1)] is True
    assert starting[role("cw_pump_enable", 1)] is True  # its condenser pump with it
    assert starting[role("cw_pump_speed_cmd", 0)] == 30.0  # never below the pumps' minimum
    done = plant_commands(spec, limits, _plan(), enabled={0}, complete=True)
    assert done[role("chiller_setpoint", 0)] == 8.5
    assert done[role("chiller_enable", 1)] is False
    assert done[role("cw_pump_enable", 1)] is False and done[role("cw_pump_speed_cmd", 1)] == 0
    assert done["dp_setpoint"] == 300.0 and done["cws_setpoint"] == 29.12  # clamped, rounded
    assert [done[role("chw_pump_enable", j)] for j in range(3)] == [True, True, False]
    # No cell needed: every cell stays in service and the fan loop may stop the fans.
    assert all(done[role("tower_fan_cmd", k)] > 0 for k in range(3))


# ---- the DP setpoint falls gradually ---------------------------------------------------------


def test_the_dp_setpoint_rises_at_once_and_falls_at_the_rate():
    dp = FallLimiter(rate=0.1)
    assert dp.step(30.0, 60.0, current=100.0) == pytest.approx(94.0)  # from what holds
    assert dp.step(30.0, 60.0, current=None) == pytest.approx(88.0)  # then from itself
    assert dp.step(120.0, 60.0, current=88.0) == 120.0  # more flow: at once
    dp.reset()
    assert dp.step(30.0, 60.0, current=None) == 30.0  # nothing known: the target


def _two_chillers_at(load_kw: float):
    config, base = load_sim_config(REPO / "configs" / "sim" / "hospital.yaml")
    plant = PlantSite(config.model_copy(update={"modbus": (), "bacnet": ()}), base).plant
    plant.load.override_kw = load_kw
    for _ in range(120):
        plant.step(5.0)
    assert [plant.read(f"chiller-{i}.status") for i in (1, 2, 3)] == [2, 2, 0]
    return plant


@pytest.mark.parametrize("limited", [False, True])
def test_a_dp_cut_with_a_pump_stop_trips_chillers_near_minimum_flow_unless_it_falls_slowly(
    limited,
):
    # What the optimizer's first plan did at 2,700 kW on two 1,000 RT chillers (38 % of
    # their design flow each, the trip at 30 %): DP 80 -> 30 kPa and one CHW pump off.
    plant = _two_chillers_at(2700.0)
    dp = FallLimiter(OptimizerLimits().dp_fall_rate)
    plant.write("chw-pump-2.enable", False)
    for _ in range(60):
        target = dp.step(30.0, 60.0, plant.read("plant.dp_setpoint")) if limited else 30.0
        plant.write("plant.dp_setpoint", target)
        plant.step(60.0)
    tripped = [i for i in (1, 2) if plant.read(f"chiller-{i}.fault")]
    assert tripped == ([] if limited else [1, 2])
    if limited:
        assert plant.read("plant.dp") == pytest.approx(30.0, abs=2.0)  # it got there
