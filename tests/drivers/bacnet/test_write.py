from __future__ import annotations

from collections.abc import Callable

import pydantic
import pytest

from drivers.bacnet.config import BacnetPoint
from drivers.base import DeviceUnavailable, DriverError
from edge_agent.points import Quality
from tests.drivers.bacnet.conftest import POINTS, device_config
from tests.drivers.bacnet.sim import SimProcess


def point(device, point_id: str) -> BacnetPoint:
    return next(p for p in device.points if p.id == point_id)


async def test_write_with_priority_reads_back_and_relinquishes(
    sim: SimProcess, open_driver: Callable
) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    sp = point(device, "chws_sp")

    written = await driver.write(sp, 9.5)  # the point's priority, 8
    assert (written.value, written.quality) == (9.5, Quality.GOOD)
    assert sim.command()["tags"]["chws_sp"] == 9.5  # the effective value reached the plant

    lower = await driver.write(sp, 11.0, priority=10)
    assert lower.value == 9.5  # priority 8 still wins

    assert (await driver.release(sp)).value == 11.0  # priority 10 takes over
    assert (await driver.release(sp, priority=10)).value == 7.0  # relinquish default


async def test_binary_and_multistate_writes(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    assert (await driver.write(point(device, "run_cmd"), True)).value is True
    assert (await driver.write(point(device, "fan_mode"), 3)).value == 3
    assert (await driver.release(point(device, "run_cmd"))).value is False
    assert sim.command()["tags"]["run_cmd"] is False
    # Commandable values (the simulator makes writable values commandable).
    assert (await driver.write(point(device, "enable"), False)).value is False
    assert (await driver.write(point(device, "season"), 1)).value == 1
    assert sim.command()["tags"] == sim.command()["tags"] | {"enable": False, "season": 1}
    assert (await driver.release(point(device, "season"))).value == 3


async def test_life_safety_priorities_are_refused(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    for priority in (1, 2):
        with pytest.raises(DriverError, match="life safety"):
            await driver.write(point(device, "chws_sp"), 9.0, priority=priority)
    assert sim.command()["tags"]["chws_sp"] == 7.0

    with pytest.raises(pydantic.ValidationError, match="life safety"):
        BacnetPoint.model_validate(
            {
                "id": "x",
                "writable": True,
                "bacnet": {"object": "analog-value", "instance": 1, "priority": 1},
            }
        )
    allowed = {
        "object": "analog-value",
        "instance": 10,
        "priority": 1,
        "allow_life_safety_priority": True,
    }
    device = device_config(sim.address, [{"id": "sp", "writable": True, "bacnet": allowed}])
    driver = await open_driver(device)
    assert (await driver.write(device.points[0], 6.0)).value == 6.0
    await driver.release(device.points[0])


async def test_refused_writes(sim: SimProcess, open_driver: Callable) -> None:
    # An input object marked writable by mistake: the device refuses the write.
    wrong = {"id": "temp", "writable": True, "bacnet": {"object": "analog-input", "instance": 1}}
    device = device_config(sim.address, [*POINTS, wrong])
    driver = await open_driver(device)
    with pytest.raises(DriverError, match="write-access-denied"):
        await driver.write(point(device, "temp"), 1.0)
    with pytest.raises(DriverError, match="not writable"):
        await driver.write(point(device, "chws_temp"), 1.0)
    with pytest.raises(DriverError, match="outside"):
        await driver.write(point(device, "chws_sp"), 30.0)  # limits 5..12


async def test_write_to_a_silent_device(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    sim.command(offline=True)
    with pytest.raises(DeviceUnavailable):
        await driver.write(point(device, "chws_sp"), 9.0)


async def test_a_value_the_plant_refuses_is_a_bacnet_error(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    locked = {
        "name": "locked",
        "bacnet": {"object": "analog-value", "instance": 20},
        "value": 3.0,
        "writable": True,
        "read_only_tag": True,
    }
    sim = start_sim([locked])
    spec = {"object": "analog-value", "instance": 20}
    device = device_config(sim.address, [{"id": "locked", "writable": True, "bacnet": spec}])
    driver = await open_driver(device)
    with pytest.raises(DriverError, match="write-access-denied"):
        await driver.write(device.points[0], 4.0)
    # The refused command left no trace in the priority array.
    assert (await driver.read(device.points))[0].value == 3.0
    assert sim.command()["tags"]["locked"] == 3.0


async def test_the_value_after_a_release_is_read_from_the_priority_array(
    sim: SimProcess, open_driver: Callable
) -> None:
    """What a relinquish will change, asked before it is done (equipment protection must
    check the value a release falls back to like any other command)."""
    device = device_config(sim.address)
    driver = await open_driver(device)
    sp, run = point(device, "chws_sp"), point(device, "run_cmd")
    await driver.write(sp, 9.5)  # priority 8
    assert await driver.released_value(sp) == 7.0  # the relinquish default
    await driver.write(sp, 11.0, priority=10)
    assert await driver.released_value(sp) == 11.0  # priority 10 takes over
    assert await driver.released_value(sp, priority=10) == 9.5  # 8 still wins then
    assert (await driver.release(sp)).value == 11.0  # and that is what a release does
    await driver.write(run, True)
    assert await driver.released_value(run) is False
    assert sim.command()["tags"]["run_cmd"] is True  # asking changed nothing
