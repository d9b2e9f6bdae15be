"""HJ 212: the bureau's platform down for 72 hours, then back (docs/benchmarks.md, `hj212`).

One sewage monitor of 8 pollutants (configs/hj212/hospital.yaml, MinInterval 10,
RtdInterval 30 s) polled every 10 s. Its polls over the outage (and a margin) are written
into a real Outbox as history; the real Hj212Reporter runs on a clock the benchmark steps
30 s at a time through those hours while the platform refuses connections, and makes the
real-time data, minute, hourly and daily records into its spool as the agent would. Then
the platform comes back and the spool is replayed to it.

The platform is the simulated one in its own process (`python -m simulators.hj212_platform`),
so this process's CPU time is the logger's alone; what the platform stored and counted is
read back from its JSON-lines log. Baseline: a bare asyncio client sending the same
frames, encoded beforehand, to the same kind of platform, each once the previous one's
9014 has come (no spool, no SQLite). Past capacity: a smaller outage replayed to a platform
that acks late, which bounds the rate; that platform runs in this process, because only
the class has ack modes.

    python -m benchmarks.hj212 [--hours 72] [--slow-hours 2] [--ack-delay 0.05] [--dir DIR]

Progress goes to stderr; the last line of stdout is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import psutil
import yaml

from benchmarks.common import REPO, emit
from edge_agent.cache import PointCache
from edge_agent.hj212.codes import Cn, make_flag
from edge_agent.hj212.config import Hj212, Platform
from edge_agent.hj212.frame import FrameReader, Packet, encode, parse_cp, parse_segment, split
from edge_agent.hj212.link import READ_SIZE, PlatformLink
from edge_agent.hj212.reporter import Hj212Reporter
from edge_agent.hj212.spool import Owed, Spool
from edge_agent.points import Batch, Reading
from edge_agent.store.outbox import Outbox, Record, TrafficClass
from simulators.hj212 import HJ212Platform
from simulators.hj212.records import Outcome, Received

HOST = "127.0.0.1"
DEVICE = "sewage"
PLATFORM_ID = "bureau"
POLL_MS = 10_000
STEP_MS = 30_000  # the benchmark's clock steps: the RtdInterval
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
TZ_MS = 8 * HOUR_MS  # the config's +08:00
MARGIN_MS = HOUR_MS  # history before the outage starts and after it ends
RECONNECT_MAX_S = 1.0  # the agent's default is 60 s: the wait would hide the replay
REPLAY_TIMEOUT_S = 600.0
HOSPITAL = REPO / "configs" / "hj212" / "hospital.yaml"

KIND_OF_CN = {
    Cn.RTD_DATA.value: "realtime",
    Cn.MINUTE_DATA.value: "minute",
    Cn.HOUR_DATA.value: "hour",
    Cn.DAY_DATA.value: "day",
    Cn.RESTART_TIME.value: "restart",
}

# The monitor's signals in its own units (flow in m3/h, as the meter of hospital.yaml reads
# it): walks that drift back to their mean, (mean, step per poll, low, high), inside the
# measuring ranges of hospital.yaml.
SIGNALS = {
    "flow": (35.0, 1.0, 5.0, 90.0),
    "ph": (7.2, 0.02, 6.0, 9.0),
    "cod": (45.0, 1.0, 10.0, 150.0),
    "nh3n": (5.0, 0.1, 0.5, 25.0),
    "ss": (12.0, 0.4, 2.0, 60.0),
    "tp": (0.5, 0.01, 0.05, 2.0),
    "water_temp": (18.0, 0.05, 8.0, 30.0),
    "residual_chlorine": (5.0, 0.1, 0.5, 9.5),
}
REVERSION = 0.01  # of the distance to the mean, per poll
# What happens every day, by minute of the local day, so that the flags vary a little:
# an analyzer calibrating (status 2: C) or in maintenance (1: M), the monitor silent (all
# points bad: B), residual chlorine above its 0-10 range (T); and now and then (0.2 % of
# polls) one analyzer reports a fault for one poll (3: D).
EPISODES = {"cod": (120, 140, 2), "nh3n": (540, 570, 1)}
SILENT = (840, 845)
ABOVE_RANGE = ("residual_chlorine", 1200, 1210, 10.5)
FAULT_SHARE = 0.002


def monitor_polls(start_ms: int, end_ms: int, seed: int = 212) -> list[Batch]:
    """The monitor's polls every 10 s over [start_ms, end_ms): values and statuses."""
    rng = random.Random(seed)
    values = {name: mean for name, (mean, *_) in SIGNALS.items()}
    points = [p for name in SIGNALS for p in (name, f"{name}_status")]
    over, over_from, over_to, above = ABOVE_RANGE
    polls = []
    for ts in range(start_ms, end_ms, POLL_MS):
        minute = (ts + TZ_MS) // MINUTE_MS % 1440
        if SILENT[0] <= minute < SILENT[1]:
            polls.append(Batch(DEVICE, ts, tuple(Reading.bad(p, "timeout", ts) for p in points)))
            continue
        readings = []
        for name, (mean, step, low, high) in SIGNALS.items():
            drift = REVERSION * (mean - values[name]) + rng.gauss(0, step)
            values[name] = min(high, max(low, values[name] + drift))
            value = above if name == over and over_from <= minute < over_to else values[name]
            status = 0
            episode = EPISODES.get(name)
            if episode is not None and episode[0] <= minute < episode[1]:
                status = episode[2]
            elif rng.random() < FAULT_SHARE:
                status = 3
            readings += [
                Reading(name, round(value, 3), ts),
                Reading(f"{name}_status", status, ts),
            ]
        polls.append(Batch(DEVICE, ts, tuple(readings)))
    return polls


def write_history(path: Path, polls: list[Batch]) -> None:
    """The polls as the agent stored them: telemetry in the outbox, in one append."""
    box = Outbox(path, 10**10, 30 * 86_400.0)
    box.append([Record(TrafficClass.TELEMETRY, p.stream, p.ts, batch=p) for p in polls])
    box.close()


def hospital() -> dict[str, Any]:
    """The `hj212:` section of the hospital (configs/hj212/hospital.yaml), as loaded."""
    section: dict[str, Any] = yaml.safe_load(HOSPITAL.read_text())
    return section


def hj212_config(port: int, spool: Path) -> Hj212:
    """hospital.yaml's pollutants and platform, reporting to `port` on loopback."""
    section = hospital()
    (platform,) = section["platforms"]
    platform.update(
        id=PLATFORM_ID, host=HOST, port=port, send=["realtime", "minute", "hour", "day"],
        realtime_interval=STEP_MS // 1000, minute_interval=10, reconnect_max=RECONNECT_MAX_S,
    )  # fmt: skip
    section["store"] = str(spool)
    return Hj212.model_validate(section)


def free_port() -> int:
    """A free loopback port below the ephemeral range: while the platform is down, none of
    the logger's connects can be given it as its own port (a TCP self-connect)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 16_000), low)
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port on loopback below the ephemeral range")


def outage_start(now: datetime) -> int:
    """Epoch ms of the local midnight four days before `now`: the outage's days are whole
    days, and its history is in the past, within the outbox's retention."""
    local = (now + timedelta(milliseconds=TZ_MS)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((local - timedelta(days=4)).replace(tzinfo=UTC).timestamp() * 1000) - TZ_MS


def scheduled(outage_ms: int) -> dict[str, int]:
    """What the clock's steps should make: real-time data at every step, start and end
    included; every period of [start, end); the restart time once."""
    return {
        "realtime": outage_ms // STEP_MS + 1,
        "minute": outage_ms // (10 * MINUTE_MS),
        "hour": outage_ms // HOUR_MS,
        "day": outage_ms // (24 * HOUR_MS),
        "restart": 1,
    }


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the platforms --------------------------------------------------------------------------


@dataclass(slots=True)
class Arrivals:
    """What a platform stored and counted. `new`: (CN, DataTime, items) in the order stored."""

    new: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    duplicates: int = 0
    conflicts: int = 0
    crc_errors: int = 0
    rejected: int = 0  # every other fault it counted (bad frames, unexpected packets, ...)


class Bureau(Protocol):
    port: int

    async def accept(self) -> None: ...

    async def stop(self) -> Arrivals: ...

    def cpu_s(self) -> float | None: ...


# Verdicts of the platform's log that are neither records nor faults.
_NOT_FAULTS = frozenset({"part", "answer", "data", "calibration"})


class ChildBureau:
    """The simulated platform in its own process; down until `accept` starts it."""

    def __init__(self, workdir: Path, port: int, mn: str, password: str) -> None:
        self.port = port
        self._log = workdir / f"bureau-{port}.jsonl"
        self._stderr = workdir / f"bureau-{port}.err"
        self._logger = f"{mn}={password}"
        self._proc: subprocess.Popen[bytes] | None = None

    async def accept(self) -> None:
        """Start the platform; return once it listens."""
        with self._stderr.open("wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "simulators.hj212_platform", "--host", HOST,
                 "--port", str(self.port), "--logger", self._logger, "--log", str(self._log)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while b"listening on" not in self._stderr.read_bytes():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the platform did not start: {self._stderr.read_text()}")
            await asyncio.sleep(0.01)

    def cpu_s(self) -> float | None:
        if self._proc is None:
            return None
        times = psutil.Process(self._proc.pid).cpu_times()
        return times.user + times.system

    async def stop(self) -> Arrivals:
        if self._proc is not None:
            self._proc.terminate()
            await asyncio.to_thread(self._proc.wait, 30)
        arrivals = Arrivals()
        lines = self._log.read_text().splitlines() if self._log.exists() else []
        for line in lines:
            entry = json.loads(line)
            verdict = entry["verdict"]
            if verdict == Outcome.NEW:
                packet = parse_segment(entry["segment"])
                items = parse_cp(packet.cp)
                arrivals.new.append((packet.cn, items.pop("DataTime"), items))
            elif verdict == Outcome.DUPLICATE:
                arrivals.duplicates += 1
            elif verdict == Outcome.CONFLICT:
                arrivals.conflicts += 1
            elif verdict == "crc_errors":
                arrivals.crc_errors += 1
            elif verdict not in _NOT_FAULTS:
                arrivals.rejected += 1
        return arrivals


class InProcessBureau:
    """The simulated platform in this process (for its ack modes); down until `accept`."""

    def __init__(self, port: int, mn: str, password: str, **ack: Any) -> None:
        self.port = port
        self._received: list[Received] = []
        self._platform = HJ212Platform(
            HOST, port, {mn: password}, on_record=self._received.append, **ack
        )
        self._running = contextlib.AsyncExitStack()

    async def accept(self) -> None:
        await self._running.enter_async_context(self._platform)

    def cpu_s(self) -> float | None:
        return None  # its time is this process's

    async def stop(self) -> Arrivals:
        await self._running.aclose()
        counts = self._platform.counts()
        fault_kinds = ("bad_frames", "unknown_mn", "wrong_password", "bad_st", "unknown_cn")
        return Arrivals(
            new=[(r.cn, r.data_time, r.items) for r in self._received if r.outcome is Outcome.NEW],
            duplicates=counts.duplicates,
            conflicts=counts.conflicts,
            crc_errors=counts.crc_errors,
            rejected=counts.unexpected + counts.dropped + counts.bad_data_time
            + sum(getattr(counts, kind) for kind in fault_kinds),
        )  # fmt: skip


# -- the data logger ------------------------------------------------------------------------


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class LinkEvents:
    """The reporter's event sink: keeps when the link first connected."""

    def __init__(self) -> None:
        self.connected_at: float | None = None

    def emit(self, type_: str, *, level: str = "info", **fields: Any) -> None:
        if type_ == "hj212_connected" and self.connected_at is None:
            self.connected_at = time.perf_counter()


class Logger:
    """The real Hj212Reporter (its own loop running) on the benchmark's clock, with the
    monitor's latest polls in its point cache for the real-time data."""

    def __init__(self, config: Hj212, store: Path, polls: list[Batch], start_ms: int) -> None:
        self.clock = Clock(start_ms)
        self.events = LinkEvents()
        self.cache = PointCache()
        self.reporter = Hj212Reporter(
            config, store, self.cache, self.events, {DEVICE: POLL_MS / 1000},
            synchronised=lambda: True, clock=self.clock,
        )  # fmt: skip
        self.platform = config.platforms[0]
        self._polls = polls
        self._fed = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Logger:
        self._feed(self.clock.now_ms)
        self._task = asyncio.create_task(self.reporter.run())
        while PLATFORM_ID not in self.reporter.links:  # states loaded, the restart time made
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the reporter stopped")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def link(self) -> PlatformLink:
        return self.reporter.links[PLATFORM_ID]

    async def live_through(self, start_ms: int, end_ms: int) -> None:
        """Step the clock from start to end (both included) and once more past `settle`, so
        the periods that end at `end_ms` close; make what is due at every step. (The
        reporter's own loop makes too, once a second on the same clock: the spool's one row
        per record makes the overlap harmless.)"""
        steps = [*range(start_ms, end_ms + 1, STEP_MS)]
        steps.append(end_ms + int(self.reporter.config.settle * 1000) + 1000)
        for now in steps:
            self.clock.now_ms = now
            self._feed(now)
            await self.reporter.make_due(self.platform)

    def _feed(self, now_ms: int) -> None:
        while self._fed < len(self._polls) and self._polls[self._fed].ts <= now_ms:
            poll = self._polls[self._fed]
            self.cache.update(poll.stream, poll.readings)
            self._fed += 1

    async def made(self) -> list[Owed]:
        """Every row of the spool, in the order made."""
        rows: list[Owed] = []
        for cn in KIND_OF_CN:
            rows += await self.reporter.spool.call(
                Spool.records, PLATFORM_ID, cn, "0" * 14, "9" * 14
            )
        return sorted(rows, key=lambda row: row.id)

    async def owes(self) -> bool:
        return bool(await self.reporter.spool.call(Spool.owed, PLATFORM_ID, 1))


def spool_thread_cpu_s() -> float:
    """CPU time of the spool's thread so far (its SQLite work): the part of the logger's
    time that is not the event loop's."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith("hj212-spool")}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


# -- one outage -----------------------------------------------------------------------------


def judged(made: list[Owed], arrivals: Arrivals) -> dict[str, Any]:
    """What the platform holds against what the logger made. A record counts as acked when
    the platform stored it with the very items made; one it stored otherwise, or that was
    never made, is new data that should not be (duplicates_as_new, with the conflicts)."""
    expected = {(row.cn, row.data_time): _items(row.cp) for row in made}
    stored = {(cn, data_time): items for cn, data_time, items in arrivals.new}
    acked = sum(1 for key, items in stored.items() if expected.get(key) == items)
    order = [(cn, data_time) for cn, data_time, _ in arrivals.new]
    return {
        "records_acked": acked,
        "lost": len(expected) - acked,
        "duplicates_as_new": arrivals.conflicts + len(stored) - acked,
        "duplicates": arrivals.duplicates,
        "crc_errors": arrivals.crc_errors,
        "rejected": arrivals.rejected,
        "in_order": order == [(row.cn, row.data_time) for row in made],
    }


def _items(cp: str) -> dict[str, str]:
    items = parse_cp(cp)
    del items["DataTime"]
    return items


def _stopped_on_error(bureau: Bureau) -> Callable[..., Awaitable[bool]]:
    """An exit callback that stops the platform (a process, maybe) when the run failed."""

    async def stop(kind: type[BaseException] | None, *_: object) -> bool:
        if kind is not None:
            await bureau.stop()
        return False

    return stop


@dataclass(slots=True)
class Outage:
    result: dict[str, Any]
    made: list[Owed]
    platform: Platform


async def outage_and_recovery(workdir: Path, hours: float, bureau: Bureau) -> Outage:
    """The logger through `hours` with the platform down, then the platform back."""
    workdir.mkdir(parents=True, exist_ok=True)
    outage_ms = int(hours * HOUR_MS) // STEP_MS * STEP_MS
    start = outage_start(datetime.now(UTC))
    end = start + outage_ms
    polls = monitor_polls(start - MARGIN_MS, end + MARGIN_MS)
    started = time.perf_counter()
    write_history(workdir / "outbox.db", polls)
    write_s = time.perf_counter() - started
    log(f"{len(polls):,} polls of {len(SIGNALS)} pollutants written in {write_s:.1f} s")

    config = hj212_config(bureau.port, workdir / "hj212.db")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_exit(_stopped_on_error(bureau))
        logger = await stack.enter_async_context(
            Logger(config, workdir / "outbox.db", polls, start)
        )
        started = time.perf_counter()
        await logger.live_through(start, end)
        make_s = time.perf_counter() - started
        made = await logger.made()
        counted = Counter(KIND_OF_CN[row.cn] for row in made)
        by_kind = {kind: counted[kind] for kind in KIND_OF_CN.values()}
        sent_while_down = logger.link.status.acked
        log(f"{hours:g} h with the platform down: made {len(made):,} records in {make_s:.1f} s "
            f"({by_kind}), acked meanwhile {sent_while_down}")  # fmt: skip

        await bureau.accept()
        accepted = time.perf_counter()
        cpu, platform_cpu = time.process_time(), bureau.cpu_s()
        spool_cpu = spool_thread_cpu_s()
        status = logger.link.status
        acked, sent, resent = status.acked, status.sent, status.resent
        while await logger.owes():
            if time.perf_counter() - accepted > REPLAY_TIMEOUT_S:
                raise SystemExit(f"replay not done in {REPLAY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)
        done = time.perf_counter()
        cpu = time.process_time() - cpu
        spool_cpu = spool_thread_cpu_s() - spool_cpu
        platform_cpu_end = bureau.cpu_s()
        packets = status.acked - acked
        connected_at = logger.events.connected_at or accepted
    arrivals = await bureau.stop()

    replay_s, delivery_s = done - accepted, done - connected_at
    log(f"replayed {packets:,} packets in {replay_s:.1f} s "
        f"({delivery_s:.1f} s from the connection)")  # fmt: skip
    result: dict[str, Any] = {
        "outage_h": hours,
        "history_polls": len(polls),
        "history_write_s": round(write_s, 2),
        "records_expected": len(made),
        "records_by_kind": by_kind,
        "as_scheduled": by_kind == scheduled(outage_ms),
        "acked_while_down": sent_while_down,
        "make_s": round(make_s, 2),
        "replay_s": round(replay_s, 2),
        "connect_wait_s": round(connected_at - accepted, 2),
        "delivery_s": round(delivery_s, 2),
        "packets": packets,
        "frames_sent": status.sent - sent,
        "resent": status.resent - resent,
        **judged(made, arrivals),
        "cpu_us_per_packet": round(1e6 * cpu / max(packets, 1), 1),
        "spool_thread_cpu_us_per_packet": round(1e6 * spool_cpu / max(packets, 1), 1),
    }
    if platform_cpu is not None and platform_cpu_end is not None:
        result["platform_cpu_us_per_packet"] = round(
            1e6 * (platform_cpu_end - platform_cpu) / max(packets, 1), 1
        )
    return Outage(result, made, config.platforms[0])


# -- the baseline ---------------------------------------------------------------------------


def frames_of(made: list[Owed], platform: Platform) -> list[tuple[str, bytes]]:
    """(QN, frame) of every packet the link sent for `made`, split as it splits them."""
    frames = []
    flag = make_flag(platform.protocol, ack=True)
    for row in made:
        packet = Packet(
            qn=row.qn, st=platform.st, cn=row.cn, pw=platform.password, mn=platform.mn,
            flag=flag, cp=row.cp,
        )  # fmt: skip
        frames += [(row.qn, encode(part)) for part in split(packet, platform.split_at)]
    return frames


async def bare_client(port: int, frames: list[tuple[str, bytes]]) -> tuple[float, float]:
    """Send each frame once the previous one's 9014 came: (seconds, CPU seconds)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    answers = FrameReader()
    started, cpu = time.perf_counter(), time.process_time()
    for qn, data in frames:
        writer.write(data)
        await writer.drain()
        acked = False
        while not acked:
            received = await reader.read(READ_SIZE)
            if not received:
                raise RuntimeError("the platform closed the connection")
            acked = any(
                isinstance(item, Packet) and item.cn == Cn.DATA_ANSWER and item.qn == qn
                for item in answers.feed(received)
            )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return elapsed, cpu


async def baseline(workdir: Path, outage: Outage) -> dict[str, Any]:
    platform = outage.platform
    frames = frames_of(outage.made, platform)
    bureau = ChildBureau(workdir, free_port(), platform.mn, platform.password)
    await bureau.accept()
    try:
        elapsed, cpu = await bare_client(bureau.port, frames)
    finally:
        arrivals = await bureau.stop()
    log(f"baseline: {len(frames):,} frames by a bare asyncio client in {elapsed:.1f} s")
    return {
        "frame_bytes_mean": round(sum(len(data) for _, data in frames) / len(frames)),
        "baseline_replay_s": round(elapsed, 2),
        "baseline_cpu_us_per_packet": round(1e6 * cpu / len(frames), 1),
        "baseline_records_stored": len(arrivals.new),
    }


# -- the run --------------------------------------------------------------------------------


async def run(workdir: Path, hours: float, slow_hours: float, ack_delay_s: float) -> dict:
    platform = hospital()["platforms"][0]
    mn, password = platform["mn"], platform["password"]

    log(f"outage of {hours:g} h, the platform in its own process")
    main = ChildBureau(workdir, free_port(), mn, password)
    outage = await outage_and_recovery(workdir / "outage", hours, main)
    result = outage.result
    result["cpu_measured"] = "the logger alone: the platform runs in its own process"
    result |= await baseline(workdir, outage)
    result["replay_ratio"] = round(result["delivery_s"] / result["baseline_replay_s"], 2)

    log(f"past capacity: {slow_hours:g} h to a platform that acks {ack_delay_s * 1000:.0f} ms late")
    late = InProcessBureau(free_port(), mn, password, ack_mode="late", ack_delay_s=ack_delay_s)
    slow = (await outage_and_recovery(workdir / "slow", slow_hours, late)).result
    bound_s = slow["packets"] * ack_delay_s
    keys = ("outage_h", "records_expected", "packets", "replay_s", "delivery_s", "records_acked",
            "lost", "duplicates_as_new", "duplicates", "resent", "in_order")  # fmt: skip
    result["slow_platform"] = {
        "ack_delay_s": ack_delay_s,
        **{key: slow[key] for key in keys},
        "bound_s": round(bound_s, 2),
        "delivery_over_bound": round(slow["delivery_s"] / bound_s, 3) if bound_s else None,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=72.0, help="the outage (default 72)")
    parser.add_argument(
        "--slow-hours", type=float, default=2.0, help="the outage replayed to the late platform"
    )
    parser.add_argument("--ack-delay", type=float, default=0.05, help="its delay, s")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-hj212-", dir=args.dir))
    try:
        result = asyncio.run(run(workdir, args.hours, args.slow_hours, args.ack_delay))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
