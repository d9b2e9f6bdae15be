"""What a new configuration changes in the running agent (SIGHUP, config_apply).

`plan(old, new)` compares two valid configurations and says what the runtime must redo:
which devices stop and which start (a device restarts when its own settings or its link's
changed), whether the command layer (router, loops, protection) is rebuilt, whether the
alarm rules, the uplink, the local socket or the metrics port change. Everything else runs
on untouched: its driver, its poller, its schedule and its counters. Only a change of the
store or of the identity needs a new runtime (`restarts_runtime`).

`DriverGuard` is the command layer's handle on a device's driver, so that a device can
restart under a router that runs on. docs/configuration.md, "Reloading".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.base import AnyDriver, DeviceUnavailable, Driver, Keeps
from drivers.registry import driver_class
from edge_agent.config.base import DeviceBase
from edge_agent.config.models import AgentConfig
from edge_agent.points import Reading, Value

# What the router, the loops and protection never read of a device: how it is polled and
# reached. A device changed in these only restarts under the command layer, which runs on;
# any other change of a device rebuilds that layer too (it is built from the devices).
POLLING_ONLY = frozenset({"name", "poll_interval", "connection", "link"})


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What a device's driver and poller are made of: the device, the key of the link it
    shares with other devices (one `Link`: one lock, one gap) and that link's gap."""

    device: DeviceBase
    link: str
    gap: float


def device_specs(config: AgentConfig) -> dict[str, DeviceSpec]:
    """The enabled devices, in the configuration's order."""
    gaps = {link.id: link.gap for link in config.links}
    return {
        d.id: DeviceSpec(
            d, d.link or driver_class(d.driver).link_key(d), gaps.get(d.link or "", 0.0)
        )
        for d in config.devices
        if d.enabled
    }


def command_view(config: AgentConfig) -> tuple[object, ...]:
    """What the command layer (router, loops, protection, flow interlock) is built from."""
    devices = [d.model_dump(exclude=set(POLLING_ONLY)) for d in config.devices if d.enabled]
    return devices, config.loops, config.protection


def restarts_runtime(old: AgentConfig, new: AgentConfig) -> bool:
    """The store and the identity are the process's: a new runtime on a new store."""
    return old.store != new.store or old.identity != new.identity


@dataclass(frozen=True, slots=True)
class Plan:
    """What the runtime does to go from one configuration to the next."""

    stop: tuple[str, ...]  # devices whose poller stops and driver closes
    start: tuple[str, ...]  # devices whose driver opens and poller starts (in this order)
    control: bool  # the command layer is rebuilt: router, loops, protection, interlock
    alarms: bool  # the alarm engine is rebuilt (its state file carries the alarms over)
    uplink: bool  # the uplink reconnects (else it announces the new config_hash)
    local: bool  # the local socket moves
    metrics: bool  # the metrics port moves

    @property
    def restarted(self) -> list[str]:
        return [d for d in self.start if d in self.stop]

    @property
    def started(self) -> list[str]:
        return [d for d in self.start if d not in self.stop]

    @property
    def stopped(self) -> list[str]:
        return [d for d in self.stop if d not in self.start]


def plan(old: AgentConfig | None, new: AgentConfig) -> Plan:
    """From `old` (None: nothing runs yet) to `new`, which `restarts_runtime` accepts.

    A device restarts when its own settings or its link's changed (a `links:` gap, moving to
    another link); devices sharing a link with it keep theirs. The uplink reconnects only
    when its own settings changed; otherwise the connection stays and its retained `online`
    status is published again with the new config_hash (docs/mqtt-api.md)."""
    before = device_specs(old) if old is not None else {}
    after = device_specs(new)
    stop = tuple(d for d, spec in before.items() if after.get(d) != spec)
    start = tuple(d for d, spec in after.items() if before.get(d) != spec)
    if old is None:  # the alarm engine and the uplink are made with the runtime
        return Plan(stop, start, control=True, alarms=False, uplink=True, local=True,
                    metrics=True)  # fmt: skip
    return Plan(
        stop,
        start,
        control=command_view(old) != command_view(new),
        alarms=old.alarms != new.alarms,
        uplink=old.uplink != new.uplink,
        local=old.local != new.local,
        metrics=old.metrics != new.metrics,
    )


class DriverGuard(Driver[Any, Any]):
    """The command layer's handle on a device's driver. When the device restarts, the
    guard is retired: what is under way on the driver finishes first (bounded), and what
    comes then fails as the device being unavailable, never on a closed driver (which
    would open itself again, and hold its connection for ever), until the new driver's
    guard takes its place."""

    name = "guard"

    def __init__(self, driver: AnyDriver) -> None:
        super().__init__(driver.device, driver.link)
        self.driver = driver
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._retired = False

    @contextlib.asynccontextmanager
    async def _use(self) -> AsyncIterator[AnyDriver]:
        if self._retired:
            raise DeviceUnavailable("restarting")
        self._calls += 1
        self._idle.clear()
        try:
            yield self.driver
        finally:
            self._calls -= 1
            if not self._calls:
                self._idle.set()

    async def read(self, points: Sequence[Any]) -> list[Reading]:
        async with self._use() as driver:
            return await driver.read(points)

    async def write(self, point: Any, value: Value, priority: int | None = None) -> Reading:
        async with self._use() as driver:
            return await driver.write(point, value, priority)

    async def release(self, point: Any, priority: int | None = None) -> Reading:
        async with self._use() as driver:
            return await driver.release(point, priority)

    async def released_value(self, point: Any, priority: int | None = None) -> Value | Keeps:
        async with self._use() as driver:
            return await driver.released_value(point, priority)

    async def retire(self, timeout: float) -> None:
        """From now on refuse; return once what is under way ended (or after `timeout`)."""
        self._retired = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)


class _PrioritisedGuard(DriverGuard):
    priorities = True  # the router asks the driver it holds


def guard(driver: AnyDriver) -> DriverGuard:
    return (_PrioritisedGuard if driver.priorities else DriverGuard)(driver)
