"""The one place pymodbus clients are made: for the driver's links and for discovery.

pymodbus' own retries and automatic reconnection are off: both callers retry and
reconnect on their own terms (the driver per device, discovery per unit).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from drivers.base import SerialSettings

Transport = Literal["tcp", "rtu-over-tcp", "rtu"]


class TcpEndpoint(Protocol):
    """A TCP endpoint (`TcpConnection`, discovery's `TcpTarget`)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


def new_client(transport: Transport, endpoint: SerialSettings | TcpEndpoint, timeout: float) -> Any:
    """A pymodbus client, not yet connected: RTU frames on a serial line (`rtu`), MBAP
    frames over TCP (`tcp`), or RTU frames through a TCP socket (`rtu-over-tcp`, a
    serial server passing them on). `timeout` bounds the connect and every response."""
    common: dict[str, Any] = {"timeout": timeout, "retries": 0, "reconnect_delay": 0}
    if transport == "rtu":
        line = cast(SerialSettings, endpoint)
        return AsyncModbusSerialClient(
            line.port,
            framer=FramerType.RTU,
            baudrate=line.baudrate,
            parity=line.parity,
            stopbits=line.stopbits,
            bytesize=line.bytesize,
            **common,
        )
    tcp = cast(TcpEndpoint, endpoint)
    framer = FramerType.SOCKET if transport == "tcp" else FramerType.RTU
    return AsyncModbusTcpClient(tcp.host, port=tcp.port, framer=framer, **common)
