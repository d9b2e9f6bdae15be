"""The DL/T 645 driver over a real serial line (a socat pty pair) against the simulator's
meters: several meters on one bus, failures as quality, a silent meter, the broadcast."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from drivers.base import DeviceUnavailable, DriverError, Link
from drivers.dlt645 import codec
from drivers.dlt645.config import Dlt645Device
from edge_agent.points import Quality
from simulators.dlt645_server import Dlt645SimServer
from tests.drivers.dlt645.conftest import ADDRESSES, POINTS, device, sim_meter, values

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")


def by_id(readings) -> dict:
    return {r.point: r for r in readings}


async def test_several_meters_on_one_bus_share_the_lock(bus, make_driver) -> None:
    server, port = bus
    link = Link("rs485-2", gap_s=0.002)
    drivers = [await make_driver(device(port, a), link) for a in ADDRESSES]
    assert len({id(d._line) for d in drivers}) == 1  # one serial line for the bus
    results = await asyncio.gather(*(d.read(d.device.points) for d in drivers))
    for address, readings in zip(ADDRESSES, results, strict=True):
        assert all(r.quality is Quality.GOOD for r in readings), readings
        assert {r.point: r.value for r in readings} == values(address)
        assert len({r.ts for r in readings}) == 1
    # One request per DI and meter; had two been on the line at once, the answers would
    # have collided (a pty passes both) and some reading would be bad.
    assert server.requests == len(ADDRESSES) * len(POINTS)
    assert sum(d.requests for d in drivers) == server.requests


async def test_exchange_is_held_for_the_whole_request(bus, make_driver) -> None:
    """While one meter's request waits for its (slow) answer, nobody else sends; the lock
    is taken per request (as the Modbus driver's), so polls of two meters alternate."""
    server, port = bus
    link = Link("rs485-2")
    slow = await make_driver(device(port, ADDRESSES[0]), link)
    fast = await make_driver(device(port, ADDRESSES[1]), link)
    server.set_faults(ADDRESSES[0], {"delay_s": 0.15})
    loop = asyncio.get_running_loop()
    start = loop.time()
    first = asyncio.create_task(slow.read(slow.device.points[:2]))
    await asyncio.sleep(0.01)
    second = await fast.read(fast.device.points[:1])
    assert second[0].quality is Quality.GOOD
    assert loop.time() - start >= 0.14  # it waited for the slow meter's first answer
    assert not first.done()  # and went before the slow meter's second request
    assert all(r.quality is Quality.GOOD for r in await first)


async def test_error_answer_and_unknown_di_are_bad_quality(bus, make_driver, source) -> None:
    server, port = bus
    points = [*POINTS, {"id": "other", "dlt645": {"di": "04-00-04-01", "format": "XXXXXXXXXXXX"}}]
    driver = await make_driver(device(port, ADDRESSES[0], points=points))
    server.set_faults(ADDRESSES[0], {"errors": {"02-01-01-00": 0x04}})
    readings = by_id(await driver.read(driver.device.points))
    assert readings["voltage_a"].reason == "error answer: password error or unauthorised"
    assert readings["other"].reason == "error answer: no data requested"  # not in its map
    assert readings["energy_kwh"].quality is Quality.GOOD
    source.values[f"{ADDRESSES[0]}.power_kw"] = 80.0  # beyond XX.XXXX: the meter says error
    readings = by_id(await driver.read(driver.device.points))
    assert readings["power_kw"].reason == "error answer: other error"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [({"bad_checksum": True}, "checksum error"), ({"garbage": True}, "garbled answer")],
)
async def test_broken_answers_are_bad_quality(bus, make_driver, fault, reason) -> None:
    server, port = bus
    driver = await make_driver(device(port, ADDRESSES[0], retries=0))
    server.set_faults(ADDRESSES[0], fault)
    # The first request's answer is broken but it came: the device is there.
    readings = await driver.read(driver.device.points)
    assert [r.reason for r in readings] == [reason] * len(POINTS)
    server.clear_faults()
    assert all(r.quality is Quality.GOOD for r in await driver.read(driver.device.points))


async def test_answer_for_another_address_is_ignored(pty_pair, source, make_driver) -> None:
    """A meter configured with a wrong address: the one that answers is not taken for it."""
    server_end, port = pty_pair
    # The simulator answers for 000000000201 whatever is asked: a meter with a wrong
    # address is what an answer from another meter looks like to the driver.
    server = Dlt645SimServer([sim_meter(ADDRESSES[0])], source, server_end)
    async with server:
        driver = await make_driver(device(port, "000000000999", retries=0))
        with pytest.raises(DeviceUnavailable, match="timeout"):
            await driver.read(driver.device.points)


async def test_silent_meter_is_unavailable_and_recovers(bus, make_driver) -> None:
    server, port = bus
    link = Link("rs485-2")
    silent = await make_driver(device(port, ADDRESSES[0], retries=1), link)
    other = await make_driver(device(port, ADDRESSES[1]), link)
    server.set_faults(ADDRESSES[0], {"offline": True})
    before = server.requests
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await silent.read(silent.device.points)
    assert server.requests - before == 2  # the first DI and its one retry; no more
    assert all(r.quality is Quality.GOOD for r in await other.read(other.device.points))
    server.clear_faults()
    readings = await silent.read(silent.device.points)
    assert {r.point: r.value for r in readings} == values(ADDRESSES[0])


async def test_meter_gone_in_the_middle_of_a_poll(bus, make_driver) -> None:
    """Silent after its first answer: the remaining points time out, the poll is kept."""
    server, port = bus
    driver = await make_driver(device(port, ADDRESSES[0], retries=0))
    points = driver.device.points
    server.set_faults(ADDRESSES[0], {"delay_s": 0.05})  # time to pull the plug
    task = asyncio.create_task(driver.read(points))
    while server.requests < 1:
        await asyncio.sleep(0.005)
    server.set_faults(ADDRESSES[0], {"offline": True})
    readings = await task
    assert readings[0].quality is Quality.GOOD
    assert {r.reason for r in readings[1:]} == {"timeout"}


async def test_missing_port_is_unavailable(tmp_path, make_driver) -> None:
    driver = await make_driver(device(str(tmp_path / "nothing"), ADDRESSES[0]))
    with pytest.raises(DeviceUnavailable, match="serial port unavailable"):
        await driver.read(driver.device.points)


async def test_broadcast_learns_the_address_of_a_meter_alone(pty_pair, source, make_driver) -> None:
    server_end, port = pty_pair
    async with Dlt645SimServer([sim_meter(ADDRESSES[2])], source, server_end):
        driver = await make_driver(device(port, "AAAAAAAAAAAA"))
        readings = await driver.read(driver.device.points)
        assert {r.point: r.value for r in readings} == values(ADDRESSES[2])
        assert driver.address == codec.address_bytes(ADDRESSES[2])


async def test_broadcast_is_refused_beside_other_meters(bus, make_driver) -> None:
    _, port = bus
    link = Link("rs485-2")
    await make_driver(device(port, ADDRESSES[0]), link)
    with pytest.raises(DriverError, match="broadcast"):
        await make_driver(device(port, "AAAAAAAAAAAA"), link)


async def test_several_meters_do_not_answer_the_broadcast(bus, make_driver) -> None:
    """A bus the driver believes to hold one meter holds three: they stay silent (in the
    field they would all answer at once), so the meter is unavailable, never misread."""
    _, port = bus
    driver = await make_driver(device(port, "AAAAAAAAAAAA", retries=0))
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await driver.read(driver.device.points)
    assert driver.address is None


async def test_settings_and_links_must_agree(bus, make_driver) -> None:
    _, port = bus
    await make_driver(device(port, ADDRESSES[0]), Link("a"))
    with pytest.raises(DriverError, match="same link"):
        await make_driver(device(port, ADDRESSES[1]), Link("b"))
    other_baud = Dlt645Device.model_validate(
        {
            **device(port, ADDRESSES[1]).model_dump(mode="json"),
            "connection": {"port": port, "address": ADDRESSES[1], "baudrate": 9600},
        }
    )
    with pytest.raises(DriverError, match="other settings"):
        await make_driver(other_baud, Link("a"))


async def test_write_is_refused(bus, make_driver) -> None:
    _, port = bus
    driver = await make_driver(device(port, ADDRESSES[0]))
    with pytest.raises(DriverError, match="read-only"):
        await driver.write(driver.device.points[0], 1.0)
