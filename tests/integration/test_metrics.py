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
    assert float(lines['edge_agent_device_up{device="pump-1"}']) == 1
    assert float(lines['edge_agent_device_polls_total{device="pump-1"}']) >= 1
    assert float(lines["edge_agent_uplink_connected"]) == 1
    assert float(lines['edge_agent_device_rtt_seconds{device="pump-1"}']) >= 0
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert missing.value.code == 404
    # HEAD (what some monitors send first): GET's headers, no body.
    head = urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD"), timeout=5
    )
    assert head.status == 200 and int(head.headers["Content-Length"]) > 100
    assert head.read() == b""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x"), timeout=5
        )
    assert refused.value.code == 405
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


def test_numbers_are_exact():
    """`%g` turned 12345678 into 1.23457e+07: a counter must not lose its digits."""
    from edge_agent.metrics import render

    health = {"up": True, "rtt_ms": 1.5, "polls": 12345678, "failures": 0, "bad_points": 0}
    status = {
        "devices": {'pump "1"': health},
        "store": {"backlog_points": 123456789, "oldest_ts": None, "used_bytes": 2**31,
                  "evicted_points": 0},
        "uplink": {"state": "connected", "published": 5},
    }  # fmt: skip
    lines = dict(
        line.rsplit(" ", 1) for line in render(status).splitlines() if not line.startswith("#")
    )
    assert float(lines['edge_agent_device_polls_total{device="pump \\"1\\""}']) == 12345678
    assert float(lines["edge_agent_backlog_points"]) == 123456789
    assert float(lines["edge_agent_store_used_bytes"]) == 2**31
