"""A data logger (the reporter) against the simulated platform over real TCP, with a store
whose history the test writes and a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_agent.broker_tools import free_port
from edge_agent.cache import PointCache
from edge_agent.hj212.config import Hj212
from edge_agent.hj212.frame import parse_cp, parse_segment
from edge_agent.hj212.reporter import Hj212Reporter
from edge_agent.hj212.spool import Spool
from edge_agent.points import Batch, Quality, Reading
from edge_agent.store.outbox import Outbox, Record, TrafficClass
from tests.harness import REPO

MN = "010000A8900016F000169DC0"
PW = "123456"
MINUTE = 60_000
TZ = 8 * 3_600_000
# 2026-12-06 10:00 local (+08:00): periods of every length start here.
T0 = int(datetime(2026, 12, 6, 2, 0, tzinfo=UTC).timestamp() * 1000)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def emit(self, type_: str, *, level: str = "info", **fields: Any) -> None:
        self.seen.append((type_, fields))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [fields for seen, fields in self.seen if seen == type_]


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


POLLUTANTS = [
    {"code": "w00000", "point": "sewage.flow", "scale": 0.277778, "cou": "volume",
     "status": "sewage.flow_status", "range": [0, 100]},
    {"code": "w01018", "point": "sewage.cod", "status": "sewage.cod_status",
     "range": [0, 500], "cou": "load", "weighting": "flow"},
    {"code": "w01001", "point": "sewage.ph", "status": "sewage.ph_status", "range": [0, 14]},
]  # fmt: skip


def config(ports: Iterable[int], store: Path, **platform: Any) -> Hj212:
    platforms = [
        {"id": f"p{n}", "host": "127.0.0.1", "port": port, "mn": MN, "password": PW,
         "send": ["minute", "hour"], "minute_interval": 10, "over_time": 0.5,
         "re_count": 2, "reconnect_max": 0.5, "set_time": "refuse", **platform}
        for n, port in enumerate(ports)
    ]  # fmt: skip
    return Hj212.model_validate(
        {"pollutants": POLLUTANTS, "platforms": platforms, "settle": 5, "store": str(store)}
    )


def poll(ts: int, cod: float | None, *, cod_status: int = 0, flow: float = 36.0,
         quality: Quality = Quality.GOOD) -> Record:  # fmt: skip
    """One poll of the monitor (flow in m3/h, as the meter reads it)."""
    if quality is not Quality.GOOD:
        readings = tuple(Reading.bad(p, "timeout", ts) for p in _POINTS)
    else:
        values = {"flow": flow, "flow_status": 0, "cod": cod, "cod_status": cod_status,
                  "ph": 7.2, "ph_status": 0}  # fmt: skip
        readings = tuple(Reading(p, values[p], ts) for p in _POINTS)
    return Record(TrafficClass.TELEMETRY, "sewage", ts, batch=Batch("sewage", ts, readings))


_POINTS = ("flow", "flow_status", "cod", "cod_status", "ph", "ph_status")


def write_history(path: Path, polls: list[Record]) -> None:
    box = Outbox(path, 10**9, 30 * 86_400.0)
    box.append(polls)
    box.close()


def start_marks(spool_path: Path, platforms: Iterable[str], kinds: Iterable[str], at: int) -> None:
    """Make records from `at` on (a new platform would start at the period under way)."""
    spool = Spool(spool_path)
    for platform in platforms:
        for kind in kinds:
            spool.set_mark(platform, kind, at)
    spool.close()


@contextlib.asynccontextmanager
async def running(reporter: Hj212Reporter) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reporter.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def reporter(cfg: Hj212, store: Path, clock: Clock, events: Events) -> Hj212Reporter:
    return Hj212Reporter(
        cfg, store, PointCache(), events, {"sewage": 10.0}, synchronised=lambda: False,
        clock=clock,
    )  # fmt: skip


def made_records(count: int, cn: str = "2051") -> list[tuple[str, str, str, str]]:
    """`count` minute records of 10:00 local on, as the reporter would make them."""
    out = []
    for n in range(count):
        local = datetime(2026, 12, 6, 10, 0) + timedelta(minutes=n)
        data_time = f"{local:%Y%m%d%H%M%S}"
        cp = f"DataTime={data_time};w01018-Avg={40 + n % 7}.0,w01018-Flag=N"
        out.append((cn, data_time, f"{data_time}{n % 1000:03d}", cp))
    return out


async def until(condition: Any, timeout: float = 10.0, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


class Bureau:
    """`python -m simulators.hj212_platform` as its own process, with its JSON-lines log."""

    def __init__(self, tmp_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = tmp_path / "bureau.jsonl"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulators.hj212_platform", "--port", str(self.port),
             "--logger", f"{MN}={PW}", "--log", str(self.log)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def records(self, cn: str, verdict: str = "new") -> list[dict[str, str]]:
        """The CP items of every record of `cn` received as `verdict`, in order."""
        return [
            parse_cp(parse_segment(entry["segment"]).cp)
            for entry in self.entries()
            if entry.get("cn") == cn and entry["verdict"] == verdict
        ]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
