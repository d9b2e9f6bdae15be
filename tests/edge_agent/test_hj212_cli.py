"""`edge-agent hj212 status | send` against a running agent: what the technician sees, the
exit codes, and a re-send that reaches the bureau as copies."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import exit_codes
from tests.edge_agent.hj212.rig import MN, PW, Bureau
from tests.harness import AgentProcess, fake_device, run_cli, site_config, wait_until

SEWAGE = fake_device("sewage", 0, interval=10.0)
SEWAGE["points"] = [
    {"id": "cod", "unit": "mg/L", "signal": {"mode": "walk", "value": 45, "step": 0.5,
                                             "min": 20, "max": 80}},
    {"id": "cod_status", "kind": "multistate", "signal": {"value": 0}},
]  # fmt: skip


def hj212(tmp_path: Path, port: int) -> dict:
    return {
        "store": str(tmp_path / "hj212.db"),
        "pollutants": [{"code": "w01018", "point": "sewage.cod", "status": "sewage.cod_status",
                        "range": [0, 500]}],
        "platforms": [{"id": "bureau", "host": "127.0.0.1", "port": port, "mn": MN,
                       "password": PW, "reconnect_max": 1}],
    }  # fmt: skip


@pytest.fixture
def agent_and_bureau(tmp_path: Path, broker) -> Iterator[tuple[AgentProcess, Bureau]]:
    bureau = Bureau(tmp_path)
    config = site_config(tmp_path, broker.port, [SEWAGE], hj212=hj212(tmp_path, bureau.port))
    agent = AgentProcess(tmp_path, config).start()
    try:
        agent.wait_ready()
        yield agent, bureau
    finally:
        agent.kill()
        bureau.stop()


def cli(agent: AgentProcess, *args: str, **env: str):
    return run_cli("hj212", *args, "--socket", str(agent.socket), env=env or None)


def test_status_shows_each_platform_and_send_owes_records_again(agent_and_bureau) -> None:
    agent, bureau = agent_and_bureau
    wait_until(lambda: bureau.records("2011"), 45, "real-time data at the bureau")
    piped = cli(agent, "status")
    assert piped.returncode == 0, piped.stderr
    heading, row = piped.stdout.splitlines()
    assert heading.split("\t")[:3] == ["platform", "endpoint", "connected"]
    fields = row.split("\t")
    assert fields[0] == "bureau" and fields[2] == "yes" and fields[4] == "0"  # nothing owed
    shown = json.loads(cli(agent, "status", "--json").stdout)[0]
    assert shown["link"]["acked"] >= 2 and shown["settings"]["realtime"] is True
    assert "password" not in shown["settings"]

    sent = cli(agent, "send", "--since", "10m", "--kind", "realtime")
    assert sent.returncode == 0, sent.stderr
    count = int(sent.stdout.split(": ")[1].split()[0])
    assert count >= 1 and sent.stdout.startswith("bureau: ")
    wait_until(lambda: len(bureau.records("2011", "duplicate")) >= count, 10, "the copies")
    assert bureau.records("2011", "conflict") == []

    unknown = cli(agent, "send", "--since", "1h", "--platform", "city")
    assert unknown.returncode == exit_codes.USAGE and "city" in unknown.stderr
    bad_time = cli(agent, "send", "--since", "yesterdayish")
    assert bad_time.returncode == exit_codes.USAGE


def test_a_platform_down_shows_what_is_owed_in_chinese(tmp_path: Path, broker) -> None:
    bureau = Bureau(tmp_path)  # only for a port that nobody listens on
    bureau.stop()
    config = site_config(tmp_path, broker.port, [SEWAGE], hj212=hj212(tmp_path, bureau.port))
    agent = AgentProcess(tmp_path, config).start()
    try:
        agent.wait_ready()
        wait_until(lambda: agent.status()["hj212"][0]["owed"], 10, "the restart time owed")
        row = cli(agent, "status").stdout.splitlines()[1].split("\t")
        assert row[2] == "no" and int(row[4]) >= 1
        chinese = cli(agent, "status", EDGE_AGENT_LANG="zh_CN")
        assert chinese.stdout.splitlines()[0].startswith("平台")
    finally:
        agent.kill()


def test_without_an_agent_or_a_section(tmp_path: Path, broker) -> None:
    missing = run_cli("hj212", "status", "--socket", str(tmp_path / "none.sock"))
    assert missing.returncode == exit_codes.NOT_RUNNING
    agent = AgentProcess(tmp_path, site_config(tmp_path, broker.port, [SEWAGE])).start()
    try:
        agent.wait_ready()
        plain = cli(agent, "status", EDGE_AGENT_LANG="zh_CN")
        assert plain.returncode == exit_codes.ERROR and "hj212" in plain.stderr
        assert "错误" in plain.stderr and "Traceback" not in plain.stderr
    finally:
        agent.kill()


def test_a_reload_with_a_new_hj212_section_takes_effect(agent_and_bureau) -> None:
    agent, _bureau = agent_and_bureau
    wait_until(lambda: agent.status()["hj212"][0]["connected"], 20, "the bureau connected")
    config = json.loads(json.dumps(agent.config))
    config["hj212"]["platforms"][0]["realtime_interval"] = 60
    agent.write_config(config)
    agent.signal(signal.SIGHUP)

    def interval() -> float:
        shown = json.loads(cli(agent, "status", "--json").stdout)[0]
        return shown["settings"]["realtime_interval_s"] if shown["settings"] else 0

    wait_until(lambda: interval() == 60, 20, "the new real-time interval")
    wait_until(lambda: agent.status()["hj212"][0]["connected"], 20, "connected again")
    assert agent.stop() == 0
