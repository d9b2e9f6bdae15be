"""Shared pieces of the DL/T 645 tests: meters' maps, a bus served over a pty pair, and a
driver factory (one Link per key, as the runtime does)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from drivers.base import Link
from drivers.dlt645.config import Dlt645Device
from drivers.dlt645.driver import Dlt645Driver
from simulators.dlt645_server import Dlt645SimServer, MeterPoint, SimMeter
from simulators.modbus_server import DictTagSource

POINTS: list[dict[str, Any]] = [
    {"id": "energy_kwh", "unit": "kWh", "dlt645": {"di": "00-01-00-00"}},
    {"id": "voltage_a", "unit": "V", "dlt645": {"di": "02-01-01-00"}},
    {"id": "current_a", "unit": "A", "dlt645": {"di": "02-02-01-00"}},
    {"id": "power_kw", "unit": "kW", "dlt645": {"di": "02030000"}},
    {"id": "power_factor", "dlt645": {"di": "02-06-00-00"}},
    {"id": "frequency", "unit": "Hz", "dlt645": {"di": "02-80-00-02"}},
]
ADDRESSES = ("000000000201", "000000000202", "123456789012")


def values(address: str) -> dict[str, float]:
    """Distinct values per meter, negative where the format has a sign."""
    n = int(address[-2:])
    return {
        "energy_kwh": round(12345.67 + n, 2),
        "voltage_a": 229.8,
        "current_a": round(-(10.5 + n / 1000), 3),
        "power_kw": round(-(7.1234 + n / 10000), 4),
        "power_factor": round(0.9 + n / 1000, 3),
        "frequency": 49.98,
    }


def tagged(address: str) -> dict[str, float]:
    return {f"{address}.{k}": v for k, v in values(address).items()}


@pytest.fixture
def source() -> DictTagSource:
    return DictTagSource({k: v for a in ADDRESSES for k, v in tagged(a).items()})


def sim_meter(address: str, points: list[dict[str, Any]] = POINTS) -> SimMeter:
    return SimMeter(address, [MeterPoint(**p, tag=f"{address}.{p['id']}") for p in points])


@pytest.fixture
async def bus(pty_pair, source) -> AsyncIterator[tuple[Dlt645SimServer, str]]:
    server_end, agent_end = pty_pair
    server = Dlt645SimServer([sim_meter(a) for a in ADDRESSES], source, server_end)
    async with server:
        yield server, agent_end


def device(port: str, address: str, **extra: Any) -> Dlt645Device:
    return Dlt645Device.model_validate(
        {
            "id": f"m{address[-4:]}",
            "driver": "dlt645",
            "timeout": 0.3,
            "connection": {"port": port, "address": address},
            "points": POINTS,
            **extra,
        }
    )


@pytest.fixture
async def make_driver() -> AsyncIterator[Callable[..., Any]]:
    opened: list[Dlt645Driver] = []
    links: dict[str, Link] = {}

    async def make(dev: Dlt645Device, link: Link | None = None) -> Dlt645Driver:
        key = Dlt645Driver.link_key(dev)
        driver = Dlt645Driver(dev, link or links.setdefault(key, Link(key)))
        await driver.open()
        opened.append(driver)
        return driver

    yield make
    for driver in reversed(opened):
        await driver.close()
