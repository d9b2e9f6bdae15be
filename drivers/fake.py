"""An in-memory driver with configurable signals and failures.

It lets the runtime be run, demonstrated and tested without any field protocol. Faults
can be set in the config or, at run time, through an optional JSON control file that the
driver re-reads when it changes, e.g. ``{"offline": true}`` or
``{"points": {"kw": {"fail": "timeout"}}, "latency": 0.5}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from drivers.base import DeviceUnavailable, Driver, DriverError, Link
from edge_agent.config.base import DeviceBase, Duration, Gap, Model, PointBase
from edge_agent.i18n import N_
from edge_agent.points import Reading, Value, wall_ms

FailMode = Literal["timeout", "exception", "decode"]
# Signals that change the point's present value arithmetically.
_NUMERIC_MODES = ("walk", "counter")


class Signal(Model):
    """How a fake point's value evolves from poll to poll."""

    mode: Literal["constant", "walk", "counter", "toggle", "sine"] = "constant"
    value: float | str = 0.0  # the constant, or the start value
    step: Annotated[float, Field(ge=0)] = 0.1  # walk: largest change per poll
    min: float = -math.inf
    max: float = math.inf
    rate: float = 1.0  # counter: increment per poll
    period: Annotated[int, Field(ge=1)] = 60  # toggle / sine: polls per period
    resolution: Annotated[float, Field(ge=0)] = 0.0  # round to this (sensor resolution)
    fail: FailMode | None = None


class FakePoint(PointBase):
    signal: Signal = Signal()

    @model_validator(mode="after")
    def _signal_fits_kind(self) -> FakePoint:
        if self.kind == "string" and self.signal.mode in _NUMERIC_MODES:
            # Every poll would fail: text cannot walk or count.
            raise ValueError(f"a {self.signal.mode} signal needs a number: not on a string point")
        return self


class FakeConnection(Model):
    seed: int = 0
    latency: Gap = 0.0  # simulated response time
    offline: bool = False  # the whole device does not answer
    close_latency: Gap = 0.0  # a driver slow to let go of its connection
    control_file: Path | None = None  # JSON faults re-read at run time


class FakeDevice(DeviceBase):
    driver: Literal["fake"]
    connection: FakeConnection = FakeConnection()
    points: list[FakePoint] = Field(min_length=1)
    poll_interval: Duration = 5.0

    def poll_floor(self) -> tuple[str, float, str]:
        """(what, seconds, why): the shortest poll_interval a config may give (the config
        checks refuse less). Tests and the pipeline benchmark poll fakes every 20-40 ms."""
        return (
            N_("the fake driver"),
            0.01,
            N_(
                "it answers from memory, but below 10ms the agent spends its time scheduling "
                "and storing polls rather than reading"
            ),
        )


class FakeDriver(Driver[FakeDevice, FakePoint]):
    name = "fake"

    def __init__(self, device: FakeDevice, link: Link) -> None:
        super().__init__(device, link)
        self._rng = random.Random(f"{device.connection.seed}:{device.id}")
        self._state: dict[str, Value] = {p.id: _initial(p) for p in device.points}
        self._ticks = 0
        self._written: dict[str, Value] = {}
        self._faults: dict[str, Any] = {}  # the control file's JSON
        self._control_mtime: float | None = None

    async def read(self, points: Sequence[FakePoint]) -> list[Reading]:
        self._reload_faults()
        async with self.link.exchange():
            await self._respond()
        self._ticks += 1
        ts = wall_ms()
        point_faults = self._faults.get("points", {})
        readings = []
        for point in points:
            fail = point_faults.get(point.id, {}).get("fail", point.signal.fail)
            if fail:
                readings.append(Reading.bad(point.id, _REASONS.get(fail, str(fail)), ts))
                continue
            readings.append(Reading(point.id, self._next(point), ts))
        return readings

    async def write(self, point: FakePoint, value: Value, priority: int | None = None) -> Reading:
        if not point.writable:
            raise DriverError(f"point {point.id} is not writable")
        async with self.link.exchange():
            await self._respond()
        self._written[point.id] = value
        self._state[point.id] = value
        return Reading(point.id, value, wall_ms())

    async def release(self, point: FakePoint, priority: int | None = None) -> Reading:
        self._written.pop(point.id, None)
        return Reading(point.id, self._state[point.id], wall_ms())

    async def close(self) -> None:
        if self.device.connection.close_latency:
            await asyncio.sleep(self.device.connection.close_latency)

    async def _respond(self) -> None:
        conn = self.device.connection
        latency = self._faults.get("latency", conn.latency)
        if self._faults.get("offline", conn.offline):
            # A silent device: the request times out.
            await asyncio.sleep(self.device.timeout)
            raise DeviceUnavailable("timeout")
        if latency > self.device.timeout:
            await asyncio.sleep(self.device.timeout)
            raise DeviceUnavailable("timeout")
        if latency:
            await asyncio.sleep(latency)

    def _next(self, point: FakePoint) -> Value:
        if point.id in self._written:
            return self._written[point.id]
        sig = point.signal
        current = self._state[point.id]
        value: Value
        if sig.mode == "walk":
            step = self._rng.uniform(-sig.step, sig.step)
            value = min(sig.max, max(sig.min, _number(point, current) + step))
        elif sig.mode == "counter":
            value = _number(point, current) + sig.rate
        elif sig.mode == "toggle":
            value = (self._ticks // sig.period) % 2 == 1
        elif sig.mode == "sine":
            value = float(sig.value) + sig.step * math.sin(2 * math.pi * self._ticks / sig.period)
        else:
            value = current
        self._state[point.id] = value
        return _present(point, value)

    def _reload_faults(self) -> None:
        path = self.device.connection.control_file
        if path is None:
            return
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            self._faults, self._control_mtime = {}, None
            return
        if mtime != self._control_mtime:
            self._control_mtime = mtime
            try:
                self._faults = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                self._faults = {}


_REASONS = {"timeout": "timeout", "exception": "exception 2", "decode": "decode error"}


def _initial(point: FakePoint) -> Value:
    value = point.signal.value
    if point.kind == "string":
        return str(value)
    return float(value) if not isinstance(value, str) else 0.0


def _present(point: FakePoint, value: Value) -> Value:
    """Convert the internal state to the point kind's value, at the sensor's resolution."""
    if point.kind == "binary":
        return bool(value)
    if point.kind == "string":
        return str(value)
    number = _number(point, value)
    if point.kind == "multistate":
        return int(number)
    res = point.signal.resolution
    if res:
        digits = max(0, -math.floor(math.log10(res)))
        return round(round(number / res) * res, digits)
    return float(number)


def _number(point: FakePoint, value: Value) -> float:
    """The state of a numeric point: a number (the config and the router's coercion see to
    it; a value written past the router could be anything)."""
    if isinstance(value, int | float):  # a bool too, as in arithmetic
        return value
    raise TypeError(f"point {point.id} holds {value!r}, not a number")
