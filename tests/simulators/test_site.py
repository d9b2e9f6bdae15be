"""The simulator as the agent meets it: writes through the real Modbus driver reach the
physics, and the physics is what the driver then reads."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from drivers.base import Link
from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import ModbusDriver
from simulators.site import PlantSite, load_sim_config
from tests.harness import REPO

SIM = REPO / "configs" / "sim" / "hospital.yaml"


@pytest.fixture
async def site():
    config, base = load_sim_config(SIM)
    # Only the TCP servers, on ephemeral ports; the physics is stepped by the test.
    tcp = tuple(m.model_copy(update={"port": 0}) for m in config.modbus if m.transport == "tcp")
    plant_site = PlantSite(config.model_copy(update={"modbus": tcp, "bacnet": ()}), base)
    ready = asyncio.Event()
    task = asyncio.create_task(plant_site.run(ready))
    await ready.wait()
    yield plant_site
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _device(site: PlantSite, device_id: str, server: str, unit: int, map_name: str) -> ModbusDevice:
    points = yaml.safe_load((REPO / "configs" / "maps" / map_name).read_text())
    connection = {
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": site.modbus[server].port,
        "unit": unit,
    }
    return ModbusDevice.model_validate(
        {"id": device_id, "driver": "modbus", "connection": connection, "points": points}
    )


async def _read(driver: ModbusDriver) -> dict:
    return {r.point: r.value for r in await driver.read(driver.device.points)}


async def test_disabling_a_chiller_through_the_driver_stops_it(site):
    device = _device(site, "chiller-2", "chillers", 2, "chiller-vendor-a.modbus.yaml")
    points = {p.id: p for p in device.points}
    async with ModbusDriver(device, Link("chillers")) as driver:
        assert (await _read(driver))["run_status"] is True
        readback = await driver.write(points["enable"], False)
        assert readback.value is False
        site.plant.step(600)
        values = await _read(driver)
    assert values["run_status"] is False and values["power_kw"] == 0
    assert site.plant.read("chiller-2.enable") is False


async def test_a_lower_supply_setpoint_costs_chiller_power(site):
    device = _device(site, "plant", "plant-plc", 1, "plant-controller.modbus.yaml")
    points = {p.id: p for p in device.points}
    async with ModbusDriver(device, Link("plc")) as driver:
        site.plant.step(1800)
        before = await _read(driver)
        await driver.write(points["chws_setpoint"], 5.5)
        site.plant.step(1800)
        after = await _read(driver)
    assert after["chws_temp"] == pytest.approx(5.5, abs=0.3)
    assert after["chiller_power_kw"] > before["chiller_power_kw"]


async def test_the_dp_setpoint_written_over_modbus_is_held_by_the_pumps(site):
    device = _device(site, "plant", "plant-plc", 1, "plant-controller.modbus.yaml")
    points = {p.id: p for p in device.points}
    async with ModbusDriver(device, Link("plc")) as driver:
        assert (await _read(driver))["dp_control"] is True
        await driver.write(points["dp_setpoint"], 60.0)
        site.plant.step(600)
        low = await _read(driver)
        await driver.write(points["dp_setpoint"], 120.0)
        site.plant.step(600)
        high = await _read(driver)
    assert low["dp"] == pytest.approx(60, abs=3) and high["dp"] == pytest.approx(120, abs=3)
    assert high["pump_power_kw"] > low["pump_power_kw"]


async def test_the_control_file_load_fixes_the_building_load_until_it_is_removed(site):
    modelled = site.plant.read("building.cooling_load_kw")
    site.apply_faults({"load": {"kw": 3600}})
    site.plant.step(60)
    assert site.plant.read("building.cooling_load_kw") == 3600.0
    site.apply_faults({})
    site.plant.step(60)
    assert site.plant.read("building.cooling_load_kw") == pytest.approx(modelled, rel=0.2)
    assert site.plant.read("building.cooling_load_kw") != 3600.0


@pytest.mark.parametrize("load", [{"kw": -5}, {"kw": "high"}, {"kw": True}, {"mw": 3}, 3600])
async def test_a_bad_load_in_the_control_file_is_refused_and_changes_nothing(site, load):
    site.apply_faults({"load": {"kw": 2000}})
    with pytest.raises(ValueError, match="load"):
        site.apply_faults({"load": load, "bacnet": {}})
    site.plant.step(60)
    assert site.plant.read("building.cooling_load_kw") == 2000.0
