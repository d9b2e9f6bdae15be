"""BACnet polling: points per second with ReadPropertyMultiple versus one ReadProperty per
point, against the same simulated device (its own process, loopback) and the same points.

    cd /work/main && .venv/bin/python -m benchmarks.bacnet_poll [--points 100] [--seconds 3]

Both modes use the driver as the agent does, with one request in flight (max_concurrent 1,
the conservative setting for devices behind a router). The headline figures model a device
that takes `--device-delay` (5 ms) to turn a request around; real controllers take 5-50 ms,
so this favours ReadProperty. The `loopback_*` figures have no device delay: there both
sides are bound by bacpypes3's pure-Python codec (about 0.15 ms per property value on each
side), which caps the gain of batching. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from drivers.bacnet.config import BacnetDevice
from drivers.bacnet.driver import BacnetDriver
from drivers.base import Link
from edge_agent.points import Quality
from simulators.bacnet_server import SimProcess, free_udp_port

RPM_MAX = 50  # properties per request: 100 analog values fit two unsegmented answers


def device(address: str, points: int, rpm_max_properties: int, concurrent: int) -> BacnetDevice:
    return BacnetDevice.model_validate(
        {
            "id": f"bench-{rpm_max_properties}",
            "driver": "bacnet",
            "timeout": 2.0,
            "connection": {
                "local_address": "127.0.0.1/8",
                "local_port": free_udp_port(),
                "device_instance": 3999,
                "address": address,
                "max_concurrent": concurrent,
                "rpm_max_properties": rpm_max_properties,
            },
            "points": [
                {"id": f"t{i}", "bacnet": {"object": "analog-input", "instance": i}}
                for i in range(1, points + 1)
            ],
        }
    )


async def points_per_s(config: BacnetDevice, seconds: float) -> float:
    driver = BacnetDriver(config, Link(BacnetDriver.link_key(config)))
    async with driver:
        await driver.read(config.points)  # warm-up
        reads, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            readings = await driver.read(config.points)
            assert all(r.quality is Quality.GOOD for r in readings), readings[0]
            reads += 1
    return reads * len(config.points) / elapsed


async def compare(
    sim: SimProcess, points: int, seconds: float, concurrent: int
) -> tuple[float, float]:
    rpm = await points_per_s(device(sim.address, points, RPM_MAX, concurrent), seconds)
    rp = await points_per_s(device(sim.address, points, 1, concurrent), seconds)
    return rpm, rp


async def run(points: int, seconds: float, concurrent: int, delay: float) -> dict[str, object]:
    objects = [
        {"name": f"t{i}", "bacnet": {"object": "analog-input", "instance": i}, "value": i / 4}
        for i in range(1, points + 1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimProcess(Path(tmp) / "map.json", objects).start()
        try:
            loop_rpm, loop_rp = await compare(sim, points, seconds, concurrent)
            sim.command(delay=delay)
            rpm, rp = await compare(sim, points, seconds, concurrent)
        finally:
            sim.stop()
    return {
        "points": points,
        "max_concurrent": concurrent,
        "rpm_max_properties": RPM_MAX,
        "device_delay_ms": delay * 1000,
        "loopback_rpm_points_per_s": round(loop_rpm),
        "loopback_rp_points_per_s": round(loop_rp),
        "loopback_rpm_speedup": round(loop_rpm / loop_rp, 1),
        "rpm_points_per_s": round(rpm),
        "rp_points_per_s": round(rp),
        "rpm_speedup": round(rpm / rp, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--device-delay", type=float, default=0.005, help="seconds")
    args = parser.parse_args()
    result = asyncio.run(run(args.points, args.seconds, args.concurrent, args.device_delay))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
