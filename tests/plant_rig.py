"""The whole simulated plant room and the agent on it, relocated to free ports and a
private pty so that tests (and benchmarks) can run side by side with a demo."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from edge_agent.broker_tools import free_port
from edge_agent.config.loader import load_config
from tests.harness import REPO, AgentProcess

SIM_CONFIG = REPO / "configs" / "sim" / "hospital.yaml"
AGENT_CONFIG = REPO / "configs" / "hospital-site.yaml"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def relocated(tmp_path: Path, broker_port: int) -> tuple[Path, dict]:
    """The shipped simulator and agent configs on free ports and a private pty."""
    sim = yaml.safe_load(SIM_CONFIG.read_text())
    tcp_ports, serial = {}, {}
    for server in sim["modbus"]:
        for unit in server["units"]:
            unit["map"] = str((SIM_CONFIG.parent / unit["map"]).resolve())
        if server["transport"] == "rtu":
            serial[server["pty"]] = server["pty"] = str(tmp_path / server["id"])
        else:
            tcp_ports[server["port"]] = server["port"] = free_port()
    for bus in sim.get("dlt645", ()):
        for meter in bus["meters"]:
            meter["map"] = str((SIM_CONFIG.parent / meter["map"]).resolve())
        serial[bus["pty"]] = bus["pty"] = str(tmp_path / bus["id"])
    bacnet_ports = {}
    for device in sim["bacnet"]:
        device["map"] = str((SIM_CONFIG.parent / device["map"]).resolve())
        host = device["address"].split(":")[0]
        bacnet_ports[device["address"]] = device["address"] = f"{host}:{free_udp_port()}"
    sim["control_file"] = str(tmp_path / "faults.json")
    sim["speed"] = 60
    sim_path = tmp_path / "sim.yaml"
    sim_path.write_text(yaml.safe_dump(sim))

    agent = load_config(AGENT_CONFIG).model_dump(mode="json", exclude_defaults=True)
    agent["uplink"]["endpoints"] = [{"host": "127.0.0.1", "port": broker_port}]
    agent["uplink"]["topic_prefix"] = "t"
    agent["store"] = {"path": str(tmp_path / "outbox.db")}
    agent["local"] = {"socket": str(tmp_path / "agent.sock")}
    agent_bacnet_port = free_udp_port()  # one local application for all BACnet devices
    for device in agent["devices"]:
        conn = device["connection"]
        if device["driver"] == "bacnet":
            conn["address"] = bacnet_ports[conn["address"]]
            conn["local_port"] = agent_bacnet_port
        elif device["driver"] == "dlt645" or conn["transport"] == "rtu":
            conn["port"] = serial[conn["port"]]
        else:
            conn["port"] = tcp_ports[conn["port"]]
    return sim_path, agent


@contextlib.contextmanager
def running_plant(
    tmp_path: Path, broker_port: int, adjust=None
) -> Iterator[tuple[AgentProcess, Path]]:
    """The simulator and the agent as processes; yields the agent and the fault file.
    `adjust(agent_config)` may change the agent's config before it starts."""
    sim_path, agent_config = relocated(tmp_path, broker_port)
    if adjust is not None:
        adjust(agent_config)
    log = open(tmp_path / "sim.log", "wb")  # noqa: SIM115 - owned by the child
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--config", str(sim_path)],
        stdout=log,
        stderr=log,
        cwd=REPO,
    )
    deadline = time.monotonic() + 30
    while b"simulator ready" not in (tmp_path / "sim.log").read_bytes():
        assert sim.poll() is None and time.monotonic() < deadline, (
            tmp_path / "sim.log"
        ).read_text()
        time.sleep(0.1)
    agent = AgentProcess(tmp_path, agent_config).start()
    try:
        agent.wait_commands()
        yield agent, tmp_path / "faults.json"
    finally:
        if agent.process.poll() is None:
            agent.kill()
        sim.terminate()
        sim.wait(10)
