"""Platform commands against the simulated plant: Modbus and BACnet devices change, the
physics follows, and every command is in the audit log."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import AgentProcess
from tests.plant_rig import running_plant

CMD = "t/demo-hospital/plantroom-b2/cmd"


@pytest.fixture
def plant(tmp_path: Path, broker) -> Iterator[AgentProcess]:
    with running_plant(tmp_path, broker.port) as (agent, _faults):
        yield agent


def _run(platform, command_id: str, timeout: float = 15.0, **body) -> list[dict]:
    platform.send(CMD, json.dumps({"v": 1, "id": command_id, **body}))
    finals = ("rejected", "done", "failed")
    assert platform.wait_for(
        lambda p: any(a["stage"] in finals for a in p.acks(command_id)), timeout
    ), platform.acks(command_id)
    return platform.acks(command_id)


def _stages(replies: list[dict]) -> list[str]:
    return [r["stage"] for r in replies]


def test_every_kind_of_device_takes_commands(plant, platform):
    # Modbus TCP float32 setpoint on the plant controller: the physics follows it.
    replies = _run(platform, "sp", type="write", point="plant.chws_setpoint", value=8.5)
    assert _stages(replies) == ["accepted", "done"], replies
    assert replies[-1]["result"]["readback"] == 8.5
    assert platform.wait_for(
        lambda p: p.latest.get("plant", {}).get("values", {}).get("chws_temp", 0) > 8.0, 40
    ), platform.latest.get("plant")
    # A scaled uint16 on a pump drive (0.1 %).
    replies = _run(platform, "pump", type="write", point="chw-pump-1.speed_cmd", value=73.4)
    assert _stages(replies) == ["accepted", "done"] and replies[-1]["result"]["readback"] == 73.4
    # BACnet: written at a priority, then relinquished back to the device.
    replies = _run(platform, "bn", type="write", point="chiller-3.chws_setpoint", value=9.0,
                   priority=10)  # fmt: skip
    assert _stages(replies) == ["accepted", "done"] and replies[-1]["result"]["readback"] == 9.0
    released = _run(platform, "bn-rel", type="release", point="chiller-3.chws_setpoint")
    assert _stages(released) == ["accepted", "done"], released
    assert released[-1]["result"]["effective"] == "device"
    assert released[-1]["result"]["readback"] != 9.0  # the device's own value again
    # Read now goes to the device, not the cache.
    read = _run(platform, "rd", type="read", point="plant.chws_setpoint")
    assert read[-1]["result"]["value"] == 8.5 and read[-1]["result"]["quality"] == "good"


def test_refused_commands_write_nothing(plant, platform):
    before = _run(platform, "before", type="read", point="plant.dp_setpoint")[-1]["result"]
    cases = {
        "limits": ({"point": "plant.dp_setpoint", "value": 900.0}, "out_of_limits"),
        "read-only": ({"point": "plant.chws_temp", "value": 5.0}, "read_only"),
        "expired": ({"point": "plant.dp_setpoint", "value": 90.0, "expires": 1}, "expired"),
        "type": ({"point": "plant.dp_control", "value": 7}, "wrong_type"),
        "priority-modbus": ({"point": "plant.dp_setpoint", "value": 90.0, "priority": 8},
                            "priority_unsupported"),
        "priority-life": ({"point": "chiller-3.chws_setpoint", "value": 8.0, "priority": 1},
                          "priority_reserved"),
        "loose-dry-run": ({"point": "plant.dp_setpoint", "value": 90.0, "dry_run": "no"},
                          "malformed"),
    }  # fmt: skip
    for name, (body, reason) in cases.items():
        replies = _run(platform, name, type="write", **body)
        assert _stages(replies) == ["rejected"] and replies[0]["reason"] == reason, replies
    _run(platform, "fast-1", type="write", point="plant.dp_setpoint", value=before["value"])
    fast = _run(platform, "fast-2", type="write", point="plant.dp_setpoint", value=120.0)
    assert fast[-1]["reason"] == "rate_limited"
    after = _run(platform, "after", type="read", point="plant.dp_setpoint")[-1]["result"]
    assert after["value"] == before["value"]
    with sqlite3.connect(plant.config["store"]["path"]) as db:
        audit = dict(db.execute("SELECT id, reason FROM command_audit").fetchall())
    assert audit["limits"] == "out_of_limits" and audit["fast-2"] == "rate_limited"
    assert audit["fast-1"] is None and audit["expired"] == "expired"


def test_status_and_rebirth_of_the_whole_plant(plant, platform):
    assert platform.wait_for(lambda p: len(p.latest) >= 15, 40)
    status = _run(platform, "st", type="status")[-1]["result"]
    assert status["site"] == "demo-hospital" and len(status["devices"]) == 21
    seen = len(platform.telemetry().get("plant", []))
    started = time.time()
    rebirth = _run(platform, "rb", type="rebirth")[-1]["result"]
    assert rebirth["devices"] >= 15 and rebirth["points"] >= 150
    assert platform.wait_for(lambda p: len(p.telemetry()["plant"]) > seen, 5)
    assert time.time() - started < 5


def test_alarm_ack_backfill_and_config_apply_on_the_plant(plant, platform):
    import yaml

    assert platform.wait_for(lambda p: len(p.telemetry().get("plant", [])) >= 4, 40)
    first = platform.telemetry()["plant"][:3]
    replies = _run(platform, "bf", type="backfill", since=first[0]["ts"],
                   until=first[-1]["ts"] + 1, devices=["plant"])  # fmt: skip
    assert replies[-1]["result"]["messages"] == 3, replies
    assert platform.wait_for(
        lambda p: [m["seq"] for m in p.telemetry()["plant"] if m["historical"]]
        == [m["seq"] for m in first], 10
    )  # fmt: skip
    ack = _run(platform, "ack", type="alarm_ack", alarm="chw-supply-warm")
    assert [(a["stage"], a.get("reason")) for a in ack] == [("rejected", "unknown_alarm")]
    config = yaml.safe_load(plant.config_path.read_text())
    for device in config["devices"]:
        if device["id"] == "weather":
            device["poll_interval"] = 20.0
    before = plant.status()["config_hash"]
    applied = _run(platform, "cfg", timeout=60, type="config_apply",
                   config=yaml.safe_dump(config), base_hash=before)  # fmt: skip
    assert [r["stage"] for r in applied] == ["accepted", "done"], applied
    assert plant.status()["config_hash"] == applied[-1]["result"]["config_hash"] != before
    assert platform.wait_for(lambda p: len(p.latest) >= 15, 40)  # polling the plant again
