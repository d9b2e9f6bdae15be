"""The platform contract as written: docs/mqtt-api.md's examples against the gateway.

Every JSON example of the command section is named (`<!-- example: NAME.PART -->`). Each
must fit the JSON Schema in docs/schema/ (a command example fits exactly when the gateway's
decoder accepts it), and each reply example must be what a real gateway answers to its
command: the same stages, fields and values, up to timestamps, sequence numbers, counts and
the digits in readable messages. The gateway is the agent process on a real mosquitto, with
a fake plant controller and a BACnet chiller (the simulator over real UDP).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_agent.broker_tools import PlatformSubscriber
from edge_agent.commands import messages
from tests.drivers.bacnet.sim import SimProcess, free_udp_port
from tests.harness import REPO, AgentProcess, run_cli, wait_until

DOC = REPO / "docs" / "mqtt-api.md"
SCHEMAS = REPO / "docs" / "schema"
_EXAMPLE = re.compile(r"<!-- example: ([\w-]+)\.(\w+) -->\s*```json\n(.*?)```", re.S)
CMD = "edge/demo-hospital/plantroom-b2/cmd"

# Values that differ from run to run: compared by JSON type only.
VOLATILE = {"ts", "seq", "read_ts", "raised_ts", "ack_ts", "history_oldest_ts", "messages",
            "points"}  # fmt: skip
FINAL = ("rejected", "done", "failed")


def examples() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, part, text in _EXAMPLE.findall(DOC.read_text()):
        assert part not in found.get(name, {}), f"example {name}.{part} twice"
        found.setdefault(name, {})[part] = json.loads(text)
    return found


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


def test_the_doc_has_the_examples_the_tests_run():
    assert set(examples()) == set(SCENARIOS), "name every example, and give each a scenario"


def test_every_example_fits_the_schema_exactly_when_the_gateway_accepts_it():
    commands, replies = validator("command.schema.json"), validator("reply.schema.json")
    for name, parts in examples().items():
        for part, body in parts.items():
            if part != "command":
                errors = [e.message for e in replies.iter_errors(body)]
                assert not errors, f"{name}.{part}: {errors}"
                continue
            fits = commands.is_valid(body)
            try:
                messages.decode(json.dumps(body))
                decoded = True
            except messages.Rejected:
                decoded = False
            assert fits == decoded, f"{name}.command: schema says {fits}, gateway {decoded}"


# ---- against a running gateway -------------------------------------------------------------

CHILLER_OBJECTS = [
    {"name": "enable", "bacnet": {"object": "binary-output", "instance": 1}, "value": False},
    {"name": "run_status", "bacnet": {"object": "binary-input", "instance": 1}, "value": False},
    {"name": "pump", "bacnet": {"object": "binary-output", "instance": 2}, "value": False},
    {"name": "pump_status", "bacnet": {"object": "binary-input", "instance": 2}, "value": False},
]


def site(tmp_path: Path, broker_port: int, chiller: SimProcess) -> dict:
    point = {"min_write_interval": 0}
    plant = {
        "id": "plant", "driver": "fake", "poll_interval": 0.5, "timeout": 0.4,
        "points": [
            {"id": "chws_setpoint", "unit": "degC", "writable": True,
             "limits": {"min": 5, "max": 12}, "signal": {"value": 7.0}, **point},
            {"id": "chws_temp", "unit": "degC", "signal": {"value": 7.1}},
            {"id": "valve", "unit": "%", "writable": True, "limits": {"min": 0, "max": 100},
             "signal": {"value": 20.0}, **point},
            {"id": "dp", "unit": "kPa", "signal": {"value": 80.0}},
            {"id": "flow", "unit": "L/s", "signal": {"value": 120.0}},
        ],
    }  # fmt: skip
    meter = {
        "id": "meter", "driver": "fake", "poll_interval": 5, "timeout": 0.3,
        "connection": {"offline": True},
        "points": [{"id": "reset", "kind": "binary", "writable": True, **point}],
    }  # fmt: skip
    bacnet = {
        "id": "chiller-3", "driver": "bacnet", "poll_interval": 1, "timeout": 0.5,
        "connection": {"local_address": "127.0.0.1/8", "local_port": free_udp_port(),
                       "device_instance": 3999, "address": chiller.address},
        "points": [
            {"id": "enable", "kind": "binary", "writable": True, **point,
             "bacnet": {"object": "binary-output", "instance": 1, "priority": 8}},
            {"id": "run_status", "kind": "binary",
             "bacnet": {"object": "binary-input", "instance": 1}},
            {"id": "pump", "kind": "binary", "writable": True, **point,
             "bacnet": {"object": "binary-output", "instance": 2, "priority": 8}},
            {"id": "pump_status", "kind": "binary",
             "bacnet": {"object": "binary-input", "instance": 2}},
        ],
    }  # fmt: skip
    return {
        "site": {"id": "demo-hospital"},
        "gateway": {"id": "plantroom-b2"},
        "uplink": {"endpoints": [{"host": "127.0.0.1", "port": broker_port}],
                   "reconnect": {"initial": 0.2, "max": 1.0}},
        "store": {"path": str(tmp_path / "outbox.db"), "commit_interval": 0.05},
        "local": {"socket": str(tmp_path / "agent.sock")},
        "devices": [plant, bacnet, meter],
        "protection": [
            {"id": "chiller-3", "run_command": "chiller-3.enable",
             "running": "chiller-3.run_status", "min_on": "15m"},
            {"id": "chiller-3-pump", "run_command": "chiller-3.pump",
             "running": "chiller-3.pump_status", "min_on": "15m"},
        ],
        "loops": [{"id": "chw-valve", "type": "pid", "period": 1, "measurement": "plant.chws_temp",
                   "setpoint": 7.0, "output": "plant.valve", "kp": 5, "ti": 60,
                   "direction": "direct", "limits": {"min": 0, "max": 100},
                   "safe_state": "hold"}],
        "alarms": [{"id": "chw-supply-warm", "type": "high", "point": "plant.chws_temp",
                    "limit": 7.0, "severity": "major",
                    "message": "chilled water supply {value} °C above {limit} °C"}],
    }  # fmt: skip


class Gateway:
    def __init__(self, agent: AgentProcess, platform: PlatformSubscriber) -> None:
        self.agent = agent
        self.platform = platform

    def send(self, body: dict) -> list[dict]:
        """Publish a command as the platform does; every reply once the final one is in."""
        self.platform.send(CMD, json.dumps(body))
        command_id = body.get("id")
        assert self.platform.wait_for(
            lambda p: any(r["stage"] in FINAL for r in p.acks(command_id)), 20
        ), f"no final reply to {command_id}: {self.platform.acks(command_id)}"
        time.sleep(0.2)  # a stray extra stage would show up now
        return self.platform.acks(command_id)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, request) -> Iterator[Gateway]:
    from edge_agent.broker_tools import LocalBroker

    tmp_path = tmp_path_factory.mktemp("contract")
    broker = LocalBroker(tmp_path / "broker").start()
    chiller = SimProcess(tmp_path / "chiller.json", CHILLER_OBJECTS, instance=3003).start()
    platform = PlatformSubscriber(broker.port, topic="edge/#", client_id="contract").start()
    agent = AgentProcess(tmp_path, site(tmp_path, broker.port, chiller)).start()
    try:
        agent.wait_commands()
        wait_until(lambda: "plant" in platform.latest, 20, "the first telemetry")
        yield Gateway(agent, platform)
    finally:
        if agent.process.poll() is None:
            agent.kill()
        platform.stop()
        chiller.stop()
        broker.stop()


# What each example needs before its command is sent, and what to send when the doc's own
# command cannot be sent as it is (a whole YAML file, a time range of this run's data).
Setup = Callable[[Gateway, dict], dict | None]


def plain(_g: Gateway, command: dict) -> dict:
    return command


def chiller_started(g: Gateway, command: dict) -> dict:
    start = g.send({"v": 1, "id": "pre-start", "type": "write", "point": "chiller-3.enable",
                    "value": True})  # fmt: skip
    assert start[-1]["stage"] == "done", start
    return command


def loop_holds_its_output(g: Gateway, command: dict) -> dict:
    wait_until(lambda: g.agent.holder("plant.valve") == "auto", 30, "the PID writing")
    return command


def alarm_raised(g: Gateway, command: dict) -> dict:
    wait_until(
        lambda: any(a["rule"] == "chw-supply-warm" for a in g.agent.request("alarms")["alarms"]),
        20,
        "the alarm",
    )
    return command


def running_config(g: Gateway, _command: dict) -> dict:
    text = g.agent.config_path.read_text()
    return {"v": 1, "id": "c-56", "type": "config_apply", "config": text}


def this_runs_history(_g: Gateway, command: dict) -> dict:
    return {**command, "since": 0, "until": int(time.time() * 1000) + 1}


def offline_device(_g: Gateway, _command: dict) -> dict:
    return {"v": 1, "id": "c-59", "type": "write", "point": "meter.reset", "value": True}


SCENARIOS: dict[str, Setup] = {
    "write": plain,
    "dry-run": plain,
    "malformed": plain,
    "unusable-id": plain,
    "out-of-limits": plain,
    "release": plain,
    "release-pending": chiller_started,
    "read": plain,
    "loop-disable": loop_holds_its_output,
    "loop-set": plain,
    "loop-enable": plain,
    "alarm-ack": alarm_raised,
    "alarm-ack-again": plain,
    "config-conflict": plain,
    "config-unchanged": running_config,
    "backfill": this_runs_history,
    "rebirth": plain,
    "status": plain,
    "device-down": offline_device,
}


ABRIDGED = {"status"}  # examples whose result the doc shows in part


def _covers(real: Any, doc: Any, top: bool = True) -> bool:
    """Every key the doc shows is in the gateway's answer (at the top: exactly its keys),
    down through objects and the first entry of lists."""
    if isinstance(doc, dict):
        if not isinstance(real, dict) or (top and set(doc) != set(real)):
            return False
        if not set(doc) <= set(real):
            return False
        return all(_covers(real[k], v, top=False) for k, v in doc.items() if v not in ({}, []))
    if isinstance(doc, list):
        return isinstance(real, list) and (
            not doc or (bool(real) and _covers(real[0], doc[0], False))
        )
    return True


def normalised(value: Any, key: str = "") -> Any:
    """What must be equal between the doc and the gateway: values, except the ones that
    depend on time (by type only) and the digits and hashes inside texts."""
    if isinstance(value, dict):
        return {k: normalised(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if key in VOLATILE:
        return type(value).__name__ if not isinstance(value, bool) else "bool"
    if isinstance(value, str):
        return re.sub(r"\b[0-9a-f]{16}\b|\d+", "#", value)
    return value


def test_every_example_reply_is_what_the_gateway_answers(gateway: Gateway):
    for name, parts in examples().items():  # in the doc's order: later ones build on earlier
        setup = SCENARIOS[name]
        command = setup(gateway, parts.get("command", {}))
        replies = gateway.send(command)
        documented = [part for part in parts if part != "command"]
        by_stage = {reply["stage"]: reply for reply in replies}
        final = replies[-1]["stage"]
        if documented[-1] in FINAL:
            assert [r["stage"] for r in replies][-1] == documented[-1], (name, replies)
        elif documented == ["done"]:
            assert final == "done", (name, replies)
        assert len(replies) == len({r["stage"] for r in replies}), (name, replies)
        for part in documented:
            stage = part if part in ("accepted", *FINAL) else final
            real, doc = by_stage.get(stage), parts[part]
            assert real is not None, f"{name}: no {stage} reply: {replies}"
            if name in ABRIDGED:  # the doc shows part of each object: its keys are real
                real, doc = dict(real), dict(doc)
                assert _covers(real.pop("result"), doc.pop("result")), (name, real, doc)
            assert normalised(real) == normalised(doc), (
                f"{name}.{part}: the gateway answered\n{json.dumps(real)}\nthe doc says\n"
                f"{json.dumps(doc)}"
            )
        schema_errors = [e.message for r in replies for e in validator("reply.schema.json")
                         .iter_errors(r)]  # fmt: skip
        assert not schema_errors, (name, schema_errors)


def test_the_cli_shows_a_pending_release(gateway: Gateway):
    """The technician's side of a deferred release (after the examples ran)."""
    socket = str(gateway.agent.socket)
    write = run_cli("write", "chiller-3.pump", "true", "--socket", socket)
    assert write.returncode == 0, write.stderr
    release = run_cli("release", "chiller-3.pump", "--socket", socket)
    assert release.returncode == 0, release.stderr
    assert "stays in force until equipment protection allows" in release.stdout
    assert "minimum on time" in release.stdout
    wide = {**os.environ, "COLUMNS": "200"}
    status = run_cli("status", "--socket", socket, env=wide)
    assert "chiller-3.pump held by manual" in status.stdout
    assert "ending: chiller-3-pump: started" in status.stdout, status.stdout
    points = run_cli("points", "--device", "chiller-3", "--socket", socket, env=wide)
    assert "ending when protection allows" in points.stdout, points.stdout
