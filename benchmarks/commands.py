"""Write commands from a platform client to `done` with read-back, through mosquitto,
against the simulated plant (Modbus TCP devices in their own process).

Latency: one command at a time, publish -> `done` at the platform (p50, p99). Throughput:
a burst of commands in flight together. Baseline in the same run: a bare pymodbus write +
read-back of the same register from this process (what the device itself costs), so the
agent's overhead is the difference.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import emit
from edge_agent.broker_tools import LocalBroker, PlatformSubscriber, Received
from tests.plant_rig import running_plant

CMD = "t/demo-hospital/plantroom-b2/cmd"
# Modbus TCP float32 setpoints: (point, low, high)
# Independent registers (the plant controller passes its CHW setpoint on to the chillers,
# so theirs are not used: a burst would race with it).
TARGETS = [
    ("plant.chws_setpoint", 6.5, 8.0),
    ("plant.dp_setpoint", 80.0, 120.0),
    ("plant.cws_setpoint", 26.0, 30.0),
    ("sewage.chlorine_dose_setpoint", 2.0, 8.0),
]
WINDOW = 32  # commands the platform keeps in flight during the burst
SEQUENTIAL, BURST = 300, 400


def _no_rate_limit(config: dict) -> None:
    """The benchmark measures the path, not the protective rate limit (1 s by default)."""
    refs = {ref for ref, _, _ in TARGETS}
    for device in config["devices"]:
        for point in device.get("points", []):
            if f"{device['id']}.{point['id']}" in refs:
                point["min_write_interval"] = 0


class Stopwatch:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.failed: dict[str, dict] = {}
        self.cond = threading.Condition()

    def on_message(self, message: Received) -> None:
        body = message.body
        if body.get("type") != "command_result" or body["stage"] == "accepted":
            return
        with self.cond:
            if body["stage"] == "done":
                self.done[body["id"]] = message.at
            else:
                self.failed[body["id"]] = body
            self.cond.notify_all()

    def wait(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(i in self.done or i in self.failed for i in ids):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    missing = sum(i not in self.done for i in ids)
                    raise TimeoutError(f"{missing} commands unanswered")


def _command(n: int) -> tuple[str, bytes]:
    ref, low, high = TARGETS[n % len(TARGETS)]
    value = round(low + (high - low) * ((n * 37) % 100) / 100, 1)
    command_id = f"bench-{n}"
    body = {"v": 1, "id": command_id, "type": "write", "point": ref, "value": value}
    return command_id, json.dumps(body).encode()


async def _raw_modbus(port: int, n: int) -> list[float]:
    """Bare pymodbus: write a float32 setpoint and read it back, n times."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    times = []
    try:
        for i in range(n):
            regs = client.convert_to_registers(7.0 + (i % 10) / 10, client.DATATYPE.FLOAT32)
            started = time.perf_counter()
            await client.write_registers(0, regs, device_id=1)
            await client.read_holding_registers(0, count=2, device_id=1)
            times.append(time.perf_counter() - started)
    finally:
        client.close()
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = LocalBroker(workdir / "broker").start()
        watch = Stopwatch()
        platform = PlatformSubscriber(
            broker.port, topic="t/demo-hospital/plantroom-b2/ack", keep=False,
            on_message=watch.on_message,
        ).start()  # fmt: skip
        try:
            with running_plant(workdir, broker.port, adjust=_no_rate_limit) as (agent, _f):
                plant_port = next(
                    d["connection"]["port"] for d in agent.config["devices"] if d["id"] == "plant"
                )
                time.sleep(2)  # let the first polls settle
                latencies = []
                for n in range(SEQUENTIAL):
                    command_id, payload = _command(n)
                    started = time.time()
                    platform.send(CMD, payload)
                    watch.wait([command_id], 10)
                    if command_id in watch.done:
                        latencies.append(watch.done[command_id] - started)
                ids = []
                started = time.time()
                for n in range(SEQUENTIAL, SEQUENTIAL + BURST):
                    if len(ids) >= WINDOW:
                        watch.wait(ids[: -WINDOW + 1], 30)
                    command_id, payload = _command(n)
                    ids.append(command_id)
                    platform.send(CMD, payload)
                watch.wait(ids, 120)
                burst_s = max(watch.done.get(i, started) for i in ids) - started
                raw = asyncio.run(_raw_modbus(plant_port, 200))
        finally:
            platform.stop()
            broker.stop()
    failed = len(watch.failed)
    reasons: dict[str, int] = {}
    for body in watch.failed.values():
        reasons[f"{body['reason']}: {body['message']}"[:120]] = reasons.get(body["reason"], 0) + 1
    emit(
        {
            "benchmark": "commands",
            "sequential": SEQUENTIAL,
            "failed": failed,
            "failures": reasons,
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
            "commands_per_s": round(BURST / burst_s, 1),
            "raw_modbus_write_readback_p50_ms": round(statistics.median(raw) * 1000, 2),
            "raw_modbus_write_readback_p99_ms": round(_percentile(raw, 0.99) * 1000, 2),
        }
    )


if __name__ == "__main__":
    main()
