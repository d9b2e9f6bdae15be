from __future__ import annotations

import asyncio

import pytest

from simulators.config import PlantConfig, WeatherConfig
from simulators.plant import PlantRoom
from tests.simulators.helpers import make_plant, run

QUIET = WeatherConfig(noise_k=0.0)


def test_energy_balance_closes_when_capacity_suffices() -> None:
    plant = make_plant(seed=3, hour=2.0)  # night: two chillers carry the load easily
    chillers_before = plant.read("plant.cooling_energy_kwh")
    building_before = plant.read("building.cooling_energy_kwh")
    unmet = 0.0
    for _ in range(360):
        plant.step(10.0)
        unmet = max(unmet, plant.read("building.unmet_kw"))
    chillers = plant.read("plant.cooling_energy_kwh") - chillers_before
    building = plant.read("building.cooling_energy_kwh") - building_before
    assert unmet == 0.0
    assert building > 3000.0  # an hour of a hospital's night load
    assert chillers == pytest.approx(building, rel=0.02)
    assert plant.read("plant.chws_temp") == pytest.approx(6.67, abs=0.1)


def _chiller_power_after_an_hour(plant: PlantRoom) -> float:
    run(plant, 3600.0)
    return float(plant.read("plant.chiller_power_kw"))


def test_chiller_power_rises_with_lower_supply_setpoint() -> None:
    powers = []
    for setpoint in (8.0, 6.67, 5.5):
        plant = make_plant(constant_kw=4000.0, weather=QUIET)
        plant.write("plant.chws_setpoint", setpoint)
        powers.append(_chiller_power_after_an_hour(plant))
        assert plant.read("plant.cooling_kw") == pytest.approx(4000.0, rel=0.01)
    assert powers[0] < powers[1] < powers[2]


def test_chiller_power_rises_with_wet_bulb() -> None:
    powers, condenser = [], []
    for wet_bulb in (24.0, 26.0, 28.0):
        weather = WeatherConfig(
            dry_bulb_min=31.0, dry_bulb_max=31.0, wet_bulb_min=wet_bulb, wet_bulb_max=wet_bulb,
            noise_k=0.0,
        )  # fmt: skip
        plant = make_plant(constant_kw=4000.0, weather=weather)
        powers.append(_chiller_power_after_an_hour(plant))
        condenser.append(plant.read("plant.cws_temp"))
        assert plant.read("weather.wet_bulb") == pytest.approx(wet_bulb)
    assert powers[0] < powers[1] < powers[2]
    assert condenser[0] < condenser[1] < condenser[2]


def test_supply_temperature_rises_gradually_when_a_chiller_drops_out() -> None:
    plant = make_plant(constant_kw=6000.0, weather=QUIET)
    for pump in ("chw-pump-1", "chw-pump-2"):
        plant.write(f"{pump}.speed_cmd", 100.0)
    run(plant, 1800.0)
    before = plant.read("plant.chws_temp")
    assert before == pytest.approx(6.67, abs=0.1)

    plant.write("chiller-2.enable", False)
    plant.step(10.0)
    soon = plant.read("plant.chws_temp")
    run(plant, 1800.0)
    later = plant.read("plant.chws_temp")
    assert plant.read("chiller-2.run_status") is False
    assert plant.read("chiller-1.plr") > 95.0  # the remaining chiller is flat out
    assert before < soon < before + 0.5  # a lag, not a jump
    assert later > before + 2.0


def test_starting_a_chiller_takes_its_start_delay() -> None:
    plant = make_plant(constant_kw=3000.0)
    plant.write("chiller-3.enable", True)
    assert plant.read("chiller-3.status") == 1
    run(plant, 60.0)
    assert plant.read("chiller-3.run_status") is False
    run(plant, 120.0)
    assert plant.read("chiller-3.run_status") is True
    assert plant.read("plant.chillers_running") == 3


def test_chiller_trips_without_condenser_flow_and_resets_when_disabled() -> None:
    plant = make_plant(constant_kw=3000.0)
    for pump in ("cw-pump-1", "cw-pump-2"):
        plant.write(f"{pump}.enable", False)
    run(plant, 120.0)
    assert plant.read("chiller-1.fault") is True
    assert plant.read("chiller-1.alarm_code") == 2
    assert plant.read("chiller-1.power_kw") == 0.0
    plant.write("chiller-1.enable", False)
    assert plant.read("chiller-1.fault") is False


def test_hospital_load_never_stops_and_peaks_in_the_day() -> None:
    for weather in (PlantConfig().weather, WeatherConfig(
        dry_bulb_min=18.0, dry_bulb_max=24.0, wet_bulb_min=14.0, wet_bulb_max=17.0
    )):  # fmt: skip
        plant = make_plant(seed=5, weather=weather)
        loads = []
        for _ in range(24 * 12):
            plant.step(300.0)
            loads.append((plant.clock.hour_of_day, plant.read("building.cooling_load_kw")))
        peak_hour, peak = max(loads, key=lambda item: item[1])
        low = min(load for _, load in loads)
        night = [load for hour, load in loads if 1.0 <= hour <= 5.0]
        assert 8.0 <= peak_hour <= 18.0
        assert low > 0.3 * 7000.0
        assert max(night) < 0.8 * peak


def test_unknown_tag() -> None:
    plant = make_plant()
    with pytest.raises(KeyError):
        plant.read("chiller-9.chws_temp")
    with pytest.raises(KeyError):
        plant.write("chiller-9.enable", True)
    with pytest.raises(KeyError):
        plant.inject("chiller-9.chws_temp", None)


def test_read_only_tag() -> None:
    plant = make_plant()
    before = plant.snapshot()
    with pytest.raises(PermissionError):
        plant.write("plant.chws_temp", 7.0)
    assert plant.snapshot() == before


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("plant.chws_setpoint", 3.0),
        ("plant.chws_setpoint", 16.0),
        ("chw-pump-1.speed_cmd", 101.0),
        ("tower-1.fan_speed_cmd", -1.0),
        ("plant.dp_setpoint", float("nan")),
        ("plant.cws_setpoint", "30"),
        ("chiller-1.enable", 2),
        ("chiller-1.enable", "on"),
    ],
)
def test_invalid_write_changes_nothing(tag: str, value: object) -> None:
    plant = make_plant()
    before = plant.snapshot()
    with pytest.raises(ValueError):
        plant.write(tag, value)  # type: ignore[arg-type]
    assert plant.snapshot() == before


def test_writes_take_effect() -> None:
    plant = make_plant()
    plant.write("plant.chws_setpoint", 8.0)
    assert plant.read("chiller-1.chws_setpoint") == 8.0
    plant.write("chiller-2.chws_setpoint", 7.0)
    assert plant.read("chiller-2.chws_setpoint") == 7.0
    plant.write("chw-pump-3.enable", 1)
    assert plant.read("chw-pump-3.enable") is True
    plant.write("tower-2.fan_speed_cmd", 0)
    run(plant, 60.0)
    assert plant.read("tower-2.fan_run") is False
    assert plant.read("chw-pump-3.run_status") is True


def test_tag_table_is_consistent() -> None:
    plant = make_plant()
    snapshot = plant.snapshot()
    assert snapshot.keys() == plant.tags.keys()
    for tag, info in plant.tags.items():
        assert info.kind in ("analog", "binary", "multistate"), tag
        value = snapshot[tag]
        expected = {"analog": float, "binary": bool, "multistate": int}[info.kind]
        assert type(value) is expected, tag
        if info.writable and info.kind == "analog":
            assert info.min is not None and info.max is not None, tag
    for required in (
        "chiller-1.chws_temp", "chiller-1.enable", "chw-pump-1.speed_cmd",
        "tower-1.fan_speed_cmd", "plant.chws_setpoint", "plant.dp_setpoint",
        "plant.cws_setpoint", "weather.wet_bulb", "meter-main.active_power_kw",
        "meter-main.energy_kwh", "transformer-1.winding_temp", "sewage.ph",
    ):  # fmt: skip
        assert required in plant.tags


def test_same_seed_same_values() -> None:
    a, b, c = make_plant(seed=11), make_plant(seed=11), make_plant(seed=12)
    for plant in (a, b, c):
        for dt in (1.0, 7.5, 60.0, 600.0, 3.0):
            plant.step(dt)
    assert a.snapshot() == b.snapshot()
    assert a.snapshot() != c.snapshot()


def test_counters_are_monotonic_and_values_in_range() -> None:
    plant = make_plant(seed=2)
    counters = [t for t in plant.tags if t.endswith(("_kwh", "_kvarh", "total_volume"))]
    last = {t: plant.read(t) for t in counters}
    for _ in range(48):
        plant.step(1800.0)
        for tag in counters:
            assert plant.read(tag) >= last[tag], tag
            last[tag] = plant.read(tag)
        assert 0.88 <= plant.read("meter-main.power_factor") <= 0.96
        assert 0.0 < plant.read("transformer-1.loading_pct") < 100.0
        assert 6.5 <= plant.read("sewage.ph") <= 8.5
        assert 2.0 <= plant.read("sewage.residual_chlorine") <= 8.0
        assert 10.0 <= plant.read("sewage.cod") <= 100.0
        assert plant.read("transformer-1.winding_temp") < 130.0


async def test_run_steps_in_real_time() -> None:
    plant = make_plant()
    plant.clock.speed = 100.0
    task = asyncio.create_task(plant.run(tick_s=0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 2.0 <= plant.clock.elapsed_s <= 20.0


def test_differential_pressure_follows_pump_speed_and_valves() -> None:
    results = {}
    for speed in (70.0, 100.0):
        plant = make_plant(constant_kw=4000.0, weather=QUIET)
        for pump in ("chw-pump-1", "chw-pump-2"):
            plant.write(f"{pump}.speed_cmd", speed)
        run(plant, 1800.0)
        results[speed] = (
            plant.read("plant.dp"),
            plant.read("plant.chw_flow"),
            plant.read("building.valve_pct"),
            plant.read("plant.pump_power_kw"),
        )
    (dp_slow, flow_slow, valve_slow, kw_slow), (dp_fast, flow_fast, valve_fast, kw_fast) = (
        results[70.0],
        results[100.0],
    )
    # Valves throttle to the flow the load needs: same flow, more pressure, more power.
    assert flow_fast == pytest.approx(flow_slow, rel=0.02)
    assert dp_fast > dp_slow and valve_fast < valve_slow and kw_fast > kw_slow
