"""How the uplink connects: TLS with client certificates, passwords, failover, MQTT 3.1.1."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber, free_port
from tests.harness import AgentProcess, contiguous, fake_device, site_config


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a broker certificate for 127.0.0.1 and a gateway client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
    )
    for name, extra in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(extra + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.crt"),
        )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "gw1", "s3cret"], check=True)
    (d / "gw1.pass").write_text("s3cret\n")
    (d / "wrong.pass").write_text("guess\n")
    return d


def _tls_broker(tmp_path: Path, pki: Path) -> LocalBroker:
    """A TLS listener requiring a client certificate and a password, and a plain listener
    on another port for the test's own subscriber."""
    tls_port = free_port()
    extra = (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        "require_certificate true\n"
        f"password_file {pki}/passwd\nallow_anonymous false\n"
    )
    broker = LocalBroker(tmp_path / "broker", extra_conf=extra)
    broker.tls_port = tls_port
    return broker


def _tls_uplink(pki: Path, port: int, password_file: str = "gw1.pass") -> dict:
    return {
        "endpoints": [{"host": "127.0.0.1", "port": port}],
        "tls": {
            "ca": str(pki / "ca.crt"),
            "cert": str(pki / "client.crt"),
            "key": str(pki / "client.key"),
        },
        "username": "gw1",
        "password_file": str(pki / password_file),
    }


def _run(tmp_path, agents, port, **overrides) -> AgentProcess:
    config = site_config(tmp_path, port, [fake_device("d1")], **overrides)
    agent = AgentProcess(tmp_path, config).start()
    agents.append(agent)
    agent.wait_ready()
    return agent


def test_tls_with_client_certificate_and_password(tmp_path, pki, agents):
    broker = _tls_broker(tmp_path, pki)
    broker.start()
    try:
        platform = PlatformSubscriber(broker.port, topic="t/#").start()
        agent = _run(tmp_path, agents, broker.tls_port, uplink=_tls_uplink(pki, broker.tls_port))
        assert platform.wait_for(lambda p: len(p.telemetry().get("d1", [])) >= 10, 15), agent.log()
        assert agent.status()["uplink"]["state"] == "connected"
        assert agent.stop() == 0
        platform.stop()
    finally:
        broker.stop()


def test_a_refused_password_keeps_the_data_and_says_why(tmp_path, pki, agents):
    broker = _tls_broker(tmp_path, pki)
    broker.start()
    try:
        uplink = _tls_uplink(pki, broker.tls_port, password_file="wrong.pass")
        agent = _run(tmp_path, agents, broker.tls_port, uplink=uplink)
        time.sleep(2)
        status = agent.status()
        assert status["uplink"]["state"] != "connected"
        assert "refused" in status["uplink"]["last_error"].lower()
        assert status["store"]["backlog_rows"] >= 10  # kept, waiting for a broker that accepts us
        assert agent.stop() == 0
    finally:
        broker.stop()


def test_fails_over_to_the_next_endpoint(tmp_path, broker, platform, agents):
    dead = free_port()
    uplink = {
        "endpoints": [
            {"host": "127.0.0.1", "port": dead},
            {"host": "127.0.0.1", "port": broker.port},
        ]
    }
    agent = _run(tmp_path, agents, broker.port, uplink=uplink)
    assert platform.wait_for(lambda p: len(p.telemetry().get("d1", [])) >= 10, 15), agent.log()
    assert agent.status()["uplink"]["endpoint"] == f"127.0.0.1:{broker.port}"
    assert agent.stop() == 0
    missing, _ = contiguous([b["seq"] for b in platform.telemetry()["d1"]])
    assert missing == []


def test_mqtt_311(tmp_path, broker, platform, agents):
    agent = _run(tmp_path, agents, broker.port, uplink={"protocol": "3.1.1"})
    assert platform.wait_for(lambda p: len(p.telemetry().get("d1", [])) >= 10, 15), agent.log()
    assert agent.stop() == 0
    missing, duplicates = contiguous([b["seq"] for b in platform.telemetry()["d1"]])
    assert (missing, duplicates) == ([], 0)
