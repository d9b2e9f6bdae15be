from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.bacnet.config import BacnetDevice
from drivers.bacnet.driver import BacnetDriver
from drivers.base import Link
from tests.drivers.bacnet.sim import SimProcess, free_udp_port

# One object of every type; `value` is the initial tag value.
OBJECTS: list[dict[str, Any]] = [
    {"name": "chws_temp", "bacnet": {"object": "analog-input", "instance": 1}, "value": 6.5},
    {"name": "valve", "bacnet": {"object": "analog-output", "instance": 2}, "value": 40.0},
    {
        "name": "chws_sp",
        "bacnet": {"object": "analog-value", "instance": 10},
        "value": 7.0,
        "writable": True,
    },
    {"name": "flow_ok", "bacnet": {"object": "binary-input", "instance": 1}, "value": True},
    {"name": "run_cmd", "bacnet": {"object": "binary-output", "instance": 1}, "value": False},
    {
        "name": "enable",
        "bacnet": {"object": "binary-value", "instance": 3},
        "value": True,
        "writable": True,
    },
    {"name": "stage", "bacnet": {"object": "multi-state-input", "instance": 1}, "value": 2},
    {"name": "fan_mode", "bacnet": {"object": "multi-state-output", "instance": 2}, "value": 1},
    {
        "name": "season",
        "bacnet": {"object": "multi-state-value", "instance": 3},
        "value": 3,
        "writable": True,
    },
]

POINTS: list[dict[str, Any]] = [
    {"id": "chws_temp", "unit": "degC", "bacnet": {"object": "analog-input", "instance": 1}},
    {"id": "valve", "writable": True, "bacnet": {"object": "analog-output", "instance": 2}},
    {
        "id": "chws_sp",
        "writable": True,
        "limits": {"min": 5, "max": 12},
        "bacnet": {"object": "analog-value", "instance": 10, "priority": 8},
    },
    {"id": "flow_ok", "kind": "binary", "bacnet": {"object": "binary-input", "instance": 1}},
    {
        "id": "run_cmd",
        "kind": "binary",
        "writable": True,
        "bacnet": {"object": "binary-output", "instance": 1, "priority": 8},
    },
    {
        "id": "enable",
        "kind": "binary",
        "writable": True,
        "bacnet": {"object": "binary-value", "instance": 3},
    },
    {"id": "stage", "kind": "multistate", "bacnet": {"object": "multi-state-input", "instance": 1}},
    {
        "id": "fan_mode",
        "kind": "multistate",
        "writable": True,
        "bacnet": {"object": "multi-state-output", "instance": 2},
    },
    {
        "id": "season",
        "kind": "multistate",
        "writable": True,
        "bacnet": {"object": "multi-state-value", "instance": 3},
    },
    {
        "id": "status_flags",
        "kind": "string",
        "bacnet": {"object": "analog-input", "instance": 1, "property": "status-flags"},
    },
]


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    started: list[SimProcess] = []

    def start(objects: list[dict[str, Any]] = OBJECTS, **kwargs: Any) -> SimProcess:
        sim = SimProcess(tmp_path / f"map{len(started)}.json", objects, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(start_sim: Callable[..., SimProcess]) -> SimProcess:
    return start_sim()


def device_config(
    address: str, points: list[dict[str, Any]] = POINTS, **connection: Any
) -> BacnetDevice:
    conn = {
        "local_address": "127.0.0.1/8",
        "local_port": free_udp_port(),
        "device_instance": 3001,
        "address": address,
        **connection,
    }
    return BacnetDevice.model_validate(
        {
            "id": "chiller-3",
            "driver": "bacnet",
            "timeout": 0.5,
            "connection": conn,
            "points": points,
        }
    )


@pytest.fixture
async def open_driver() -> AsyncIterator[Callable[..., Any]]:
    opened: list[BacnetDriver] = []

    async def open_(device: BacnetDevice) -> BacnetDriver:
        driver = BacnetDriver(device, Link(BacnetDriver.link_key(device)))
        await driver.open()
        opened.append(driver)
        return driver

    yield open_
    for driver in reversed(opened):
        await driver.close()
