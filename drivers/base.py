"""The interface every field driver implements, and the physical link they share."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeAlias, TypeVar

from edge_agent.config.base import DeviceBase, PointBase
from edge_agent.points import Reading, Value


class DriverError(Exception):
    """A driver failed in a way the caller should report (with a reason)."""


class DeviceUnavailable(DriverError):
    """The whole device cannot be reached; every point of the poll is bad with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Keeps(enum.Enum):
    """The device keeps the value it has when a point is released (no priority array).

    A one-member enum, the sentinel a type checker understands: `x is not KEEPS` narrows."""

    KEEPS = "KEEPS"

    def __repr__(self) -> str:
        return "KEEPS"

    __str__ = __repr__


KEEPS: Final = Keeps.KEEPS


class SerialSettings(Protocol):
    """A serial port and its settings: what a driver on RS-485 opens (Modbus RTU, DL/T 645,
    discovery, the simulator's buses)."""

    @property
    def port(self) -> str: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def parity(self) -> str: ...
    @property
    def stopbits(self) -> int: ...
    @property
    def bytesize(self) -> int: ...


class Link:
    """One physical link (a serial bus, a TCP endpoint) shared by the devices on it.

    Only one request is on a link at a time, and consecutive requests are spaced by at
    least `gap_s` (RS-485 devices need an idle line between frames).
    """

    def __init__(self, key: str, gap_s: float = 0.0) -> None:
        self.key = key
        self.gap_s = gap_s
        self.lock = asyncio.Lock()
        self._last_request_end = -float("inf")

    @contextlib.asynccontextmanager
    async def exchange(self) -> AsyncIterator[None]:
        """Hold the link for one request/response, after the inter-request gap."""
        async with self.lock:
            wait = self._last_request_end + self.gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._last_request_end = time.monotonic()


D = TypeVar("D", bound=DeviceBase)
P = TypeVar("P", bound=PointBase)


class Driver(ABC, Generic[D, P]):
    """A protocol driver for one device. Use as an async context manager.

    Generic over the protocol's device and point models (`Driver[ModbusDevice,
    ModbusPoint]`): a driver is handed its own device and that device's points only.

    `read` turns per-point failures into bad-quality readings and raises
    `DeviceUnavailable` when the device as a whole cannot be reached. All readings of one
    `read` carry one source timestamp (when the device answered); only a value the driver
    knows to be older (a stale COV value) keeps its own. Every request goes through
    `async with self.link.exchange():`.
    """

    name: ClassVar[str]
    # The protocol has a priority array (BACnet): a write's `priority` means something.
    priorities: ClassVar[bool] = False

    def __init__(self, device: D, link: Link) -> None:
        self.device = device
        self.link = link

    @classmethod
    def link_key(cls, device: D) -> str:
        """Devices that return the same key share one `Link` (one lock, one gap)."""
        return f"device:{device.id}"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:  # an optional hook
        """Prepare connections; failing to connect is not an error here (reads report it)."""

    async def close(self) -> None:  # an optional hook
        """Release connections. Must not hang."""

    @abstractmethod
    async def read(self, points: Sequence[P]) -> list[Reading]: ...

    @abstractmethod
    async def write(self, point: P, value: Value, priority: int | None = None) -> Reading:
        """Write a value and return the read-back reading."""

    async def release(self, point: P, priority: int | None = None) -> Reading:
        """Give control of a point back to the device (BACnet relinquish); default: no-op read."""
        return (await self.read([point]))[0]

    async def released_value(self, point: P, priority: int | None = None) -> Value | Keeps:
        """What the point will carry once `release(point, priority)` has been done, asked of
        the device now; `KEEPS` when it keeps its present value. A release is a command to
        the equipment like any write: equipment protection needs to know what it changes."""
        return KEEPS


# A driver of whichever protocol the config chose. The runtime holds drivers of several
# protocols side by side (by device id) and hands each one its own device's points: a
# pairing made at run time from the config, which no static type can state. This alias
# is where the device and point types are left open, for the runtime's collections.
AnyDriver: TypeAlias = Driver[Any, Any]
