"""The DL/T 645-2007 driver: one read request per data identifier (the protocol has no
block reads), on a serial port shared by every meter of the bus.

Every request goes through the link's `exchange()`: one frame on the bus at a time and
the link's gap between them. An answer must come from the meter asked (a frame with
another address is ignored), echo the DI asked and be as long as the DI's format; any
other answer makes that point bad with the reason. A meter silent on the first request
of a poll makes the whole device unavailable (as the Modbus driver does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.base import DeviceUnavailable, Driver, DriverError, Link
from drivers.dlt645 import codec
from drivers.dlt645.config import BROADCAST, Dlt645Device, Dlt645Point, di_text
from drivers.dlt645.line import SerialLine
from edge_agent.points import Reading, Value, wall_ms

SILENT = ("timeout", "serial port unavailable")
# Which answers a request waits for: (frame) -> it is the answer to this kind of request.
_Fits = Callable[[codec.Frame], bool]


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def link_key(device: Dlt645Device) -> str:
    return f"serial:{device.connection.port}"


def _settings(device: Dlt645Device) -> tuple:
    """What devices sharing one port must agree on (all but the meter's own settings)."""
    c = device.connection
    return (c.baudrate, c.parity, c.stopbits, c.bytesize)


@dataclass(slots=True)
class _Shared:
    line: SerialLine
    settings: tuple
    link: Link
    addresses: list[str]


class LinePool:
    """Serial lines by (event loop, port), closed when their last meter closes. A meter
    asked by the broadcast address must be alone on its line: every meter would answer."""

    def __init__(self) -> None:
        self._shared: dict[tuple[int, str], _Shared] = {}

    def acquire(self, device: Dlt645Device, link: Link) -> SerialLine:
        key = (id(asyncio.get_running_loop()), link_key(device))
        shared = self._shared.get(key)
        address = device.connection.address
        if shared is None:
            shared = self._shared[key] = _Shared(
                SerialLine(device.connection), _settings(device), link, []
            )
        elif shared.settings != _settings(device):
            raise DriverError(
                f"device {device.id}: {key[1]} is already open with other settings "
                f"{shared.settings} (meters on one bus must agree)"
            )
        elif shared.link is not link:
            raise DriverError(
                f"device {device.id}: {key[1]} is used by devices on link {shared.link.key!r} "
                f"and {link.key!r}: give them the same link:"
            )
        elif device.connection.broadcast or BROADCAST in shared.addresses:
            raise DriverError(
                f"device {device.id}: the broadcast address {BROADCAST} is for a meter "
                f"alone on its bus, and {key[1]} has others: give each meter its address"
            )
        shared.addresses.append(address)
        return shared.line

    def release(self, device: Dlt645Device) -> None:
        key = (id(asyncio.get_running_loop()), link_key(device))
        shared = self._shared.get(key)
        if shared is None:
            return
        shared.addresses.remove(device.connection.address)
        if not shared.addresses:
            del self._shared[key]
            shared.line.close()


POOL = LinePool()


class Dlt645Driver(Driver[Dlt645Device, Dlt645Point]):
    name = "dlt645"

    def __init__(self, device: Dlt645Device, link: Link) -> None:
        super().__init__(device, link)
        self._line: SerialLine | None = None
        # The meter's own address: configured, or learnt by a read of the address.
        self.address: bytes | None = (
            None if device.connection.broadcast else codec.address_bytes(device.connection.address)
        )
        self.requests = 0

    @classmethod
    def link_key(cls, device: Dlt645Device) -> str:
        return link_key(device)

    async def open(self) -> None:
        if self._line is None:
            self._line = POOL.acquire(self.device, self.link)

    async def close(self) -> None:
        if self._line is not None:
            self._line = None
            POOL.release(self.device)

    async def read(self, points: Sequence[Dlt645Point]) -> list[Reading]:
        if not points:
            return []
        answered = False
        if self.address is None:
            try:
                self.address = await self.read_address()
            except _Failed as failed:
                raise DeviceUnavailable(failed.reason) from None
            answered = True
        ts: int | None = wall_ms() if answered else None
        results: list[tuple[str, float | None, str | None]] = []
        for point in points:
            try:
                results.append((point.id, await self._read_point(point), None))
            except _Failed as failed:
                if not answered and failed.reason in SILENT:
                    if self.device.connection.broadcast:
                        self.address = None  # perhaps another meter now: ask again
                    raise DeviceUnavailable(failed.reason) from None
                results.append((point.id, None, failed.reason))
            answered = True
            ts = ts or wall_ms()  # one timestamp for the whole read: the first answer
        assert ts is not None
        return [
            Reading(pid, value, ts) if reason is None else Reading.bad(pid, reason, ts)
            for pid, value, reason in results
        ]

    async def read_address(self) -> bytes:
        """Ask the meter alone on the bus for its address (control code 13)."""
        frame = codec.encode_frame(
            b"\xaa" * 6, codec.READ_ADDRESS, b"", self.device.connection.preamble
        )
        answer = await self._request(frame, None, self._is_address_answer)
        if answer.control != codec.READ_ADDRESS_ANSWER or answer.data[:6] != answer.address:
            raise _Failed("garbled answer")
        return answer.address

    @staticmethod
    def _is_address_answer(frame: codec.Frame) -> bool:
        return frame.control & 0x1F == codec.READ_ADDRESS

    async def _read_point(self, point: Dlt645Point) -> float:
        assert self.address is not None
        item = point.dlt645
        fmt = item.data_format
        request = codec.read_request(self.address, item.di, self.device.connection.preamble)
        answer = await self._request(request, self.address, self._is_read_answer)
        if answer.control == codec.READ_ERROR:
            if len(answer.data) != 1:
                raise _Failed("garbled answer")
            raise _Failed(f"error answer: {codec.error_text(answer.data[0])}")
        if answer.control not in (codec.READ_ANSWER, codec.READ_ANSWER_MORE):
            raise _Failed(f"unexpected control code 0x{answer.control:02X}")
        if answer.data[:4] != codec.di_bytes(item.di):
            echoed = int.from_bytes(answer.data[:4], "little")
            raise _Failed(f"answer for DI {di_text(echoed)}")
        if len(answer.data) != 4 + fmt.size:
            raise _Failed(
                f"wrong length: {len(answer.data) - 4} value bytes for {fmt.text} ({fmt.size})"
            )
        try:
            raw = codec.decode_bcd(answer.data[4:], fmt)
        except ValueError:
            raise _Failed("not BCD") from None
        return raw * point.scale + point.offset

    @staticmethod
    def _is_read_answer(frame: codec.Frame) -> bool:
        return frame.control & 0x1F == codec.READ and frame.control & 0x80 != 0

    async def _request(self, frame: bytes, address: bytes | None, fits: _Fits) -> codec.Frame:
        """Send `frame` and wait for the answer from `address` (None: any) that `fits`;
        repeated on timeout. Raises _Failed with the reason."""
        if self._line is None:
            await self.open()
        line = self._line
        assert line is not None
        for _ in range(1 + self.device.retries):
            async with self.link.exchange():
                try:
                    if not line.is_open:
                        line.open()
                    line.discard_input()
                    line.send(frame)
                    self.requests += 1
                    answer = await self._answer(line, address, fits)
                except OSError:
                    line.close()
                    raise _Failed("serial port unavailable") from None
            if answer is not None:
                return answer
        raise _Failed("timeout")

    async def _answer(
        self, line: SerialLine, address: bytes | None, fits: _Fits
    ) -> codec.Frame | None:
        """The answer, None when nothing came in time; _Failed for a broken one."""
        deadline = time.monotonic() + self.device.timeout
        junk = 0
        while True:
            buffer = line.received
            try:
                found = codec.next_frame(buffer)
            except codec.FrameError as exc:
                raise _Failed(exc.reason) from None
            junk += found.junk
            del buffer[: found.end]
            frame = found.frame
            if frame is not None:
                if frame.control & 0x80 == 0:
                    continue  # a request (an echo of ours, another master's): no answer
                if address is None or frame.address == address:
                    if fits(frame):
                        return frame
                    raise _Failed(f"unexpected control code 0x{frame.control:02X}")
                continue  # another meter's frame: not ours to take
            if not await line.wait(deadline):
                if junk or buffer:
                    raise _Failed("garbled answer")
                return None

    async def write(self, point: Dlt645Point, value: Value, priority: int | None = None) -> Reading:
        raise DriverError(
            f"point {point.id}: the DL/T 645 driver is read-only (writes need the meter's "
            "password and are out of scope: docs/dlt645.md)"
        )
