"""Shared pieces of the benchmarks: a realistic fake plant, the agent process, a raw baseline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.local_api import request

REPO = Path(__file__).resolve().parents[1]


def plant_points(n: int) -> list[dict]:
    """60% analog random walks at sensor resolution, 30% rarely changing binaries, 10% counters."""
    points = []
    for i in range(n):
        share = i % 10
        if share < 6:
            signal = {"mode": "walk", "value": 20 + i % 50, "step": 0.3, "resolution": 0.1}
            points.append({"id": f"a{i}", "signal": signal})
        elif share < 9:
            points.append(
                {"id": f"b{i}", "kind": "binary", "signal": {"mode": "toggle", "period": 720}}
            )
        else:
            signal = {"mode": "counter", "value": 1_000_000 + 1000 * i, "rate": 0.25}
            points.append({"id": f"k{i}", "signal": signal})
    return points


def plant_config(
    workdir: Path, port: int, devices: int, points_per_device: int, interval: float, **store: object
) -> Path:
    config = {
        "site": {"id": "bench"},
        "gateway": {"id": "gw"},
        "uplink": {
            "endpoints": [{"host": "127.0.0.1", "port": port}],
            "topic_prefix": "b",
            "reconnect": {"initial": 0.2, "max": 1.0},
            "inflight": 512,
        },
        "store": {"path": str(workdir / "outbox.db"), **store},
        "local": {"socket": str(workdir / "agent.sock")},
        "log_level": "warning",
        "devices": [
            {
                "id": f"dev{d:03d}",
                "driver": "fake",
                "poll_interval": interval,
                "timeout": interval / 2,
                "points": plant_points(points_per_device),
            }
            for d in range(devices)
        ],
    }
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_agent(workdir: Path, config: Path) -> subprocess.Popen:
    log = open(workdir / "agent.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--log-json"],
        stdout=log,
        stderr=log,
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "agent.log").read_text()[-3000:])
        try:
            request(workdir / "agent.sock", "status")
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("agent did not start")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def raw_paho_rate(port: int, body: bytes, count: int, inflight: int = 512) -> tuple[float, float]:
    """A bare paho client publishing QoS 1 to the same broker: the ceiling for anything
    built on paho here. Returns (messages/s, CPU seconds of this process per message)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="raw-baseline", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(inflight)
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        client.publish("b/raw", body, qos=1)
    while acked < count:
        time.sleep(0.001)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return count / elapsed, cpu / count


def emit(result: dict) -> None:
    print(json.dumps(result))
