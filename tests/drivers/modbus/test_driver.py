"""The driver against the simulator over real TCP sockets: reads, writes, faults, shutdown."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from drivers.base import DeviceUnavailable, DriverError, Link
from drivers.modbus.driver import ModbusDriver
from edge_agent.points import Quality, Reading
from simulators.modbus_server import ModbusSimServer
from tests.drivers.modbus.conftest import PLANT, VALUES, close_to, device, pt


def by_id(readings: list[Reading]) -> dict[str, Reading]:
    return {r.point: r for r in readings}


async def test_reads_every_type_order_and_table(server, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    readings = await driver.read(dev.points)
    assert [r.point for r in readings] == [p.id for p in dev.points]
    assert all(r.quality is Quality.GOOD for r in readings), readings
    for r in readings:
        assert close_to(r.value, VALUES[r.point]), (r, VALUES[r.point])
    assert len({r.ts for r in readings}) == 1  # one source timestamp per read
    assert isinstance(by_id(readings)["mode"].value, int)
    assert by_id(readings)["running"].value is True
    assert driver.requests == driver.plan_for(dev.points).plan.requests < len(dev.points) / 2


async def test_values_are_fresh_on_every_read(server, source, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    source.values["flow"] = 99.5
    source.values["door"] = False
    readings = by_id(await driver.read(dev.points))
    assert readings["flow"].value == 99.5 and readings["door"].value is False


@pytest.mark.parametrize(
    ("pid", "value"),
    [
        ("chws_sp", 9.5),
        ("delta", -39999),
        ("precise", -0.000123456789),
        ("u16", 65535),
        ("running", False),
        ("alarm_bit3", False),
        ("model", "NEW-1"),
    ],
)
async def test_writes_return_the_read_back(server, source, make_driver, pid, value) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    point = next(p for p in dev.points if p.id == pid)
    reading = await driver.write(point, value)
    assert reading.point == pid and reading.quality is Quality.GOOD
    assert close_to(reading.value, value)
    assert close_to(source.values[pid], value)


async def test_bit_write_keeps_the_other_bits(server, source, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    point = next(p for p in dev.points if p.id == "alarm_bit3")
    await driver.write(point, False)
    assert source.values["alarm_bit15"] is True  # bit 15 of the same register survived
    await driver.write(point, True)
    assert source.values["alarm_bit3"] is True and source.values["alarm_bit15"] is True


async def test_scaled_write_sends_the_raw_value(server, make_driver) -> None:
    dev = device(server.port)
    sent: list[bytes] = []
    driver = await make_driver(dev)
    driver._client.ctx.trace_packet = lambda sending, data: (
        (sent.append(data) if sending else None) or data
    )
    point = next(p for p in dev.points if p.id == "chws_sp")
    await driver.write(point, 9.5)
    assert sent[0][7] == 6  # FC6 for a single register
    assert int.from_bytes(sent[0][10:12], "big") == 95  # 9.5 / 0.1


async def test_fc16_only_device_gets_fc16(server, make_driver) -> None:
    server.set_faults(1, {"reject_functions": [6]})
    point = next(p for p in device(1).points if p.id == "chws_sp")
    with pytest.raises(DriverError, match="exception 1"):
        await (await make_driver(device(server.port))).write(point, 8)
    driver = await make_driver(device(server.port, unit=1, fc16_only=True))
    assert (await driver.write(point, 8)).value == 8


async def test_write_checks_before_sending(server, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    points = {p.id: p for p in dev.points}
    with pytest.raises(DriverError, match="outside chws_sp's limits"):
        await driver.write(points["chws_sp"], 20)
    with pytest.raises(DriverError, match="not writable"):
        await driver.write(points["flow"], 1.0)
    with pytest.raises(DriverError, match="takes a finite number"):
        await driver.write(points["chws_sp"], "7")
    with pytest.raises(DriverError, match="takes a finite number"):
        await driver.write(points["precise"], float("nan"))
    with pytest.raises(DriverError, match="takes true or false"):
        await driver.write(points["running"], "false")
    with pytest.raises(DriverError, match="takes true or false"):
        await driver.write(points["alarm_bit3"], 2)
    with pytest.raises(DriverError, match="longer than 8 registers"):
        await driver.write(points["model"], "x" * 17)
    assert driver.requests == 0


async def test_device_refusing_a_write_reports_the_exception(server, source, make_driver) -> None:
    source.read_only.add("u16")
    driver = await make_driver(device(server.port))
    point = next(p for p in driver.device.points if p.id == "u16")
    with pytest.raises(DriverError, match="exception 1"):
        await driver.write(point, 5)


async def test_illegal_address_in_a_block_marks_exactly_that_point(server, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    server.set_faults(1, {"exceptions": {"114": 2}})  # flow_bs, in the middle of 100..121
    readings = by_id(await driver.read(dev.points))
    bad = {r.point: r.reason for r in readings.values() if r.quality is Quality.BAD}
    assert bad == {"flow_bs": "exception 2"}
    requests = driver.requests
    split = driver.plan_for(dev.points).plan.requests
    await driver.read(dev.points)  # the split is remembered: no more discovery
    assert driver.requests - requests == split


async def test_other_exception_codes_mark_the_block(server, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    server.set_faults(1, {"exceptions": {"300": 4}})
    bad = {r.point: r.reason for r in await driver.read(dev.points) if r.quality is Quality.BAD}
    assert bad == {
        "energy_kwh": "exception 4",
        "big_counter": "exception 4",
        "precise": "exception 4",
        "u16": "exception 4",
    }


async def test_offline_device_is_unavailable_and_others_are_not(server, make_driver) -> None:
    one, two = (
        await make_driver(device(server.port, unit=1)),
        await make_driver(device(server.port, unit=2)),
    )
    server.set_faults(1, {"offline": True})
    started = time.monotonic()
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await one.read(one.device.points)
    # One request and one retry, not a timeout per block.
    assert time.monotonic() - started < 2 * one.device.timeout + 0.3
    readings = await two.read(two.device.points)
    assert all(r.quality is Quality.GOOD for r in readings)
    server.clear_faults()
    assert all(r.quality is Quality.GOOD for r in await one.read(one.device.points))


async def test_slow_device_times_out(server, make_driver) -> None:
    driver = await make_driver(device(server.port, timeout=0.2, retries=0))
    server.set_faults(1, {"delay_s": 0.5})
    with pytest.raises(DeviceUnavailable, match="timeout"):
        await driver.read(driver.device.points)
    server.set_faults(1, {"delay_s": 0.05})
    assert all(r.quality is Quality.GOOD for r in await driver.read(driver.device.points))


async def test_garbage_frames_hit_only_that_device(server, make_driver) -> None:
    one = await make_driver(device(server.port, unit=1, retries=0))
    two = await make_driver(device(server.port + 0, unit=2, retries=0))
    server.set_faults(1, {"garbage": True})
    try:
        readings = await one.read(one.device.points)
        assert all(r.quality is Quality.BAD for r in readings)
        assert {r.reason for r in readings} <= {"decode error", "timeout"}
    except DeviceUnavailable as exc:
        assert exc.reason == "timeout"
    server.clear_faults()
    await asyncio.sleep(0.3)  # late garbage drains
    assert all(r.quality is Quality.GOOD for r in await two.read(two.device.points))
    assert all(r.quality is Quality.GOOD for r in await one.read(one.device.points))


async def test_connection_refused(make_driver) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens on it once closed
    driver = await make_driver(device(port))
    with pytest.raises(DeviceUnavailable, match="connection refused"):
        await driver.read(driver.device.points)


async def test_device_comes_back_after_a_server_restart(source, make_driver) -> None:
    server = ModbusSimServer({1: PLANT}, source)
    await server.start()
    driver = await make_driver(device(server.port))
    assert (await driver.read(driver.device.points))[0].quality is Quality.GOOD
    port = server.port
    await server.stop()
    with pytest.raises(DeviceUnavailable):
        await driver.read(driver.device.points)
    server = ModbusSimServer({1: PLANT}, source, port=port)
    await server.start()
    try:
        assert (await driver.read(driver.device.points))[0].quality is Quality.GOOD
    finally:
        await server.stop()


async def test_non_finite_and_undecodable_values_are_bad(server, source, make_driver) -> None:
    source.values["flow"] = float("nan")
    source.values["model"] = "é"  # fine: UTF-8
    dev = device(server.port)
    driver = await make_driver(dev)
    readings = by_id(await driver.read(dev.points))
    assert readings["flow"].reason == "not a number"
    assert readings["model"].value == "é"
    # Invalid UTF-8 in a string register: a decode error on that point only.
    points = [pt("raw", "holding", 320, "string", mb={"length": 1}, kind="string")]
    source.values["u16"] = 0xFF00
    odd = await make_driver(device(server.port, points=points))
    (reading,) = await odd.read(odd.device.points)
    assert reading.reason == "decode error"


async def test_devices_on_one_endpoint_share_one_client_and_link(server, make_driver) -> None:
    link = Link("tcp:shared")
    one = await make_driver(device(server.port, unit=1), link)
    two = await make_driver(device(server.port, unit=2), link)
    assert one._client is two._client
    a, b = await asyncio.gather(one.read(one.device.points), two.read(two.device.points))
    assert all(r.quality is Quality.GOOD for r in [*a, *b])
    assert ModbusDriver.link_key(one.device) == f"tcp:127.0.0.1:{server.port}"


async def test_unknown_unit_on_tcp_gets_gateway_exception(server, make_driver) -> None:
    driver = await make_driver(device(server.port, unit=9))
    readings = await driver.read(driver.device.points)
    assert {r.reason for r in readings} == {"exception 11"}


async def test_rtu_over_tcp(source, make_driver) -> None:
    async with ModbusSimServer({3: PLANT}, source, transport="rtu-over-tcp") as server:
        driver = await make_driver(device(server.port, unit=3, transport="rtu-over-tcp"))
        readings = await driver.read(driver.device.points)
        assert all(close_to(r.value, VALUES[r.point]) for r in readings), readings
        point = next(p for p in driver.device.points if p.id == "delta")
        assert (await driver.write(point, 31000)).value == 31000


async def test_cancel_mid_request_returns_promptly(server, make_driver) -> None:
    driver = await make_driver(device(server.port, timeout=5.0))
    server.set_faults(1, {"delay_s": 10})
    task = asyncio.create_task(driver.read(driver.device.points))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(driver.close(), 1.0)
    assert time.monotonic() - started < 1.0
    assert not driver.link.lock.locked()


async def test_subset_reads_and_release(server, make_driver) -> None:
    dev = device(server.port)
    driver = await make_driver(dev)
    subset = [dev.points[3], dev.points[0]]
    readings = await driver.read(subset)
    assert [r.point for r in readings] == ["flow_bs", "chws_temp"]
    assert (await driver.release(dev.points[1])).value == pytest.approx(7.0)


async def test_poller_runs_the_driver_and_reports_down_and_recovered(server, make_driver) -> None:
    from edge_agent.cache import PointCache
    from edge_agent.scheduler import Poller
    from tests.events import EventLog

    events = EventLog()
    batches: list = []
    dev = device(server.port, retries=0, poll_interval=1.0, timeout=0.2)
    driver = await make_driver(dev)
    poller = Poller(dev, driver, batches.append, PointCache(), events.events())
    batch = await poller.poll_once()
    assert all(r.quality is Quality.GOOD for r in batch.readings)
    server.set_faults(1, {"offline": True})
    batch = await poller.poll_once()
    assert {r.reason for r in batch.readings} == {"timeout"} and not poller.health.up
    server.clear_faults()
    await poller.poll_once()
    assert poller.health.up and len(batches) == 3
    assert "device_down" in str(events) and "device_recovered" in str(events)


async def test_sim_faults_from_a_dict_at_start(source, make_driver) -> None:
    faults = {1: {"exceptions": {"110": 3}, "delay_s": 0.01}}
    async with ModbusSimServer({1: PLANT}, source, faults=faults) as server:
        assert server.faults(1).exceptions == {110: 3}
        driver = await make_driver(device(server.port))
        bad = {r.point: r.reason for r in await driver.read(driver.device.points) if r.reason}
        assert bad == {
            p: "exception 3"
            for p in ("chws_temp", "chws_sp", "flow", "flow_bs", "flow_ws_bs", "delta")
        }
        with pytest.raises(KeyError, match="unknown fault"):
            server.set_faults(1, {"ofline": True})


async def test_strict_sim_refuses_unmapped_registers(source, make_driver) -> None:
    points = [pt("a", "holding", 0), pt("b", "holding", 5)]
    async with ModbusSimServer({1: points}, source, strict=True) as server:
        source.values.update(a=1, b=2)
        driver = await make_driver(device(server.port, points=points))
        # One block 0..5 is refused (1..4 are not mapped): split, then both points read.
        assert [r.value for r in await driver.read(driver.device.points)] == [1, 2]
        assert driver.plan_for(driver.device.points).plan.requests == 2


async def test_one_endpoint_on_two_links_is_refused(server, make_driver) -> None:
    await make_driver(device(server.port, unit=1), Link("bus-a"))
    with pytest.raises(DriverError, match="give them the same link"):
        await make_driver(device(server.port, unit=2), Link("bus-b"))
