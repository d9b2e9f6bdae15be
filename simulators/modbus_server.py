"""A Modbus server (pymodbus) whose registers come from a register map and a tag source.

The register map uses the driver's own point format (`modbus:` address, type, orders,
scale/offset) plus a `tag:`; values are read from the tag source and encoded on every
request, and writes are decoded and handed to the source. Faults can be set per unit at
run time: `offline` (no answer), `delay_s` (slow), `exceptions` ({address: code}),
`garbage` (random bytes instead of the response), `reject_functions` ({6}: FC16 only).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from drivers.modbus.codec import decode, encode
from drivers.modbus.config import BIT_TABLES, ModbusPoint
from simulators.errors import ServerStartError, reason

_TABLE_OF_FC = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input"}
_TABLE_OF_FC.update(dict.fromkeys((3, 6, 16, 22, 23), "holding"))


class TagSource(Protocol):
    def read(self, tag: str) -> float | int | bool | str: ...

    # KeyError / PermissionError / ValueError -> Modbus exception 2 / 1 / 3
    def write(self, tag: str, value: float | int | bool | str) -> None: ...


class DictTagSource:
    """Tags in a dict; tags in `read_only` refuse writes."""

    def __init__(self, values: Mapping[str, Any], read_only: Iterable[str] = ()) -> None:
        self.values = dict(values)
        self.read_only = set(read_only)

    def read(self, tag: str) -> float | int | bool | str:
        return self.values[tag]

    def write(self, tag: str, value: float | int | bool | str) -> None:
        if tag not in self.values:
            raise KeyError(tag)
        if tag in self.read_only:
            raise PermissionError(tag)
        self.values[tag] = value


class MapPoint(ModbusPoint):
    """A driver point plus the tag that feeds it (default: the point id)."""

    tag: str | None = None

    @property
    def source_tag(self) -> str:
        return self.tag or self.id


@dataclass
class Faults:
    offline: bool = False
    delay_s: float = 0.0
    exceptions: dict[int, int] = field(default_factory=dict)  # address -> exception code
    garbage: bool = False
    reject_functions: set[int] = field(default_factory=set)  # -> exception 1

    def update(self, settings: Mapping[str, Any]) -> None:
        """Set faults from a dict such as {"offline": true, "exceptions": {"105": 2}}."""
        for key, value in settings.items():
            if key == "exceptions":
                value = {int(a): int(c) for a, c in value.items()}
            elif key == "reject_functions":
                value = {int(f) for f in value}
            elif key not in ("offline", "delay_s", "garbage"):
                raise KeyError(f"unknown fault {key!r}")
            setattr(self, key, value)


class _Unit:
    """One unit id's register map: address -> the point covering it, per table."""

    def __init__(self, points: Sequence[MapPoint]) -> None:
        self.cells: dict[str, dict[int, list[MapPoint]]] = {}
        for point in points:
            spec = point.modbus
            table = self.cells.setdefault(spec.table, {})
            for address in range(spec.address, spec.address + spec.count):
                table.setdefault(address, []).append(point)
        self.faults = Faults()


class _Context(ModbusServerContext):
    """The datastore pymodbus calls; answers from the tag source at request time."""

    def __init__(self, units: Mapping[int, _Unit], source: TagSource, strict: bool, serial: bool):
        # Deliberately no super().__init__: it builds the deprecated in-memory blocks.
        self.old_simulator = True  # makes pymodbus call our async_getValues/async_setValues
        self.simdevices = []
        self.units = units
        self.source = source
        self.strict = strict
        self.serial = serial

    def device_ids(self) -> list[int]:
        return list(self.units)

    async def _unit(self, device_id: int) -> _Unit | None:
        """The unit, after its faults; None for an unknown unit on TCP (a gateway answers)."""
        unit = self.units.get(device_id)
        if unit is None and self.serial:
            raise NoSuchIdException(str(device_id))  # a real RTU bus stays silent
        if unit is not None and unit.faults.offline:
            raise NoSuchIdException(str(device_id))
        if unit is not None and unit.faults.delay_s:
            await asyncio.sleep(unit.faults.delay_s)
        return unit

    @staticmethod
    def _refusal(unit: _Unit, func_code: int, address: int, count: int) -> ExcCodes | None:
        if func_code in unit.faults.reject_functions:
            return ExcCodes.ILLEGAL_FUNCTION
        for a in range(address, address + count):
            if a in unit.faults.exceptions:
                return ExcCodes(unit.faults.exceptions[a])
        return None

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        unit = await self._unit(device_id)
        if unit is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        refusal = self._refusal(unit, func_code, address, count)
        if refusal is not None:
            return refusal
        table = _TABLE_OF_FC[func_code]
        cells = unit.cells.get(table, {})
        encoded: dict[int, list[int]] = {}  # point id -> registers, one encode per request
        out: list[int] = []
        for a in range(address, address + count):
            points = cells.get(a)
            if not points:
                if self.strict:
                    return ExcCodes.ILLEGAL_ADDRESS
                out.append(0)
                continue
            word = 0
            for point in points:  # several bit points can share one register
                regs = encoded.get(id(point))
                if regs is None:
                    try:
                        regs = encoded[id(point)] = self._encode(point)
                    except KeyError:
                        return ExcCodes.ILLEGAL_ADDRESS
                    except (ValueError, TypeError):
                        return ExcCodes.DEVICE_FAILURE
                word |= regs[a - point.modbus.address]
            out.append(word)
        if table in BIT_TABLES:
            return [bool(v) for v in out]
        return out

    def _encode(self, point: MapPoint) -> list[int]:
        value = self.source.read(point.source_tag)
        spec = point.modbus
        if spec.type in ("bool", "bit", "string"):
            return encode(spec, value)
        raw = (float(value) - point.offset) / point.scale
        return encode(spec, raw if spec.type.startswith("float") else round(raw))

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        unit = await self._unit(device_id)
        if unit is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        refusal = self._refusal(unit, func_code, address, len(values))
        if refusal is not None:
            return refusal
        cells = unit.cells.get(_TABLE_OF_FC[func_code], {})
        end = address + len(values)
        touched: dict[int, MapPoint] = {}
        for a in range(address, end):
            for point in cells.get(a, ()):
                touched[id(point)] = point
        if not touched:
            return ExcCodes.ILLEGAL_ADDRESS
        try:
            for point in touched.values():
                spec = point.modbus
                if spec.address < address or spec.address + spec.count > end:
                    return ExcCodes.ILLEGAL_ADDRESS  # a partial write of a multi-register value
                regs = [int(v) for v in values[spec.address - address :][: spec.count]]
                self.source.write(point.source_tag, self._value(point, regs))
        except KeyError:
            return ExcCodes.ILLEGAL_ADDRESS
        except PermissionError:
            return ExcCodes.ILLEGAL_FUNCTION
        except (ValueError, TypeError, UnicodeDecodeError):
            return ExcCodes.ILLEGAL_VALUE
        return None

    @staticmethod
    def _value(point: MapPoint, regs: list[int]) -> float | int | bool | str:
        raw = decode(point.modbus, regs)
        if isinstance(raw, bool | str):
            return raw
        return raw * point.scale + point.offset


class ModbusSimServer:
    """`units`: unit id -> register map. transport: tcp, rtu-over-tcp or rtu (serial_port)."""

    def __init__(
        self,
        units: Mapping[int, Sequence[MapPoint | Mapping[str, Any]]],
        source: TagSource,
        transport: str = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        strict: bool = False,  # unmapped addresses -> exception 2 (else they read 0)
        faults: Mapping[int, Mapping[str, Any]] | None = None,  # unit -> faults at start
        name: str = "",  # the device id, for messages
    ) -> None:
        self._units = {
            uid: _Unit([p if isinstance(p, MapPoint) else MapPoint.model_validate(p) for p in pts])
            for uid, pts in units.items()
        }
        self.transport = transport
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.name = name or "modbus-sim"
        self._context = _Context(self._units, source, strict, serial=transport == "rtu")
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        for unit, settings in (faults or {}).items():
            self.set_faults(unit, settings)

    def faults(self, unit: int) -> Faults:
        return self._units[unit].faults

    def set_faults(self, unit: int, settings: Mapping[str, Any]) -> None:
        self._units[unit].faults.update(settings)

    def clear_faults(self) -> None:
        for unit in self._units.values():
            unit.faults = Faults()

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        unit_id = data[6] if self.transport == "tcp" and len(data) > 6 else data[0]
        unit = self._units.get(unit_id)
        if unit is not None and unit.faults.garbage:
            return os.urandom(len(data))
        return data

    @property
    def endpoint(self) -> str:
        """What it serves on: "127.0.0.1:15020" or the serial port."""
        return str(self.serial_port) if self.transport == "rtu" else f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (or open the serial port). ServerStartError if it cannot: pymodbus itself
        only logs "Failed to start server" and raises a RuntimeError without the cause."""
        action = "cannot open serial port" if self.transport == "rtu" else "cannot listen on"
        where = f"modbus server {self.name} ({self.transport}) {action} {self.endpoint}"
        try:
            await self._start()
        except RuntimeError as exc:  # another program took the port after the probe
            why = f"pymodbus could not start it ({exc})"
            if self.transport != "rtu":
                try:
                    _probe_listen(self.host, self.port)
                except OSError as taken:
                    why = reason(taken)
            raise ServerStartError(f"{where}: {why}") from exc
        except Exception as exc:
            raise ServerStartError(f"{where}: {reason(exc)}") from exc

    async def _start(self) -> None:
        if self.transport == "rtu":
            if not self.serial_port:
                raise ValueError("transport rtu needs serial_port")
            _probe_serial(self.serial_port)
            self._server = ModbusSerialServer(
                self._context,
                framer=FramerType.RTU,
                port=self.serial_port,
                ignore_missing_devices=True,
                trace_packet=self._trace_packet,
            )
        else:
            _probe_listen(self.host, self.port)
            framer = FramerType.SOCKET if self.transport == "tcp" else FramerType.RTU
            self._server = ModbusTcpServer(
                self._context,
                framer=framer,
                address=(self.host, self.port),
                ignore_missing_devices=True,
                trace_packet=self._trace_packet,
            )
        try:
            await self._server.serve_forever(background=True)
        except BaseException:
            self._server = None
            raise
        if self.transport == "rtu":
            # pymodbus sets the serial transport up in call_soon callbacks (setup, then
            # connection_made): a stop() before they ran ends in an AttributeError traceback.
            for _ in range(2):
                await asyncio.sleep(0)
        else:
            listener = self._server.transport  # pymodbus annotates it a BaseTransport
            assert isinstance(listener, asyncio.Server), "a TCP server listens on an asyncio.Server"
            self.port = listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> ModbusSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _probe_listen(host: str, port: int) -> None:
    """Bind, without listening, every address `loop.create_server` (pymodbus) would bind,
    with its options (SO_REUSEADDR: a port in TIME_WAIT is free). OSError if one is taken or
    not assignable, socket.gaierror for an unknown host."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)


def _probe_serial(path: str) -> None:
    """Open and close the serial port (OSError if it is missing or not ours to open)."""
    os.close(os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
