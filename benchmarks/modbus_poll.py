"""The Modbus driver polling a realistic chiller map vs a raw pymodbus loop, same run.

The simulator runs in its own process (so the client side is what is measured). Both
read exactly the blocks the driver's plan chose, over one TCP connection each, poll
after poll in turn (driver poll, raw poll, driver request path alone), and the rates come
from the median poll times, so that noise from a shared machine hits all alike. The raw
loop decodes nothing: the ratio is the driver's whole overhead (link lock, timeouts,
error handling, vectorised decoding, Reading objects).

    cd /work/main && .venv/bin/python -m benchmarks.modbus_poll [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient

from drivers.base import Link
from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import ModbusDriver
from edge_agent.points import wall_ms


def chiller_map() -> list[dict[str, Any]]:
    """A plant-room chiller (~300 points): measurements, setpoints, counters, status bits,
    commands and alarms, spread over four register areas and two bit tables."""
    points: list[dict[str, Any]] = []

    def add(pid: str, table: str, address: int, dtype: str, **extra: Any) -> None:
        modbus = {"table": table, "address": address, "type": dtype, **extra.pop("mb", {})}
        points.append({"id": pid, "modbus": modbus, **extra})

    for i in range(60):  # temperatures, pressures, flows: float32, word-swapped
        add(f"meas{i}", "holding", 2 * i, "float32", mb={"word_order": "little"})
    for i in range(40):  # scaled integer measurements (0.1 units)
        add(f"scaled{i}", "input", 100 + i, "int16", scale=0.1)
    for i in range(20):  # energy and run-hour counters
        add(f"count{i}", "holding", 500 + 2 * i, "uint32")
    for i in range(10):  # setpoints
        add(f"sp{i}", "holding", 1000 + i, "int16", scale=0.1)
    for word in range(8):  # status words, 16 flags each
        for bit in range(16):
            add(f"st{word}_{bit}", "holding", 1100 + word, "bit", mb={"bit": bit}, kind="binary")
    for i in range(32):  # commands / alarms as coils and discrete inputs
        add(f"coil{i}", "coil", i, "bool", kind="binary")
        add(f"di{i}", "discrete", i, "bool", kind="binary")
    return points


def _serve(port: int, points: list[dict[str, Any]]) -> None:
    from simulators.modbus_server import DictTagSource, ModbusSimServer

    values: dict[str, Any] = {}
    for p in points:
        values[p["id"]] = True if p.get("kind") == "binary" else 12.3
    values.update({f"count{i}": 1_000_000 + i for i in range(20)})

    async def run() -> None:
        async with ModbusSimServer({1: points}, DictTagSource(values), port=port):
            await asyncio.Event().wait()

    asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_poll(client: Any, blocks: list) -> Any:
    calls = {
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
    }
    requests = [(calls[b.table], b.start, b.count) for b in blocks]

    async def poll() -> None:
        for call, start, count in requests:
            response = await call(start, count=count, device_id=1)
            assert not response.isError()

    return poll


async def _timed(poll: Any, times: list[float]) -> None:
    started = time.perf_counter()
    await poll()
    times.append(time.perf_counter() - started)


def _decode_cost(driver: ModbusDriver, data: dict[int, list], repeat: int) -> tuple[float, float]:
    """µs per point for turning block responses into Readings, and for the numpy part."""
    prepared = driver.plan_for(driver.device.points)
    n = len(prepared.points)
    ts = wall_ms()
    started = time.perf_counter()
    for _ in range(repeat):
        driver._readings(prepared, data, {}, ts)
    full = (time.perf_counter() - started) / repeat / n * 1e6
    decoder = prepared.decoder
    regs = np.zeros(decoder.reg_size, dtype=np.uint16)
    bits = np.zeros(decoder.bit_size, dtype=bool)
    started = time.perf_counter()
    for _ in range(repeat):
        decoder.decode(regs, bits)
    numpy_only = (time.perf_counter() - started) / repeat / n * 1e6
    return full, numpy_only


async def bench(seconds: float) -> dict[str, Any]:
    points = chiller_map()
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(port, points), daemon=True
    )
    server.start()
    device = ModbusDevice.model_validate(
        {
            "id": "chiller",
            "driver": "modbus",
            "timeout": 2.0,
            "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
            "points": points,
        }
    )
    driver = ModbusDriver(device, Link("bench"))
    raw = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2.0, retries=0)
    try:
        await driver.open()
        deadline = time.monotonic() + 20
        while True:  # the server process needs a moment to import and listen
            try:
                await driver.read(device.points)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await raw.connect()
        blocks = list(driver.plan_for(device.points).plan.blocks)
        raw_poll = _raw_poll(raw, blocks)

        async def driver_poll() -> None:
            await driver.read(device.points)

        async def request_path() -> None:  # the driver's requests without decoding
            for block in blocks:
                await driver._read_block(block)

        d_times: list[float] = []
        r_times: list[float] = []
        p_times: list[float] = []
        requests0 = driver.requests
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            await _timed(driver_poll, d_times)
            await _timed(raw_poll, r_times)
            await _timed(request_path, p_times)
        assert driver.requests - requests0 == 2 * len(blocks) * len(d_times)  # no retries
        data = {id(b): await driver._read_block(b) for b in blocks}
        decode_us, numpy_us = _decode_cost(driver, data, 2000)
    finally:
        raw.close()
        await driver.close()
        server.terminate()
        server.join(5)
    d_poll, r_poll, p_poll = (statistics.median(t) for t in (d_times, r_times, p_times))
    return {
        "points": len(points),
        "requests_per_poll": len(blocks),
        "polls": len(d_times),
        "points_per_s": round(len(points) / d_poll),
        "requests_per_s": round(len(blocks) / d_poll, 1),
        "raw_requests_per_s": round(len(blocks) / r_poll, 1),
        "request_path_ratio": round(r_poll / p_poll, 3),
        "ratio_to_raw": round(r_poll / d_poll, 3),
        "points_per_request": round(len(points) / len(blocks), 1),
        "decode_us_per_point": round(decode_us, 3),
        "numpy_decode_us_per_point": round(numpy_us, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time")
    args = parser.parse_args()
    result = asyncio.run(bench(args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
