"""SIGHUP as a plant sees it: a real agent polling fake devices on a shared link and a
BACnet simulator, against a real mosquitto. An unchanged file changes nothing; a changed
one restarts only the devices whose configuration (or link) changed, and every other
device polls on: no gap in its telemetry, its counters and its driver kept."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber
from tests.drivers.bacnet.sim import SimProcess, free_udp_port
from tests.harness import AgentProcess, contiguous, fake_device, site_config

FAST = 0.2  # the fake devices' poll interval
# Closing a driver takes time on a plant (a TCP session to end, COV subscriptions to cancel
# on a slow device): a restart that closes every driver stops every device's polling.
CLOSE = {"close_latency": 0.4}
SLOW = 1.0  # the BACnet device's (its floor: 1 s)
# The largest pause between two polls of a device that counts as "no gap": a few intervals,
# for a loaded machine (two cores shared by several test runs).
NO_GAP = {"ahu-1": 5 * FAST, "ahu-2": 5 * FAST, "meter": 5 * FAST, "chiller": 4 * SLOW}
OBJECTS = [
    {"name": "chws_temp", "bacnet": {"object": "analog-input", "instance": 1}, "value": 6.5},
    {"name": "run", "bacnet": {"object": "binary-input", "instance": 1}, "value": True},
]


@pytest.fixture
def chiller(tmp_path: Path) -> Iterator[SimProcess]:
    sim = SimProcess(tmp_path / "chiller.json", OBJECTS, instance=3101).start()
    yield sim
    sim.stop()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's notification socket, as NOTIFY_SOCKET names it to the agent."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    yield sock
    sock.close()


def _notified(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def _bacnet_device(sim: SimProcess, port: int, interval: float = SLOW) -> dict[str, Any]:
    return {
        "id": "chiller",
        "driver": "bacnet",
        "poll_interval": interval,
        "timeout": 0.4,
        "connection": {"local_address": "127.0.0.1/8", "local_port": port,
                       "device_instance": 3999, "address": sim.address},
        "points": [
            {"id": "chws_temp", "bacnet": {"object": "analog-input", "instance": 1}},
            {"id": "run", "kind": "binary", "bacnet": {"object": "binary-input", "instance": 1}},
        ],
    }  # fmt: skip


# A loop and an alarm on ahu-1, the device the tests restart most: they run on through it.
LOOP = {"id": "ahu-1-valve", "type": "pid", "period": 0.5, "measurement": "ahu-1.a0",
        "setpoint": 20.0, "output": "ahu-1.valve", "kp": 5, "ti": 60, "direction": "direct",
        "limits": {"min": 0, "max": 100}, "safe_state": "hold"}  # fmt: skip
ALARM = {"id": "ahu-1-on", "type": "high", "point": "ahu-1.a0", "limit": -100,
         "severity": "minor", "message": "ahu-1 a0 {value} above {limit}"}  # fmt: skip


def _ahu_1(interval: float) -> dict[str, Any]:
    device = fake_device(
        "ahu-1",
        interval=interval,
        timeout=FAST / 2,  # the interval changes alone
        link="bus-1",
        connection=CLOSE,
    )
    device["points"].append({"id": "valve", "writable": True, "min_write_interval": 0,
                             "limits": {"min": 0, "max": 100}, "signal": {"value": 0}})  # fmt: skip
    return device


def _config(workdir: Path, broker: LocalBroker, sim: SimProcess, port: int, **changes: Any) -> dict:
    """ahu-1 and ahu-2 share the link bus-1; meter has its own; chiller is BACnet/IP.
    `devices`: a function of that list giving the devices to configure instead."""
    devices = [
        _ahu_1(changes.pop("ahu_1_interval", FAST)),
        fake_device("ahu-2", interval=FAST, link="bus-1", connection=CLOSE),
        fake_device("meter", interval=FAST, connection=CLOSE),
        _bacnet_device(sim, port, changes.pop("chiller_interval", SLOW)),
    ]
    devices = changes.pop("devices", lambda d: d)(devices)
    links = [{"id": "bus-1", "gap": changes.pop("bus_gap", 0)}]
    return site_config(workdir, broker.port, devices, links=links, loops=[LOOP],
                       alarms=[ALARM], **changes)  # fmt: skip


@pytest.fixture
def plant(
    tmp_path: Path,
    broker: LocalBroker,
    platform: PlatformSubscriber,
    chiller: SimProcess,
    agents: list[AgentProcess],
    notify_socket: socket.socket,
) -> Iterator[tuple[AgentProcess, Any]]:
    workdir = tmp_path / "agent"
    port = free_udp_port()

    def config(**changes: Any) -> dict:
        return _config(workdir, broker, chiller, port, **changes)

    agent = AgentProcess(workdir, config())
    agents.append(agent)
    agent.start().wait_commands()
    assert platform.wait_for(
        lambda p: all(len(p.telemetry().get(d, [])) >= 5 for d in NO_GAP), 20
    ), agent.log()
    _notified(notify_socket)  # READY=1 of the start
    yield agent, config
    assert agent.stop() == 0


def _reload(
    agent: AgentProcess,
    platform: PlatformSubscriber,
    config: dict | None,
    polling: tuple[str, ...] = tuple(NO_GAP),
) -> dict:
    """Write `config` (None: leave the file as it is), SIGHUP, and let the devices that
    poll from then on (`polling`) do so for a while. Returns the status from just before
    the signal."""
    if config is not None:
        agent.write_config(config)
    before = agent.status()
    agent.signal(signal.SIGHUP)
    _wait_polling(agent, platform, time.time(), polling)
    return before


def _wait_polling(
    agent: AgentProcess, platform: PlatformSubscriber, since: float, devices: tuple[str, ...]
) -> None:
    """Every one of `devices` has polled a few times since `since` (or the test says why
    not)."""
    assert platform.wait_for(
        lambda p: all(
            sum(t["ts"] / 1000 > since + 1.0 for t in p.telemetry().get(d, [])) >= 3
            for d in devices
        ),
        20,
    ), agent.log()


def _gaps(platform: PlatformSubscriber) -> dict[str, float]:
    """The longest pause between two consecutive polls of each device, in s."""
    gaps = {}
    for device, bodies in platform.telemetry().items():
        ts = sorted({b["seq"]: b["ts"] for b in bodies}.values())
        gaps[device] = max(b - a for a, b in itertools.pairwise(ts)) / 1000
    print("gaps", {d: round(g, 3) for d, g in gaps.items()})
    return gaps


def _counter_restarts(platform: PlatformSubscriber, device: str) -> int:
    """How often the fake device's counter `c` started again: a new driver counts from 1."""
    bodies = sorted(platform.telemetry()[device], key=lambda b: b["seq"])
    values = [b["values"]["c"] for b in bodies]
    return sum(b != a + 1 for a, b in itertools.pairwise(values))


def _log_events(agent: AgentProcess) -> list[dict]:
    lines = agent.log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _applied(agent: AgentProcess) -> dict:
    """What the agent says it did with the last configuration it applied."""
    return [e for e in _log_events(agent) if e["event"] == "configuration applied"][-1]


def _assert_polled_on(before: dict, after: dict, devices: tuple[str, ...]) -> None:
    """The same pollers: their counters went on from where they were."""
    for device in devices:
        polls = before["devices"][device]["polls"], after["devices"][device]["polls"]
        assert polls[1] > polls[0], (device, polls)


def _assert_streams_whole(platform: PlatformSubscriber) -> None:
    for device, bodies in platform.telemetry().items():
        missing, _ = contiguous([b["seq"] for b in bodies])
        assert not missing, (device, missing)


def test_sighup_with_the_file_unchanged_changes_nothing(plant, platform, notify_socket):
    agent, _config = plant
    before = _reload(agent, platform, None)
    after = agent.status()
    gaps = _gaps(platform)
    assert all(gaps[d] < NO_GAP[d] for d in NO_GAP), gaps
    _assert_streams_whole(platform)
    _assert_polled_on(before, after, tuple(NO_GAP))
    for device in ("ahu-1", "ahu-2", "meter"):  # the same drivers: their counters go on
        assert _counter_restarts(platform, device) == 0, device
    assert after["uplink"]["connects"] == before["uplink"]["connects"] == 1
    assert after["config_hash"] == before["config_hash"]
    logged = [e["event"] for e in _log_events(agent)]
    assert "configuration unchanged" in logged, agent.log()
    assert logged.count("agent running") == 1 and "configuration applied" not in logged
    assert not [m for m in platform.messages if m.body.get("type") == "config_applied"]
    assert "Address already in use" not in agent.log()
    messages = _notified(notify_socket)
    reloading = next(i for i, m in enumerate(messages) if m.startswith("RELOADING=1"))
    assert "MONOTONIC_USEC=" in messages[reloading]
    assert any(m.startswith("READY=1") for m in messages[reloading:]), messages


def test_a_changed_device_restarts_alone_and_the_others_poll_on(plant, platform, notify_socket):
    agent, config = plant
    before = _reload(agent, platform, config(ahu_1_interval=0.3))
    after = agent.status()
    gaps = _gaps(platform)
    # ahu-1 pauses briefly; ahu-2 on the same link, meter and the BACnet chiller do not.
    assert gaps["ahu-1"] < 1.5, gaps
    assert all(gaps[d] < NO_GAP[d] for d in ("ahu-2", "meter", "chiller")), gaps
    _assert_streams_whole(platform)
    applied = _applied(agent)
    assert applied["restarted"] == ["ahu-1"] and not applied["started"] + applied["stopped"]
    assert applied["commands_rebuilt"] is False  # a poll interval: the router runs on
    _assert_polled_on(before, after, ("ahu-2", "meter", "chiller"))
    assert _counter_restarts(platform, "ahu-1") == 1  # a new driver, counting from 1 again
    assert _counter_restarts(platform, "ahu-2") == _counter_restarts(platform, "meter") == 0
    assert after["config_hash"] != before["config_hash"]
    assert list(after["devices"]) == ["ahu-1", "ahu-2", "meter", "chiller"]
    events = [m.body for m in platform.messages if m.body.get("type") == "config_applied"]
    assert [e["config_hash"] for e in events] == [after["config_hash"]]
    # The connection stays; its retained status says what runs now (no offline between).
    assert after["uplink"]["connects"] == before["uplink"]["connects"] == 1
    assert after["uplink"]["published"] > before["uplink"]["published"]
    statuses = [m.body for m in platform.messages if m.topic.endswith("/status")]
    assert [s["state"] for s in statuses] == ["online", "online"], statuses
    assert statuses[-1]["config_hash"] == after["config_hash"]
    assert "Address already in use" not in agent.log()
    assert any(m.startswith("READY=1") for m in _notified(notify_socket))


def test_a_changed_link_restarts_its_devices_only(plant, platform):
    agent, config = plant
    before = _reload(agent, platform, config(bus_gap=0.01))
    after = agent.status()
    gaps = _gaps(platform)
    assert all(gaps[d] < NO_GAP[d] for d in ("meter", "chiller")), gaps
    assert _applied(agent)["restarted"] == ["ahu-1", "ahu-2"]  # both on bus-1: its gap
    for device in ("ahu-1", "ahu-2"):
        assert _counter_restarts(platform, device) == 1, device
    assert _counter_restarts(platform, "meter") == 0
    _assert_polled_on(before, after, ("meter", "chiller"))
    _assert_streams_whole(platform)


def test_a_changed_bacnet_device_takes_its_port_again_without_a_collision(plant, platform):
    """The chiller is the only user of its local port: its application closes and a new
    one binds the same port at once (bacpypes3 closes sockets a loop iteration later)."""
    agent, config = plant
    before = _reload(agent, platform, config(chiller_interval=1.5))
    after = agent.status()
    gaps = _gaps(platform)
    assert gaps["chiller"] < 3.0, gaps  # two of its new intervals
    assert all(gaps[d] < NO_GAP[d] for d in ("ahu-1", "ahu-2", "meter")), gaps
    assert _applied(agent)["restarted"] == ["chiller"]
    _assert_polled_on(before, after, ("ahu-1", "ahu-2", "meter"))
    assert after["devices"]["chiller"]["up"] and after["devices"]["chiller"]["failures"] == 0
    assert "Address already in use" not in agent.log()
    assert "driver open failed" not in agent.log()
    bad = [b for b in platform.telemetry()["chiller"] if b.get("quality")]
    assert not bad, bad  # not one poll lost to the port
    _assert_streams_whole(platform)


def test_a_device_added_and_one_removed(plant, platform):
    agent, config = plant

    def swap(devices: list[dict]) -> list[dict]:  # the meter goes, a pump comes
        return [d for d in devices if d["id"] != "meter"] + [fake_device("pump", interval=FAST)]

    polling = ("ahu-1", "ahu-2", "chiller", "pump")
    before = _reload(agent, platform, config(devices=swap), polling)
    after = agent.status()
    applied = _applied(agent)
    assert applied["started"] == ["pump"] and applied["stopped"] == ["meter"], applied
    assert applied["restarted"] == []
    assert list(after["devices"]) == ["ahu-1", "ahu-2", "chiller", "pump"]
    gaps = _gaps(platform)
    assert all(gaps[d] < NO_GAP[d] for d in ("ahu-1", "ahu-2", "chiller")), gaps
    _assert_polled_on(before, after, ("ahu-1", "ahu-2", "chiller"))
    assert _counter_restarts(platform, "ahu-1") == _counter_restarts(platform, "ahu-2") == 0
    # The meter is gone: it polls no more, and its points leave the point list.
    last = max(b["ts"] for b in platform.telemetry()["meter"])
    time.sleep(3 * FAST)
    assert max(b["ts"] for b in platform.telemetry()["meter"]) == last
    refs = agent.request("points")["points"]
    assert not [r for r in refs if r.startswith("meter.")] and "pump.c" in refs
    _assert_streams_whole(platform)


def test_a_broken_file_on_sighup_keeps_everything_running(plant, platform):
    """The running configuration stays, nothing restarts, and the technician reads in the
    log where the file is wrong."""
    agent, config = plant

    def broken(devices: list[dict]) -> list[dict]:
        return [devices[0], {**devices[1], "poll_interval": "often"}, *devices[2:]]

    before = _reload(agent, platform, config(devices=broken))
    after = agent.status()
    assert after["config_hash"] == before["config_hash"]
    gaps = _gaps(platform)
    assert all(gaps[d] < NO_GAP[d] for d in NO_GAP), gaps
    _assert_polled_on(before, after, tuple(NO_GAP))
    for device in ("ahu-1", "ahu-2", "meter"):
        assert _counter_restarts(platform, device) == 0, device
    rejected = [e for e in _log_events(agent) if e["event"] == "config_rejected"]
    assert len(rejected) == 1, agent.log()
    assert rejected[0]["action"] == "kept the running configuration"
    line = _line_of(agent.config_path, "poll_interval: often")
    assert any(
        f"site.yaml:{line} devices[1].poll_interval" in problem
        for problem in rejected[0]["problems"]
    ), rejected
    logged = [e["event"] for e in _log_events(agent)]
    assert "configuration applied" not in logged and "configuration unchanged" not in logged


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_loop_and_the_alarm_on_a_restarted_device_run_on(plant, platform):
    """The device restarts under the command layer: the loop that reads and writes it and
    the alarm on its point are the same objects before and after (nothing counts from 0,
    no alarm is raised twice), and the loop is not left in its safe state."""
    agent, config = plant
    loop_before = _loop(agent)
    _reload(agent, platform, config(ahu_1_interval=0.3))
    applied = _applied(agent)
    assert applied["restarted"] == ["ahu-1"] and applied["commands_rebuilt"] is False
    assert platform.wait_for(lambda _p: _loop(agent)["safe_reason"] is None, 10), _loop(agent)
    loop_after = _loop(agent)
    assert loop_after["steps"] > loop_before["steps"] > 0, (loop_before, loop_after)
    assert loop_after["writes"] >= loop_before["writes"] > 0, (loop_before, loop_after)
    alarms = [m.body for m in platform.messages if m.body.get("type") == "alarm"]
    assert [a["event"] for a in alarms if a["rule"] == "ahu-1-on"] == ["raised"], alarms
    assert [a["rule"] for a in agent.request("alarms")["alarms"]] == ["ahu-1-on"]


def _loop(agent: AgentProcess) -> dict:
    return next(lp for lp in agent.request("loops")["loops"] if lp["id"] == LOOP["id"])


def test_config_apply_restarts_only_the_changed_device(plant, platform):
    """The platform's config_apply goes the same way as a SIGHUP: one device restarts."""
    agent, config = plant
    before = agent.status()
    new = yaml.safe_dump(config(ahu_1_interval=0.3), sort_keys=False)
    body = {"v": 1, "id": "cfg-1", "type": "config_apply", "config": new,
            "base_hash": before["config_hash"]}  # fmt: skip
    sent = time.time()
    platform.send("t/test-site/gw1/cmd", json.dumps(body))
    assert platform.wait_for(
        lambda p: any(a["stage"] in ("done", "failed", "rejected") for a in p.acks("cfg-1")), 30
    ), platform.acks("cfg-1")
    replies = platform.acks("cfg-1")
    assert [r["stage"] for r in replies] == ["accepted", "done"], replies
    _wait_polling(agent, platform, sent, tuple(NO_GAP))
    after = agent.status()
    assert after["config_hash"] == replies[-1]["result"]["config_hash"] != before["config_hash"]
    applied = _applied(agent)
    assert applied["restarted"] == ["ahu-1"] and not applied["started"] + applied["stopped"]
    gaps = _gaps(platform)
    assert all(gaps[d] < NO_GAP[d] for d in ("ahu-2", "meter", "chiller")), gaps
    _assert_polled_on(before, after, ("ahu-2", "meter", "chiller"))
    assert _counter_restarts(platform, "ahu-2") == _counter_restarts(platform, "meter") == 0
    assert "Address already in use" not in agent.log()
    _assert_streams_whole(platform)
