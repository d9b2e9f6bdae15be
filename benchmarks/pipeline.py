"""Sustained end-to-end rate: fake driver -> outbox -> mosquitto -> a subscriber.

5,000 points (50 devices x 100) polled fast enough to offer more than 100,000 points/s.
The agent runs as its own process; its CPU and RSS are read with psutil. Baseline: a bare
paho loop publishing the same-sized messages to the same broker.
"""

from __future__ import annotations

import json
import signal
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.common import cpu_seconds, emit, plant_config, raw_paho_rate, start_agent
from edge_agent.broker_tools import LocalBroker, PlatformSubscriber

DEVICES, POINTS = 50, 100
INTERVAL_S = 0.04  # offers 125,000 points/s
WARMUP_S, MEASURE_S = 4.0, 10.0


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    with LocalBroker(workdir / "broker") as broker:
        subscriber = PlatformSubscriber(
            broker.port, topic="b/#", keep=False, client_id="bench-sub"
        ).start()
        config = plant_config(workdir, broker.port, DEVICES, POINTS, INTERVAL_S)
        proc = start_agent(workdir, config)
        agent = psutil.Process(proc.pid)
        time.sleep(WARMUP_S)
        points0, cpu0, t0 = subscriber.points, cpu_seconds(agent), time.perf_counter()
        time.sleep(MEASURE_S)
        points1, cpu1, t1 = subscriber.points, cpu_seconds(agent), time.perf_counter()
        rss_mb = agent.memory_info().rss / 2**20
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        body = next(iter(subscriber.latest.values()))
        subscriber.stop()
        sample = json.dumps(body).encode()
        raw_msgs, raw_cpu_per_msg = raw_paho_rate(broker.port, sample, 20_000)
    points = points1 - points0
    rate = points / (t1 - t0)
    offered = DEVICES * POINTS / INTERVAL_S
    raw_points = raw_msgs * POINTS
    cpu_us = 1e6 * (cpu1 - cpu0) / points
    raw_cpu_us = 1e6 * raw_cpu_per_msg / POINTS
    print(f"offered {offered:,.0f} points/s, delivered {rate:,.0f} points/s")
    print(f"agent CPU {1e6 * (cpu1 - cpu0) / points:.2f} us/point, RSS {rss_mb:.0f} MB")
    print(
        f"bare paho publishing the same messages: {raw_points:,.0f} points/s, "
        f"{raw_cpu_us:.2f} us CPU/point"
    )
    emit(
        {
            "points_per_s": round(rate),
            "offered_points_per_s": round(offered),
            "cpu_us_per_point": round(cpu_us, 3),
            "rss_mb": round(rss_mb, 1),
            "points_configured": DEVICES * POINTS,
            "baseline_raw_paho_points_per_s": round(raw_points),
            "baseline_raw_paho_cpu_us_per_point": round(raw_cpu_us, 3),
            # What polling, storing, decoding and rendering cost on top of publishing alone.
            "cpu_ratio_to_raw_paho": round(cpu_us / raw_cpu_us, 2),
        }
    )


if __name__ == "__main__":
    main()
