"""RTU over a virtual serial pair (socat): several unit ids on one RS-485 bus."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from collections.abc import AsyncIterator

import pytest

from drivers.base import DeviceUnavailable, Link
from drivers.modbus.config import ModbusDevice
from edge_agent.points import Quality
from simulators.modbus_server import ModbusSimServer
from tests.drivers.modbus.conftest import PLANT, VALUES, close_to

pytestmark = [
    pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("serial") is None,
        reason="pyserial is not installed (pymodbus needs it for RTU)",
    ),
]

UNITS = (1, 2, 7)


@pytest.fixture
async def bus(pty_pair, source) -> AsyncIterator[tuple[ModbusSimServer, str]]:
    server_end, client_end = pty_pair
    server = ModbusSimServer(
        dict.fromkeys(UNITS, PLANT), source, transport="rtu", serial_port=server_end
    )
    await server.start()
    yield server, client_end
    await server.stop()


def rtu_device(port: str, unit: int, **extra: object) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {
            "id": f"rtu{unit}",
            "driver": "modbus",
            "link": "rs485-1",
            "timeout": 0.3,
            "connection": {"transport": "rtu", "port": port, "baudrate": 19200, "unit": unit},
            "points": PLANT,
            **extra,
        }
    )


async def test_several_units_on_one_bus(bus, make_driver) -> None:
    _, port = bus
    link = Link("rs485-1", gap_s=0.002)
    drivers = [await make_driver(rtu_device(port, unit), link) for unit in UNITS]
    assert len({id(d._client) for d in drivers}) == 1  # one client for the bus
    assert {d.link_key(d.device) for d in drivers} == {f"serial:{port}"}
    results = await asyncio.gather(*(d.read(d.device.points) for d in drivers))
    for readings in results:
        assert all(r.quality is Quality.GOOD for r in readings), readings
        assert all(close_to(r.value, VALUES[r.point]) for r in readings), readings


async def test_silent_unit_does_not_disturb_the_others(bus, make_driver) -> None:
    server, port = bus
    link = Link("rs485-1")
    one = await make_driver(rtu_device(port, 1, retries=0), link)
    two = await make_driver(rtu_device(port, 2, retries=0), link)
    server.set_faults(1, {"offline": True})
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await one.read(one.device.points)
    assert all(r.quality is Quality.GOOD for r in await two.read(two.device.points))
    unknown = await make_driver(rtu_device(port, 99, retries=0), link)
    with pytest.raises(DeviceUnavailable, match="timeout"):  # a real bus: silence, no exception
        await unknown.read(unknown.device.points)


async def test_writes_on_the_bus(bus, source, make_driver) -> None:
    _, port = bus
    driver = await make_driver(rtu_device(port, 7, fc16_only=True), Link("rs485-1"))
    point = next(p for p in driver.device.points if p.id == "chws_sp")
    assert (await driver.write(point, 11.5)).value == pytest.approx(11.5)
    assert source.values["chws_sp"] == pytest.approx(11.5)


async def test_missing_serial_port(tmp_path, make_driver) -> None:
    driver = await make_driver(rtu_device(str(tmp_path / "nothing"), 1))
    with pytest.raises(DeviceUnavailable, match="serial port unavailable"):
        await driver.read(driver.device.points)


async def test_garbage_on_the_bus_hits_only_that_unit(bus, make_driver) -> None:
    server, port = bus
    link = Link("rs485-1")
    one = await make_driver(rtu_device(port, 1, retries=0), link)
    two = await make_driver(rtu_device(port, 2, retries=0), link)
    server.set_faults(1, {"garbage": True})  # bad CRC: pymodbus drops the frame
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await one.read(one.device.points)
    assert all(r.quality is Quality.GOOD for r in await two.read(two.device.points))


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
async def test_mbpoll_over_rtu_agrees(bus, make_driver) -> None:
    _, port = bus
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "rtu", "-b", "19200", "-P", "none", "-a", "7", "-0", "-1",
        "-t", "4:float", "-r", "100", port,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    (line,) = [x for x in out.decode().splitlines() if x.startswith("[100]")]
    driver = await make_driver(rtu_device(port, 7), Link("rs485-1"))
    (reading,) = await driver.read([driver.device.points[0]])
    assert reading.point == "chws_temp" and reading.value == float(line.split()[-1]) == 6.5
