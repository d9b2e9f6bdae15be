"""The sewage monitor as a data logger meets it: its analyzers and status registers, read
through the real Modbus driver (RTU framed over TCP, as at the hospital) on loopback, and
the instrument states the control file sets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.base import DeviceUnavailable, Link
from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import ModbusDriver
from simulators.analyzers import Status
from simulators.clock import SimClock
from simulators.config import PlantConfig, SewageConfig
from simulators.plant import PlantRoom
from simulators.site import PlantSite, SimConfig
from tests.harness import REPO
from tests.simulators.helpers import START, run

SIM = REPO / "configs" / "sim" / "hospital.yaml"
MAP = REPO / "configs" / "maps" / "sewage-monitor.modbus.yaml"
SERVER, UNIT = "sewage-serial-server", 5
VALUES = ("flow", "ph", "residual_chlorine", "cod", "ss", "nh3n", "tp", "water_temp")
STATUS = {f"{name}_status": address for address, name in enumerate(VALUES, start=100)}


def make_site(sewage: dict[str, Any] | None = None, faults: dict[str, Any] | None = None):
    """The hospital simulator with only the sewage monitor's server, on an ephemeral port;
    `sewage` updates plant.sewage. The physics is stepped by the test."""
    raw = yaml.safe_load(SIM.read_text())
    raw["modbus"] = [dict(m, port=0) for m in raw["modbus"] if m["id"] == SERVER]
    raw["bacnet"] = []
    if sewage is not None:
        raw["plant"]["sewage"] = {**raw["plant"]["sewage"], **sewage}
    if faults is not None:
        raw["faults"] = faults
    return PlantSite(SimConfig.model_validate(raw), SIM.parent)


@pytest.fixture
async def monitor():
    """Starts a site's monitor server and a driver reading it: (site, driver)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(site: PlantSite) -> tuple[PlantSite, ModbusDriver]:
            server = await stack.enter_async_context(site.modbus[SERVER])
            connection = {"transport": "rtu-over-tcp", "host": "127.0.0.1", "port": server.port}
            connection["unit"] = UNIT
            device = ModbusDevice.model_validate(
                {
                    "id": "sewage",
                    "driver": "modbus",
                    "timeout": 0.3,
                    "retries": 0,
                    "connection": connection,
                    "points": yaml.safe_load(MAP.read_text()),
                }
            )
            driver = await stack.enter_async_context(ModbusDriver(device, Link(SERVER)))
            return site, driver

        yield start


async def _read(driver: ModbusDriver) -> dict[str, Any]:
    return {r.point: r.value for r in await driver.read(driver.device.points)}


def _float32(value: float) -> Any:
    return pytest.approx(value, rel=1e-6, abs=1e-6)


async def test_the_new_analyzers_and_status_registers_read_back(monitor) -> None:
    site, driver = await monitor(make_site())
    run(site.plant, 6 * 3600.0, dt=60.0)
    values = await _read(driver)
    for name in (*VALUES, "total_volume"):
        assert values[name] == _float32(site.plant.read(f"sewage.{name}")), name
    assert {name: values[name] for name in STATUS} == dict.fromkeys(STATUS, 0)
    assert all(type(values[name]) is int for name in STATUS)
    assert 5.0 < values["nh3n"] < 15.0 and 0.5 < values["tp"] < 2.0
    assert 22.0 < values["water_temp"] < 26.0


async def test_the_status_registers_sit_at_100_to_107(monitor) -> None:
    """Each status register is its own instrument's: the address order of the map."""
    site, driver = await monitor(make_site())
    site.apply_faults({"sewage": {"cod": "calibration", "tp": "manual"}})
    points = {p.id: p for p in driver.device.points}
    assert {name: points[name].modbus.address for name in STATUS} == STATUS
    values = await _read(driver)
    assert [values[name] for name in STATUS] == [0, 0, 0, 2, 0, 0, 5, 0]


async def test_each_fault_state_shows_its_code_and_its_value(monitor) -> None:
    site, driver = await monitor(make_site())
    plant = site.plant
    run(plant, 3 * 3600.0, dt=60.0)  # 03:00, before the morning rise
    before = await _read(driver)
    site.apply_faults(
        {
            "sewage": {
                "cod": "calibration",
                "nh3n": "maintenance",
                "ph": "fault",
                "flow": "stopped",
                "tp": "manual",
            }
        }
    )
    run(plant, 6 * 3600.0, dt=60.0)  # to 09:00: the process moves on
    values = await _read(driver)
    status = {name: values[f"{name}_status"] for name in VALUES}
    assert status == {
        "flow": Status.STOPPED,
        "ph": Status.FAULT,
        "residual_chlorine": Status.NORMAL,
        "cod": Status.CALIBRATION,
        "ss": Status.NORMAL,
        "nh3n": Status.MAINTENANCE,
        "tp": Status.MANUAL,
        "water_temp": Status.NORMAL,
    }
    sewage = plant.sewage
    assert values["cod"] == 100.0  # the COD standard
    assert values["ph"] == 0.0
    for name, process in (("nh3n", sewage.nh3n), ("flow", sewage.flow_m3h), ("tp", sewage.tp)):
        assert values[name] == before[name] != _float32(process), name  # held, not measured
    for name in ("residual_chlorine", "ss", "water_temp"):
        assert values[name] == _float32(plant.read(f"sewage.{name}")) != before[name], name
    assert values["total_volume"] == before["total_volume"] > 0  # a stopped meter counts nothing


async def test_calibration_and_manual_values_are_configurable(monitor) -> None:
    analyzers = {
        "cod": {"range": [0, 1000], "standard": 400},
        "tp": {"range": [0, 5], "standard": 1, "manual": 0.8},
    }
    site, driver = await monitor(make_site(sewage={"analyzers": analyzers}))
    site.apply_faults({"sewage": {"cod": "calibration", "tp": "manual"}})
    run(site.plant, 3600.0, dt=60.0)
    values = await _read(driver)
    assert (values["cod"], values["cod_status"]) == (400.0, 2)
    assert values["tp"] == _float32(0.8) and values["tp_status"] == 5


async def test_all_sets_every_instrument_and_a_named_one_overrides_it(monitor) -> None:
    site, driver = await monitor(make_site())
    before = await _read(driver)
    site.apply_faults({"sewage": {"all": "maintenance", "ph": "fault"}})
    run(site.plant, 3600.0, dt=60.0)
    values = await _read(driver)
    assert {name: values[f"{name}_status"] for name in VALUES} == dict(
        dict.fromkeys(VALUES, 1), ph=3
    )
    assert {name: values[name] for name in VALUES if name != "ph"} == {
        name: before[name] for name in VALUES if name != "ph"
    }


async def test_a_state_kept_by_the_next_control_file_keeps_its_held_value(monitor) -> None:
    site, driver = await monitor(make_site())
    site.apply_faults({"sewage": {"nh3n": "maintenance"}})
    held = (await _read(driver))["nh3n"]
    run(site.plant, 4 * 3600.0, dt=60.0)
    site.apply_faults({"sewage": {"nh3n": "maintenance", "cod": "fault"}})
    assert (await _read(driver))["nh3n"] == held != _float32(site.plant.sewage.nh3n)


async def test_a_value_above_the_measuring_range_reports_over_range(monitor) -> None:
    # COD around 50 mg/L against a 0-40 mg/L range; the chlorine range is the default.
    site, driver = await monitor(
        make_site(sewage={"analyzers": {"cod": {"range": [0, 40], "standard": 20}}})
    )
    run(site.plant, 10 * 3600.0, dt=60.0)  # 10:00, the daily peak
    values = await _read(driver)
    assert values["cod"] > 40.0 and values["cod_status"] == Status.OVER_RANGE
    assert values["cod"] == _float32(site.plant.sewage.cod)  # the value is still reported
    assert values["ss_status"] == values["residual_chlorine_status"] == 0
    site.plant.write("sewage.chlorine_dose_setpoint", 100.0)  # residual far above 10 mg/L
    run(site.plant, 6 * 3600.0, dt=60.0)
    values = await _read(driver)
    assert values["residual_chlorine"] > 10.0 and values["residual_chlorine_status"] == 6
    site.apply_faults({"sewage": {"cod": "maintenance"}})  # a state set wins over range
    assert (await _read(driver))["cod_status"] == Status.MAINTENANCE


async def test_applying_nothing_clears_every_state(monitor) -> None:
    site, driver = await monitor(make_site())
    site.apply_faults({"sewage": {"all": "fault"}})
    assert (await _read(driver))["cod"] == 0.0
    site.apply_faults({})
    run(site.plant, 600.0, dt=60.0)
    values = await _read(driver)
    assert {name: values[f"{name}_status"] for name in VALUES} == dict.fromkeys(VALUES, 0)
    for name in VALUES:
        assert values[name] == _float32(site.plant.read(f"sewage.{name}")) != 0.0, name
    total = values["total_volume"]
    run(site.plant, 600.0, dt=60.0)
    assert (await _read(driver))["total_volume"] > total  # the totaliser counts again


@pytest.mark.parametrize(
    ("sewage", "message"),
    [
        ({"cod": "maintenance", "bod": "fault"}, "unknown instrument 'bod'"),
        ({"cod": "broken"}, "cod: unknown state 'broken'"),
        ({"cod": "over_range"}, "unknown state"),  # the analyzer's own, never set
        ({"tp": 3}, "tp: unknown state 3"),
        ({"all": None}, "all: unknown state None"),
        ("maintenance", "sewage must be"),
        (["cod"], "sewage must be"),
    ],
)
async def test_a_bad_sewage_entry_is_refused_whole(monitor, sewage, message) -> None:
    site, driver = await monitor(make_site())
    site.apply_faults({"sewage": {"ph": "calibration"}, "load": {"kw": 2000}})
    with pytest.raises(ValueError, match=message):
        site.apply_faults({"sewage": sewage, "load": {"kw": 3000}})
    values = await _read(driver)
    assert values["ph"] == _float32(6.86)  # the pH buffer: still calibrating
    assert (values["ph_status"], values["cod_status"]) == (2, 0)
    site.plant.step(60)
    assert site.plant.read("building.cooling_load_kw") == 2000.0  # the load unchanged too


async def test_the_control_file_sets_and_clears_states_and_refuses_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control = tmp_path / "faults.json"
    site = make_site()
    site.config = site.config.model_copy(update={"control_file": control})
    ready = asyncio.Event()
    task = asyncio.create_task(site.run(ready))
    await ready.wait()
    said: list[str] = []

    async def until(condition: Callable[[], bool]) -> bool:
        for _ in range(40):  # the file is looked at every 0.5 s
            said.append(capsys.readouterr().out)
            if condition():
                return True
            await asyncio.sleep(0.1)
        return False

    try:
        control.write_text(json.dumps({"sewage": {"all": "maintenance"}}))
        assert await until(lambda: site.plant.read("sewage.cod_status") == 1)
        control.write_text(json.dumps({"sewage": {"all": "calibration", "cod": "bogus"}}))
        assert await until(lambda: "unknown state 'bogus'" in "".join(said))
        assert "not applied" in "".join(said)
        assert site.plant.read("sewage.cod_status") == site.plant.read("sewage.ph_status") == 1
        control.write_text("{}")
        assert await until(lambda: site.plant.read("sewage.cod_status") == 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_bad_sewage_state_in_the_config_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown state 'calibrating'"):
        make_site(faults={"sewage": {"cod": "calibrating"}})
    site = make_site(faults={"sewage": {"cod": "calibration"}})
    assert site.plant.read("sewage.cod_status") == 2


@pytest.mark.parametrize(
    "analyzer",
    [{"range": [10, 5], "standard": 7}, {"range": [0, 50], "standard": 60}, {"range": [0, 50]}],
)
def test_an_analyzer_needs_an_ordered_range_and_a_standard_inside_it(analyzer) -> None:
    with pytest.raises(ValueError):
        SewageConfig.model_validate({"analyzers": {"cod": analyzer}})


async def test_the_whole_monitor_goes_offline_with_its_modbus_unit(monitor) -> None:
    site, driver = await monitor(make_site())
    site.apply_faults({"modbus": {SERVER: {str(UNIT): {"offline": True}}}})
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await driver.read(driver.device.points)
    site.apply_faults({})
    assert (await _read(driver))["cod_status"] == 0


def test_nutrients_follow_the_daytime_load_and_the_water_a_slow_day() -> None:
    """Without noise: 0.8 x mean at 03:00, 1.2 x mean at 10:00; water 23 °C at 06:00,
    25 °C at 16:00."""
    quiet = {"nh3n_sigma_mgl": 0, "tp_sigma_mgl": 0, "water_temp_sigma_k": 0}
    config = PlantConfig.model_validate({"sewage": quiet})
    plant = PlantRoom(config, clock=SimClock(start=START))
    seen = {}
    for hour in (3, 6, 10, 16):
        run(plant, hour * 3600.0 - plant.clock.elapsed_s, dt=60.0)
        seen[hour] = {k: plant.read(f"sewage.{k}") for k in ("nh3n", "tp", "water_temp")}
    assert seen[3]["nh3n"] == pytest.approx(8.0) and seen[10]["nh3n"] == pytest.approx(12.0)
    assert seen[3]["tp"] == pytest.approx(0.96) and seen[10]["tp"] == pytest.approx(1.44)
    assert seen[6]["water_temp"] == pytest.approx(23.0)
    assert seen[16]["water_temp"] == pytest.approx(25.0)
