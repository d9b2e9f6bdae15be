"""Equipment protection: min on/off, starts per hour, flow, persistence, the flow interlock."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_loops.config import EquipmentProtection, MinFlow
from control_loops.protection import FlowInterlock, Protection
from edge_agent.cache import PointCache
from edge_agent.commands import messages as m
from edge_agent.commands.messages import Source
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config_text
from edge_agent.points import Reading, wall_ms
from tests.control_loops.test_runner import plant, point

RUN, STATUS, FLOW = "ch-1.run", "ch-1.status", "ch-1.flow"
T0 = 1_800_000_000_000  # simulated wall clock, ms


def entry(**kw) -> EquipmentProtection:
    return EquipmentProtection(id="chiller-1", run_command=RUN, running=STATUS, **kw)


def status(cache: PointCache, running: bool, ts: int = T0) -> None:
    cache.update("ch-1", [Reading("status", running, ts)])


def flow(cache: PointCache, value: float, ts: int = T0) -> None:
    cache.update("ch-1", [Reading("flow", value, ts)])


# ---- property: the limits hold whatever is asked, by whom, when ------------------------------

steps = st.lists(
    st.tuples(
        st.integers(0, 400),  # seconds since the previous step
        st.sampled_from(["cmd", "cmd", "cmd", "cmd", "poll", "local", "flow", "restart"]),
        st.booleans(),
        st.sampled_from(list(Source)),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    min_on=st.sampled_from([0, 60, 300, 900]),
    min_off=st.sampled_from([0, 60, 300, 1200]),
    max_starts=st.sampled_from([None, 1, 2, 4]),
    min_flow=st.sampled_from([None, 5.0]),
    script=steps,
)
def test_limits_hold_under_adversarial_commands(
    tmp_path_factory, min_on, min_off, max_starts, min_flow, script
):
    """A simulated chiller: the run command acts at once, the status reaches the cache only
    at polls (at least every 60 s), and the chiller may start or stop on its own (hand
    mode, a trip). Commands come from every source at random times, and the agent may
    restart (a new Protection over the same state file). Every start and stop the commands
    cause must respect the limits, counting every start and stop the agent could have seen
    (a trip in the last poll interval is invisible: the chiller's own anti-recycle timer
    covers that window)."""
    path = tmp_path_factory.mktemp("prot") / "protection.json"
    cfg = entry(min_on=min_on, min_off=min_off, max_starts_per_hour=max_starts,
                min_flow=MinFlow(point=FLOW, value=min_flow) if min_flow else None)  # fmt: skip
    cache = PointCache()
    t = T0
    status(cache, False, t)
    flow(cache, 10.0, t)
    prot = Protection([cfg], cache, path)
    prot.observe(t)
    command, actual, flow_value = False, False, 10.0
    starts: list[tuple[int, bool]] = []  # (time, could the agent know it)
    stops: list[tuple[int, bool]] = []
    last_poll, local_unseen, polled = t, False, False

    def poll(now: int) -> None:
        nonlocal last_poll, local_unseen, polled
        status(cache, actual, now)
        if actual != polled:  # a change the agent can see (or a command it made take)
            starts[:] = [(s, True) for s, _ in starts]
            stops[:] = [(s, True) for s, _ in stops]
        last_poll, local_unseen, polled = now, False, actual
        prot.observe(now)

    for gap, kind, value, source in script:
        t += gap * 1000
        if t - last_poll > 60_000:
            poll(t - (t - last_poll) % 60_000)  # the poller's last round before now
        if kind == "poll":
            poll(t)
        elif kind == "flow":
            flow_value = 10.0 if value else 2.0
            flow(cache, flow_value, t)
        elif kind == "restart":
            prot = Protection([cfg], cache, path)
        elif kind == "local":
            if local_unseen:
                poll(t)
            actual = not actual
            (starts if actual else stops).append((t, False))
            local_unseen = True
        else:
            if prot.check(RUN, value, t, source) is not None:
                continue
            prot.written(RUN, value, t)
            changed = value != command
            command = value
            if not changed or actual == value:
                continue
            actual = value
            if value:  # a start caused by a command
                known_stops = [s for s, known in stops if known]
                assert not known_stops or t - known_stops[-1] >= min_off * 1000
                window = [s for s, known in starts if known and t - s < 3_600_000]
                assert max_starts is None or len(window) < max_starts
                assert min_flow is None or flow_value >= min_flow
                starts.append((t, True))
            else:
                low_flow = min_flow is not None and flow_value < min_flow
                if starts and starts[-1][1] and source is not Source.SAFETY and not low_flow:
                    assert t - starts[-1][0] >= min_on * 1000
                stops.append((t, True))


def test_a_stop_at_safety_or_for_lack_of_flow_is_always_allowed():
    cache = PointCache()
    status(cache, False)
    flow(cache, 10.0)
    prot = Protection([entry(min_on=600, min_flow=MinFlow(point=FLOW, value=5))], cache)
    assert prot.check(RUN, True, T0) is None
    prot.written(RUN, True, T0)
    assert "minimum on time" in prot.check(RUN, False, T0 + 1000, Source.MANUAL)
    assert prot.check(RUN, False, T0 + 1000, Source.SAFETY) is None
    flow(cache, 1.0)
    assert prot.check(RUN, False, T0 + 1000, Source.MANUAL) is None
    # Safety may stop, but never start in violation.
    prot.written(RUN, False, T0 + 2000)
    assert "below the minimum" in prot.check(RUN, True, T0 + 3000, Source.SAFETY)


def test_starts_and_stops_seen_on_the_status_count():
    cache = PointCache()
    status(cache, False)
    prot = Protection([entry(min_on=300, min_off=600, max_starts_per_hour=2)], cache)
    prot.observe(T0)
    # Started on its own panel: a start, and the minimum on time runs from there.
    status(cache, True)
    prot.observe(T0 + 10_000)
    assert prot.running(RUN, T0 + 10_000) is True
    assert "minimum on time" in prot.check(RUN, False, T0 + 20_000)
    # Tripped: a stop, and the minimum off time runs from there.
    status(cache, False)
    prot.observe(T0 + 400_000)
    problem = prot.check(RUN, True, T0 + 500_000)
    assert "stopped 100 s ago, minimum off time is 600 s (start allowed in 500 s)" in problem
    status(cache, True)
    prot.observe(T0 + 1_100_000)
    status(cache, False)
    prot.observe(T0 + 1_500_000)
    assert "2 starts in the last hour" in prot.check(RUN, True, T0 + 2_200_000)
    assert prot.check(RUN, True, T0 + 3_610_001) is None
    # A status that lags a command is not a second start.
    prot.written(RUN, True, T0 + 3_610_001)
    status(cache, True)
    prot.observe(T0 + 3_620_000)
    assert prot.status(T0 + 3_620_000)[0]["starts_last_hour"] == 2


def test_the_state_survives_a_restart(tmp_path):
    path = tmp_path / "protection.json"
    cache = PointCache()
    status(cache, False)
    cfg = entry(min_on=300, min_off=600, max_starts_per_hour=3)
    prot = Protection([cfg], cache, path)
    prot.written(RUN, True, T0)
    status(cache, True)
    again = Protection([cfg], cache, path)
    assert "minimum on time" in again.check(RUN, False, T0 + 60_000)
    again.written(RUN, False, T0 + 400_000)
    status(cache, False)
    third = Protection([cfg], cache, path)
    assert "minimum off time" in third.check(RUN, True, T0 + 500_000)  # not reset
    assert third.status(T0 + 500_000)[0]["starts_last_hour"] == 1
    saved = json.loads(path.read_text())
    # The minimum off time runs from the status going off, seen first at 500 s.
    assert saved["machines"]["chiller-1"]["last_stop"] == T0 + 500_000
    assert not list(tmp_path.glob(".protection.json.*"))  # no temporary file left over


def test_an_unreadable_state_file_restarts_the_timers_rather_than_forgetting(tmp_path):
    path = tmp_path / "protection.json"
    path.write_text('{"v": 1, "machines": {"chiller-1": {"starts": "x"')
    cache = PointCache()
    status(cache, False, wall_ms())
    prot = Protection([entry(min_off=600)], cache, path)
    assert "minimum off time" in prot.check(RUN, True, wall_ms())


@pytest.mark.parametrize(
    ("running", "problem", "allowed_after_s"),
    [
        (True, "started 15 s ago, minimum on time is 900 s", 900),
        (False, "stopped 15 s ago, minimum off time is 600 s", 600),
    ],
)
def test_a_machine_found_with_no_record_has_just_started_or_stopped(
    tmp_path, running, problem, allowed_after_s
):
    """An empty state folder (a new gateway, a replaced disk): the chiller has been running
    (or standing) for who knows how long, so its minimum on (off) time runs from when the
    agent first sees it."""
    cache = PointCache()
    status(cache, running)
    prot = Protection([entry(min_on=900, min_off=600)], cache, tmp_path / "protection.json")
    prot.observe(T0)  # the protection task, right after start-up
    change = not running
    found = prot.check(RUN, change, T0 + 15_000, Source.PLATFORM)
    assert found is not None and problem in found
    assert prot.check(RUN, running, T0 + 15_000) is None  # no change: allowed
    assert prot.check(RUN, change, T0 + allowed_after_s * 1000) is None


def test_a_machine_never_seen_and_never_recorded_is_held_both_ways():
    """No status yet (its device not polled, or down) and no history: whether it runs is
    unknown, so both minimum times hold from the agent's start."""
    prot = Protection([entry(min_on=900, min_off=600)], PointCache())
    now = wall_ms()
    assert "minimum on time" in prot.check(RUN, False, now + 10_000, Source.PLATFORM)
    assert "minimum off time" in prot.check(RUN, True, now + 10_000, Source.PLATFORM)
    assert prot.check(RUN, False, now + 10_000, Source.SAFETY) is None
    assert prot.check(RUN, True, now + 901_000) is None


def seen_stopped_long_ago(prot: Protection, cache: PointCache) -> None:
    """The agent watched the chiller stand still for an hour (so a start is allowed now)."""
    cache.update("ch-1", [Reading("status", False, wall_ms())])
    prot.observe(wall_ms() - 3_600_000)


# ---- through the router ----------------------------------------------------------------------

CHILLER = [
    point("run", False, writable=True, kind="binary"),
    point("status", False, kind="binary"),
    point("flow", 10.0),
]


def write(n: int, value: bool) -> m.Write:
    return m.Write(v=1, id=f"w-{n}", type="write", point=RUN, value=value)


async def test_the_router_refuses_unprotected_commands_from_every_source(tmp_path):
    async with plant(tmp_path, CHILLER) as p:
        prot = Protection([entry(min_off=600, min_on=600)], p.cache, tmp_path / "prot.json")
        seen_stopped_long_ago(prot, p.cache)
        p.router.protection = prot
        final = await p.command(write(1, True), Source.PLATFORM)
        assert final["stage"] == "done" and p.value(RUN) is True
        for n, source in enumerate([Source.MANUAL, Source.PLATFORM, Source.AUTO], 2):
            release = m.Release(v=1, id=f"r-{n}", type="release", point=RUN)
            await p.command(release, Source.PLATFORM)
            final = await p.command(write(n, False), source)
            assert (final["stage"], final["reason"]) == ("rejected", "protection"), final
            assert "minimum on time" in final["message"]
        assert p.value(RUN) is True
        assert prot.refused == 3
        # A safety interlock may always stop a machine (it never starts one early).
        final = await p.command(write(9, False), Source.SAFETY)
        assert final["stage"] == "done" and p.value(RUN) is False


async def test_the_flow_interlock_stops_a_chiller_and_lets_go_when_a_start_is_allowed(tmp_path):
    async with plant(tmp_path, CHILLER) as p:
        cfg = entry(min_off=1.0, min_flow=MinFlow(point=FLOW, value=5.0, delay=5.0))
        prot = Protection([cfg], p.cache, tmp_path / "prot.json", p.events_sink)
        seen_stopped_long_ago(prot, p.cache)
        p.router.protection = prot
        interlock = FlowInterlock(prot, p.router, p.events_sink)
        p.feed(flow=10.0, status=False)
        assert (await p.command(write(1, True), Source.AUTO, "staging"))["stage"] == "done"
        p.feed(flow=10.0, status=True)
        await interlock.tick(0.0)
        p.feed(flow=2.0, status=True)  # the pump stopped
        await interlock.tick(1.0)
        await interlock.tick(5.0)  # 4 s low: not yet
        assert p.value(RUN) is True and not p.kinds("flow_interlock_trip")
        await interlock.tick(6.0)
        assert p.value(RUN) is False
        hold = p.router.holds.winner(RUN)
        assert hold.source is Source.SAFETY and hold.by == "flow-interlock"
        (trip,) = p.kinds("flow_interlock_trip")
        assert trip["machine"] == "chiller-1" and trip["flow"] == 2.0
        # Nobody restarts it while the hold is in force, not even the technician.
        final = await p.command(write(2, True), Source.MANUAL)
        assert final["reason"] in ("overridden", "protection")
        # Flow back: the hold stays until the flow has been back for the delay ...
        p.feed(flow=10.0, status=False)
        await interlock.tick(10.0)
        await interlock.tick(14.0)
        assert p.router.holds.winner(RUN).source is Source.SAFETY
        await asyncio.sleep(1.1)  # ... and the minimum off time (wall clock) has passed
        await interlock.tick(15.0)
        assert p.router.holds.get(RUN, Source.SAFETY) is None
        assert p.kinds("flow_interlock_reset")
        # The loop's hold underneath comes back on: a recorded start.
        assert p.value(RUN) is True
        assert prot.status()[0]["starts_last_hour"] == 2


async def test_an_unknown_flow_neither_trips_nor_allows_a_start(tmp_path):
    async with plant(tmp_path, CHILLER) as p:
        cfg = entry(min_flow=MinFlow(point=FLOW, value=5.0, delay=1.0))
        prot = Protection([cfg], p.cache)
        p.router.protection = prot
        interlock = FlowInterlock(prot, p.router, p.events_sink)
        p.cache.update("ch-1", [Reading.bad("flow", "timeout", wall_ms())])
        final = await p.command(write(1, True), Source.MANUAL)
        assert final["reason"] == "protection" and "unknown" in final["message"]
        p.feed(flow=10.0, status=False)
        assert (await p.command(write(2, True), Source.MANUAL))["stage"] == "done"
        p.cache.update("ch-1", [Reading.bad("flow", "timeout", wall_ms())])
        for s in range(5):
            await interlock.tick(float(s))
        assert p.value(RUN) is True and not p.kinds("flow_interlock_trip")


def test_protection_ignores_points_it_does_not_guard():
    prot = Protection([entry(min_off=600)], PointCache())
    assert prot.check("ch-1.valve", 0.0, T0) is None
    prot.written("ch-1.valve", 0.0, T0)


def test_the_config_is_checked():
    base = {
        "site": {"id": "s"},
        "gateway": {"id": "g"},
        "uplink": {"endpoints": [{"host": "localhost"}]},
        "devices": [{"id": "ch-1", "driver": "fake", "points": [*CHILLER, point("sp", 7)]}],
    }
    config = {
        **base,
        "loops": [
            {"id": "a", "type": "pid", "measurement": "ch-1.flow", "setpoint": 7,
             "output": "ch-1.sp", "kp": 1},
            {"id": "b", "type": "pid", "measurement": "ch-1.flw", "setpoint": "ch-1.sp",
             "output": "ch-1.run", "kp": 1},
        ],
        "protection": [{"id": "c1", "run_command": "ch-1.flow", "running": "ch-2.status"}],
    }  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_config_text(yaml.safe_dump(config, sort_keys=False), "site.yaml")
    text = str(caught.value)
    assert "loops[0].output: ch-1.sp is not writable" in text
    assert "loops[1].measurement: device 'ch-1' has no point 'flw' (did you mean 'flow'?)" in text
    assert "protection[0].run_command: ch-1.flow is not writable" in text
    assert "protection[0].run_command: a run command must be a binary point" in text
    assert "protection[0].running: unknown device 'ch-2'" in text
    assert all(issue.line for issue in caught.value.issues)  # file:line for each
    guard = {"id": "c1", "run_command": "ch-1.run", "running": "ch-1.status", "min_off": "10m",
             "min_flow": {"point": "ch-1.flow", "value": 5}}  # fmt: skip
    good = {**base, "loops": [config["loops"][0] | {"output": "ch-1.run"}], "protection": [guard]}
    loaded = load_config_text(yaml.safe_dump(good), "site.yaml")
    assert loaded.protection[0].min_off == 600.0 and loaded.loops[0].type == "pid"
