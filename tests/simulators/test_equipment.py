from __future__ import annotations

import pytest

from simulators.config import ChillerConfig, PumpConfig, TowerConfig
from simulators.equipment import (
    Pump,
    SystemCurve,
    TowerCell,
    chiller_power_kw,
    counterflow_effectiveness,
    counterflow_ntu,
    solve_parallel_pumps,
)

CHILLER = ChillerConfig(id="c", capacity_rt=1000)


def test_curves_are_normalised_at_the_rating_point() -> None:
    assert CHILLER.capft(6.67, 29.44) == pytest.approx(1.0, abs=0.005)
    assert CHILLER.eirft(6.67, 29.44) == pytest.approx(1.0, abs=0.005)
    assert CHILLER.eirfplr(1.0) == pytest.approx(1.0, abs=0.005)


def test_design_efficiency_is_typical_of_a_centrifugal() -> None:
    power = chiller_power_kw(CHILLER, CHILLER.capacity_kw, 6.67, 29.44)
    assert 0.55 <= power / CHILLER.capacity_rt <= 0.75


@pytest.mark.parametrize("plr", [0.3, 0.6, 0.9])
def test_power_rises_as_chilled_water_setpoint_falls(plr: float) -> None:
    load = plr * CHILLER.capacity_kw
    powers = [chiller_power_kw(CHILLER, load, chws, 30.0) for chws in (9.0, 7.0, 5.0)]
    assert powers[0] < powers[1] < powers[2]


@pytest.mark.parametrize("plr", [0.3, 0.6, 0.9])
def test_power_rises_with_condenser_temperature(plr: float) -> None:
    load = plr * CHILLER.capacity_kw
    powers = [chiller_power_kw(CHILLER, load, 6.67, ecwt) for ecwt in (24.0, 29.0, 34.0)]
    assert powers[0] < powers[1] < powers[2]


def test_part_load_efficiency_and_false_loading() -> None:
    full = chiller_power_kw(CHILLER, CHILLER.capacity_kw, 6.67, 29.44)
    half = chiller_power_kw(CHILLER, 0.5 * CHILLER.capacity_kw, 6.67, 29.44)
    assert half < full
    # Below the minimum PLR, power no longer falls (hot-gas bypass).
    at_min = chiller_power_kw(CHILLER, CHILLER.min_plr * CHILLER.capacity_kw, 6.67, 29.44)
    assert chiller_power_kw(CHILLER, 0.0, 6.67, 29.44) == pytest.approx(at_min)


def _pump_at(speed: float, system: SystemCurve) -> Pump:
    pump = Pump(PumpConfig(id="p", design_flow_ls=170, design_head_kpa=300, enabled=True))
    pump.speed = speed
    solve_parallel_pumps([pump], system)
    return pump


def test_pump_follows_the_affinity_laws_on_a_closed_loop() -> None:
    closed_loop = SystemCurve(static_kpa=0.0, k=300.0 / 170.0**2)
    full, slow = _pump_at(100.0, closed_loop), _pump_at(70.0, closed_loop)
    assert full.flow == pytest.approx(170.0, rel=0.01)
    assert slow.flow / full.flow == pytest.approx(0.7, rel=0.01)
    assert slow.head / full.head == pytest.approx(0.7**2, rel=0.01)
    assert slow.power_kw / full.power_kw == pytest.approx(0.7**3, rel=0.02)
    # ρ g Q H / η at design: 0.17 m³/s x 300 kPa / 0.80 / 0.93
    assert full.power_kw == pytest.approx(0.17 * 300 / 0.8 / 0.93, rel=0.02)


def test_parallel_pumps_share_one_head() -> None:
    curve = SystemCurve(static_kpa=0.0, k=300.0 / 340.0**2)
    pumps = [Pump(PumpConfig(id=f"p{n}", design_flow_ls=170, design_head_kpa=300)) for n in (1, 2)]
    pumps[0].speed, pumps[1].speed = 100.0, 100.0
    total = solve_parallel_pumps(pumps, curve)
    assert total == pytest.approx(340.0, rel=0.01)
    assert pumps[0].flow == pytest.approx(pumps[1].flow)
    # A stopped pump adds nothing; a slow one is held shut by its check valve.
    pumps[1].speed = 0.0
    assert solve_parallel_pumps(pumps, curve) < total
    assert pumps[1].flow == 0.0 and pumps[1].power_kw == 0.0


def test_no_flow_when_pumps_cannot_lift_the_static_head() -> None:
    pump = _pump_at(30.0, SystemCurve(static_kpa=200.0, k=0.001))
    assert pump.flow == 0.0 and pump.power_kw == 0.0


def test_effectiveness_ntu_round_trip() -> None:
    for ratio in (0.3, 0.85, 1.0):
        assert counterflow_effectiveness(counterflow_ntu(0.6, ratio), ratio) == pytest.approx(0.6)


TOWER = TowerConfig(id="t")


def _tower(fan_pct: float) -> TowerCell:
    cell = TowerCell(TOWER)
    cell.fan_speed = fan_pct
    return cell


def test_tower_meets_its_design_approach() -> None:
    t_in = TOWER.design_wet_bulb + TOWER.design_approach + TOWER.design_range
    leaving = _tower(100.0).cool(TOWER.design_water_flow_ls, t_in, TOWER.design_wet_bulb)
    assert leaving == pytest.approx(TOWER.design_wet_bulb + TOWER.design_approach, abs=0.01)


def test_tower_cools_better_with_more_air_and_drier_air() -> None:
    flow, t_in = TOWER.design_water_flow_ls, 36.0
    by_speed = [_tower(pct).cool(flow, t_in, 27.0) for pct in (40.0, 70.0, 100.0)]
    assert by_speed[0] > by_speed[1] > by_speed[2] > 27.0
    by_wet_bulb = [_tower(70.0).cool(flow, t_in, wb) for wb in (24.0, 26.0, 28.0)]
    assert by_wet_bulb[0] < by_wet_bulb[1] < by_wet_bulb[2]


def test_tower_fan_power_is_cubic_in_speed() -> None:
    full = _tower(100.0).fan_power_kw
    assert full == pytest.approx(TOWER.fan_kw)
    for pct in (30.0, 50.0, 80.0):
        assert _tower(pct).fan_power_kw == pytest.approx(full * (pct / 100.0) ** 3)
