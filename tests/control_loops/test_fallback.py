"""A fallback loop (`yields_to`) stands by while its leader commands a shared output and
takes it back when the leader is disabled or in its safe state."""

from __future__ import annotations

import textwrap

import pytest

from edge_agent.commands import messages as m
from edge_agent.commands.messages import Source
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config_text
from tests.control_loops.test_runner import plant, runner_for

# Two condenser loops on one setpoint: the leader by approach, the fallback by lift.
LEADER = {
    "id": "leader",
    "type": "condenser",
    "period": 1,
    "output": "ch-1.cw_sp",
    "mode": "approach",
    "wetbulb": "ch-1.wetbulb",
    "design_approach": 5.0,
    "low_load_approach": 5.0,
    "min_approach": 2.0,
    "cw_min": 10,
    "cw_max": 40,
}
FALLBACK = {"id": "fallback", "type": "condenser", "period": 1, "output": "ch-1.cw_sp",
            "mode": "lift", "chw_supply": "ch-1.temp", "lift": 20.0, "cw_min": 10,
            "cw_max": 40, "yields_to": ["leader"]}  # fmt: skip


def _modes(runner) -> dict[str, str]:
    return {lp["id"]: lp["mode"] for lp in runner.status()}


def _holder(p) -> str | None:
    hold = p.router.holds.get("ch-1.cw_sp", Source.AUTO)
    return hold and hold.by


class Clock:
    """The runner's clock, moved by the test (enable schedules a step at `clock()`)."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def _runner(p, *loops):
    runner = runner_for(p, *loops)
    runner.clock = Clock()
    p.router.register("loop", runner.handle_command)
    return runner


async def _step(runner, now: float) -> None:
    runner.clock.now = now
    await runner.tick(now)
    await runner.settle()


async def test_the_fallback_stands_by_and_takes_over(tmp_path):
    async with plant(tmp_path) as p:
        runner = _runner(p, LEADER, FALLBACK)
        p.feed(wetbulb=20.0, temp=12.0)
        await _step(runner, 0.0)
        assert _modes(runner) == {"leader": "auto", "fallback": "standby"}
        assert p.value("ch-1.cw_sp") == 25.0 and _holder(p) == "leader"  # 20 + 5
        # The leader is disabled: it releases its hold, the fallback writes at once.
        off = m.LoopCommand(v=1, id="off", type="loop", loop="leader", action="disable")
        assert (await p.command(off, Source.PLATFORM))["stage"] == "done"
        await _step(runner, 1.0)
        assert _modes(runner) == {"leader": "disabled", "fallback": "auto"}
        assert p.value("ch-1.cw_sp") == 32.0 and _holder(p) == "fallback"  # 12 + 20
        # Back on: the fallback stands by without releasing anything; the leader writes.
        on = m.LoopCommand(v=1, id="on", type="loop", loop="leader", action="enable")
        assert (await p.command(on, Source.PLATFORM))["stage"] == "done"
        await _step(runner, 2.0)
        await _step(runner, 3.0)
        assert _modes(runner) == {"leader": "auto", "fallback": "standby"}
        assert p.value("ch-1.cw_sp") == 25.0 and _holder(p) == "leader"


async def test_the_fallback_covers_a_leader_in_its_safe_state(tmp_path):
    async with plant(tmp_path) as p:
        runner = _runner(p, LEADER, FALLBACK)
        p.feed(wetbulb=20.0, temp=12.0)
        await _step(runner, 0.0)
        p.feed(wetbulb=float("nan"), temp=12.0)  # the weather station reads garbage
        await _step(runner, 1.0)
        assert _modes(runner)["leader"] == "safe"
        await _step(runner, 2.0)
        assert _modes(runner)["fallback"] == "auto" and p.value("ch-1.cw_sp") == 32.0
        p.feed(wetbulb=20.0, temp=12.0)
        await _step(runner, 3.0)
        await _step(runner, 4.0)
        assert _modes(runner) == {"leader": "auto", "fallback": "standby"}
        assert p.value("ch-1.cw_sp") == 25.0


SITE = textwrap.dedent(
    """
    site: {id: s}
    gateway: {id: g}
    uplink: {endpoints: [{host: 127.0.0.1}]}
    devices:
      - id: ch-1
        driver: fake
        points:
          - {id: wetbulb}
          - {id: temp}
          - {id: cw_sp, writable: true, limits: {min: 10, max: 40}}
    loops:
      - {id: leader, type: condenser, output: ch-1.cw_sp, wetbulb: ch-1.wetbulb}
      - {id: fallback, type: condenser, output: ch-1.cw_sp, mode: lift,
         chw_supply: ch-1.temp YIELDS}
    """
)


@pytest.mark.parametrize(
    ("yields", "problem"),
    [
        ("", "ch-1.cw_sp is already written by loop 'leader' (share it only with yields_to"),
        (", yields_to: [nobody]", "a loop cannot yield to an unknown loop 'nobody'"),
        (", yields_to: [fallback]", "a loop cannot yield to itself"),
    ],
)
def test_shared_outputs_need_a_fallback_relation(yields: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config_text(SITE.replace(" YIELDS", yields))
    assert any(problem in str(issue) for issue in error.value.issues), error.value.issues


def test_a_fallback_may_share_its_leaders_output() -> None:
    config = load_config_text(SITE.replace(" YIELDS", ", yields_to: [leader]"))
    assert config.loops[1].yields_to == ("leader",)
