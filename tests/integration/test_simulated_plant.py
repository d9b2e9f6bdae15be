"""The agent polling the whole simulated plant room: Modbus TCP, RTU over TCP, an RS-485
bus on a pty pair and a BACnet/IP chiller, all processes, through a real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from tests.harness import AgentProcess
from tests.plant_rig import AGENT_CONFIG, running_plant


@pytest.fixture
def simulated_plant(tmp_path: Path, broker) -> Iterator[tuple[AgentProcess, Path]]:
    with running_plant(tmp_path, broker.port) as plant:
        yield plant


def _latest(platform, device: str) -> dict:
    return platform.telemetry()[device][-1]


def test_every_device_of_the_plant_reaches_the_platform(simulated_plant, platform):
    agent, _ = simulated_plant
    devices = [d.id for d in load_config(AGENT_CONFIG).devices]
    assert platform.wait_for(
        lambda p: all(len(p.telemetry().get(d, [])) >= 2 for d in devices if d != "weather"), 40
    ), agent.log()
    for device in devices:
        if device == "weather":  # polled every 30 s
            continue
        latest = _latest(platform, device)
        assert "quality" not in latest, (device, latest.get("quality"))
    chiller = _latest(platform, "chiller-1")["values"]
    assert 4 < chiller["chws_temp"] < 12 and chiller["run_status"] is True
    assert chiller["chws_temp"] == pytest.approx(chiller["chws_setpoint"], abs=1.5)
    bacnet_chiller = _latest(platform, "chiller-3")["values"]
    assert set(bacnet_chiller) >= {"chws_temp", "enable", "status"}
    bms = _latest(platform, "building")["values"]  # a second BACnet device, same local app
    assert bms["cooling_load_kw"] > 1000 and 0 <= bms["valve_pct"] <= 100
    meters = platform.telemetry()["meter-main"]  # RS-485, int32 counters in 0.1 kWh
    assert meters[-1]["values"]["energy_kwh"] > meters[0]["values"]["energy_kwh"]
    assert 0.8 < meters[-1]["values"]["power_factor"] < 1.0
    assert 6 < _latest(platform, "sewage")["values"]["ph"] < 9  # RTU framed over TCP
    plant = _latest(platform, "plant")["values"]  # the pump drives hold dp at its setpoint
    assert plant["dp_control"] is True
    assert plant["dp"] == pytest.approx(plant["dp_setpoint"], abs=10)
    assert agent.stop() == 0


def test_faults_hit_exactly_what_they_target(simulated_plant, platform):
    agent, faults = simulated_plant
    assert platform.wait_for(lambda p: len(p.telemetry().get("chiller-2", [])) >= 1, 30), (
        agent.log()
    )
    faults.write_text(
        json.dumps(
            {
                "modbus": {"chillers": {"2": {"offline": True}, "1": {"exceptions": {"104": 2}}}},
                "sensors": {"plant.chws_temp": {"stuck": 9.5}},
            }
        )
    )
    time.sleep(8)
    status = agent.status()["devices"]
    # chiller-2 is silent; chiller-1 shares its TCP server and is unaffected but for one point.
    assert status["chiller-2"]["up"] is False and status["chiller-1"]["up"] is True
    latest = _latest(platform, "chiller-1")
    assert latest["quality"] == {"cws_temp": {"q": 0, "status": "bad", "reason": "exception 2"}}
    assert latest["values"]["cwr_temp"] is not None  # its neighbour in the same block
    assert _latest(platform, "plant")["values"]["chws_temp"] == pytest.approx(9.5)
    faults.write_text("{}")
    assert platform.wait_for(
        lambda p: any(m.body.get("type") == "device_recovered" for m in p.messages), 30
    ), agent.log()
    events = [m.body for m in platform.messages if m.body.get("type", "").startswith("device_")]
    assert [(e["type"], e["device"]) for e in events] == [
        ("device_down", "chiller-2"),
        ("device_recovered", "chiller-2"),
    ]
    assert agent.stop() == 0
