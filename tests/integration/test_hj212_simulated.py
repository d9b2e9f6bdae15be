"""The agent as the hospital's data logger, whole: the simulated sewage monitor over Modbus
(RTU over TCP), the agent with the shipped hospital config, and the simulated bureau as its
own process. Each state of the monitor shows as its HJ 212 flag at the bureau, and the
technician sees the platform in `edge-agent hj212 status` and `edge-agent status`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge_agent.hj212.rig import Bureau
from tests.harness import AgentProcess, run_cli, wait_until
from tests.plant_rig import running_plant


@pytest.fixture
def logger(tmp_path: Path, broker) -> Iterator[tuple[AgentProcess, Path, Bureau]]:
    bureau = Bureau(tmp_path)

    def to_the_bureau(config: dict) -> None:
        hj212 = config["hj212"]
        hj212["store"] = str(tmp_path / "hj212.db")
        hj212["settle"] = 3
        hj212["platforms"][0].update(host="127.0.0.1", port=bureau.port)

    try:
        with running_plant(tmp_path, broker.port, to_the_bureau) as (agent, faults):
            yield agent, faults, bureau
    finally:
        bureau.stop()


def flags(items: dict[str, str]) -> dict[str, str]:
    return {key.split("-")[0]: value for key, value in items.items() if key.endswith("-Flag")}


def test_the_monitors_states_reach_the_bureau_as_flags(logger) -> None:
    agent, faults, bureau = logger

    # Real-time data every 30 s: all normal while the monitor works.
    def all_normal() -> bool:  # (the first may precede the monitor's first poll: all B)
        return any(set(flags(items).values()) == {"N"} for items in bureau.records("2011"))

    wait_until(all_normal, 75, "real-time data, all normal, at the bureau")
    status = json.loads(run_cli("hj212", "status", "--json", "--socket", str(agent.socket)).stdout)
    assert status[0]["platform"] == "bureau" and status[0]["link"]["connected"]
    assert agent.status()["hj212"][0]["connected"]

    states = {"cod": "calibration", "nh3n": "maintenance", "ph": "fault", "tp": "manual",
              "flow": "stopped"}  # fmt: skip
    faults.write_text(json.dumps({"sewage": states}))
    seen = len(bureau.records("2011"))
    time.sleep(11)  # the agent polls the monitor every 10 s: the next real-time data show it
    wait_until(lambda: len(bureau.records("2011")) > seen, 45, "real-time data after the faults")
    after = flags(bureau.records("2011")[-1])
    assert after == {"w00000": "F", "w01001": "D", "w01018": "C", "w21003": "M", "w01012": "N",
                     "w21011": "S", "w01010": "N", "w99001": "N"}  # fmt: skip

    # The monitor goes silent: nothing it says can be N any more.
    faults.write_text(json.dumps({"modbus": {"sewage-serial-server": {"5": {"offline": True}}}}))
    seen = len(bureau.records("2011"))
    time.sleep(25)  # a timeout, then the device is down and its readings bad
    wait_until(lambda: len(bureau.records("2011")) > seen, 45, "real-time data while offline")
    silent = bureau.records("2011")[-1]
    assert set(flags(silent).values()) == {"B"} and not any(k.endswith("-Rtd") for k in silent)

    # Minute data (1 min in the demo config), every pollutant flagged.
    wait_until(lambda: bureau.records("2051"), 70, "a minute record at the bureau")
    minutes = bureau.records("2051")
    assert all(len(flags(items)) == 8 for items in minutes)
    assert agent.stop() == 0
