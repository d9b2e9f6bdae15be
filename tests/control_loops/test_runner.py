"""The loop runner against a real CommandRouter, audit store and fake driver.

The runner's clock is simulated (`tick(now)`), the router, store and driver are the real
ones; a small first-order plant model in the test closes the PID loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from control_loops.config import LoopConfig
from control_loops.runner import LoopRunner
from drivers.base import Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.cache import PointCache
from edge_agent.commands import messages as m
from edge_agent.commands.audit import Audit
from edge_agent.commands.messages import Source
from edge_agent.commands.router import CommandRouter, Context
from edge_agent.events import Events
from edge_agent.points import Quality, Reading, wall_ms
from edge_agent.store.worker import StoreWorker
from tests.events import EventLog

LOOPS = TypeAdapter(tuple[LoopConfig, ...])


def point(id_: str, value=0.0, *, writable=False, kind="analog", lo=0.0, hi=100.0) -> dict:
    p = {"id": id_, "kind": kind, "writable": writable, "min_write_interval": 0,
         "signal": {"mode": "constant", "value": value}}  # fmt: skip
    if writable and kind == "analog":
        p["limits"] = {"min": lo, "max": hi}
    return p


PLANT_POINTS = [
    point("temp", 12.0),
    point("sp", 7.0),
    point("valve", 0.0, writable=True),
    point("cw_sp", 25.0, writable=True, lo=10, hi=40),
    point("chws_sp", 7.0, writable=True, lo=4, hi=14),
    point("wetbulb", 20.0),
    point("requests", 0.0),
]


@dataclass
class Plant:
    """A real router with a fake device, and what it records."""

    router: CommandRouter
    driver: FakeDriver
    cache: PointCache
    events: list[dict] = field(default_factory=list)
    events_sink: Events | None = None

    def value(self, ref: str):
        return self.driver._state[ref.split(".", 1)[1]]

    def feed(self, **values) -> None:
        """Fresh readings of the device's points, as a poll would deliver them."""
        self.cache.update("ch-1", [Reading(k, v, wall_ms()) for k, v in values.items()])

    def kinds(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]

    async def command(self, command: m.Command, source=Source.MANUAL, by="tech") -> dict:
        return await self.router.execute(command, Context(source, by))


@contextlib.asynccontextmanager
async def plant(
    tmp_path: Path, points: list[dict] | None = None, protection=None
) -> AsyncIterator[Plant]:
    device = FakeDevice.model_validate(
        {"id": "ch-1", "driver": "fake", "poll_interval": 1, "timeout": 0.5,
         "points": points or PLANT_POINTS}
    )  # fmt: skip
    driver = FakeDriver(device, Link("ch-1"))
    cache = PointCache()
    store = StoreWorker(tmp_path / "outbox.db", 10**8, 86400.0)
    await store.open()
    audit = await store.call(Audit, store.path)
    identity = {"site": "s", "gateway": "g"}
    records = EventLog()
    events = records.events(identity)
    router = CommandRouter(
        [device], {"ch-1": driver}, cache, store, audit, identity, protection, events
    )
    await router.start()
    result = Plant(router, driver, cache, records, events)
    cache.update("ch-1", await driver.read(device.points))
    try:
        yield result
    finally:
        await store.call(audit.close)
        await store.close()


def runner_for(p: Plant, *loops: dict, persist=None) -> LoopRunner:
    configs = LOOPS.validate_python(loops)
    return LoopRunner(configs, p.cache, p.router, p.events_sink, persist=persist)


PID = {"id": "chw-valve", "type": "pid", "period": 1, "measurement": "ch-1.temp",
       "setpoint": "ch-1.sp", "output": "ch-1.valve", "kp": 10.0, "ti": 20.0,
       "direction": "direct"}  # fmt: skip


def cool(temp: float, valve: float, dt: float) -> float:
    """First-order plant: 12 °C with the valve shut, 0.08 K colder per % open, tau 20 s."""
    target = 12.0 - 0.08 * valve
    return temp + (target - temp) * dt / 20.0


async def test_pid_through_the_router_tracks_its_setpoint(tmp_path):
    async with plant(tmp_path) as p:
        runner = runner_for(p, PID)
        temp = 12.0
        for t in range(300):
            p.feed(temp=temp, sp=7.0)
            await runner.tick(float(t))
            await runner.settle()
            temp = cool(temp, float(p.value("ch-1.valve")), 1.0)
        assert temp == pytest.approx(7.0, abs=0.05)
        assert float(p.value("ch-1.valve")) == pytest.approx(62.5, abs=1.0)
        (status,) = runner.status()
        assert status["mode"] == "auto" and status["writes"] > 10
        assert status["inputs"] == {"measurement": pytest.approx(temp, abs=0.1), "setpoint": 7.0}
        hold = p.router.holds.winner("ch-1.valve")
        assert hold.source is Source.AUTO and hold.by == "chw-valve"
        assert status["step_us"] > 0 and runner.stats()["step_us_p50"] > 0


async def test_outputs_are_clamped_rate_limited_and_written_only_beyond_the_deadband(tmp_path):
    async with plant(tmp_path) as p:
        loop = {**PID, "limits": {"min": 0, "max": 40}, "max_step": 5.0, "deadband": 0.5}
        runner = runner_for(p, loop)
        seen = []
        for t in range(20):
            p.feed(temp=20.0, sp=7.0)  # far off: the PID wants 100 %
            await runner.tick(float(t))
            await runner.settle()
            seen.append(float(p.value("ch-1.valve")))
        steps = [b - a for a, b in zip([0.0, *seen], seen, strict=False)]
        assert max(steps) <= 5.0 + 1e-9
        assert seen[-1] == 40.0  # clamped to the loop's limits
        writes = runner.status()[0]["writes"]
        assert writes == 8  # 0 -> 40 in steps of 5, then nothing: the output stays put
        # A change within the deadband is not written.
        runner.loops["chw-valve"].written["ch-1.valve"] = 40.2
        p.feed(temp=20.0, sp=7.0)
        await runner.tick(20.0)
        await runner.settle()
        assert runner.status()[0]["writes"] == writes


SAFE_STATES = [
    ("hold", None),
    ("release", None),
    ({"value": 15.0}, 15.0),
]


@pytest.mark.parametrize(("safe", "expected"), SAFE_STATES)
@pytest.mark.parametrize("cause", ["old", "bad", "stale-cache"])
async def test_stale_inputs_put_the_loop_in_its_safe_state_within_one_period(
    tmp_path, safe, expected, cause
):
    async with plant(tmp_path) as p:
        runner = runner_for(p, {**PID, "safe_state": safe, "stale_after": "3s", "period": 2})
        for t in range(0, 20, 2):
            p.feed(temp=9.0, sp=7.0)
            await runner.tick(float(t))
            await runner.settle()
        before = float(p.value("ch-1.valve"))
        assert before > 0 and p.router.holds.get("ch-1.valve", Source.AUTO) is not None
        if cause == "old":
            p.cache.update("ch-1", [Reading("temp", 9.0, wall_ms() - 10_000)])
        elif cause == "bad":
            p.cache.update("ch-1", [Reading.bad("temp", "timeout", wall_ms())])
        else:
            p.cache.configure_device("ch-1", 0.05)  # 3 poll intervals of a 1/60 s poll
            await asyncio.sleep(0.1)
            assert p.cache.get("ch-1.temp").quality is Quality.STALE
        # The very next step (at most one period later) is in the safe state.
        for t in (20.0, 22.0, 24.0):
            await runner.tick(t)
            await runner.settle()
            status = runner.status()[0]
            assert status["mode"] == "safe" and "temp" in status["safe_reason"]
        assert len(p.kinds("loop_safe_state")) == 1  # once, not once per period
        auto_hold = p.router.holds.get("ch-1.valve", Source.AUTO)
        if safe == "hold":
            assert float(p.value("ch-1.valve")) == before and auto_hold is not None
        elif safe == "release":
            assert auto_hold is None
        else:
            assert float(p.value("ch-1.valve")) == expected and auto_hold.value == expected
        # Fresh data: back in auto, one recovery event, bumpless (no jump to a stale output).
        p.cache.configure_device("ch-1", 60.0)
        p.feed(temp=9.0, sp=7.0)
        held = float(p.value("ch-1.valve"))
        await runner.tick(26.0)
        await runner.settle()
        assert runner.status()[0]["mode"] == "auto"
        assert len(p.kinds("loop_recovered")) == 1
        assert abs(float(p.value("ch-1.valve")) - held) < 3.0  # one integral step: 2


async def test_missing_input_is_a_safe_state_too(tmp_path):
    async with plant(tmp_path) as p:
        loop = {**PID, "measurement": "ch-1.wetbulb", "safe_state": {"value": 30.0}}
        runner = runner_for(p, loop)
        p.cache._entries.pop("ch-1.wetbulb")  # never read (device just started)
        before = p.value("ch-1.valve")
        await runner.tick(0.0)
        await runner.settle()
        # Just started: the input's device may not have been polled yet. Wait, quietly.
        assert runner.status()[0]["mode"] == "waiting"
        assert p.value("ch-1.valve") == before and not p.kinds("loop_safe_state")
        await runner.tick(60.0)
        assert runner.status()[0]["mode"] == "waiting"
        await runner.tick(121.0)  # past the start-up grace: now it is a fault
        await runner.settle()
        assert runner.status()[0]["mode"] == "safe"
        assert "no reading" in runner.status()[0]["safe_reason"]
        assert float(p.value("ch-1.valve")) == 30.0
        assert p.kinds("loop_safe_state")


# ---- manual override -------------------------------------------------------------------------

actions = st.lists(
    st.one_of(
        st.tuples(st.just("manual"), st.floats(0, 100).map(lambda x: round(x, 1))),
        st.tuples(st.just("release"), st.none()),
        st.tuples(st.just("platform"), st.floats(0, 100).map(lambda x: round(x, 1))),
        st.tuples(st.just("step"), st.integers(1, 3)),
        st.tuples(st.just("settle"), st.none()),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(actions)
def test_a_manual_override_is_never_overwritten_by_a_loop(tmp_path_factory, script):
    asyncio.run(_override_scenario(tmp_path_factory.mktemp("override"), script))


async def _override_scenario(tmp_path: Path, script: list) -> None:
    async with plant(tmp_path) as p:
        runner = runner_for(p, PID)
        now, temp = 0.0, 12.0
        manual: float | None = None  # the technician's held value

        def check() -> None:
            holder = p.router.holds.winner("ch-1.valve")
            if manual is not None:
                assert holder is not None and holder.source is Source.MANUAL
                assert float(p.value("ch-1.valve")) == manual

        for n, (action, arg) in enumerate(script):
            if action in ("manual", "platform"):
                source = Source.MANUAL if action == "manual" else Source.PLATFORM
                write = m.Write(v=1, id=f"{action}-{n}", type="write", point="ch-1.valve",
                                value=arg)  # fmt: skip
                final = await p.command(write, source)
                if action == "manual":
                    assert final["stage"] == "done", final
                    manual = arg
                elif manual is not None:
                    assert final["reason"] == "overridden"
            elif action == "release":
                release = m.Release(v=1, id=f"rel-{n}", type="release", point="ch-1.valve")
                final = await p.command(release)
                assert final["stage"] == ("done" if manual is not None else "rejected")
                manual = None
            elif action == "step":
                for _ in range(arg):
                    p.feed(temp=temp, sp=7.0)
                    await runner.tick(now)
                    now += 1.0
                    temp = cool(temp, float(p.value("ch-1.valve")), 1.0)
                    if manual is not None:
                        assert runner.status()[0]["mode"] == "overridden"
            else:
                await runner.settle()
            check()
        await runner.settle()
        check()
        if manual is not None:
            # At its next step the loop lets go of its own hold: the end of the override
            # goes back to the device, not to the loop's stale value.
            await runner.tick(now)
            await runner.settle()
            check()
            assert p.router.holds.get("ch-1.valve", Source.AUTO) is None


async def test_the_end_of_an_override_is_bumpless(tmp_path):
    async with plant(tmp_path) as p:
        runner = runner_for(p, PID)
        temp = 12.0
        for t in range(200):
            p.feed(temp=temp, sp=7.0)
            await runner.tick(float(t))
            await runner.settle()
            temp = cool(temp, float(p.value("ch-1.valve")), 1.0)
            if t == 40:
                write = m.Write(v=1, id="man", type="write", point="ch-1.valve", value=30.0)
                assert (await p.command(write))["stage"] == "done"
            if t == 60:
                assert runner.status()[0]["mode"] == "overridden"
                assert float(p.value("ch-1.valve")) == 30.0
                release = m.Release(v=1, id="rel", type="release", point="ch-1.valve")
                assert (await p.command(release))["result"]["effective"] == "device"
                before = float(p.value("ch-1.valve"))
            if t == 61:
                # One step after: close to the held value, not the loop's old output.
                assert abs(float(p.value("ch-1.valve")) - before) < 5.0
        assert runner.status()[0]["mode"] == "auto"
        assert temp == pytest.approx(7.0, abs=0.3)


# ---- the loop command ------------------------------------------------------------------------


def loop_command(n: int, loop: str, action: str, parameter=None, value=None) -> m.LoopCommand:
    return m.LoopCommand(v=1, id=f"loop-cmd-{n}", type="loop", loop=loop, action=action,
                         parameter=parameter, value=value)  # fmt: skip


async def test_enable_disable_and_set_through_the_routers_loop_command(tmp_path):
    async with plant(tmp_path) as p:
        runner = runner_for(p, PID)
        p.router.register("loop", runner.handle_command)
        for t in range(5):
            p.feed(temp=9.0, sp=7.0)
            await runner.tick(float(t))
            await runner.settle()
        assert p.router.holds.get("ch-1.valve", Source.AUTO) is not None

        final = await p.command(loop_command(1, "chw-valve", "disable"), Source.PLATFORM)
        assert final["stage"] == "done" and final["result"]["released"] == ["ch-1.valve"]
        assert p.router.holds.get("ch-1.valve", Source.AUTO) is None
        value = p.value("ch-1.valve")
        for t in range(5, 10):
            p.feed(temp=11.0, sp=7.0)
            await runner.tick(float(t))
            await runner.settle()
        assert runner.status()[0]["mode"] == "disabled" and p.value("ch-1.valve") == value

        final = await p.command(loop_command(2, "chw-valve", "set", "setpoint", 10), Source.MANUAL)
        assert final["stage"] == "done" and final["result"]["value"] == 10.0
        final = await p.command(loop_command(3, "chw-valve", "enable"), Source.PLATFORM)
        assert final["stage"] == "done"
        temp = 11.0
        for t in range(10, 300):
            p.feed(temp=temp, sp=7.0)  # the point says 7; the set parameter wins
            await runner.tick(float(t))
            await runner.settle()
            temp = cool(temp, float(p.value("ch-1.valve")), 1.0)
        assert temp == pytest.approx(10.0, abs=0.05)
        assert runner.status()[0]["set"] == {"setpoint": 10.0}

        bad = [
            (loop_command(4, "nope", "enable"), "unknown_loop"),
            (loop_command(5, "chw-valve", "set", "colour", 1), "malformed"),
            (loop_command(6, "chw-valve", "set", "kp", -1), "malformed"),
            (loop_command(7, "chw-valve", "set", "setpoint"), "malformed"),
        ]
        for command, reason in bad:
            final = await p.command(command, Source.PLATFORM)
            assert (final["stage"], final["reason"]) == ("rejected", reason), final
            assert final["message"]


async def test_loop_commands_outlive_a_restart_but_not_a_change_of_the_loop(tmp_path):
    async with plant(tmp_path) as p:
        store, audit = p.router.store, p.router.audit
        runner = runner_for(p, PID, persist=functools.partial(store.call, audit.save_loop_settings))
        p.router.register("loop", runner.handle_command)
        final = await p.command(loop_command(1, "chw-valve", "set", "setpoint", 10), by="li")
        assert final["stage"] == "done"
        final = await p.command(loop_command(2, "chw-valve", "disable"), Source.PLATFORM, "hq")
        assert final["stage"] == "done"
        saved = await store.call(audit.loop_settings)
        assert saved["chw-valve"].enabled is False
        assert saved["chw-valve"].parameters == {"setpoint": 10.0}
        assert saved["chw-valve"].by == "hq"

        # After a restart (a new runner on the same configuration): disabled, setpoint 10.
        again = runner_for(p, PID)
        assert again.restore(saved) == []
        status = again.status()[0]
        assert (status["mode"], status["enabled"], status["set"]) == (
            "disabled",
            False,
            {"setpoint": 10.0},
        )
        assert status["changed"]["by"] == "hq"  # the technician sees who, after the restart
        await again.tick(0.0)
        assert p.router.holds.get("ch-1.valve", Source.AUTO) is None  # it writes nothing

        # The loop's configuration changed, or the loop is gone: the config speaks again.
        retuned = runner_for(p, {**PID, "kp": 12.0})
        assert retuned.restore(saved) == ["chw-valve"]
        assert retuned.status()[0]["mode"] == "auto" and "set" not in retuned.status()[0]
        assert runner_for(p, {**PID, "id": "other"}).restore(saved) == ["chw-valve"]


# ---- the other loop types --------------------------------------------------------------------


async def test_chw_reset_from_a_request_point_trims_and_responds(tmp_path):
    async with plant(tmp_path) as p:
        loop = {"id": "chw-reset", "type": "chw_reset", "period": 60, "output": "ch-1.chws_sp",
                "requests": "ch-1.requests", "initial": 7.0, "sp_min": 6.0, "sp_max": 10.0,
                "trim": 0.2, "respond": -0.3, "max_response": -0.8, "delay": 120,
                "time_step": 120}  # fmt: skip
        runner = runner_for(p, loop)
        seen = []
        for t in range(0, 1200, 60):
            p.feed(requests=0 if t < 600 else 6)
            await runner.tick(float(t))
            await runner.settle()
            seen.append(float(p.value("ch-1.chws_sp")))
        assert seen[0] == 7.0 and seen[1] == 7.0  # held through the delay
        assert max(seen) == pytest.approx(7.8)  # +0.2 every 2 minutes while nobody asks
        assert seen[-1] < max(seen)  # 6 requests: -0.8 per step


async def test_condenser_setpoint_follows_the_wet_bulb(tmp_path):
    async with plant(tmp_path) as p:
        loop = {"id": "cw", "type": "condenser", "period": 10, "output": "ch-1.cw_sp",
                "wetbulb": "ch-1.wetbulb", "max_step": 1.0}  # fmt: skip
        runner = runner_for(p, loop)
        for t in range(0, 100, 10):
            p.feed(wetbulb=22.0)
            await runner.tick(float(t))
            await runner.settle()
        assert float(p.value("ch-1.cw_sp")) == pytest.approx(26.0)  # 22 + design approach 4


async def test_run_keeps_each_loop_on_its_own_period(tmp_path):
    async with plant(tmp_path) as p:
        fast = {**PID, "period": 0.05}
        slow = {"id": "cw", "type": "condenser", "period": 0.3, "output": "ch-1.cw_sp",
                "wetbulb": "ch-1.wetbulb"}  # fmt: skip
        runner = runner_for(p, fast, slow)
        p.feed(temp=9.0, sp=7.0, wetbulb=21.0)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        steps = {s["id"]: s["steps"] for s in runner.status()}
        # The first run pays the numba warm-up before the first step.
        assert steps["chw-valve"] >= 4 * steps["cw"] >= 8, steps
        assert float(p.value("ch-1.cw_sp")) == pytest.approx(25.0)


STAGING_POINTS = [
    point("run1", False, writable=True, kind="binary"),
    point("run2", False, writable=True, kind="binary"),
    point("st1", True, kind="binary"),
    point("st2", False, kind="binary"),
    point("load", 500.0),
    point("chws", 7.0),
]


async def test_staging_starts_the_standby_through_protection(tmp_path):
    from control_loops.config import EquipmentProtection
    from control_loops.protection import Protection

    guard = EquipmentProtection(id="ch2", run_command="ch-1.run2", running="ch-1.st2",
                                min_off=3600)  # fmt: skip
    async with plant(tmp_path, STAGING_POINTS) as p:
        prot = Protection([guard], p.cache)
        prot.observe(wall_ms() - 7_200_000)  # seen standing still for two hours
        p.router.protection = prot
        chillers = [{"run": f"ch-1.run{i}", "status": f"ch-1.st{i}", "capacity_kw": 1000}
                    for i in (1, 2)]  # fmt: skip
        loop = {"id": "stage", "type": "staging", "period": 60, "load": "ch-1.load",
                "chw_supply": "ch-1.chws", "chw_setpoint": 7.0, "stage_up_delay": 300,
                "min_hold": 600, "chillers": chillers}  # fmt: skip
        runner = runner_for(p, loop)
        p.feed(load=500.0, chws=7.0, st1=True, st2=False)
        await runner.tick(0.0)
        await runner.settle()
        assert p.value("ch-1.run1") is True and not p.value("ch-1.run2")
        # Load above 90 % of one chiller for the stage-up delay: chiller 2 is started.
        for t in range(60, 420, 60):
            p.feed(load=950.0, chws=7.0, st1=True, st2=False)
            await runner.tick(float(t))
            await runner.settle()
        assert p.value("ch-1.run2") is True
        assert "stage up" in runner.status()[0]["staging"]
        # It ran: stopping it now is fine, but a restart within min_off is refused, and the
        # loop says so instead of hammering the router.
        stop = m.Write(v=1, id="stop", type="write", point="ch-1.run2", value=False)
        assert (await p.command(stop))["stage"] == "done"
        await runner.tick(900.0)  # sees the override and lets go of its own hold
        await runner.settle()
        assert runner.status()[0]["mode"] == "overridden"
        release = m.Release(v=1, id="rel", type="release", point="ch-1.run2")
        assert (await p.command(release))["result"]["effective"] == "device"
        p.feed(load=950.0, chws=7.0, st1=True, st2=False)
        await runner.tick(1000.0)
        await runner.settle()
        status = runner.status()[0]
        assert "protection" in status["result"] and "minimum off time" in status["result"]
        writes = status["writes"]
        await runner.tick(1001.0)  # before the retry time: no new command
        await runner.settle()
        assert runner.status()[0]["writes"] == writes
