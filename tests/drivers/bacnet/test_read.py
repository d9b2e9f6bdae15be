from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from drivers.base import DeviceUnavailable
from edge_agent.points import Quality
from tests.drivers.bacnet.conftest import POINTS, device_config
from tests.drivers.bacnet.sim import SimProcess


def values(readings: list[Any]) -> dict[str, Any]:
    return {r.point: r.value for r in readings}


async def test_reads_every_object_type_with_rpm(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    readings = await driver.read(device.points)
    assert all(r.quality is Quality.GOOD for r in readings), readings
    assert len({r.ts for r in readings}) == 1  # one source timestamp per read
    assert values(readings) == {
        "chws_temp": 6.5,
        "valve": 40.0,
        "chws_sp": 7.0,
        "flow_ok": True,
        "run_cmd": False,
        "enable": True,
        "stage": 2,
        "fan_mode": 1,
        "season": 3,
        "status_flags": "none",
    }
    assert isinstance(values(readings)["stage"], int)
    assert driver.batch == device.connection.rpm_max_properties  # no fallback was needed


async def test_rpm_refused_falls_back_to_read_property(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    sim = start_sim(flags=("--no-rpm",))
    device = device_config(sim.address)
    driver = await open_driver(device)
    first = await driver.read(device.points)
    assert all(r.quality is Quality.GOOD for r in first), first
    assert values(first)["chws_temp"] == 6.5
    assert driver.batch == 0  # remembered: ReadProperty only from now on
    again = await driver.read(device.points)
    assert values(again) == values(first)


def analog_inputs(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    objects = [
        {"name": f"t{i}", "bacnet": {"object": "analog-input", "instance": i}, "value": i / 2}
        for i in range(1, count + 1)
    ]
    points = [
        {"id": f"t{i}", "bacnet": {"object": "analog-input", "instance": i}}
        for i in range(1, count + 1)
    ]
    return objects, points


async def test_answer_too_big_for_one_apdu_splits_the_request(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    # 150 values do not fit a 1024-byte APDU and this device cannot segment its answer:
    # it aborts (segmentation-not-supported) and the driver asks in smaller pieces.
    objects, points = analog_inputs(150)
    sim = start_sim(objects, flags=("--no-segmentation",))
    device = device_config(sim.address, points, rpm_max_properties=150, max_concurrent=4)
    driver = await open_driver(device)
    readings = await driver.read(device.points)
    assert all(r.quality is Quality.GOOD for r in readings), readings[:3]
    assert values(readings)["t150"] == 75.0
    assert 0 < driver.batch < 150


async def test_unknown_object_makes_only_that_point_bad(
    sim: SimProcess, open_driver: Callable
) -> None:
    missing = {"id": "ghost", "bacnet": {"object": "analog-input", "instance": 99}}
    device = device_config(sim.address, [*POINTS, missing])
    driver = await open_driver(device)
    readings = {r.point: r for r in await driver.read(device.points)}
    assert readings["ghost"].quality is Quality.BAD
    assert readings["ghost"].reason == "unknown-object"
    assert readings["chws_temp"].value == 6.5


async def test_a_request_of_only_unknown_objects_is_resolved_point_by_point(
    sim: SimProcess, open_driver: Callable
) -> None:
    # bacpypes3 answers an RPM naming no existing object with one error for the request.
    ghosts = [
        {"id": f"g{i}", "bacnet": {"object": "analog-value", "instance": 90 + i}} for i in range(2)
    ]
    device = device_config(sim.address, [*ghosts, POINTS[0]], rpm_max_properties=2)
    driver = await open_driver(device)
    readings = await driver.read(device.points)
    assert [r.reason for r in readings] == ["unknown-object", "unknown-object", None]
    assert driver.batch == 2


async def test_unknown_property_is_a_bad_point(sim: SimProcess, open_driver: Callable) -> None:
    odd = {
        "id": "odd",
        "kind": "string",
        "bacnet": {"object": "binary-input", "instance": 1, "property": "max-pres-value"},
    }
    device = device_config(sim.address, [POINTS[0], odd])
    driver = await open_driver(device)
    readings = await driver.read(device.points)
    assert readings[0].quality is Quality.GOOD
    assert readings[1].quality is Quality.BAD


async def test_values_follow_the_source(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    sim.command(set={"chws_temp": 8.25, "flow_ok": False, "stage": 3})
    got = values(await driver.read(device.points))
    assert (got["chws_temp"], got["flow_ok"], got["stage"]) == (8.25, False, 3)


async def test_silent_device_is_unavailable_then_recovers(
    sim: SimProcess, open_driver: Callable
) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    sim.command(offline=True)
    with pytest.raises(DeviceUnavailable) as caught:
        await driver.read(device.points)
    assert caught.value.reason == "timeout"
    sim.command(offline=False)
    readings = await driver.read(device.points)
    assert all(r.quality is Quality.GOOD for r in readings)


async def test_slow_answers_within_the_timeout_are_fine(
    sim: SimProcess, open_driver: Callable
) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    sim.command(delay=0.2)
    assert values(await driver.read(device.points))["chws_temp"] == 6.5
    sim.command(delay=1.0)  # beyond the 0.5 s timeout
    with pytest.raises(DeviceUnavailable):
        await driver.read(device.points)


async def test_the_timeout_is_per_request_not_per_queue(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    # 20 ReadProperty requests one at a time take longer than one request's timeout.
    objects, points = analog_inputs(20)
    sim = start_sim(objects, flags=("--no-rpm",))
    sim.command(delay=0.04)
    device = device_config(sim.address, points, max_concurrent=1)
    driver = await open_driver(device)
    readings = await driver.read(device.points)  # 20 x 40 ms > the 0.5 s timeout
    assert all(r.quality is Quality.GOOD for r in readings)
