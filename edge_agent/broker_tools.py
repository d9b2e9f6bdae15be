"""A local mosquitto and a stand-in for the central platform's subscriber.

Used by `edge-agent demo`, the integration tests and the benchmarks. Everything listens on
loopback only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class BrokerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerUnavailable(
        "mosquitto is not installed "
        "(Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients)"
    )


class LocalBroker:
    """mosquitto on 127.0.0.1 with persistence, so that a subscriber's session and its
    queued QoS 1 messages survive a broker restart (as a production broker's would)."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.process: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        lines = [
            # Security settings per listener, so that `extra_conf` can add a TLS listener
            # with its own authentication next to this plain one.
            "per_listener_settings true",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 10000000",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            # Without it, Nagle's algorithm and delayed ACKs hold back the second of two
            # small messages (a command's accepted, then done) by up to 40 ms.
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot read our files
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_conf)
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf_path)],
            stdout=log,
            stderr=log,
            start_new_session=True,  # stopped by its owner, not by terminal signals
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-500:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"mosquitto did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Received:
    topic: str
    body: dict
    at: float  # wall time of arrival, seconds


@dataclass
class PlatformSubscriber:
    """Subscribes to a gateway's topics with a persistent QoS 1 session, like the platform."""

    port: int
    topic: str = "#"
    client_id: str = "platform-test"
    keep: bool = True  # keep every message (tests); False: only counters (benchmarks)
    on_message: Callable[[Received], None] | None = None
    messages: list[Received] = field(default_factory=list)
    points: int = 0
    count: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    latest: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()  # predicates of wait_for may call telemetry()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()

    def start(self, timeout: float = 10.0) -> PlatformSubscriber:
        # paho annotates the delays as int; it only adds them to a clock (0.1 s works).
        self._client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]
        self._client.connect("127.0.0.1", self.port, 30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise BrokerUnavailable("subscriber could not subscribe")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, _u, _flags, reason, _props) -> None:
        sock = client.socket()
        if sock is not None:  # as a platform should: no Nagle delay on small commands
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)
            self._subscribed.set()

    def _on_message(self, _c, _u, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {"raw": msg.payload.decode(errors="replace")}
        item = Received(msg.topic, body, time.time())
        with self._lock:
            self.count += 1
            if body.get("type") == "telemetry":
                self.points += len(body["values"])
                self.latest[body["device"]] = body
            if self.keep:
                self.messages.append(item)
        if self.on_message:
            self.on_message(item)

    def telemetry(self) -> dict[str, list[dict]]:
        """Telemetry bodies per device, in arrival order."""
        per_device: dict[str, list[dict]] = defaultdict(list)
        with self._lock:
            for m in self.messages:
                if m.body.get("type") == "telemetry":
                    per_device[m.body["device"]].append(m.body)
        return per_device

    def send(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish as the platform does (QoS 1), e.g. a command to a gateway."""
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def acks(self, command_id: str) -> list[dict]:
        """The command_result messages received for one command id, in order."""
        with self._lock:
            return [
                m.body
                for m in self.messages
                if m.body.get("type") == "command_result" and m.body.get("id") == command_id
            ]

    def wait_for(self, predicate: Callable[[PlatformSubscriber], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        with self._lock:
            return predicate(self)
