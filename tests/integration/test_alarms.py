"""Alarms from a running agent: raised, published ahead of telemetry, acknowledged by the
platform and the technician, and kept across an outage and a restart."""

from __future__ import annotations

import json
import time

from tests.harness import AgentProcess, fake_device, run_cli, site_config

CMD = "t/test-site/gw1/cmd"


def _config(tmp_path, port: int, control_file) -> dict:
    device = fake_device("sewage", n_points=2, interval=0.2)
    device["connection"] = {"control_file": str(control_file)}
    device["points"].append(
        {"id": "ph", "unit": "pH", "signal": {"mode": "constant", "value": 11.5}}
    )
    rules = [
        {"id": "ph-high", "type": "high", "point": "sewage.ph", "limit": 9.0, "deadband": 0.2,
         "severity": "major", "message": "pH {value} above {limit}"},
        {"id": "sewage-offline", "type": "comm_loss", "point": "sewage.ph", "duration": "1s",
         "severity": "minor"},
    ]  # fmt: skip
    return site_config(tmp_path, port, [device], alarms=rules)


def _alarms(platform) -> list[dict]:
    return [m.body for m in platform.messages if m.body.get("type") == "alarm"]


def test_alarm_raised_acknowledged_and_kept_across_a_restart(tmp_path, broker, platform, agents):
    control = tmp_path / "faults.json"
    control.write_text("{}")
    agent = AgentProcess(tmp_path, _config(tmp_path, broker.port, control))
    agents.append(agent.start())
    agent.wait_ready()
    assert platform.wait_for(lambda p: any(a["rule"] == "ph-high" for a in _alarms(p)), 10)
    raised = next(a for a in _alarms(platform) if a["rule"] == "ph-high")
    assert raised["state"] == "active" and raised["severity"] == "major"
    topics = {m.topic for m in platform.messages if m.body.get("type") == "alarm"}
    assert topics == {"t/test-site/gw1/alarm"}

    listed = json.loads(run_cli("alarms", "--json", "--socket", str(agent.socket)).stdout)
    assert [a["rule"] for a in listed] == ["ph-high"] and listed[0]["acked"] is False
    status = run_cli("status", "--socket", str(agent.socket)).stdout
    assert "1 active, 1 unacknowledged" in status and "pH 11.5 above 9" in status
    table = run_cli("alarms", "--socket", str(agent.socket))
    assert "ph-high" in table.stdout and "pH 11.5 above 9" in table.stdout

    platform.send(CMD, json.dumps({"v": 1, "id": "ack-1", "type": "alarm_ack",
                                   "alarm": "ph-high", "note": "dosing pump checked"}))  # fmt: skip
    assert platform.wait_for(lambda p: any(a["stage"] == "done" for a in p.acks("ack-1")), 10), (
        platform.acks("ack-1")
    )
    assert platform.wait_for(lambda p: any(a["state"] == "acknowledged" for a in _alarms(p)), 10)
    again = run_cli("alarms", "--ack", "ph-high", "--socket", str(agent.socket))
    assert again.returncode == 4 and "already_acknowledged" in again.stderr
    unknown = run_cli("alarms", "--ack", "nope", "--socket", str(agent.socket))
    assert unknown.returncode == 4 and "unknown_alarm" in unknown.stderr

    # A restart neither forgets the alarm nor raises it again.
    assert agent.stop() == 0
    count = len(_alarms(platform))
    agents.append(agent.start())
    agent.wait_ready()
    listed = json.loads(run_cli("alarms", "--json", "--socket", str(agent.socket)).stdout)
    assert [(a["rule"], a["state"]) for a in listed] == [("ph-high", "acknowledged")]
    # The device goes silent: comm loss is raised while the uplink keeps publishing.
    control.write_text(json.dumps({"offline": True}))
    assert platform.wait_for(lambda p: any(a["rule"] == "sewage-offline" for a in _alarms(p)), 15)
    assert not any(a["rule"] == "ph-high" and a["state"] == "active"
                   for a in _alarms(platform)[count:])  # fmt: skip


def test_alarms_are_raised_during_an_outage_and_published_first(tmp_path, broker, platform,
                                                                agents):  # fmt: skip
    control = tmp_path / "faults.json"
    control.write_text("{}")
    broker.stop()
    agent = AgentProcess(tmp_path, _config(tmp_path, broker.port, control))
    agents.append(agent.start())
    agent.wait_ready()
    time.sleep(2)  # polls pile up in the outbox, and the alarm with them
    broker.start()
    assert platform.wait_for(lambda p: any(a["rule"] == "ph-high" for a in _alarms(p)), 20)
    arrived = [m.body.get("type") for m in platform.messages if m.topic.startswith("t/test-site")]
    first_alarm = arrived.index("alarm")
    # Priority lane: the alarm overtakes the backlog of telemetry polled before it.
    assert first_alarm < arrived.count("telemetry") // 2, arrived[:20]


def test_the_site_locale_gives_the_alarm_texts_their_language(
    tmp_path, broker, platform, agents, monkeypatch
):
    """`site.locale: zh_CN`: the default text of a rule is in Chinese, on the platform and on
    the technician's screen; every machine field (rule, state, severity, point) is as in
    English. An agent under systemd has no LANG: the site's locale is what it goes by."""
    device = fake_device("sewage", n_points=1, interval=0.2)
    device["points"].append({"id": "ph", "unit": "pH", "signal": {"value": 11.5}})
    rule = {"id": "ph-high", "type": "high", "point": "sewage.ph", "limit": 9.0,
            "severity": "major"}  # fmt: skip
    config = site_config(tmp_path, broker.port, [device], alarms=[rule])
    config["site"]["locale"] = "zh_CN"
    for name in ("EDGE_AGENT_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)  # as under systemd
    agent = AgentProcess(tmp_path, config)
    agents.append(agent.start())
    agent.wait_ready()
    assert platform.wait_for(lambda p: any(a["rule"] == "ph-high" for a in _alarms(p)), 10)
    raised = next(a for a in _alarms(platform) if a["rule"] == "ph-high")
    assert raised["message"] == "sewage.ph 过高：11.5（限值 9.0）", raised
    assert (raised["state"], raised["severity"], raised["point"]) == (
        "active",
        "major",
        "sewage.ph",
    )
    # The technician's CLI reads the site's locale from the configuration (-c; on a gateway
    # the installed one): the headings and words in Chinese too, piped or not.
    screen = run_cli("alarms", "-c", str(agent.config_path), env={"PATH": "/usr/bin"})
    assert screen.stdout.splitlines()[0].split("\t")[:2] == ["级别", "状态"], screen.stdout
    assert "\t重要\t活动\t" in f"\t{screen.stdout.splitlines()[1]}"
    assert "sewage.ph 过高：11.5（限值 9.0）" in screen.stdout
