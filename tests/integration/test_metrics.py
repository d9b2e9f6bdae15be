"""Metrics: the status figures as Prometheus text on a loopback-only port."""

from __future__ import annotations

import urllib.error
import urllib.request

import psutil
import pytest

from edge_agent.broker_tools import free_port
from tests.harness import AgentProcess, fake_device, site_config


def test_prometheus_text_on_loopback_only(tmp_path, broker, platform, agents):
    port = free_port()
    config = site_config(tmp_path, broker.port, [fake_device("pump-1", interval=0.2)],
                         metrics={"prometheus_port": port})  # fmt: skip
    agent = AgentProcess(tmp_path, config)
    agents.append(agent.start())
    agent.wait_ready()
    assert platform.wait_for(lambda p: "pump-1" in p.latest, 10)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines['edge_agent_device_up{device="pump-1"}'] == "1"
    assert int(lines['edge_agent_device_polls_total{device="pump-1"}']) >= 1
    assert lines["edge_agent_uplink_connected"] == "1"
    assert float(lines['edge_agent_device_rtt_seconds{device="pump-1"}']) >= 0
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert missing.value.code == 404
    listening = {
        c.laddr for c in psutil.Process(agent.process.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }  # fmt: skip
    assert listening == {("127.0.0.1", port)}  # nothing else, and never on 0.0.0.0


def test_metrics_are_off_by_default(tmp_path, broker, agents):
    agent = AgentProcess(tmp_path, site_config(tmp_path, broker.port, [fake_device("d")]))
    agents.append(agent.start())
    agent.wait_ready()
    listening = [
        c for c in psutil.Process(agent.process.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    ]  # fmt: skip
    assert listening == []
