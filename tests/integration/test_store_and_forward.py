"""Whole-system behaviour: the agent process, the fake plant, a real mosquitto, a subscriber."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber, free_port
from tests.harness import AgentProcess, contiguous, fake_device, site_config

DEVICES = ["ahu-1", "chiller-1", "meter-1"]


def _start(tmp_path: Path, port: int, agents: list, devices=None, **overrides) -> AgentProcess:
    devices = devices or [fake_device(d) for d in DEVICES]
    agent = AgentProcess(tmp_path, site_config(tmp_path, port, devices, **overrides)).start()
    agents.append(agent)
    agent.wait_ready()
    return agent


def _assert_content(bodies: list[dict]) -> None:
    # The counter point `c` is incremented once per poll: its value pins each message's
    # content to its sequence number even across restarts (the fake restarts at 0).
    for body in bodies:
        assert body["values"]["c"] >= 1
        assert set(body["values"]) == {"c", "a0", "a1", "a2", "a3"}


def test_every_sample_reaches_the_platform_in_order(tmp_path, broker, platform, agents):
    agent = _start(tmp_path, broker.port, agents)
    time.sleep(3)
    assert agent.stop() == 0

    per_device = platform.telemetry()
    assert set(per_device) == set(DEVICES)
    for device, bodies in per_device.items():
        seqs = [b["seq"] for b in bodies]
        assert seqs == sorted(seqs), f"{device} out of order"
        missing, duplicates = contiguous(seqs)
        assert (missing, duplicates) == ([], 0), device
        assert len(seqs) >= 15  # ~30 polls in 3 s at 10 Hz, allowing for a slow start
        assert [b["values"]["c"] for b in bodies] == list(range(1, len(bodies) + 1))
        assert all(b["historical"] is False for b in bodies)
        assert all(b["site"] == "test-site" and b["gateway"] == "gw1" for b in bodies)
    # The online status is retained; a clean stop replaces it with offline/shutdown.
    statuses = [m.body for m in platform.messages if m.topic == "t/test-site/gw1/status"]
    assert statuses[0]["state"] == "online" and statuses[0]["config_hash"]
    assert statuses[-1]["state"] == "offline" and statuses[-1]["reason"] == "shutdown"
    # Everything was acknowledged: nothing left to send.
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        unsent = "select count(*) from outbox where cls = 0 and sent = 0"
        assert db.execute(unsent).fetchone()[0] == 0  # delivered rows stay as history


def test_broker_outage_loses_nothing_and_live_data_resumes(tmp_path, broker, platform, agents):
    agent = _start(tmp_path, broker.port, agents)
    time.sleep(1.5)
    broker.stop()
    outage_start = time.time()
    time.sleep(4)
    backlog = agent.status()["store"]["backlog_rows"]
    assert backlog >= 3 * 20  # three devices kept polling into the outbox
    assert agent.status()["uplink"]["state"] != "connected"
    broker.start()
    reconnect_at = time.time()
    # Live data resumes at once: a fresh (non-historical) message within a few seconds.
    assert platform.wait_for(
        lambda p: any(
            m.at > reconnect_at
            and m.body.get("historical") is False
            and m.body.get("type") == "telemetry"
            for m in p.messages
        ),
        timeout=10,
    ), agent.log()
    assert platform.wait_for(lambda p: agent.status()["store"]["backlog_rows"] == 0, timeout=20)
    connected_since = agent.status()["uplink"]["connected_since"]  # just after the CONNACK
    assert agent.stop() == 0

    for device, bodies in platform.telemetry().items():
        missing, duplicates = contiguous([b["seq"] for b in bodies])
        assert missing == [], f"{device} lost {missing}"
        # At-least-once: only messages in flight when the link dropped may come twice.
        assert duplicates <= 256, device
        replayed = [b for b in bodies if b["historical"]]
        assert replayed, f"{device}: no historical messages after the outage"
        # Historical: committed before the CONNACK, so polled before it too.
        assert all(b["ts"] < connected_since for b in replayed)
        assert any(b["ts"] / 1000 > outage_start for b in replayed)
        for lane in (True, False):  # each lane is in order
            seqs = [b["seq"] for b in bodies if b["historical"] is lane]
            assert seqs == sorted(seqs), (device, lane)
        _assert_content(bodies)


def _committed_seqs(path: Path) -> dict[str, int]:
    """The last seq the agent has committed per device, read beside the running agent."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT name, last_seq FROM streams WHERE kind = 0").fetchall())


def test_what_was_committed_during_an_outage_arrives_historical(tmp_path, broker, platform, agents):
    """`historical` is true iff the row was committed before the CONNACK of the connection
    that publishes it: a poll committed while the broker was down is never live, even one
    made a moment before the reconnect."""
    agent = _start(tmp_path, broker.port, agents)
    assert platform.wait_for(lambda p: len(p.telemetry()) == len(DEVICES), 10)
    broker.stop()
    down_from = _committed_seqs(tmp_path / "outbox.db")  # later rows cannot have gone out
    time.sleep(3)
    down_to = _committed_seqs(tmp_path / "outbox.db")  # committed before the next CONNACK
    broker.start()
    reconnect_at = time.time()
    assert platform.wait_for(lambda p: agent.status()["store"]["backlog_rows"] == 0, 20)

    def live_again(p) -> set[str]:  # the devices whose live data resumed
        return {
            m.body["device"]
            for m in p.messages
            if m.at > reconnect_at + 0.5
            and m.body.get("type") == "telemetry"
            and not m.body.get("historical", True)
        }

    # Every device, not any: a device that polls more slowly resumes later (it was a race).
    resumed = platform.wait_for(lambda p: live_again(p) == set(DEVICES), 10)
    assert resumed, "live data did not resume"
    assert agent.stop() == 0
    for device, bodies in platform.telemetry().items():
        during = [b for b in bodies if down_from[device] < b["seq"] <= down_to[device]]
        assert {b["seq"] for b in during} == set(range(down_from[device] + 1, down_to[device] + 1))
        live = [(b["seq"], b["ts"]) for b in during if not b["historical"]]
        assert live == [], f"{device}: committed during the outage, published as live: {live}"
        # The newest of them were polled within the old 2 s "grace" of the reconnect.
        assert max(b["ts"] for b in during) > (reconnect_at - 1) * 1000
        after = [b for b in bodies if b["seq"] > down_to[device]]
        assert any(not b["historical"] for b in after), device


def test_sigkill_at_random_moments_loses_no_committed_sample(tmp_path, broker, platform, agents):
    rng = random.Random(20261124)
    config = site_config(tmp_path, broker.port, [fake_device(d, interval=0.05) for d in DEVICES])
    kills = 20
    for _ in range(kills):
        agent = AgentProcess(tmp_path, config).start()
        agents.append(agent)
        agent.wait_ready()
        time.sleep(rng.uniform(0.05, 1.0))
        agent.kill()
    agent = AgentProcess(tmp_path, config).start()
    agents.append(agent)
    agent.wait_ready()
    assert platform.wait_for(lambda p: agent.status()["store"]["backlog_rows"] == 0, timeout=30)
    assert agent.stop() == 0

    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        committed = dict(db.execute("select name, last_seq from streams where kind = 0").fetchall())
    for device, bodies in platform.telemetry().items():
        seqs = [b["seq"] for b in bodies]
        missing, _ = contiguous(seqs)
        # Every number the store ever committed was published: a gap would be a lost sample.
        assert missing == [], f"{device} lost {missing[:10]}"
        assert max(seqs) == committed[device]


def test_disk_budget_evicts_oldest_telemetry_and_reports_it(tmp_path, agents):
    port = LocalBroker(tmp_path / "unused").port  # nothing listens: a long outage
    devices = [fake_device(f"dev-{i}", n_points=100, interval=0.02) for i in range(4)]
    agent = _start(tmp_path, port, agents, devices=devices, store={"disk_budget": 400_000})
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and agent.status()["store"]["evicted_rows"] == 0:
        time.sleep(0.5)
    store = agent.status()["store"]
    assert store["evicted_rows"] > 0, agent.log()
    assert store["used_bytes"] <= 400_000 * 1.1
    time.sleep(2)  # keeps running and evicting
    assert agent.process.poll() is None

    broker = LocalBroker(tmp_path / "broker", port=port).start()
    try:
        subscriber = PlatformSubscriber(port, topic="t/#").start()
        assert subscriber.wait_for(
            lambda p: any(m.body.get("type") == "data_evicted" for m in p.messages), timeout=20
        ), agent.log()
        assert agent.stop() == 0
        subscriber.stop()
    finally:
        broker.stop()
    evicted = [m.body for m in subscriber.messages if m.body.get("type") == "data_evicted"]
    gap = evicted[0]["streams"]
    assert set(gap) <= {d["id"] for d in devices}
    for device, bodies in subscriber.telemetry().items():
        seqs = sorted({b["seq"] for b in bodies})
        # What was evicted is exactly what is missing; the rest arrived.
        evicted_seqs = {
            s
            for e in evicted
            if device in e["streams"]
            for s in range(e["streams"][device]["from_seq"], e["streams"][device]["to_seq"] + 1)
        }
        assert set(range(1, seqs[-1] + 1)) - set(seqs) <= evicted_seqs
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_device_down_and_recovered_are_reported_once(tmp_path, broker, platform, agents):
    control = tmp_path / "faults.json"
    device = fake_device("pump-1", connection={"control_file": str(control)})
    agent = _start(tmp_path, broker.port, agents, devices=[device, fake_device("meter-1")])
    time.sleep(0.5)
    control.write_text(json.dumps({"offline": True}))
    time.sleep(2)
    assert agent.status()["devices"]["pump-1"]["up"] is False
    assert agent.status()["devices"]["meter-1"]["up"] is True  # the other device is unaffected
    control.write_text(json.dumps({}))
    time.sleep(2)
    assert agent.status()["devices"]["pump-1"]["up"] is True
    assert agent.stop() == 0

    events = [m.body for m in platform.messages if m.topic == "t/test-site/gw1/event"]
    kinds = [e["type"] for e in events if e.get("device") == "pump-1"]
    assert kinds == ["device_down", "device_recovered"]
    bad = [b for b in platform.telemetry()["pump-1"] if b.get("quality")]
    assert bad and all(
        q["status"] == "bad" and q["q"] == 0 and q["reason"] == "timeout"
        for b in bad
        for q in b["quality"].values()
    )


def test_sighup_keeps_running_config_when_new_one_is_bad(tmp_path, broker, platform, agents):
    agent = _start(tmp_path, broker.port, agents)
    old_hash = agent.status()["config_hash"]
    agent.config_path.write_text("site: {id: [unclosed\n")
    agent.signal(signal.SIGHUP)
    assert platform.wait_for(
        lambda p: any(m.body.get("type") == "config_rejected" for m in p.messages), 10
    )
    assert agent.status()["config_hash"] == old_hash
    rejected = next(m.body for m in platform.messages if m.body.get("type") == "config_rejected")
    assert "site.yaml:1" in rejected["problems"][0]

    config = site_config(tmp_path, broker.port, [fake_device("only-one")])
    agent.write_config(config)
    agent.signal(signal.SIGHUP)
    assert platform.wait_for(
        lambda p: any(m.body.get("type") == "config_applied" for m in p.messages), 10
    )
    agent.wait_ready()
    status = agent.status()
    assert status["config_hash"] != old_hash and list(status["devices"]) == ["only-one"]
    assert agent.stop() == 0


# -- copies of one message ------------------------------------------------------------------


def _quality_device(device_id: str) -> dict:
    """Floats that are not short decimals, and a point that always fails: the payload has
    raw IEEE values and a quality section, both of which must survive a republication."""
    device = fake_device(device_id, n_points=3)
    device["points"] += [
        {"id": "raw", "signal": {"mode": "walk", "value": 1 / 3, "step": 0.37}},
        {"id": "dead", "signal": {"fail": "timeout"}},
    ]
    return device


def _copies(platform: PlatformSubscriber, device: str) -> dict[int, list[dict]]:
    by_seq: dict[int, list[dict]] = {}
    for body in platform.telemetry()[device]:
        by_seq.setdefault(body["seq"], []).append(body)
    return by_seq


def _assert_only_historical_differs(copies: dict[int, list[dict]]) -> list[list[dict]]:
    """Every copy of a (device, seq) carries the same ts, values and quality (and
    everything else) but `historical`; returns the seqs that came more than once."""
    repeated = [bodies for bodies in copies.values() if len(bodies) > 1]
    for bodies in repeated:
        first = {**bodies[0], "historical": None}
        assert all({**b, "historical": None} == first for b in bodies[1:]), bodies
        assert "quality" in first and first["quality"]["dead"]["reason"] == "timeout"
    return repeated


def test_a_backfilled_copy_differs_from_the_original_only_in_historical(
    tmp_path, broker, platform, agents
):
    agent = _start(tmp_path, broker.port, agents, devices=[_quality_device("ahu-1")])
    agent.wait_commands()
    assert platform.wait_for(lambda p: len(p.telemetry().get("ahu-1", [])) >= 20, 10)
    first = platform.telemetry()["ahu-1"][:20]
    command = {"v": 1, "id": "bf", "type": "backfill", "since": first[0]["ts"],
               "until": first[-1]["ts"] + 1}  # fmt: skip
    platform.send("t/test-site/gw1/cmd", json.dumps(command))
    assert platform.wait_for(
        lambda p: sum(len(c) > 1 for c in _copies(p, "ahu-1").values()) >= 20, 15
    ), agent.log()
    assert agent.stop() == 0
    repeated = _assert_only_historical_differs(_copies(platform, "ahu-1"))
    assert [bodies[0]["seq"] for bodies in repeated] == [b["seq"] for b in first]
    assert all(
        [b["historical"] for b in bodies] == [False, True] for bodies in repeated
    )  # live first, then the backfill


class _Proxy:
    """A TCP relay between the agent and the broker that can lose the broker's replies
    (the PUBACKs), then cut the connection, as a flaky link does."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.lose_replies = False
        self._target = target_port
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (replies and self.lose_replies):
                    sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._sockets.clear()

    def close(self) -> None:
        self.cut()
        self._server.close()


def test_a_copy_sent_again_after_a_lost_puback_differs_only_in_historical(
    tmp_path, broker, platform, agents
):
    proxy = _Proxy(broker.port)
    try:
        agent = _start(tmp_path, proxy.port, agents, devices=[_quality_device("ahu-1")])
        assert platform.wait_for(lambda p: len(p.telemetry().get("ahu-1", [])) >= 5, 10)
        proxy.lose_replies = True  # the broker gets (and forwards) them; no PUBACK comes back
        time.sleep(2)
        assert agent.status()["uplink"]["in_flight"] >= 10
        proxy.lose_replies = False
        proxy.cut()  # the connection drops: in flight rows are published again
        assert platform.wait_for(
            lambda p: sum(len(c) > 1 for c in _copies(p, "ahu-1").values()) >= 10, 15
        ), agent.log()
        assert agent.stop() == 0
    finally:
        proxy.close()
    repeated = _assert_only_historical_differs(_copies(platform, "ahu-1"))
    # Published live, and again on the next connection: committed before its CONNACK.
    assert all([b["historical"] for b in bodies] == [False, True] for bodies in repeated)
