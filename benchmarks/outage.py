"""A 1-hour backlog of 5,000 points at 5 s drains while live data keeps flowing.

The backlog is written through the real Outbox, as the agent would have stored it during
an outage (fake-driver values, timestamps spread over the past hour). Then the broker
comes back: the agent starts on that store with live polling of the same 5,000 points,
and a subscriber measures how long the replay takes and how late live messages are.
Baseline: the time a bare paho loop needs to publish the same number of messages.
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import emit, plant_config, plant_points, raw_paho_rate, start_agent
from drivers.base import Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.broker_tools import LocalBroker, PlatformSubscriber, Received
from edge_agent.points import Batch, Reading
from edge_agent.store.outbox import Outbox, Record, TrafficClass

DEVICES, POINTS, INTERVAL_S, OUTAGE_S = 50, 100, 5.0, 3600


async def _backlog_batches(now_ms: int) -> list[Batch]:
    drivers = [
        FakeDriver(
            FakeDevice.model_validate(
                {"id": f"dev{d:03d}", "driver": "fake", "points": plant_points(POINTS)}
            ),
            Link(f"l{d}"),
        )
        for d in range(DEVICES)
    ]
    polls = int(OUTAGE_S / INTERVAL_S)
    batches = []
    for k in range(polls):
        ts = now_ms - int((OUTAGE_S - k * INTERVAL_S) * 1000)
        for driver in drivers:
            readings = await driver.read(driver.device.points)
            batches.append(
                Batch(driver.device.id, ts, tuple(Reading(r.point, r.value, ts) for r in readings))
            )
    return batches


def prefill(path: Path) -> int:
    batches = asyncio.run(_backlog_batches(int(time.time() * 1000)))
    outbox = Outbox(path, 2 * 1024**3, 7 * 86400)
    for start in range(0, len(batches), 500):
        outbox.append(
            [
                Record(TrafficClass.TELEMETRY, b.stream, b.ts, batch=b)
                for b in batches[start : start + 500]
            ]
        )
    outbox.close()
    return len(batches)


class Watch:
    def __init__(self, expected_backlog: int) -> None:
        self.expected = expected_backlog
        self.historical = 0
        self.live = 0
        self.live_max_delay = 0.0
        self.done = threading.Event()
        self.done_at = 0.0

    def __call__(self, message: Received) -> None:
        body = message.body
        if body.get("type") != "telemetry":
            return
        if body["historical"]:
            self.historical += 1
            if self.historical >= self.expected and not self.done.is_set():
                self.done_at = time.monotonic()
                self.done.set()
        else:
            self.live += 1
            self.live_max_delay = max(self.live_max_delay, message.at - body["ts"] / 1000)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    t = time.perf_counter()
    rows = prefill(workdir / "outbox.db")
    print(
        f"backlog of {rows} messages ({rows * POINTS:,} points) "
        f"written in {time.perf_counter() - t:.1f} s"
    )
    with LocalBroker(workdir / "broker") as broker:
        watch = Watch(rows)
        subscriber = PlatformSubscriber(
            broker.port, topic="b/#", keep=False, client_id="bench-outage", on_message=watch
        ).start()
        config = plant_config(workdir, broker.port, DEVICES, POINTS, INTERVAL_S)
        started = time.monotonic()
        proc = start_agent(workdir, config)
        if not watch.done.wait(600):
            raise SystemExit(f"backlog not drained: {watch.historical}/{rows}")
        drain_s = watch.done_at - started
        time.sleep(INTERVAL_S)  # live data after the drain too
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        subscriber.stop()
        sample = json.dumps(next(iter(subscriber.latest.values()))).encode()
        raw, _ = raw_paho_rate(broker.port, sample, 20_000)
    baseline_s = rows / raw
    print(
        f"drained {rows * POINTS:,} points in {drain_s:.1f} s (agent start included); "
        f"live messages during the drain: {watch.live}, worst delay {watch.live_max_delay:.2f} s"
    )
    print(f"a bare paho loop would publish the same messages in {baseline_s:.1f} s")
    emit(
        {
            "backlog_points": rows * POINTS,
            "backlog_messages": rows,
            "drain_s": round(drain_s, 2),
            "live_messages": watch.live,
            "live_max_delay_s": round(watch.live_max_delay, 3),
            "baseline_raw_paho_s": round(baseline_s, 2),
            "ratio_to_raw_paho": round(drain_s / baseline_s, 2),
        }
    )


if __name__ == "__main__":
    main()
