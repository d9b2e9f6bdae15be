"""The technician's commands and the agent's shutdown, as processes."""

from __future__ import annotations

import json
import os
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


def test_config_diff_against_the_running_agent_and_a_file(tmp_path, broker, agents, monkeypatch):
    import yaml

    config = site_config(tmp_path, broker.port, [fake_device("pump-7")])
    agent = AgentProcess(tmp_path, config).start()
    agents.append(agent)
    agent.wait_ready()
    same = run_cli("config", "diff", str(agent.config_path), "--socket", str(agent.socket))
    assert same.returncode == 0 and "no difference" in same.stdout, same.stderr
    changed = tmp_path / "changed.yaml"
    edited = {**config, "devices": [fake_device("pump-7", interval=0.5)]}
    edited["devices"][0]["points"][1]["unit"] = "kPa"
    edited["devices"][0]["points"].append({"id": "trip", "kind": "binary"})
    changed.write_text(yaml.safe_dump(edited))
    diff = run_cli("config", "diff", str(changed), "--socket", str(agent.socket))
    assert diff.returncode == 1, diff.stderr
    hash_ = agent.status()["config_hash"]
    assert diff.stdout.splitlines() == [
        "pump-7.poll_interval 100ms -> 500ms",
        "pump-7.timeout 50ms -> 250ms",
        'pump-7.a0.unit "" -> kPa',
        "pump-7.trip added (point)",
        f"4 change(s) from the running agent ({hash_}) to {changed}",
    ]
    # The socket from -c (read from the file's local.socket), and from $EDGE_AGENT_SOCKET.
    by_config = run_cli("config", "diff", str(changed), "-c", str(agent.config_path))
    assert by_config.returncode == 1 and by_config.stdout == diff.stdout, by_config.stderr
    env = {**os.environ, "EDGE_AGENT_SOCKET": str(agent.socket)}
    by_env = run_cli("config", "diff", str(changed), env=env)
    assert by_env.returncode == 1 and by_env.stdout == diff.stdout, by_env.stderr
    unified = run_cli("config", "diff", str(changed), "--unified", "--socket", str(agent.socket))
    assert unified.returncode == 1
    assert "-  poll_interval: 0.1" in unified.stdout and "+  poll_interval: 0.5" in unified.stdout
    offline = run_cli("config", "diff", str(changed), "--against", str(agent.config_path))
    assert offline.returncode == 1
    assert offline.stdout.splitlines()[0] == "pump-7.poll_interval 100ms -> 500ms"
    assert offline.stdout.splitlines()[-1] == (f"4 change(s) from {agent.config_path} to {changed}")
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(changed.read_text().replace("poll_interval: 0.5", "poll_interval: often"))
    refused = run_cli("config", "diff", str(invalid), "--socket", str(agent.socket))
    assert refused.returncode == 2 and refused.stdout == ""
    assert (
        f"{invalid}:" in refused.stderr and "poll_interval: expected a duration" in refused.stderr
    )
    assert agent.stop() == 0
    gone = run_cli("config", "diff", str(changed), "--socket", str(agent.socket))
    assert gone.returncode == 3 and "not running" in gone.stderr


def test_status_finds_the_socket_in_a_file_with_a_mistake_elsewhere(tmp_path, broker, agents):
    agent = AgentProcess(
        tmp_path / "a", site_config(tmp_path / "a", broker.port, [fake_device("pump-7")])
    ).start()
    agents.append(agent)
    agent.wait_ready()
    text = agent.config_path.read_text()
    assert f"socket: {agent.socket}" in text
    # A type error elsewhere: the socket is read without validating the rest, no note.
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("poll_interval: 0.1", "poll_interval: often"))
    result = run_cli("status", "-c", str(typo), "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout)["devices"]["pump-7"]["up"] is True
    # As the technician reads it: the status table, piped, at 80 columns.
    result = run_cli("status", "-c", str(typo), env={**os.environ, "COLUMNS": "80"})
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "pump-7" in result.stdout, result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    # A YAML syntax error (a tab) spoils the whole file: the local: section still names it.
    tab = tmp_path / "tab.yaml"
    tab.write_text(text.replace("  poll_interval: 0.1", "\tpoll_interval: 0.1"))
    result = run_cli("status", "-c", str(tab), "--json")
    assert result.returncode == 0, result.stderr
    line = next(n for n, t in enumerate(tab.read_text().splitlines(), 1) if "\t" in t)
    assert result.stderr == (
        f"note: {tab}:{line}: YAML syntax error: found character '\\t' that cannot start any "
        "token; indent with spaces, not tabs; the socket is taken from its local: section\n"
    )
    # Nothing to read: the default (or $EDGE_AGENT_SOCKET), with a note.
    env = {**os.environ, "EDGE_AGENT_SOCKET": str(agent.socket)}
    result = run_cli("status", "-c", str(tmp_path / "missing.yaml"), "--json", env=env)
    assert result.returncode == 0
    assert result.stderr == (
        f"note: cannot read local.socket ({tmp_path / 'missing.yaml'}: file not found); "
        f"trying {agent.socket}\n"
    )
    assert agent.stop() == 0
