"""Issue 10 #13-15 as an outside platform saw them: the agent on a real filesystem with only
1 MiB free, an outage with SIGKILLs, then a disk with 0 bytes free while connected, then a
stop. Every seq must be delivered or named by a data_evicted event, the announcements must
stay few, the uplink must stay up, and the stop must be bounded."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber
from tests.filesystems import fill_disk, small_tmpfs
from tests.harness import AgentProcess, fake_device, site_config, wait_until

DEVICES = [f"dev-{i}" for i in range(3)]
MiB = 2**20


def _announced(events: list[dict], device: str) -> set[int]:
    return {
        seq
        for event in events
        for low, high in event["streams"].get(device, {}).get("ranges", [])
        for seq in range(low, high + 1)
    }


def _stored(path: Path) -> tuple[dict[str, int], dict[str, set[int]]]:
    """Last committed seq per device, and the seqs still in the store."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        last = dict(db.execute("SELECT name, last_seq FROM streams WHERE kind = 0"))
        kept: dict[str, set[int]] = {d: set() for d in last}
        for name, seq in db.execute(
            "SELECT s.name, o.seq FROM outbox o JOIN streams s ON s.id = o.stream WHERE o.cls = 0"
        ):
            kept[name].add(seq)
    return last, kept


def _log_lines(agent: AgentProcess, text: str) -> int:
    return sum(text in line for line in agent.log_path.read_text(errors="replace").splitlines())


def test_a_nearly_full_disk_keeps_every_promise(tmp_path: Path, agents: list) -> None:
    with small_tmpfs(tmp_path / "small", "24m") as mount:
        broker = LocalBroker(tmp_path / "broker").start()
        platform = PlatformSubscriber(broker.port, topic="t/#").start()
        try:
            fill_disk(mount / "filler", leave=MiB)  # another program left 1 MiB
            devices = [fake_device(d, n_points=50, interval=0.05) for d in DEVICES]
            config = site_config(tmp_path / "agent", broker.port, devices,
                                 store={"path": str(mount / "outbox.db")})  # fmt: skip

            def start() -> AgentProcess:
                agent = AgentProcess(tmp_path / "agent", config).start()
                agents.append(agent)
                agent.wait_ready()
                return agent

            agent = start()
            assert platform.wait_for(lambda p: len(p.telemetry()) == 3, 10), agent.log()
            broker.stop()  # an outage: the tiny outbox must evict, and announce it
            for _ in range(2):
                time.sleep(2)
                agent.kill()
                agent = start()
            time.sleep(3)
            store = agent.status()["store"]
            assert store["evicted_rows"] > 100 and store["unannounced_rows"] > 0, store
            assert store["too_small"], store  # said in status (and once in the log, an event)
            assert store["classes"]["event"]["evicted_rows"] == 0  # announcements stay

            broker.start()
            wait_until(lambda: agent.status()["store"]["unannounced_rows"] == 0, 20,
                       "the announcements")  # fmt: skip
            fill_disk(mount / "filler")  # and now 0 bytes free, while connected
            time.sleep(5)
            status = agent.status()
            assert status["uplink"]["state"] == "connected", status["uplink"]
            assert _log_lines(agent, "task crashed") == 0, agent.log()
            started = time.monotonic()
            assert agent.stop() == 0
            # flush_timeout 5 s + the uplink's 3 s margin, and the rest of the stop
            assert time.monotonic() - started < 12, agent.log()

            (mount / "filler").unlink()  # room again: what is left goes out
            agent = start()
            wait_until(lambda: agent.status()["store"]["backlog_rows"] == 0, 30, "the drain")
            assert agent.stop() == 0
            time.sleep(0.5)
        finally:
            platform.stop()
            broker.stop()
        last, kept = _stored(mount / "outbox.db")

    events: dict[int, dict] = {}
    for message in platform.messages:
        if message.topic.endswith("/event"):
            seen = events.setdefault(message.body["seq"], message.body)
            assert {**seen, "historical": None} == {**message.body, "historical": None}
    evicted = [e for e in events.values() if e["type"] == "data_evicted"]
    assert evicted and all(e.get("disk_full") for e in evicted)
    assert len(evicted) <= 20, len(evicted)  # coalesced: it was one per eviction (1,232)
    too_small = [e for e in events.values() if e["type"] == "store_too_small"]
    assert 1 <= len(too_small) <= 5  # once per agent run at most
    for device in DEVICES:
        delivered = {b["seq"] for b in platform.telemetry()[device]}
        announced = _announced(evicted, device)
        missing = set(range(1, last[device] + 1)) - delivered
        assert missing and missing <= announced, f"{device}: unannounced {missing - announced}"
        assert not announced & kept[device], f"{device}: announced but still stored"
    assert _log_lines(agent, "evicted unsent data") <= 10  # rate-limited: it was 18 a second
    assert json.loads(json.dumps(too_small[0]))["held_s"] < 60
