"""The technician's commands and the agent's shutdown, as processes."""

from __future__ import annotations

import json
import sqlite3
import time

from edge_agent.broker_tools import free_port
from tests.harness import AgentProcess, fake_device, run_cli, site_config


def test_status_of_a_running_agent(tmp_path, broker, platform, agents):
    agent = AgentProcess(
        tmp_path, site_config(tmp_path, broker.port, [fake_device("pump-7")])
    ).start()
    agents.append(agent)
    agent.wait_ready()
    time.sleep(1)
    table = run_cli("status", "--config", str(agent.config_path))
    assert table.returncode == 0, table.stderr
    assert "pump-7" in table.stdout and "connected" in table.stdout
    as_json = json.loads(run_cli("status", "--socket", str(agent.socket), "--json").stdout)
    assert as_json["devices"]["pump-7"]["up"] is True
    assert as_json["uplink"]["state"] == "connected"
    assert agent.stop() == 0


def test_status_when_the_agent_is_not_running(tmp_path):
    result = run_cli("status", "--socket", str(tmp_path / "nothing.sock"))
    assert result.returncode == 3
    assert (
        result.stderr.strip()
        == f"error: the agent is not running (no socket at {tmp_path / 'nothing.sock'})"
    )


def test_config_validate_through_the_console_script(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(site_config(tmp_path, 1883, [fake_device("d1")])))
    ok = run_cli("config", "validate", str(good))
    assert ok.returncode == 0 and ok.stdout.startswith("OK")
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace('"poll_interval": 0.1', '"poll_interval": "fast"'))
    result = run_cli("config", "validate", str(bad))
    assert result.returncode == 1
    assert "devices[0].poll_interval: expected a duration" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_with_a_broken_config_exits_1_with_the_line(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {id: s}\ngateway: {id: g}\nuplink:\n  endpoints: []\n")
    result = run_cli("run", "--config", str(bad))
    assert result.returncode == 1
    assert "site.yaml:4 uplink.endpoints" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_with_the_broker_down_exits_within_the_flush_bound(tmp_path, agents):
    config = site_config(tmp_path, free_port(), [fake_device("d1")], uplink={"flush_timeout": 2})
    agent = AgentProcess(tmp_path, config).start()
    agents.append(agent)
    agent.wait_ready()
    time.sleep(1)
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 6
    with sqlite3.connect(tmp_path / "outbox.db") as db:  # everything polled is kept for later
        kept = db.execute("select count(*) from outbox where cls = 0").fetchone()[0]
    assert kept >= 5


def test_a_second_agent_on_the_same_store_is_refused(tmp_path, agents):
    config = site_config(tmp_path, free_port(), [fake_device("d1")])
    first = AgentProcess(tmp_path, config).start()
    agents.append(first)
    first.wait_ready()
    # The same file: refused before anything is read (it could undo the first one's apply).
    same = run_cli("run", "--config", str(first.config_path))
    assert same.returncode == 1
    assert same.stderr == f"error: another agent is running on {first.config_path}\n"
    # A copy of it elsewhere: the store's lock refuses it.
    copy = tmp_path / "copy" / "site.yaml"
    copy.parent.mkdir()
    copy.write_text(first.config_path.read_text())
    second = run_cli("run", "--config", str(copy))
    assert second.returncode == 1
    assert "another agent is using the store" in second.stderr
    assert first.process.poll() is None


def test_a_taken_socket_does_not_stop_the_agent(tmp_path, broker, platform, agents):
    first = AgentProcess(
        tmp_path / "a", site_config(tmp_path / "a", broker.port, [fake_device("d1")])
    )
    agents.append(first.start())
    first.wait_ready()
    # A second agent with its own store but the same socket path keeps polling without it.
    second_config = site_config(tmp_path / "b", broker.port, [fake_device("d2")])
    second_config["local"] = {"socket": str(first.socket)}
    second = AgentProcess(tmp_path / "b", second_config)
    agents.append(second.start())
    assert platform.wait_for(lambda p: len(p.telemetry().get("d2", [])) >= 5, 15), second.log()
    assert second.process.poll() is None
    assert "another agent is listening" in second.log()
    assert second.stop() == 0 and first.stop() == 0


def test_config_diff_against_the_running_agent_and_a_file(tmp_path, broker, agents):
    config = site_config(tmp_path, broker.port, [fake_device("pump-7")])
    agent = AgentProcess(tmp_path, config).start()
    agents.append(agent)
    agent.wait_ready()
    same = run_cli("config", "diff", str(agent.config_path), "--socket", str(agent.socket))
    assert same.returncode == 0 and "no difference" in same.stdout, same.stderr
    changed = tmp_path / "changed.yaml"
    edited = {**config, "devices": [fake_device("pump-7", interval=0.5)]}
    import yaml

    changed.write_text(yaml.safe_dump(edited))
    diff = run_cli("config", "diff", str(changed), "--socket", str(agent.socket))
    assert diff.returncode == 1
    assert "-  poll_interval: 0.1" in diff.stdout and "+  poll_interval: 0.5" in diff.stdout
    offline = run_cli("config", "diff", str(changed), "--against", str(agent.config_path))
    assert offline.returncode == 1 and "+  poll_interval: 0.5" in offline.stdout
    assert agent.stop() == 0
    gone = run_cli("config", "diff", str(changed), "--socket", str(agent.socket))
    assert gone.returncode == 3 and "not running" in gone.stderr
