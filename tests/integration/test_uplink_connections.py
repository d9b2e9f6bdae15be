"""How the uplink connects: TLS with client certificates, passwords, failover, MQTT 3.1.1."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber, free_port
from tests.harness import (
    AgentProcess,
    contiguous,
    fake_device,
    run_cli,
    site_config,
    wait_until,
)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a broker certificate for 127.0.0.1, the gateway's client certificate (CN
    client), the platform's (CN platform) and one of another party (CN intruder)."""
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
        ("platform", "extendedKeyUsage=clientAuth"),
        ("intruder", "extendedKeyUsage=clientAuth"),
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


def test_a_stop_does_not_wait_for_a_broker_that_never_answers(tmp_path, agents):
    """A listener that takes the connection and never sends a CONNACK (a hung broker, a
    black-holing middlebox): the stop is bounded all the same, and what was polled stays."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    try:
        agent = _run(tmp_path, agents, silent.getsockname()[1])
        wait_until(lambda: held, 5, "the agent's connection")
        time.sleep(1)  # waiting for the CONNACK (up to 10 s)
        assert agent.status()["uplink"]["state"] == "connecting"
        started = time.monotonic()
        assert agent.stop() == 0
        assert time.monotonic() - started < 4, agent.log()  # was the rest of the 10 s wait
    finally:
        for sock in [silent, *held]:
            sock.close()
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("SELECT count(*) FROM outbox WHERE cls = 0").fetchone()[0] >= 10


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


def _tls_client(pki: Path, name: str, port: int) -> mqtt.Client:
    """An MQTT 5 client with its own certificate (its identity on the broker)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.tls_set(str(pki / "ca.crt"), str(pki / f"{name}.crt"), str(pki / f"{name}.key"))
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _acl_broker(tmp_path: Path, pki: Path, acl: str) -> LocalBroker:
    """A TLS listener where the certificate's CN is the user and `acl` says what each
    user may do; the plain listener stays open for the test's own observer."""
    tls_port = free_port()
    (tmp_path / "acl").write_text(acl)
    extra = (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {tmp_path}/acl\n"
    )
    broker = LocalBroker(tmp_path / "broker", extra_conf=extra).start()
    broker.tls_port = tls_port
    return broker


def _certificate_agent(tmp_path, pki, broker, agents, devices) -> AgentProcess:
    """An agent that authenticates with the gateway's certificate (CN client) alone."""
    uplink = {"endpoints": [{"host": "127.0.0.1", "port": broker.tls_port}],
              "tls": {"ca": str(pki / "ca.crt"), "cert": str(pki / "client.crt"),
                      "key": str(pki / "client.key")}}  # fmt: skip
    agent = AgentProcess(tmp_path, site_config(tmp_path, broker.port, devices, uplink=uplink))
    agents.append(agent.start())
    agent.wait_ready()
    return agent


def test_only_the_platform_identity_can_command_the_gateway(tmp_path, pki, agents):
    broker = _acl_broker(
        tmp_path,
        pki,
        "user client\ntopic readwrite t/test-site/gw1/#\n"
        "user platform\ntopic write t/test-site/gw1/cmd\ntopic read t/test-site/gw1/#\n"
        "user intruder\ntopic readwrite t/other-site/#\n",
    )
    tls_port = broker.tls_port
    clients: list[mqtt.Client] = []
    try:
        observer = PlatformSubscriber(broker.port, topic="t/#").start()  # plain listener
        device = fake_device("d1")
        device["points"].append({"id": "sp", "writable": True, "limits": {"min": 0, "max": 50},
                                 "signal": {"mode": "constant", "value": 20}})  # fmt: skip
        agent = _certificate_agent(tmp_path, pki, broker, agents, [device])
        assert observer.wait_for(lambda p: "d1" in p.latest, 15), agent.log()
        assert agent.wait_commands()["uplink"]["commands"] == "subscribed"

        def command(command_id: str, value: float) -> bytes:
            return json.dumps({"v": 1, "id": command_id, "type": "write", "point": "d1.sp",
                               "value": value}).encode()  # fmt: skip

        intruder = _tls_client(pki, "intruder", tls_port)
        clients.append(intruder)
        info = intruder.publish("t/test-site/gw1/cmd", command("evil", 45.0), qos=1)
        info.wait_for_publish(5)
        platform = _tls_client(pki, "platform", tls_port)
        clients.append(platform)
        platform.publish("t/test-site/gw1/cmd", command("good", 30.0), qos=1).wait_for_publish(5)
        assert observer.wait_for(lambda p: any(a["stage"] == "done" for a in p.acks("good")), 10)
        time.sleep(0.5)
        assert observer.acks("evil") == []  # the broker never delivered it
        value = agent.request("points", device="d1")["points"]["d1.sp"]["value"]
        assert value == 30.0
        with sqlite3.connect(agent.config["store"]["path"]) as db:
            ids = {row[0] for row in db.execute("SELECT id FROM command_audit")}
        assert ids == {"good"}
        assert agent.stop() == 0
        observer.stop()
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
        broker.stop()


DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_broker_that_refuses_the_command_topic_is_reported_not_silent(tmp_path, agents, protocol):
    # A common commissioning mistake: the gateway may publish but not subscribe to cmd.
    # mosquitto's acl_file grants every SUBSCRIBE and filters on delivery; its dynamic
    # security plugin refuses in the SUBACK, as EMQX and most cloud brokers do.
    dynsec = {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "gateway"}]}],
        "roles": [{"rolename": "gateway", "acls": [
            {"acltype": "publishClientSend", "topic": "t/test-site/gw1/#", "allow": True}]}],
        "anonymousGroup": "anonymous",
    }  # fmt: skip
    (tmp_path / "dynsec.json").write_text(json.dumps(dynsec))
    port = free_port()
    extra = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\nplugin {DYNSEC_PLUGIN}\n"
        f"plugin_opt_config_file {tmp_path}/dynsec.json\n"
    )
    broker = LocalBroker(tmp_path / "broker", extra_conf=extra).start()
    try:
        observer = PlatformSubscriber(broker.port, topic="t/#").start()  # the open listener
        uplink = {"endpoints": [{"host": "127.0.0.1", "port": port}], "protocol": protocol}
        agent = _run(tmp_path, agents, broker.port, uplink=uplink)
        assert observer.wait_for(lambda p: "d1" in p.latest, 15), agent.log()  # data flows
        wait_until(
            lambda: agent.status()["uplink"]["commands"] == "refused", 10, "the refused SUBACK"
        )
        uplink = agent.status()["uplink"]
        assert uplink["state"] == "connected" and uplink["commands"] == "refused", uplink
        assert "t/test-site/gw1/cmd" in uplink["last_error"] and "ACL" in uplink["last_error"]
        shown = " ".join(run_cli("status", "--socket", str(agent.socket)).stdout.split())
        assert "commands refused" in shown and "check the broker ACL" in shown, shown
        assert "commands_refused" in agent.log()
        # The platform hears why its commands would go unanswered.
        assert observer.wait_for(
            lambda p: any(m.body.get("type") == "commands_refused" for m in p.messages), 10
        )
        event = next(m for m in observer.messages if m.body.get("type") == "commands_refused")
        assert event.topic == "t/test-site/gw1/event", event
        assert event.body["topic"] == "t/test-site/gw1/cmd", event
        assert agent.stop() == 0
        observer.stop()
    finally:
        broker.stop()
