"""Every write and release is one line in the agent's log, and so is every end of a hold
that no command reply announces (its time up, an end protection deferred): the real
router, audit store and protection, the fake driver, the agent's JSON log on stderr."""

from __future__ import annotations

import asyncio
from typing import Any

from drivers.base import Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.commands.messages import Source
from tests.edge_agent.commands.test_hold_ends import RUN, rig, until

SP = "chiller-3.sp"


def _device() -> FakeDevice:
    return FakeDevice.model_validate(
        {"id": "chiller-3", "driver": "fake", "timeout": 0.2,
         "points": [
             {"id": "run_cmd", "kind": "binary", "writable": True, "min_write_interval": 0,
              "signal": {"value": 0}},
             {"id": "sp", "unit": "degC", "writable": True, "min_write_interval": 0,
              "limits": {"min": 5, "max": 12}, "signal": {"value": 7.0}},
         ]}
    )  # fmt: skip


def _ours(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agent's own lines (not the libraries': they name their `logger`)."""
    return [line for line in lines if "logger" not in line]


async def test_writes_and_releases_are_one_line_each_with_who_and_the_read_back(
    tmp_path, agent_logs
):
    driver = FakeDriver(_device(), Link("chiller-3"))
    async with rig(tmp_path, _device(), driver) as r:
        agent_logs.lines()
        done = await r.send({"type": "write", "point": SP, "value": 8.5}, Source.MANUAL, "li")
        assert done["stage"] == "done"
        (line,) = _ours(agent_logs.lines())
        assert line["event"] == "write done" and line["level"] == "info"
        assert (line["point"], line["value"], line["readback"]) == (SP, 8.5, 8.5)
        assert (line["source"], line["by"], line["quality"]) == ("manual", "li", "good")
        assert line["id"] == done["id"]

        await r.send({"type": "write", "point": SP, "value": 9}, Source.PLATFORM, "platform")
        (line,) = _ours(agent_logs.lines())
        assert (line["event"], line["reason"], line["source"]) == (
            "write rejected",
            "overridden",
            "platform",
        )
        assert "held by manual (li)" in line["error"]

        await r.send({"type": "release", "point": SP}, Source.MANUAL, "li")
        (line,) = _ours(agent_logs.lines())
        assert (line["event"], line["point"], line["effective"]) == ("release done", SP, "device")
        assert line["readback"] == 8.5  # the fake device keeps the value

        driver._faults = {"offline": True}
        failed = await r.send({"type": "write", "point": SP, "value": 9}, Source.MANUAL, "li")
        assert failed["stage"] == "failed"
        (line,) = _ours(agent_logs.lines())
        assert (line["event"], line["level"], line["reason"]) == (
            "write failed",
            "warning",
            "device_unavailable",
        )


async def test_a_loops_writes_are_at_debug_level(tmp_path, agent_logs):
    driver = FakeDriver(_device(), Link("chiller-3"))
    async with rig(tmp_path, _device(), driver) as r:
        agent_logs.lines()
        await r.send({"type": "write", "point": SP, "value": 8}, Source.AUTO, "chw-reset")
        driver._faults = {"offline": True}
        await r.send({"type": "write", "point": SP, "value": 9}, Source.AUTO, "chw-reset")
        assert _ours(agent_logs.lines()) == []  # a down device says so once: device_down
        agent_logs.configure("debug")
        await r.send({"type": "write", "point": SP, "value": 9}, Source.AUTO, "chw-reset")
        (line,) = _ours(agent_logs.lines())
        assert (line["event"], line["level"], line["by"]) == ("write failed", "debug", "chw-reset")


async def test_a_hold_whose_time_runs_out_is_one_line(tmp_path, agent_logs):
    driver = FakeDriver(_device(), Link("chiller-3"))
    async with rig(tmp_path, _device(), driver) as r:
        await r.send({"type": "write", "point": SP, "value": 9}, Source.PLATFORM, "platform")
        await r.send(
            {"type": "write", "point": SP, "value": 10, "duration": 0.5}, Source.MANUAL, "li"
        )
        agent_logs.lines()
        await until(lambda: r.kinds("hold_ended"), 4.0)
        await asyncio.sleep(0.2)
        (line,) = _ours(agent_logs.lines())
        assert line["event"] == "hold_ended" and line["cause"] == "expired"
        assert (line["point"], line["source"], line["by"]) == (SP, "manual", "li")
        assert (line["effective"], line["readback"]) == ("platform", 9)


async def test_a_hold_that_runs_out_beneath_another_is_one_line_too(tmp_path, agent_logs):
    """Nothing changes on the device, but the platform's hold is gone: said once."""
    driver = FakeDriver(_device(), Link("chiller-3"))
    async with rig(tmp_path, _device(), driver) as r:
        await r.send(
            {"type": "write", "point": SP, "value": 9, "duration": 0.5}, Source.PLATFORM, "p"
        )
        await r.send({"type": "write", "point": SP, "value": 10}, Source.MANUAL, "li")
        agent_logs.lines()
        await until(lambda: r.kinds("hold_ended"), 4.0)
        await asyncio.sleep(0.2)
        (line,) = _ours(agent_logs.lines())
        assert (line["event"], line["cause"], line["source"]) == (
            "hold_ended",
            "expired",
            "platform",
        )
        assert (line["effective"], line["readback"]) == ("manual", 10)
        assert r.router.holds.winner(SP).source is Source.MANUAL


async def test_an_end_protection_defers_is_one_line_then_one_when_it_ends(tmp_path, agent_logs):
    """A technician's stop over the platform's run, released inside the minimum off time."""
    driver = FakeDriver(_device(), Link("chiller-3"))
    async with rig(tmp_path, _device(), driver, min_off=2.5) as r:
        await r.send({"type": "write", "point": RUN, "value": True})
        r.running(True)
        stop = await r.send({"type": "write", "point": RUN, "value": False}, Source.MANUAL, "li")
        assert stop["stage"] == "done"
        r.running(False)
        await r.send(
            {"type": "write", "point": RUN, "value": False, "duration": 0.2}, Source.MANUAL, "li"
        )
        agent_logs.lines()
        await until(lambda: r.kinds("hold_ended"), 6.0)  # the expiry task: every second
        await asyncio.sleep(0.2)
        deferred, ended = _ours(agent_logs.lines())  # the deferral said once
        assert (deferred["event"], deferred["cause"], deferred["point"]) == (
            "hold_end_deferred",
            "expired",
            RUN,
        )
        assert "minimum off time" in deferred["reason"]
        assert (ended["event"], ended["cause"], ended["effective"]) == (
            "hold_ended",
            "expired",
            "platform",
        )
