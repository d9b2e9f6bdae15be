"""Platform commands through mosquitto to a running agent, and the technician's CLI.

The platform is a real paho client on the broker; the agent is a process; the device is
the fake driver (the simulator-backed tests live in test_commands_simulated.py).
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import yaml

from edge_agent.points import wall_ms
from tests.harness import AgentProcess, fake_device, run_cli, site_config, wait_until

CMD = "t/test-site/gw1/cmd"


def _valve_device() -> dict:
    device = fake_device("ahu-1", n_points=2, interval=0.2)
    device["points"] += [
        {"id": "sp", "unit": "degC", "writable": True, "limits": {"min": 5, "max": 12},
         "min_write_interval": 0.5, "signal": {"mode": "constant", "value": 7.0}},
        {"id": "run", "kind": "binary", "writable": True, "min_write_interval": 0,
         "signal": {"mode": "constant", "value": False}},
        {"id": "mode", "kind": "multistate", "writable": True, "min_write_interval": 0,
         "limits": {"min": 1, "max": 4},
         "signal": {"mode": "constant", "value": 1}},
    ]  # fmt: skip
    return device


@pytest.fixture
def agent(tmp_path, broker, platform, agents) -> AgentProcess:
    process = AgentProcess(tmp_path, site_config(tmp_path, broker.port, [_valve_device()]))
    agents.append(process.start())
    process.wait_ready()
    assert platform.wait_for(lambda p: "ahu-1" in p.latest, 10)
    return process


def _send(platform, command_id: str, **body) -> None:
    platform.send(CMD, json.dumps({"v": 1, "id": command_id, **body}))


def _final(platform, command_id: str, timeout: float = 10.0) -> list[dict]:
    """Every reply to a command once its final stage has arrived."""
    finals = ("rejected", "done", "failed")
    assert platform.wait_for(
        lambda p: any(a["stage"] in finals for a in p.acks(command_id)), timeout
    ), f"no final reply to {command_id}: {platform.acks(command_id)}"
    time.sleep(0.1)  # a stray extra reply would show up now
    return platform.acks(command_id)


def _value(agent: AgentProcess, ref: str):
    return agent.request("points", device=ref.split(".")[0])["points"][ref]["value"]


def _audit(agent: AgentProcess) -> dict[str, tuple]:
    with sqlite3.connect(agent.config["store"]["path"]) as db:
        rows = db.execute("SELECT id, source, stage, reason, result FROM command_audit")
        return {row[0]: row[1:] for row in rows}


def test_write_is_accepted_then_done_with_the_read_back(agent, platform):
    _send(platform, "w-1", type="write", point="ahu-1.sp", value=8.5)
    replies = _final(platform, "w-1")
    assert [r["stage"] for r in replies] == ["accepted", "done"]
    done = replies[-1]
    assert done["result"]["readback"] == 8.5 and done["result"]["source"] == "platform"
    assert done["site"] == "test-site" and done["command"] == "write"
    assert _value(agent, "ahu-1.sp") == 8.5
    source, stage, reason, result = _audit(agent)["w-1"]
    assert (source, stage, reason) == ("platform", "done", None)
    assert json.loads(result)["readback"] == 8.5


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"point": "ahu-1.sp", "value": 30.0}, "out_of_limits"),
        ({"point": "ahu-1.sp", "value": "warm"}, "wrong_type"),
        ({"point": "ahu-1.sp", "value": True}, "wrong_type"),
        ({"point": "ahu-1.run", "value": 2}, "wrong_type"),
        ({"point": "ahu-1.a0", "value": 1.0}, "read_only"),
        ({"point": "ahu-1.nothing", "value": 1.0}, "unknown_point"),
        ({"point": "ahu-9.sp", "value": 1.0}, "unknown_point"),
        ({"point": "ahu-1.sp", "value": 8.0, "expires": 1_000_000}, "expired"),
        ({"point": "ahu-1.sp", "value": 8.0, "priority": 8}, "priority_unsupported"),
        ({"point": "ahu-1.sp", "value": 8.0, "dry_run": "no"}, "malformed"),
        ({"point": "ahu-1.sp", "value": 8.0, "priority": "8"}, "malformed"),
        ({"point": "ahu-1.sp", "value": 8.0, "expires": str(2**40)}, "malformed"),
        ({"point": "ahu-1.run", "value": "true"}, "wrong_type"),
        ({"point": "ahu-1.sp", "value": 8.0, "colour": "red"}, "malformed"),
    ],
)
def test_bad_writes_are_rejected_and_nothing_is_written(agent, platform, body, reason):
    _send(platform, f"bad-{reason}", type="write", **body)
    replies = _final(platform, f"bad-{reason}")
    assert [r["stage"] for r in replies] == ["rejected"]
    assert replies[0]["reason"] == reason and replies[0]["message"]
    assert replies[0]["command"] == "write"  # the type was readable: it is named
    assert _value(agent, "ahu-1.sp") == 7.0
    assert _value(agent, "ahu-1.run") is False
    if reason != "malformed":  # a malformed command is refused before the audit
        assert _audit(agent)[f"bad-{reason}"][1:3] == ("rejected", reason)


def test_a_repeated_id_is_answered_from_the_audit_without_executing(agent, platform):
    _send(platform, "dup", type="write", point="ahu-1.mode", value=3)
    assert _final(platform, "dup")[-1]["stage"] == "done"
    # The device changes meanwhile (a technician); a re-execution would write 3 again.
    assert run_cli("write", "ahu-1.mode", "2", "--socket", str(agent.socket)).returncode == 0
    _send(platform, "dup", type="write", point="ahu-1.mode", value=3)
    assert platform.wait_for(lambda p: len(p.acks("dup")) == 3, 10)
    replay = platform.acks("dup")[-1]
    assert replay["duplicate"] is True and replay["stage"] == "done"
    assert _value(agent, "ahu-1.mode") == 2


def test_writes_faster_than_the_rate_limit_are_rejected(agent, platform):
    _send(platform, "r-1", type="write", point="ahu-1.sp", value=8.0)
    _send(platform, "r-2", type="write", point="ahu-1.sp", value=9.0)
    assert _final(platform, "r-1")[-1]["stage"] == "done"
    second = _final(platform, "r-2")
    assert second[-1]["reason"] == "rate_limited"
    assert _value(agent, "ahu-1.sp") == 8.0
    time.sleep(0.6)
    _send(platform, "r-3", type="write", point="ahu-1.sp", value=9.0)
    assert _final(platform, "r-3")[-1]["stage"] == "done"


def test_a_manual_override_beats_the_platform_until_released(agent, platform):
    socket = str(agent.socket)
    cli = run_cli("write", "ahu-1.sp", "10", "--for", "10m", "--socket", socket)
    assert cli.returncode == 0, cli.stderr
    assert "10" in cli.stdout and "overridden" in cli.stdout
    _send(platform, "p-1", type="write", point="ahu-1.sp", value=6.0)
    rejected = _final(platform, "p-1")[-1]
    assert rejected["reason"] == "overridden" and "manual" in rejected["message"]
    assert _value(agent, "ahu-1.sp") == 10
    held = agent.request("points", device="ahu-1")["holds"]["ahu-1.sp"]
    assert held["source"] == "manual" and held["until_ms"] > wall_ms() + 500_000
    # The platform may not release the technician's hold either.
    _send(platform, "p-2", type="release", point="ahu-1.sp")
    assert _final(platform, "p-2")[-1]["reason"] == "not_held"
    released = run_cli("release", "ahu-1.sp", "--socket", socket)
    assert released.returncode == 0, released.stderr
    time.sleep(0.6)
    _send(platform, "p-3", type="write", point="ahu-1.sp", value=6.0)
    assert _final(platform, "p-3")[-1]["stage"] == "done"
    assert _value(agent, "ahu-1.sp") == 6.0


def test_an_override_expires_and_the_platform_value_comes_back(agent, platform):
    _send(platform, "base", type="write", point="ahu-1.sp", value=9.0)
    assert _final(platform, "base")[-1]["stage"] == "done"
    time.sleep(0.6)
    cli = run_cli("write", "ahu-1.sp", "11", "--for", "2s", "--socket", str(agent.socket))
    assert cli.returncode == 0, cli.stderr
    assert _value(agent, "ahu-1.sp") == 11
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _value(agent, "ahu-1.sp") != 9.0:
        time.sleep(0.2)
    assert _value(agent, "ahu-1.sp") == 9.0  # the platform's hold is in force again
    holds = agent.request("points", device="ahu-1")["holds"]
    assert holds["ahu-1.sp"]["source"] == "platform"


def test_read_status_and_rebirth(agent, platform):
    _send(platform, "rd", type="read", point="ahu-1.c")
    done = _final(platform, "rd")[-1]
    assert done["stage"] == "done" and isinstance(done["result"]["value"], int)
    _send(platform, "st", type="status")
    status = _final(platform, "st")[-1]["result"]
    assert status["devices"]["ahu-1"]["up"] is True and status["uplink"]["state"] == "connected"
    count = len(platform.telemetry()["ahu-1"])
    _send(platform, "rb", type="rebirth")
    assert _final(platform, "rb")[-1]["result"] == {"devices": 1, "points": 5}
    assert platform.wait_for(lambda p: len(p.telemetry()["ahu-1"]) > count, 5)


def test_malformed_messages_get_a_reason_or_are_dropped(agent, platform):
    platform.send(CMD, b"\xff\xfe not json")
    platform.send(CMD, json.dumps({"v": 1, "type": "write"}))  # no id: nothing to answer
    platform.send(CMD, json.dumps({"v": 2, "id": "v2", "type": "status"}))
    platform.send(CMD, json.dumps({"v": 1, "id": "zz", "type": "reboot"}))
    assert _final(platform, "v2")[-1]["reason"] == "unsupported_version"
    assert _final(platform, "zz")[-1]["reason"] == "unknown_type"
    # The agent is still fine and answers the next command.
    _send(platform, "after", type="status")
    assert _final(platform, "after")[-1]["stage"] == "done"
    assert agent.status()["commands"]["dropped"] == 2


def test_unusable_ids_are_echoed_in_a_malformed_reply(agent, platform):
    """An id the gateway cannot use (a space, too long, a number, empty) is still sent back
    as it came, so the platform learns which message was refused and why."""
    unusable = ["with space", "x" * 129, 42, ""]
    for sent in unusable:
        platform.send(CMD, json.dumps({"v": 1, "id": sent, "type": "write",
                                       "point": "ahu-1.sp", "value": 9.0}))  # fmt: skip
    for sent in unusable:
        replies = _final(platform, sent)
        assert [(r["stage"], r["reason"], r["command"]) for r in replies] == [
            ("rejected", "malformed", "write")
        ], replies
        assert replies[0]["message"].startswith("id:")
    assert _value(agent, "ahu-1.sp") == 7.0
    # Without any id (or with one that is not a JSON string or number) there is nobody to
    # answer: counted as dropped.
    dropped = agent.status()["commands"]["dropped"]
    platform.send(CMD, json.dumps({"v": 1, "id": None, "type": "status"}))
    platform.send(CMD, json.dumps({"v": 1, "id": ["a"], "type": "status"}))
    wait_until(lambda: agent.status()["commands"]["dropped"] == dropped + 2, 10, "the drops")


def test_one_byte_over_the_size_limit_is_answered(agent, platform):
    """A payload one byte over 1 MiB is refused with a reply that says so (it is still read
    for its id; only one over 8 MiB is dropped unread)."""
    limit = 1024 * 1024
    body = {"v": 1, "id": "big", "type": "config_apply", "config": ""}
    padding = limit - len(json.dumps(body)) + 1
    platform.send(CMD, json.dumps({**body, "config": "#" * padding}))
    replies = _final(platform, "big")
    assert [(r["stage"], r["reason"]) for r in replies] == [("rejected", "malformed")]
    assert "larger than 1048576 bytes" in replies[0]["message"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_retained_command_is_never_executed(tmp_path, broker, platform, agents, protocol):
    # Left on the broker by a careless client: the broker hands it to every new subscriber.
    body = {"v": 1, "id": "ret", "type": "write", "point": "ahu-1.run", "value": True}
    platform.send(CMD, json.dumps(body), retain=True)
    config = site_config(tmp_path, broker.port, [_valve_device()], uplink={"protocol": protocol})
    process = AgentProcess(tmp_path, config)
    agents.append(process.start())
    process.wait_ready()
    replies = _final(platform, "ret")
    assert [(r["stage"], r.get("reason")) for r in replies] == [("rejected", "retained")]
    assert _value(process, "ahu-1.run") is False
    platform.send(CMD, b"", retain=True)  # clear it from the broker


def _live_retained(platform, process: AgentProcess, command_id: str) -> list[dict]:
    """A retained command published while the gateway is subscribed (forwarded live)."""
    process.wait_commands()
    body = {"v": 1, "id": command_id, "type": "write", "point": "ahu-1.run", "value": True}
    try:
        platform.send(CMD, json.dumps(body), retain=True)
        return _final(platform, command_id)
    finally:
        platform.send(CMD, b"", retain=True)


def test_mqtt5_refuses_a_retained_command_published_while_online(
    tmp_path, broker, platform, agents
):
    # Retain-as-published keeps the flag on live delivery: refused like a replayed one.
    process = AgentProcess(tmp_path, site_config(tmp_path, broker.port, [_valve_device()]))
    agents.append(process.start())
    replies = _live_retained(platform, process, "ret-live")
    assert [(r["stage"], r.get("reason")) for r in replies] == [("rejected", "retained")]
    assert _value(process, "ahu-1.run") is False and process.holder("ahu-1.run") is None


def test_mqtt311_cannot_tell_a_retained_command_forwarded_live(tmp_path, broker, platform, agents):
    """The documented 3.1.1 limitation: the broker clears the retain flag on messages it
    forwards to a subscriber live (MQTT 3.1.1 §3.3.1.3), so such a command is carried out;
    only the copy replayed at subscription is refused (previous test)."""
    config = site_config(tmp_path, broker.port, [_valve_device()], uplink={"protocol": "3.1.1"})
    process = AgentProcess(tmp_path, config)
    agents.append(process.start())
    replies = _live_retained(platform, process, "ret-311")
    assert [r["stage"] for r in replies] == ["accepted", "done"]
    assert _value(process, "ahu-1.run") is True


def test_cli_points_read_and_errors(agent):
    socket = str(agent.socket)
    table = run_cli("points", "--device", "ahu-1", "--socket", socket)
    assert table.returncode == 0 and "ahu-1.sp" in table.stdout
    as_json = json.loads(run_cli("points", "--json", "--socket", socket).stdout)
    assert as_json["ahu-1.sp"]["value"] == 7.0
    read = run_cli("read", "ahu-1.sp", "--socket", socket)
    assert read.returncode == 0 and "ahu-1.sp = 7.0" in read.stdout
    out_of_range = run_cli("write", "ahu-1.sp", "40", "--socket", socket)
    assert out_of_range.returncode == 4
    assert out_of_range.stderr.strip().startswith("rejected (out_of_limits)")
    assert "Traceback" not in out_of_range.stderr
    dry = run_cli("write", "ahu-1.sp", "9", "--dry-run", "--socket", socket)
    assert dry.returncode == 0 and "dry run" in dry.stdout
    assert _value(agent, "ahu-1.sp") == 7.0
    assert _audit(agent)  # the CLI's commands are audited too, with the user's name
    with sqlite3.connect(agent.config["store"]["path"]) as db:
        users = {row[0] for row in db.execute("SELECT by FROM command_audit")}
    assert users and None not in users and "unknown" not in users


def test_cli_says_the_agent_is_not_running(tmp_path):
    for args in (["write", "x.y", "1"], ["read", "x.y"], ["release", "x.y"], ["points"]):
        result = run_cli(*args, "--socket", str(tmp_path / "none.sock"))
        assert result.returncode == 3, args
        assert (
            result.stderr.strip()
            == f"error: the agent is not running (no socket at {tmp_path / 'none.sock'})"
        )


def _apply(platform, command_id: str, config: dict, **extra) -> list[dict]:
    import yaml

    _send(platform, command_id, type="config_apply", config=yaml.safe_dump(config), **extra)
    return _final(platform, command_id, timeout=30)


def test_config_apply_writes_applies_and_answers_with_the_new_hash(agent, platform):
    old_hash = agent.status()["config_hash"]
    new = {**agent.config, "devices": [{**_valve_device(), "poll_interval": 0.3}]}
    replies = _apply(platform, "cfg-1", new, base_hash=old_hash)
    assert [r["stage"] for r in replies] == ["accepted", "done"], replies
    result = replies[-1]["result"]
    assert result["previous_hash"] == old_hash and result["config_hash"] != old_hash
    assert agent.status()["config_hash"] == result["config_hash"]
    assert "poll_interval: 0.3" in agent.config_path.read_text()
    # The same push again: nothing to do, and a stale base_hash is a conflict.
    assert _apply(platform, "cfg-2", new)[-1]["result"]["changed"] is False
    assert _apply(platform, "cfg-3", new, base_hash=old_hash)[-1]["reason"] == "config_conflict"


def test_an_invalid_config_is_rejected_and_nothing_changes(agent, platform):
    before = agent.config_path.read_text()
    bad = {**agent.config, "devices": [{**_valve_device(), "poll_interval": "often"}]}
    rejected = _apply(platform, "cfg-bad", bad)[-1]
    assert rejected["stage"] == "rejected" and rejected["reason"] == "config_invalid"
    assert "poll_interval" in rejected["message"]
    _send(platform, "cfg-yaml", type="config_apply", config="site: [unclosed")
    assert _final(platform, "cfg-yaml")[-1]["reason"] == "config_invalid"
    assert agent.config_path.read_text() == before


def test_a_pushed_config_includes_nothing_outside_the_agents_folder(agent, platform, tmp_path):
    # The agent's file is tmp_path/site.yaml: a push resolves includes in tmp_path only.
    secret = tmp_path.parent / f"{tmp_path.name}-secret.yaml"
    secret.write_text("top secret\n")
    (tmp_path / "link.yaml").symlink_to(secret)
    before = agent.config_path.read_text()
    text = yaml.safe_dump(agent.config, sort_keys=False)
    targets = [str(secret), f"../{secret.name}", "link.yaml", "/etc/hostname"]
    for n, target in enumerate(targets):
        pushed = text.replace("  id: test-site\n", f"  id: test-site\n  name: !include {target}\n")
        assert pushed != text
        _send(platform, f"cfg-out-{n}", type="config_apply", config=pushed)
        rejected = _final(platform, f"cfg-out-{n}")[-1]
        assert rejected["stage"] == "rejected" and rejected["reason"] == "config_invalid", target
        assert "site.name: included file " in rejected["message"]
        assert "is outside the configuration's folder" in rejected["message"], rejected
        assert "top secret" not in rejected["message"]
    assert agent.config_path.read_text() == before


def test_a_config_that_loses_the_broker_is_rolled_back(agent, platform, broker):
    from edge_agent.broker_tools import free_port

    before = agent.config_path.read_text()
    old_hash = agent.status()["config_hash"]
    lost = {
        **agent.config,
        "uplink": {**agent.config["uplink"], "endpoints": [{"host": "127.0.0.1",
                                                             "port": free_port()}]},
        "commands": {"apply_confirm": "3s"},
    }  # fmt: skip
    replies = _apply(platform, "cfg-lost", lost)
    assert [r["stage"] for r in replies] == ["accepted", "failed"], replies
    failed = replies[-1]
    assert failed["reason"] == "config_failed" and "broker" in failed["message"]
    assert failed["result"] == {"config_hash": old_hash, "rolled_back": True}
    assert agent.config_path.read_text() == before
    assert agent.status()["config_hash"] == old_hash


def _accepted(platform, command_id: str) -> None:
    assert platform.wait_for(
        lambda p: any(a["stage"] == "accepted" for a in p.acks(command_id)), 10
    ), platform.acks(command_id)


def _rolled_back_at_start(agent, platform, command_id: str, before: str, old_hash: str) -> None:
    """The next start (what systemd's Restart= does) restores the old file and answers."""
    agent.start().wait_ready()
    replies = _final(platform, command_id, timeout=30)
    assert [r["stage"] for r in replies] == ["accepted", "failed"], replies
    failed = replies[-1]
    assert failed["reason"] == "config_failed", failed
    assert "stopped before the new configuration" in failed["message"]
    assert failed["result"] == {"config_hash": old_hash, "rolled_back": True}
    assert agent.config_path.read_text() == before
    assert agent.status()["config_hash"] == old_hash
    assert platform.wait_for(lambda p: len(p.telemetry().get("ahu-1", [])) > 0, 10)


def test_a_config_that_crashes_the_agent_is_rolled_back_when_it_restarts(agent, platform, tmp_path):
    before, old_hash = agent.config_path.read_text(), agent.status()["config_hash"]
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("")
    crashing = {**agent.config, "store": {"path": str(not_a_directory / "outbox.db")}}
    _send(platform, "cfg-crash", type="config_apply", config=yaml.safe_dump(crashing))
    _accepted(platform, "cfg-crash")
    assert agent.process.wait(30) != 0  # the new store cannot open: the process dies
    assert agent.config_path.read_text() != before  # what a plain restart would run
    _rolled_back_at_start(agent, platform, "cfg-crash", before, old_hash)


def test_an_agent_killed_while_applying_rolls_back_when_it_restarts(agent, platform, broker):
    from edge_agent.broker_tools import free_port

    before, old_hash = agent.config_path.read_text(), agent.status()["config_hash"]
    unconfirmed = {
        **agent.config,
        "uplink": {**agent.config["uplink"], "endpoints": [{"host": "127.0.0.1",
                                                             "port": free_port()}]},
        "commands": {"apply_confirm": "60s"},
    }  # fmt: skip
    _send(platform, "cfg-cut", type="config_apply", config=yaml.safe_dump(unconfirmed))
    _accepted(platform, "cfg-cut")
    deadline = time.monotonic() + 10
    while agent.config_path.read_text() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    agent.kill()  # a power cut inside the confirmation window
    _rolled_back_at_start(agent, platform, "cfg-cut", before, old_hash)
    assert _audit(agent)["cfg-cut"][1:3] == ("failed", "config_failed")


def test_a_config_that_cannot_be_written_fails_and_the_old_one_runs_on(agent, platform):
    before, old_hash = agent.config_path.read_text(), agent.status()["config_hash"]
    # The journal's place is taken (as a full disk or a read-only directory would refuse it).
    blocked = agent.config_path.with_name(f".{agent.config_path.name}.applying")
    blocked.mkdir()
    new = {**agent.config, "devices": [{**_valve_device(), "poll_interval": 0.3}]}
    failed = _apply(platform, "cfg-ro", new)[-1]
    assert (failed["stage"], failed["reason"]) == ("failed", "config_failed"), failed
    assert failed["message"].startswith("cannot write the configuration: ")
    assert agent.config_path.read_text() == before
    assert agent.status()["config_hash"] == old_hash
    assert blocked.is_dir()  # not mistaken for a journal of ours


def test_backfill_republishes_stored_history_with_its_seq(agent, platform):
    assert platform.wait_for(lambda p: len(p.telemetry().get("ahu-1", [])) >= 10, 10)
    first = platform.telemetry()["ahu-1"][:5]
    since, until = first[0]["ts"], first[-1]["ts"] + 1
    _send(platform, "bf", type="backfill", since=since, until=until, devices=["ahu-1"])
    done = _final(platform, "bf")[-1]
    assert done["stage"] == "done" and done["result"]["messages"] == 5, done
    assert platform.wait_for(
        lambda p: sum(m["historical"] for m in p.telemetry()["ahu-1"]) >= 5, 10
    )
    replayed = [m for m in platform.telemetry()["ahu-1"] if m["historical"]]
    assert [m["seq"] for m in replayed] == [m["seq"] for m in first]
    assert [m["values"] for m in replayed] == [m["values"] for m in first]
    _send(platform, "bf-bad", type="backfill", since=until, until=since)
    assert _final(platform, "bf-bad")[-1]["reason"] == "bad_range"
    _send(platform, "bf-dev", type="backfill", since=since, until=until, devices=["nope"])
    assert _final(platform, "bf-dev")[-1]["reason"] == "unknown_point"
