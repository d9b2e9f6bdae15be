"""Shared pieces of the Modbus tests: a plant map, a sim server and a driver factory."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from drivers.base import Link
from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import ModbusDriver
from simulators.modbus_server import DictTagSource, ModbusSimServer


def pt(pid: str, table: str, address: int, dtype: str | None = None, **extra: Any) -> dict:
    """A point dict; `modbus:` keys (orders, bit, length) go into `mb`."""
    modbus = {"table": table, "address": address, **extra.pop("mb", {})}
    if dtype:
        modbus["type"] = dtype
    return {"id": pid, "modbus": modbus, **extra}


LE, BS = {"word_order": "little"}, {"byte_order": "little"}
BIN, STR = {"kind": "binary"}, {"kind": "string"}


def rw(low: float, high: float) -> dict:
    return {"writable": True, "limits": {"min": low, "max": high}}


# Every type, order and table, with the values the tag source starts with.
PLANT: list[dict[str, Any]] = [
    pt("chws_temp", "holding", 100, "float32", mb=LE, unit="degC"),
    pt("chws_sp", "holding", 110, "int16", scale=0.1, **rw(5, 12)),
    pt("flow", "holding", 112, "float32"),
    pt("flow_bs", "holding", 114, "float32", mb=BS),
    pt("flow_ws_bs", "holding", 116, "float32", mb={**LE, **BS}),
    pt("delta", "holding", 120, "int32", mb=LE, **rw(-40000, 40000)),
    pt("energy_kwh", "holding", 300, "uint32", mb={"word_order": "big"}),
    pt("big_counter", "holding", 304, "int64"),
    pt("precise", "holding", 310, "float64", mb=LE, **rw(-1e9, 1e9)),
    pt("u16", "holding", 320, "uint16", **rw(0, 65535)),
    pt("alarm_bit3", "holding", 200, "bit", mb={"bit": 3}, writable=True, **BIN),
    pt("alarm_bit15", "holding", 200, "bit", mb={"bit": 15}, **BIN),
    pt("model", "holding", 400, "string", mb={"length": 8}, writable=True, **STR),
    pt("serial", "holding", 410, "string", mb={"length": 4, **BS}, **STR),
    {"id": "power_kw", "scale": 0.1, "modbus": {"table": "input", "address": 30010}},
    pt("temp_in", "input", 20, "int16", scale=0.01, offset=-50),
    pt("mode", "input", 21, kind="multistate"),
    pt("running", "coil", 0, writable=True, **BIN),
    pt("pump_b", "coil", 9, **BIN),
    {"id": "door", "kind": "binary", "modbus": {"address": 10004}},
]

VALUES: dict[str, Any] = {
    "chws_temp": 6.5,
    "chws_sp": 7.0,
    "flow": 12.25,
    "flow_bs": -3.5,
    "flow_ws_bs": 1e-3,
    "delta": -123456,
    "energy_kwh": 4_000_000_000,
    "big_counter": -(2**40) - 7,
    "precise": 1234.5678901234,
    "u16": 65535,
    "alarm_bit3": True,
    "alarm_bit15": True,
    "model": "CH-900",
    "serial": "AB12",
    "power_kw": 123.4,
    "temp_in": 21.37,
    "mode": 3,
    "running": True,
    "pump_b": False,
    "door": True,
}


def close_to(a: object, b: object) -> bool:
    """Equal, or within float32 precision for floats."""
    if isinstance(a, float) and isinstance(b, int | float) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return a == b


def device(port: int, points: list[dict] = PLANT, unit: int = 1, **extra: Any) -> ModbusDevice:
    transport = extra.pop("transport", "tcp")
    return ModbusDevice.model_validate(
        {
            "id": f"dev{unit}",
            "driver": "modbus",
            "timeout": extra.pop("timeout", 0.3),
            "connection": {"transport": transport, "host": "127.0.0.1", "port": port, "unit": unit},
            "points": points,
            **extra,
        }
    )


@pytest.fixture
def source() -> DictTagSource:
    return DictTagSource(VALUES)


@pytest.fixture
async def server(source: DictTagSource) -> AsyncIterator[ModbusSimServer]:
    async with ModbusSimServer({1: PLANT, 2: PLANT}, source) as srv:
        yield srv


@pytest.fixture
async def make_driver() -> AsyncIterator[Callable[..., Any]]:
    """Opens drivers on their own links; closes them all at the end."""
    opened: list[ModbusDriver] = []
    links: dict[str, Link] = {}  # as the runtime does: one Link per key

    async def make(dev: ModbusDevice, link: Link | None = None) -> ModbusDriver:
        key = ModbusDriver.link_key(dev)
        driver = ModbusDriver(dev, link or links.setdefault(key, Link(key)))
        await driver.open()
        opened.append(driver)
        return driver

    yield make
    for driver in reversed(opened):
        await driver.close()
