"""The one pymodbus client factory, as the driver and discovery use it: framing, timeout,
serial settings, and pymodbus' own retries and reconnection off."""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerRTU, FramerSocket

from drivers.base import Link
from drivers.modbus.config import ModbusDevice
from drivers.modbus.discovery import Scanner, SerialTarget, TcpTarget
from drivers.modbus.driver import POOL

POINTS = [{"id": "x", "modbus": {"table": "holding", "address": 0}}]


def _device(connection: dict, **extra: object) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {"id": "d", "driver": "modbus", "connection": connection, "points": POINTS, **extra}
    )


def _check(client: object, cls: type, framer: type, timeout: float, **serial: object) -> None:
    assert type(client) is cls
    assert type(client.ctx.framer) is framer
    assert client.ctx.retries == 0
    params = client.ctx.comm_params
    assert params.timeout_connect == timeout
    assert params.reconnect_delay == 0
    for name, value in serial.items():
        assert getattr(params, name) == value, name


@pytest.mark.parametrize(
    ("transport", "framer"), [("tcp", FramerSocket), ("rtu-over-tcp", FramerRTU)]
)
async def test_driver_tcp_clients(transport: str, framer: type) -> None:
    device = _device({"transport": transport, "host": "10.0.4.21", "port": 1502}, timeout=1.5)
    client = POOL.acquire(device, Link("tcp"))
    try:
        _check(client, AsyncModbusTcpClient, framer, 1.5, host="10.0.4.21", port=1502)
    finally:
        POOL.release(device)


async def test_driver_serial_client() -> None:
    conn = {"transport": "rtu", "port": "/dev/ttyUSB9", "baudrate": 19200, "parity": "E"}
    device = _device({**conn, "stopbits": 2, "bytesize": 7}, timeout=0.3)
    client = POOL.acquire(device, Link("serial"))
    try:
        _check(
            client, AsyncModbusSerialClient, FramerRTU, 0.3,
            host="/dev/ttyUSB9", baudrate=19200, parity="E", stopbits=2, bytesize=7,
        )  # fmt: skip
    finally:
        POOL.release(device)


async def test_discovery_clients() -> None:
    tcp = Scanner(TcpTarget("10.0.4.30", 4001), timeout=0.7)._new_client()
    _check(tcp, AsyncModbusTcpClient, FramerSocket, 0.7, host="10.0.4.30", port=4001)
    serial = Scanner(SerialTarget("/dev/ttyS3", 38400, "O", 2, 7), timeout=0.2)._new_client()
    _check(
        serial, AsyncModbusSerialClient, FramerRTU, 0.2,
        host="/dev/ttyS3", baudrate=38400, parity="O", stopbits=2, bytesize=7,
    )  # fmt: skip
