"""Run the real agent as a subprocess against a real mosquitto, as the platform would see it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from edge_agent.local_api import request

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI through its real entry point, as a technician runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60, env=env,
    )  # fmt: skip


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def fake_device(device_id: str, n_points: int = 5, interval: float = 0.1, **extra: object) -> dict:
    """A device whose point `c` counts up by 1 per poll, so content can be checked too."""
    points = [
        {"id": "c", "kind": "multistate", "signal": {"mode": "counter", "value": 0, "rate": 1}}
    ]
    points += [
        {"id": f"a{i}", "signal": {"mode": "walk", "value": 20, "step": 0.5, "resolution": 0.1}}
        for i in range(n_points - 1)
    ]
    return {
        "id": device_id,
        "driver": "fake",
        "poll_interval": interval,
        "timeout": interval / 2,
        "points": points,
        **extra,
    }


def site_config(workdir: Path, port: int, devices: list[dict], **overrides: object) -> dict:
    config = {
        "site": {"id": "test-site"},
        "gateway": {"id": "gw1"},
        "uplink": {
            "endpoints": [{"host": "127.0.0.1", "port": port}],
            "topic_prefix": "t",
            "reconnect": {"initial": 0.2, "max": 1.0},
            "flush_timeout": 5,
        },
        "store": {"path": str(workdir / "outbox.db"), "commit_interval": 0.05},
        "local": {"socket": str(workdir / "agent.sock")},
        "log_level": "info",
        "devices": devices,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


class AgentProcess:
    def __init__(self, workdir: Path, config: dict) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "site.yaml"
        self.write_config(config)
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "agent.log"

    @property
    def socket(self) -> Path:
        return self.workdir / "agent.sock"

    def write_config(self, config: dict) -> None:
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> AgentProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge_agent",
                "run",
                "--config",
                str(self.config_path),
                "--log-json",
            ],
            stdout=log,
            stderr=log,
            env=env,
            cwd=REPO,
        )
        return self

    def wait_ready(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited with {self.process.returncode}:\n{self.log()}")
            try:
                return request(self.socket, "status")
            except (OSError, ValueError):
                time.sleep(0.05)
        raise AssertionError(f"agent not ready in {timeout}s:\n{self.log()}")

    def wait_commands(self, timeout: float = 30.0) -> dict:
        """Ready, and the broker has granted the command subscription: a command sent from
        now on is delivered (the agent's session is clean, so one sent before is lost)."""
        self.wait_ready(timeout)
        wait_until(
            lambda: self.status()["uplink"]["commands"] == "subscribed",
            timeout,
            "the command subscription",
        )
        return self.status()

    def status(self) -> dict:
        return request(self.socket, "status")

    def request(self, cmd: str, **args: object) -> dict:
        """One local-socket request, as the CLI makes it."""
        return request(self.socket, cmd, **args)

    def holder(self, ref: str) -> str | None:
        """The source whose hold is in force on DEVICE.POINT, if any."""
        hold = self.request("points", device=ref.split(".")[0])["holds"].get(ref)
        return hold and hold["source"]

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def contiguous(seqs: list[int]) -> tuple[list[int], int]:
    """Missing sequence numbers between 1 and max, and the number of duplicates."""
    unique = set(seqs)
    missing = [s for s in range(1, max(unique, default=0) + 1) if s not in unique]
    return missing, len(seqs) - len(unique)
