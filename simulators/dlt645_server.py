"""DL/T 645-2007 meters on a serial line (one end of a pty pair), answering reads from a
tag source.

Each meter has its address and a map in the driver's own point format (`dlt645:` DI and
format) plus a `tag:`; a read of a mapped DI is answered with the tag's value, coded in
the DI's format, when the request arrives. As real meters do: a DI not in the map gets an
error answer ("no data requested"), a frame for another address is not answered, and a
read of the address (broadcast AAAAAAAAAAAA) is answered only by a meter alone on its
bus. Faults per meter at run time: `offline` (silent), `delay_s`, `errors` ({DI: error
byte}), `garbage` (random bytes instead of the answer), `bad_checksum`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.dlt645 import codec
from drivers.dlt645.config import DataFormat, Dlt645Point, parse_di
from drivers.dlt645.line import SerialLine
from simulators.errors import ServerStartError, reason
from simulators.modbus_server import TagSource

NO_DATA = 0x02  # the error byte for a DI the meter does not have
OTHER_ERROR = 0x01


class MeterPoint(Dlt645Point):
    """A driver point plus the tag that feeds it (default: the point id)."""

    tag: str | None = None

    @property
    def source_tag(self) -> str:
        return self.tag or self.id


@dataclass
class MeterFaults:
    offline: bool = False
    delay_s: float = 0.0
    errors: dict[int, int] = field(default_factory=dict)  # DI -> error byte
    garbage: bool = False
    bad_checksum: bool = False

    def update(self, settings: Mapping[str, Any]) -> None:
        """Set faults from a dict such as {"offline": true, "errors": {"00-01-00-00": 2}}."""
        for key, value in settings.items():
            if key == "errors":
                value = {parse_di(str(di)): int(code) for di, code in value.items()}
            elif key not in ("offline", "delay_s", "garbage", "bad_checksum"):
                raise KeyError(f"unknown fault {key!r}")
            setattr(self, key, value)


class SimMeter:
    def __init__(self, address: str, points: Sequence[MeterPoint]) -> None:
        self.address_text = address
        self.address = codec.address_bytes(address)
        self.points: dict[int, tuple[DataFormat, str]] = {
            p.dlt645.di: (p.dlt645.data_format, p.source_tag) for p in points
        }
        self.faults = MeterFaults()


@dataclass(frozen=True, slots=True)
class _Line:
    port: str
    baudrate: int = 2400
    parity: str = "E"
    stopbits: int = 1
    bytesize: int = 8


class Dlt645SimServer:
    """The meters of one bus. Use as an async context manager (or start/stop)."""

    def __init__(
        self,
        meters: Sequence[SimMeter],
        source: TagSource,
        serial_port: str,
        name: str = "dlt645",
        seed: int = 0,
    ) -> None:
        self.meters = {m.address: m for m in meters}
        if len(self.meters) != len(meters):
            raise ValueError(f"dlt645 {name}: two meters with one address")
        self.source = source
        self.name = name
        self._line = SerialLine(_Line(serial_port))
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(seed)
        self.requests = 0  # frames for one of these meters, answered or not

    def meter(self, address: str) -> SimMeter:
        return self.meters[codec.address_bytes(address)]

    def set_faults(self, address: str, settings: Mapping[str, Any]) -> None:
        faults = MeterFaults()
        faults.update(settings)  # all or nothing
        self.meter(address).faults = faults

    def clear_faults(self) -> None:
        for meter in self.meters.values():
            meter.faults = MeterFaults()

    async def start(self) -> None:
        try:
            self._line.open()
        except OSError as exc:
            raise ServerStartError(
                f"dlt645 server {self.name} cannot open {self._line.connection.port}: {reason(exc)}"
            ) from exc
        self._task = asyncio.create_task(self._serve(), name=f"dlt645 {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._line.close()

    async def __aenter__(self) -> Dlt645SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self) -> None:
        line = self._line
        while True:
            buffer = line.received
            try:
                found = codec.next_frame(buffer)
            except codec.FrameError:
                buffer.clear()  # a broken request: a meter says nothing
                found = None
            if found is not None:
                del buffer[: found.end]
                if found.frame is not None:
                    await self._answer(found.frame)
                    continue
            try:
                await line.wait(time.monotonic() + 3600)
            except OSError:  # the agent's end closed; reopen and go on
                await asyncio.sleep(0.1)
                line.close()
                line.open()

    def _meter_for(self, frame: codec.Frame) -> SimMeter | None:
        if frame.address == codec.address_bytes("AAAAAAAAAAAA"):
            # Every meter would answer the broadcast: only one alone on its bus can.
            return next(iter(self.meters.values())) if len(self.meters) == 1 else None
        return self.meters.get(frame.address)

    async def _answer(self, frame: codec.Frame) -> None:
        if frame.control & 0x80:
            return  # an answer (another meter's): not for us
        meter = self._meter_for(frame)
        if meter is None:
            return
        self.requests += 1
        faults = meter.faults
        if faults.offline:
            return
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        answer = self._reply(meter, frame)
        if faults.garbage:
            answer = bytes(self._rng.randrange(256) for _ in range(len(answer)))
        elif faults.bad_checksum:
            answer = answer[:-2] + bytes(((answer[-2] + 1) & 0xFF, codec.END))
        self._line.send(answer)

    def _reply(self, meter: SimMeter, frame: codec.Frame) -> bytes:
        if frame.control == codec.READ_ADDRESS:
            return codec.encode_frame(
                meter.address, codec.READ_ADDRESS_ANSWER, meter.address, preamble=4
            )
        if frame.control != codec.READ or len(frame.data) != 4:
            return self._error(meter, frame.control, OTHER_ERROR)  # writes etc.: not here
        di = int.from_bytes(frame.data, "little")
        if di in meter.faults.errors:
            return self._error(meter, frame.control, meter.faults.errors[di])
        spec = meter.points.get(di)
        if spec is None:
            return self._error(meter, frame.control, NO_DATA)
        fmt, tag = spec
        try:
            value = codec.encode_bcd(float(self.source.read(tag)), fmt)
        except (KeyError, ValueError, TypeError):
            return self._error(meter, frame.control, OTHER_ERROR)  # does not fit, no tag
        return codec.encode_frame(
            meter.address, codec.READ_ANSWER, codec.di_bytes(di) + value, preamble=4
        )

    @staticmethod
    def _error(meter: SimMeter, control: int, code: int) -> bytes:
        return codec.encode_frame(meter.address, control | 0xC0, bytes((code,)), preamble=4)
