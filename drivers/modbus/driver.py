"""The Modbus driver: TCP, RTU (serial) and RTU over TCP, on pymodbus.

One pymodbus client per physical link, shared by the devices (unit ids) on it; every
request goes through the link's `exchange()` (one request at a time, inter-frame gap).
Retries are ours (pymodbus' are off) and the timeout is set per request, so that each
device keeps its own `timeout` and `retries` on a shared link.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.base import DeviceUnavailable, Driver, DriverError, Link
from drivers.modbus.client import new_client
from drivers.modbus.codec import Decoder, encode
from drivers.modbus.config import ModbusDevice, ModbusPoint, RtuConnection
from drivers.modbus.plan import Block, Item, Limits, ReadPlan
from edge_agent.points import Reading, Value, wall_ms

# Reasons that mean "nobody answered": on the first request of a poll they make the whole
# device unavailable instead of timing out block after block.
SILENT = ("timeout", "connection refused", "serial port unavailable")
_PLAN_CACHE = 32  # point subsets (write read-backs) whose plans are kept


class _Failed(Exception):
    """A request failed; `reason` is what the readings say."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def link_key(device: ModbusDevice) -> str:
    conn = device.connection
    if isinstance(conn, RtuConnection):
        return f"serial:{conn.port}"
    return f"tcp:{conn.host}:{conn.port}"


def _settings(device: ModbusDevice) -> tuple:
    """What must agree between devices sharing one client (all but the unit id)."""
    return tuple(v for k, v in device.connection.model_dump().items() if k != "unit")


@dataclass(slots=True)
class _Shared:
    client: Any
    settings: tuple
    link: Link  # the one lock of this physical link
    users: int = 0


class ClientPool:
    """pymodbus clients by (event loop, link key), closed when their last device closes."""

    def __init__(self) -> None:
        self._shared: dict[tuple[int, str], _Shared] = {}

    def acquire(self, device: ModbusDevice, link: Link) -> Any:
        key = (id(asyncio.get_running_loop()), link_key(device))
        shared = self._shared.get(key)
        if shared is None:
            client = new_client(device.connection.transport, device.connection, device.timeout)
            shared = self._shared[key] = _Shared(client, _settings(device), link)
        elif shared.settings != _settings(device):
            raise DriverError(
                f"device {device.id}: {key[1]} is already open with other settings "
                f"{shared.settings} (devices on one link must agree)"
            )
        elif shared.link is not link:
            # Two locks on one wire would let two requests collide on the bus.
            raise DriverError(
                f"device {device.id}: {key[1]} is used by devices on link {shared.link.key!r} "
                f"and {link.key!r}: give them the same link:"
            )
        shared.users += 1
        return shared.client

    def release(self, device: ModbusDevice) -> None:
        key = (id(asyncio.get_running_loop()), link_key(device))
        shared = self._shared.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del self._shared[key]
            shared.client.close()


POOL = ClientPool()


class _Prepared:
    """A plan and the decoder that matches its current blocks."""

    def __init__(self, points: Sequence[ModbusPoint], plan: ReadPlan) -> None:
        self.points = points
        self.ids = tuple(p.id for p in points)
        self.plan = plan
        self._decoder = Decoder(points, plan.blocks)
        self._version = plan.version

    @property
    def decoder(self) -> Decoder:
        if self._version != self.plan.version:
            self._decoder = Decoder(self.points, self.plan.blocks)
            self._version = self.plan.version
        return self._decoder


class ModbusDriver(Driver[ModbusDevice, ModbusPoint]):
    name = "modbus"

    def __init__(self, device: ModbusDevice, link: Link) -> None:
        super().__init__(device, link)
        self.unit = device.connection.unit
        self.limits = Limits(
            device.max_gap_registers, device.max_block_registers, device.max_block_bits
        )
        self._plans: dict[tuple[str, ...], _Prepared] = {}
        self._all: _Prepared | None = None  # the plan of all the device's points
        self._client: Any = None
        self.requests = 0  # sent, for the benchmark and the status view

    @classmethod
    def link_key(cls, device: ModbusDevice) -> str:
        return link_key(device)

    async def open(self) -> None:
        if self._client is None:
            self._client = POOL.acquire(self.device, self.link)

    async def close(self) -> None:
        # pymodbus' close is synchronous: it cannot hang.
        if self._client is not None:
            self._client = None
            POOL.release(self.device)

    def plan_for(self, points: Sequence[ModbusPoint]) -> _Prepared:
        """The plan for these points; the device's full list (every poll) is kept apart, so
        its splits survive however many read-back subsets come and go."""
        if points is self.device.points:
            if self._all is None:
                self._all = self._prepare(points)
            return self._all
        key = tuple(p.id for p in points)
        prepared = self._plans.get(key)
        if prepared is None:
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.clear()
            prepared = self._plans[key] = self._prepare(points)
        return prepared

    def _prepare(self, points: Sequence[ModbusPoint]) -> _Prepared:
        items = [
            Item(i, self.unit, p.modbus.table, p.modbus.address, p.modbus.count)
            for i, p in enumerate(points)
        ]
        return _Prepared(points, ReadPlan(items, self.limits))

    async def read(self, points: Sequence[ModbusPoint]) -> list[Reading]:
        if not points:
            return []
        prepared = self.plan_for(points)
        plan = prepared.plan
        data: dict[int, list] = {}
        failures: dict[int, str] = {}
        ts: int | None = None
        pending = list(plan.blocks)
        while pending:
            block = pending.pop(0)
            try:
                data[id(block)] = await self._read_block(block)
            except _Failed as failed:
                if ts is None and failed.reason in SILENT:
                    raise DeviceUnavailable(failed.reason) from None
                if failed.reason == "exception 2" and (halves := plan.split(block)):
                    pending[0:0] = halves  # re-read: only the points really missing end up bad
                else:
                    failures[id(block)] = failed.reason
            ts = ts or wall_ms()  # one timestamp for the whole read: the first answer
        return self._readings(prepared, data, failures, ts or wall_ms())

    def _readings(
        self, prepared: _Prepared, data: dict[int, list], failures: dict[int, str], ts: int
    ) -> list[Reading]:
        decoder = prepared.decoder
        blocks = prepared.plan.blocks
        regs = np.zeros(decoder.reg_size, dtype=np.uint16)
        bits = np.zeros(decoder.bit_size, dtype=bool)
        for block, (is_bits, offset, count) in zip(blocks, decoder.slots, strict=True):
            answer = data.get(id(block))
            if answer is not None:
                (bits if is_bits else regs)[offset : offset + count] = answer[:count]
        values, invalid = decoder.decode(regs, bits)
        ids = prepared.ids
        # The common case, every point good, is one comprehension; the rest is patched in.
        readings = [Reading(pid, value, ts) for pid, value in zip(ids, values, strict=True)]
        for i, reason in invalid:
            readings[i] = Reading.bad(ids[i], reason, ts)
        for b, block in enumerate(blocks if failures else ()):
            failure = failures.get(id(block))
            if failure:
                for i in decoder.points_of[b]:
                    readings[i] = Reading.bad(ids[i], failure, ts)
        return readings

    async def _read_block(self, block: Block) -> list:
        client, unit = self._client, block.unit
        calls = {
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
        }
        read = partial(calls[block.table], block.start, count=block.count, device_id=unit)
        response = await self._request(read)
        values = response.bits if block.bits else response.registers
        if len(values) < block.count:
            raise _Failed("decode error")
        return values

    async def _request(self, call: Callable[[], Awaitable[ModbusPDU]]) -> Any:
        """One request with retries on timeout; raises _Failed with the reason."""
        if self._client is None:
            await self.open()
        client = self._client
        for _ in range(1 + self.device.retries):
            async with self.link.exchange():
                # pymodbus' own timer bounds connect and response (a second timer of ours
                # would cost 5 µs a request); set per request: devices share the client.
                client.ctx.comm_params.timeout_connect = self.device.timeout
                try:
                    await self._connect()
                    self.requests += 1
                    response = await call()
                except ConnectionException:
                    raise _Failed(self._unreachable) from None
                except (ModbusIOException, TimeoutError) as exc:
                    _reraise_cancel()
                    if isinstance(exc, TimeoutError) or "No response" in str(exc):
                        # A late answer would be taken for the next request's: reconnect.
                        client.close()
                        continue
                    raise _Failed("decode error") from None
                except ModbusException:
                    _reraise_cancel()
                    raise _Failed("decode error") from None
            if response is None:
                raise _Failed("decode error")
            if response.isError():
                raise _Failed(f"exception {getattr(response, 'exception_code', '?')}")
            return response
        raise _Failed("timeout")

    @property
    def _unreachable(self) -> str:
        if isinstance(self.device.connection, RtuConnection):
            return "serial port unavailable"
        return "connection refused"

    async def _connect(self) -> None:
        client = self._client
        if not client.connected and not await client.connect():
            raise _Failed(self._unreachable)

    async def write(self, point: ModbusPoint, value: Value, priority: int | None = None) -> Reading:
        if not point.writable:
            raise DriverError(f"point {point.id} is not writable")
        spec, client, unit = point.modbus, self._client, self.unit
        if client is None:
            await self.open()
            client = self._client
        if spec.type in ("bool", "bit") and value not in (True, False):
            # bool("false") is True: a binary point takes a boolean (or 0/1), nothing else.
            raise DriverError(f"point {point.id} takes true or false, not {value!r}")
        call: Callable[[], Awaitable[ModbusPDU]]
        try:
            if spec.type == "bool":
                call = partial(client.write_coil, spec.address, bool(value), device_id=unit)
            else:
                regs = await self._registers_for(point, value)
                if len(regs) == 1 and not self.device.fc16_only:
                    call = partial(client.write_register, spec.address, regs[0], device_id=unit)
                else:
                    call = partial(client.write_registers, spec.address, regs, device_id=unit)
            await self._request(call)
        except _Failed as failed:
            if failed.reason in SILENT:
                raise DeviceUnavailable(failed.reason) from None
            raise DriverError(f"write {point.id}: {failed.reason}") from None
        return (await self.read([point]))[0]

    async def _registers_for(self, point: ModbusPoint, value: Value) -> list[int]:
        """The registers that carry `value` (engineering units) for `point`."""
        spec = point.modbus
        if spec.type == "string":
            if not isinstance(value, str):
                raise DriverError(f"point {point.id} takes text, not {value!r}")
            try:
                return encode(spec, value)
            except ValueError as exc:
                raise DriverError(f"point {point.id}: {exc}") from None
        if spec.type == "bit":
            # Read-modify-write: the other 15 bits of the register must survive.
            read = partial(
                self._client.read_holding_registers, spec.address, count=1, device_id=self.unit
            )
            response = await self._request(read)
            mask = 1 << (spec.bit or 0)
            current = response.registers[0]
            return [(current | mask) if value else (current & ~mask & 0xFFFF)]
        if isinstance(value, bool | str) or value is None or not math.isfinite(value):
            raise DriverError(f"point {point.id} takes a finite number, not {value!r}")
        limits = point.limits
        if limits is not None and not limits.min <= value <= limits.max:
            raise DriverError(f"{value} is outside {point.id}'s limits {limits.min}..{limits.max}")
        raw: float = (value - point.offset) / point.scale
        if not spec.type.startswith("float"):
            raw = round(raw)
        try:
            return encode(spec, raw)
        except ValueError as exc:
            raise DriverError(f"point {point.id}: {exc}") from None


def _reraise_cancel() -> None:
    """pymodbus can turn a cancellation into an exception: give the cancel back."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
