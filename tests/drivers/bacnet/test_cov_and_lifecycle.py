from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
import structlog

from drivers.bacnet import cov as cov_module
from drivers.bacnet.driver import BacnetDriver
from drivers.base import DriverError, Link
from edge_agent.points import Quality
from tests.drivers.bacnet.conftest import POINTS, device_config
from tests.drivers.bacnet.sim import SimProcess


async def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_cov_notifications_feed_reads(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address, POINTS[:4], cov=True, cov_lifetime=60)
    driver = await open_driver(device)
    cov = driver._cov
    assert cov is not None
    await wait_for(lambda: len(cov.readings(device.points)) == len(device.points))

    sim.command(set={"chws_temp": 9.75})  # the simulator notifies the change
    await wait_for(lambda: cov.readings(device.points[:1])["chws_temp"].value == 9.75)
    first = await driver.read(device.points)
    assert first[0].value == 9.75 and first[0].quality is Quality.GOOD

    # Served from the cache: a silent device does not matter while subscribed.
    sim.command(offline=True)
    again = await driver.read(device.points)
    assert [r.value for r in again] == [r.value for r in first]


async def test_confirmed_notifications(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address, POINTS[:1], cov=True, cov_confirmed=True)
    driver = await open_driver(device)
    cov = driver._cov
    assert cov is not None
    await wait_for(lambda: bool(cov.readings(device.points)))
    sim.command(set={"chws_temp": 4.5})
    await wait_for(lambda: cov.readings(device.points)["chws_temp"].value == 4.5)


async def test_cov_values_go_stale_when_the_subscription_lapses(
    sim: SimProcess, open_driver: Callable
) -> None:
    device = device_config(sim.address, POINTS[:1], cov=True, cov_lifetime=60)
    driver = await open_driver(device)
    cov = driver._cov
    assert cov is not None
    await wait_for(lambda: bool(cov.readings(device.points)))
    for sub in cov._subs.values():
        sub.expires = time.monotonic() - 1  # as if renewals had failed for a lifetime
    reading = (await driver.read(device.points))[0]
    assert reading.quality is Quality.STALE and reading.value == 6.5


async def test_cov_refused_means_polling(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    sim = start_sim(flags=("--no-cov",))
    device = device_config(sim.address, POINTS[:3], cov=True)
    driver = await open_driver(device)
    await asyncio.sleep(0.3)
    assert driver._cov is not None and not driver._cov.readings(device.points)
    readings = await driver.read(device.points)
    assert [r.value for r in readings] == [6.5, 40.0, 7.0]


async def test_devices_on_one_local_port_share_one_application(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    sims = [start_sim(instance=4001), start_sim(instance=4002)]
    first = device_config(sims[0].address, POINTS[:2])
    bind = first.connection.bind
    second = device_config(sims[1].address, POINTS[:2], local_port=first.connection.local_port)
    second = second.model_copy(update={"id": "chiller-4"})
    d1, d2 = await open_driver(first), await open_driver(second)
    assert d1._app is d2._app
    results = await asyncio.gather(d1.read(first.points), d2.read(second.points))
    assert all(r.quality is Quality.GOOD for rs in results for r in rs)
    await d1.close()
    assert bind in BacnetDriver.stacks
    assert (await d2.read(second.points))[0].value == 6.5
    await d2.close()
    assert bind not in BacnetDriver.stacks


async def test_close_is_quick_with_a_silent_device(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address, POINTS[:2], cov=True)
    driver = BacnetDriver(device, Link(BacnetDriver.link_key(device)))
    await driver.open()
    await wait_for(lambda: bool(driver._cov and driver._cov.readings(device.points)))
    sim.command(offline=True)
    started = time.monotonic()
    await driver.close()
    assert time.monotonic() - started < device.timeout + 0.3
    assert device.connection.bind not in BacnetDriver.stacks


async def test_a_close_cut_short_still_releases_the_application(sim: SimProcess) -> None:
    device = device_config(sim.address, POINTS[:1], cov=True)
    driver = BacnetDriver(device, Link(BacnetDriver.link_key(device)))
    await driver.open()
    await wait_for(lambda: bool(driver._cov and driver._cov.readings(device.points)))
    sim.command(offline=True)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):  # the caller's limit (the service allows 5 s)
            await driver.close()
    assert device.connection.bind not in BacnetDriver.stacks


async def test_subscriptions_are_renewed_before_they_expire(
    sim: SimProcess, open_driver: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cov_module, "RETRY_S", 0.05)
    device = device_config(sim.address, POINTS[:1], cov=True, cov_lifetime=60)
    driver = await open_driver(device)
    cov = driver._cov
    assert cov is not None
    await wait_for(lambda: bool(cov.readings(device.points)))
    sub = next(iter(cov._subs.values()))
    sub.expires = time.monotonic() + 10  # past the renewal point (half the lifetime)
    await wait_for(lambda: sub.expires > time.monotonic() + 50)


async def test_a_taken_local_port_is_a_driver_error(sim: SimProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        device = device_config(sim.address, POINTS[:1], local_port=taken.getsockname()[1])
        driver = BacnetDriver(device, Link(BacnetDriver.link_key(device)))
        with pytest.raises(DriverError, match="in use"):
            await driver.open()
        with pytest.raises(DriverError):
            await driver.read(device.points)
    assert (await driver.read(device.points))[0].value == 6.5  # the next poll opens it
    await driver.close()


async def test_cov_refusal_is_logged_once(
    start_sim: Callable[..., SimProcess], open_driver: Callable
) -> None:
    sim = start_sim(flags=("--no-cov",))
    device = device_config(sim.address, POINTS[:3], cov=True)
    with structlog.testing.capture_logs() as logs:
        driver = await open_driver(device)
        await wait_for(lambda: driver._cov is not None and driver._cov._task.done())
    refused = [e for e in logs if "COV subscription refused" in e["event"]]
    assert len(refused) == 1
