"""A Modbus device that stops answering, as the technician sees the agent's log: JSON lines
only, one device_down, no pymodbus hex dumps, the count of what pymodbus said instead; and
at log level debug pymodbus' own lines, through the agent's logging."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.broker_tools import free_port
from simulators.modbus_server import DictTagSource, ModbusSimServer
from tests.harness import AgentProcess, run_cli, site_config, wait_until

POINTS = [
    {"id": "a", "modbus": {"table": "holding", "address": 0, "type": "uint16"}},
    {"id": "b", "modbus": {"table": "holding", "address": 1, "type": "uint16"}},
]


@pytest.fixture
def chillers() -> Iterator[ModbusSimServer]:
    """Two units behind one pymodbus server (a gateway), unit 2 silent: its neighbour's
    frames are what pymodbus dumps with every timeout."""
    port = free_port()
    server = ModbusSimServer(
        {1: POINTS, 2: POINTS}, DictTagSource({"a": 1, "b": 2}), port=port,
        faults={2: {"offline": True}},
    )  # fmt: skip
    started, done = threading.Event(), threading.Event()

    async def serve() -> None:
        async with server:
            started.set()
            while not done.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the modbus server did not start"
    yield server
    done.set()
    thread.join(10)


def _chiller(device_id: str, port: int, unit: int) -> dict:
    return {
        "id": device_id,
        "driver": "modbus",
        "poll_interval": 0.5,
        "timeout": 0.3,
        "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port, "unit": unit},
        "points": POINTS,
    }


def _agent(
    tmp_path: Path, broker, chillers: ModbusSimServer, level: str, **config: object
) -> AgentProcess:
    devices = [_chiller("chiller-1", chillers.port, 1), _chiller("chiller-2", chillers.port, 2)]
    return AgentProcess(
        tmp_path, site_config(tmp_path, broker.port, devices, log_level=level, **config)
    )


def _records(text: str) -> list[dict]:
    """Every line as JSON: a line that is not fails the test, with the line."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return records


def test_a_silent_device_is_one_event_and_a_count(tmp_path, broker, chillers, agents):
    port = free_port()
    agent = _agent(tmp_path, broker, chillers, "info", metrics={"prometheus_port": port})
    agents.append(agent.start())
    agent.wait_ready()
    wait_until(
        lambda: agent.status()["devices"]["chiller-2"]["failures"] >= 4, 30, "four failed polls"
    )
    status = agent.status()["devices"]
    assert status["chiller-1"]["up"] is True and status["chiller-2"]["up"] is False
    suppressed = status["chiller-2"]["library_records_suppressed"]
    assert suppressed["pymodbus"] >= 4, suppressed
    assert status["chiller-1"]["library_records_suppressed"] == {}
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counted = [
        line for line in text.splitlines()
        if line.startswith("edge_agent_device_library_records_suppressed_total{")
    ]  # fmt: skip
    assert len(counted) == 1, counted
    assert counted[0].startswith(
        'edge_agent_device_library_records_suppressed_total{device="chiller-2",library="pymodbus"} '
    )
    assert float(counted[0].rsplit(" ", 1)[1]) >= 4  # prometheus_client writes 8.0

    shown = run_cli("logs", "--socket", str(agent.socket), "-n", "2000", "--json")
    assert shown.returncode == 0, shown.stderr
    recent = _records(shown.stdout)
    assert [r["device"] for r in recent if r["event"] == "device_down"] == ["chiller-2"]
    assert not [r for r in recent if r.get("logger", "").startswith("pymodbus")]

    # Back: one line with the count, next to device_recovered.
    chillers.set_faults(2, {"offline": False})
    wait_until(lambda: agent.status()["devices"]["chiller-2"]["up"], 30, "chiller-2 back")
    assert agent.stop() == 0

    text = agent.log_path.read_text()
    assert ">>>>>" not in text and "0x0 " not in text  # no frame dumps, no hex
    assert "No response received" not in text
    records = _records(text)
    about = [r["event"] for r in records if r.get("device") == "chiller-2"]
    assert [e for e in about if e != "poll slots skipped"] == [
        "device_down",
        "library records suppressed",
        "device_recovered",
    ], about
    (summary,) = [r for r in records if r["event"] == "library records suppressed"]
    assert summary["library"] == "pymodbus" and summary["count"] >= 4
    assert summary["total"] == summary["count"]


def test_at_debug_level_pymodbus_speaks_through_the_agent(tmp_path, broker, chillers, agents):
    agent = _agent(tmp_path, broker, chillers, "debug").start()
    agents.append(agent)
    agent.wait_ready()
    wait_until(
        lambda: agent.status()["devices"]["chiller-2"]["failures"] >= 2, 30, "two failed polls"
    )
    time.sleep(0.5)
    # The running agent's recent records have them too: one ring buffer.
    shown = run_cli("logs", "--socket", str(agent.socket), "-n", "2000", "--json")
    assert shown.returncode == 0, shown.stderr
    recent = [r for r in _records(shown.stdout) if r.get("logger", "").startswith("pymodbus")]
    assert {r["device"] for r in recent if r["event"].startswith("No response")} == {"chiller-2"}
    text = run_cli("logs", "--socket", str(agent.socket), "-n", "2000", "--level", "error")
    assert text.returncode == 0, text.stderr
    (line, *_) = [t for t in text.stdout.splitlines() if "No response received" in t]
    assert "logger=pymodbus.logging" in line and "device=chiller-2" in line, line
    assert ">>>>>" not in text.stdout
    assert agent.stop() == 0
    records = _records(agent.log_path.read_text())
    library = [r for r in records if r.get("logger", "").startswith("pymodbus")]
    timeouts = [r for r in library if r["event"].startswith("No response received")]
    assert timeouts and {r["device"] for r in timeouts} == {"chiller-2"}
    assert all(r["level"] == "error" and "\n" not in r["event"] for r in timeouts)
    frames = [r for r in library if r["event"].startswith("send: 0x")]
    assert {r["device"] for r in frames} == {"chiller-1", "chiller-2"}  # each its own
    assert all(r["level"] == "debug" for r in frames)
    assert len([r for r in records if r["event"] == "device_down"]) == 1
