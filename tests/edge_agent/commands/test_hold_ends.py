"""Every way a hold ends is a new command to the equipment, and protection checks it.

A release, a `duration` running out, a loop disabled, a loop removed from the configuration:
what the point falls back to (the hold beneath, or the device's own value — for BACnet the
rest of its priority array) must pass the same minimum on/off times as any write. When it
cannot, the hold stays in force and ends by itself as soon as it may.

The real router, audit store and protection; the device is the BACnet simulator over real
UDP (its relinquish default is a stop) or the fake driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter

from control_loops.config import EquipmentProtection, LoopConfig
from control_loops.protection import Protection
from control_loops.runner import LoopRunner
from drivers.bacnet.driver import BacnetDriver
from drivers.base import Driver, Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.cache import PointCache
from edge_agent.commands import messages as m
from edge_agent.commands.audit import Audit
from edge_agent.commands.messages import Source
from edge_agent.commands.router import CommandRouter, Context
from edge_agent.config.base import DeviceBase
from edge_agent.points import Reading, wall_ms
from edge_agent.store.worker import StoreWorker
from tests.drivers.bacnet.conftest import device_config
from tests.drivers.bacnet.sim import SimProcess
from tests.events import EventLog

RUN = "chiller-3.run_cmd"


@dataclass
class Rig:
    router: CommandRouter
    cache: PointCache
    protection: Protection
    events: list[dict] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=itertools.count)  # one command id each

    async def send(self, command: dict, source: Source = Source.PLATFORM, by="platform") -> dict:
        body = {"v": 1, "id": f"c-{next(self.ids)}", **command}
        return await self.router.execute(m.decode(json.dumps(body)), Context(source, by))

    def running(self, value: bool) -> None:
        """The chiller's status as the poller would deliver it."""
        self.cache.update("chiller-3", [Reading("status", value, wall_ms())])

    def kinds(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]

    def holder(self) -> str | None:
        hold = self.router.holds.winner(RUN)
        return hold and hold.source.label


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, device: DeviceBase, driver: Driver, *, min_on=0.0, min_off=0.0
) -> AsyncIterator[Rig]:
    cache = PointCache()
    store = StoreWorker(tmp_path / "outbox.db", 10**8, 86400.0)
    await store.open()
    audit = await store.call(Audit, store.path)
    identity = {"site": "s", "gateway": "g"}
    records = EventLog()
    events = records.events(identity)
    guard = EquipmentProtection(id="chiller-3", run_command=RUN, running="chiller-3.status",
                                min_on=min_on, min_off=min_off)  # fmt: skip
    protection = Protection([guard], cache, tmp_path / "protection.json", events)
    router = CommandRouter([device], {device.id: driver}, cache, store, audit, identity,
                           protection, events)  # fmt: skip
    await router.start()
    result = Rig(router, cache, protection, records)
    result.running(False)
    protection.observe(wall_ms() - 7_200_000)  # seen standing still for two hours
    expiry = asyncio.create_task(router.expire_holds())
    try:
        yield result
    finally:
        expiry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry
        await store.call(audit.close)
        await store.close()


@contextlib.asynccontextmanager
async def bacnet_rig(tmp_path: Path, sim: SimProcess, **limits: float) -> AsyncIterator[Rig]:
    device = device_config(sim.address)
    driver = BacnetDriver(device, Link(BacnetDriver.link_key(device)))
    await driver.open()
    try:
        async with rig(tmp_path, device, driver, **limits) as r:
            yield r
    finally:
        await driver.close()


async def started(
    r: Rig, sim: SimProcess, source: Source = Source.PLATFORM, by: str = "platform"
) -> None:
    final = await r.send({"type": "write", "point": RUN, "value": True}, source, by)
    assert final["stage"] == "done", final
    r.running(True)
    assert sim.command()["tags"]["run_cmd"] is True


async def until(predicate: Callable[[], object], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_release_that_would_stop_a_chiller_early_waits_for_its_minimum_on_time(
    tmp_path, sim
):
    """The independent client's finding: a stop refused as a write came through as a
    release, because relinquishing the BACnet priority let the relinquish default (off)
    take over."""
    async with bacnet_rig(tmp_path, sim, min_on=3.0) as r:
        await started(r, sim)
        stop = await r.send({"type": "write", "point": RUN, "value": False})
        assert (stop["stage"], stop["reason"]) == ("rejected", "protection")

        final = await r.send({"type": "release", "point": RUN})
        assert final["stage"] == "done"
        result = final["result"]
        assert result["pending"] is True and result["effective"] == "platform"
        assert "minimum on time" in result["protection"]
        assert r.holder() == "platform"  # the hold stays in force ...
        (deferred,) = r.kinds("hold_end_deferred")
        assert deferred["point"] == RUN and deferred["cause"] == "release"
        await asyncio.sleep(1.0)
        assert sim.command()["tags"]["run_cmd"] is True  # ... and the chiller runs on

        # Once the minimum on time is over, the release happens by itself.
        await until(lambda: r.holder() is None, 6.0)
        assert sim.command()["tags"]["run_cmd"] is False
        (ended,) = r.kinds("hold_ended")
        assert (ended["cause"], ended["effective"], ended["source"]) == (
            "release",
            "device",
            "platform",
        )
        assert len(r.kinds("hold_end_deferred")) == 1  # said once, not every second


async def test_a_hold_whose_time_runs_out_early_waits_too(tmp_path, sim):
    async with bacnet_rig(tmp_path, sim, min_on=3.0) as r:
        final = await r.send(
            {"type": "write", "point": RUN, "value": True, "duration": 1}, Source.MANUAL, "tech"
        )
        assert final["stage"] == "done"
        r.running(True)
        await until(lambda: r.kinds("hold_end_deferred"), 3.0)
        assert r.kinds("hold_end_deferred")[0]["cause"] == "expired"
        assert r.holder() == "manual" and sim.command()["tags"]["run_cmd"] is True
        await until(lambda: r.holder() is None, 6.0)
        assert sim.command()["tags"]["run_cmd"] is False
        assert r.kinds("hold_ended")[0]["cause"] == "expired"


async def test_a_release_that_changes_nothing_on_the_device_is_done_at_once(tmp_path, sim):
    """A lower BACnet priority that also says run: the release stops nothing."""
    async with bacnet_rig(tmp_path, sim, min_on=600.0) as r:
        await started(r, sim)
        driver = r.router.drivers["chiller-3"]
        await driver.write(r.router.targets[RUN].point, True, priority=12)  # the BMS's own
        final = await r.send({"type": "release", "point": RUN})
        assert final["stage"] == "done" and "pending" not in final["result"]
        assert final["result"]["effective"] == "device" and r.holder() is None
        assert sim.command()["tags"]["run_cmd"] is True


async def test_the_hold_beneath_is_a_start_and_waits_for_the_minimum_off_time(tmp_path):
    """A technician's stop over the platform's run: ending the stop would start the
    chiller again at once, inside its minimum off time."""
    device = FakeDevice.model_validate(
        {"id": "chiller-3", "driver": "fake", "timeout": 0.5,
         "points": [{"id": "run_cmd", "kind": "binary", "writable": True,
                     "min_write_interval": 0, "signal": {"value": 0}}]}
    )  # fmt: skip
    driver = FakeDriver(device, Link("chiller-3"))
    async with rig(tmp_path, device, driver, min_off=2.0) as r:
        assert (await r.send({"type": "write", "point": RUN, "value": True}))["stage"] == "done"
        r.running(True)
        stop = await r.send({"type": "write", "point": RUN, "value": False}, Source.MANUAL, "tech")
        assert stop["stage"] == "done"
        r.running(False)
        final = await r.send({"type": "release", "point": RUN}, Source.MANUAL, "tech")
        result = final["result"]
        assert result["pending"] is True and "minimum off time" in result["protection"]
        assert r.holder() == "manual" and driver._state["run_cmd"] is False
        await until(lambda: r.holder() == "platform", 5.0)
        assert driver._state["run_cmd"] is True  # started once it was allowed
        assert r.kinds("hold_ended")[0]["effective"] == "platform"


STAGING = {
    "id": "stage", "type": "staging", "period": 60, "load": "chiller-3.chws_temp",
    "chw_supply": "chiller-3.chws_temp", "chw_setpoint": 7.0,
    "chillers": [{"run": RUN, "status": "chiller-3.flow_ok", "capacity_kw": 1000}],
}  # fmt: skip


def runner(r: Rig, *loops: dict) -> LoopRunner:
    configs = TypeAdapter(tuple[LoopConfig, ...]).validate_python(loops)
    return LoopRunner(configs, r.cache, r.router, None)


async def test_disabling_a_loop_keeps_its_hold_until_the_stop_is_allowed(tmp_path, sim):
    async with bacnet_rig(tmp_path, sim, min_on=3.0) as r:
        loops = runner(r, STAGING)
        r.router.register("loop", loops.handle_command)
        await started(r, sim, Source.AUTO, "stage")  # what the staging loop wrote
        final = await r.send({"type": "loop", "loop": "stage", "action": "disable"})
        assert final["stage"] == "done", final
        assert final["result"]["released"] == []
        assert "minimum on time" in final["result"]["pending"][RUN]
        assert r.holder() == "auto" and sim.command()["tags"]["run_cmd"] is True
        await until(lambda: r.holder() is None, 6.0)
        assert sim.command()["tags"]["run_cmd"] is False


async def test_the_hold_of_a_loop_removed_from_the_configuration_ends_through_protection(
    tmp_path, sim
):
    async with bacnet_rig(tmp_path, sim, min_on=3.0) as r:
        await r.send({"type": "write", "point": RUN, "value": True}, Source.AUTO, "gone-loop")
        r.running(True)
        await runner(r).end_orphan_holds()  # the new configuration has no such loop
        assert r.holder() == "auto" and sim.command()["tags"]["run_cmd"] is True
        assert r.kinds("hold_end_deferred")
        await until(lambda: r.holder() is None, 6.0)
        assert sim.command()["tags"]["run_cmd"] is False
