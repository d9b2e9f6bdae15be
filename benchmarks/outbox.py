"""The SQLite outbox on its own: bytes per sample on disk, append and drain rates.

A plant of 5,000 points (50 devices x 100: 60 % analog random walks at sensor resolution,
30 % rarely changing binaries, 10 % energy counters) polled every 5 s, one hour of plant
time. Baseline: the naive outbox, one row per sample (point, ts, value).

    cd /work/main && .venv/bin/python -m benchmarks.outbox [--dir DIR]

DIR should be on the disk the agent will use (fsync cost is the point of FULL vs NORMAL).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from edge_agent.points import Batch, Reading, wall_ms
from edge_agent.store import codec
from edge_agent.store.outbox import Lane, Outbox, Record, TrafficClass

DEVICES, POINTS = 50, 100
POLL_MS = 5_000
PLANT_S = 3_600  # one hour of plant time: 720 polls per device, 3.6 M samples
RECORDS_PER_TXN = 10  # what a 0.1 s commit interval gathers at 100 polls/s
SINGLE_COMMITS = 300  # one record per transaction: the fsync cost on its own
OUTAGE_SAMPLES = 72 * 3600 // 5 * 5000  # 72 h of 5,000 points every 5 s

# (unit resolution, typical range) of the analog points, in turn
ANALOG = [(0.1, (5.0, 80.0)), (0.01, (0.5, 10.0)), (0.1, (0.0, 500.0))]


class Device:
    """One device's points, evolving poll after poll like a plant room does."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self.analog = []
        for i in range(60):
            step, (low, high) = ANALOG[i % len(ANALOG)]
            self.analog.append([f"a{i}", rng.uniform(low, high), step, low, high])
        self.binary = [[f"b{i}", rng.random() < 0.3] for i in range(30)]
        # Half the meters count whole Wh (int), half kWh at 0.01 (float).
        self.counters: list[list] = [[f"k{i}", rng.randint(10**5, 10**8)] for i in range(5)]
        self.counters += [[f"k{i}", round(rng.uniform(1e3, 1e6), 2)] for i in range(5, 10)]

    def poll(self, ts: int) -> Batch:
        rng = self.rng
        readings = []
        for point in self.analog:
            name, value, step, low, high = point
            point[1] = min(high, max(low, value + rng.gauss(0, 2 * step)))
            readings.append(Reading(name, round(round(point[1] / step) * step, 2), ts))
        for point in self.binary:
            if rng.random() < 0.001:
                point[1] = not point[1]
            readings.append(Reading(point[0], point[1], ts))
        for point in self.counters:
            if isinstance(point[1], int):
                point[1] += rng.randint(0, 60)
            else:
                point[1] = round(point[1] + rng.uniform(0, 0.5), 2)
            readings.append(Reading(point[0], point[1], ts))
        return Batch(self.name, ts, tuple(readings))


def plant_polls(seconds: int, seed: int = 1) -> list[Record]:
    rng = random.Random(seed)
    devices = [Device(f"dev{d:03d}", rng) for d in range(DEVICES)]
    records = []
    start = wall_ms() - seconds * 1000  # recent: within the retention
    for ts in range(start, start + seconds * 1000, POLL_MS):
        for i, device in enumerate(devices):
            batch = device.poll(ts + 37 * i)  # polls are staggered
            records.append(Record(TrafficClass.TELEMETRY, batch.stream, batch.ts, batch=batch))
    return records


def chunks(items: Sequence[Record], size: int) -> Iterator[Sequence[Record]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def points_in(records: Sequence[Record]) -> int:
    return sum(len(r.batch.readings) for r in records if r.batch is not None)


def append_rate(path: Path, records: Sequence[Record], per_txn: int, synchronous: str) -> float:
    box = Outbox(path, 10**12, 30 * 86400.0, synchronous)
    started = time.perf_counter()
    for chunk in chunks(records, per_txn):
        box.append(chunk)
    elapsed = time.perf_counter() - started
    box.close()
    return points_in(records) / elapsed


def drain_rate(path: Path, points: int) -> float:
    """Lease (decode included) and ack everything, as the uplink does, 256 at a time."""
    box = Outbox(path, 10**12, 30 * 86400.0)
    started = time.perf_counter()
    drained = 0
    while rows := box.lease(Lane.BACKLOG, 256):
        drained += sum(row.n_points for row in rows)
        box.ack([row.id for row in rows])
    elapsed = time.perf_counter() - started
    box.close()
    assert drained == points, (drained, points)
    return points / elapsed


def used_bytes(path: Path) -> int:
    with sqlite3.connect(path) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * db.execute("PRAGMA page_size").fetchone()[0]


def baseline_bytes(path: Path, records: Sequence[Record], text_ids: bool) -> int:
    """The naive outbox: one row per sample, no index beyond the rowid."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, point, ts INTEGER, value)")
        ids: dict[str, int] = {}
        for record in records:
            assert record.batch is not None
            rows = []
            for r in record.batch.readings:
                key = f"{record.stream}/{r.point}"
                point = key if text_ids else ids.setdefault(key, len(ids) + 1)
                rows.append((point, r.ts, r.value))
            db.executemany("INSERT INTO samples (point, ts, value) VALUES (?, ?, ?)", rows)
        db.commit()
    return used_bytes(path)


def codec_costs(records: Sequence[Record]) -> tuple[float, float]:
    """Encode and decode time per point, 100-point batches."""
    batches = [r.batch for r in records if r.batch is not None]
    started = time.perf_counter()
    encoded = [codec.encode(b.readings, b.ts) for b in batches]
    middle = time.perf_counter()
    for (schema, body), batch in zip(encoded, batches, strict=True):
        codec.decode(schema, body, batch.ts)
    ended = time.perf_counter()
    points = points_in(records)
    return 1e6 * (middle - started) / points, 1e6 * (ended - middle) / points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=args.dir))
    try:
        run(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path) -> None:
    records = plant_polls(PLANT_S)
    points = points_in(records)
    print(f"plant: {DEVICES} devices x {POINTS} points every {POLL_MS / 1000:.0f} s, "
          f"{PLANT_S / 60:.0f} min: {len(records):,} polls, {points:,} samples")  # fmt: skip
    print(f"databases in {workdir}")

    encode_us, decode_us = codec_costs(records[:5000])
    print(f"codec: encode {encode_us:.2f} us/point, decode {decode_us:.2f} us/point")

    full = append_rate(workdir / "full.db", records, RECORDS_PER_TXN, "FULL")
    stored = used_bytes(workdir / "full.db")
    normal = append_rate(workdir / "normal.db", records, RECORDS_PER_TXN, "NORMAL")
    print(f"append, {RECORDS_PER_TXN} polls per transaction: FULL {full:,.0f} points/s, "
          f"NORMAL {normal:,.0f} points/s")  # fmt: skip
    few = records[:SINGLE_COMMITS]
    full_one = append_rate(workdir / "full1.db", few, 1, "FULL") / POINTS
    normal_one = append_rate(workdir / "normal1.db", few, 1, "NORMAL") / POINTS
    print(f"append, 1 poll per transaction: FULL {full_one:,.0f} commits/s, "
          f"NORMAL {normal_one:,.0f} commits/s")  # fmt: skip

    bytes_per_point = stored / points
    outage_gb = bytes_per_point * OUTAGE_SAMPLES / 1e9
    print(f"on disk: {stored / 1e6:.1f} MB, {bytes_per_point:.2f} bytes/sample "
          f"(72 h outage of 5,000 points: {outage_gb:.2f} GB)")  # fmt: skip

    drain = drain_rate(workdir / "full.db", points)
    print(f"drain (lease + decode + ack): {drain:,.0f} points/s")

    sample = records[: len(records) // 6]  # ten minutes is plenty for a size ratio
    base = baseline_bytes(workdir / "naive.db", sample, text_ids=True) / points_in(sample)
    base_int = baseline_bytes(workdir / "naive-int.db", sample, text_ids=False) / points_in(sample)
    print(f"naive one-row-per-sample outbox: {base:.1f} bytes/sample with text point ids, "
          f"{base_int:.1f} with integer ids: {base / bytes_per_point:.1f}x larger")  # fmt: skip

    result = {
        "append_points_per_s": round(full),
        "append_points_per_s_normal": round(normal),
        "commits_per_s_full": round(full_one),
        "commits_per_s_normal": round(normal_one),
        "drain_points_per_s": round(drain),
        "bytes_per_point": round(bytes_per_point, 3),
        "baseline_bytes_per_point": round(base, 2),
        "baseline_int_ids_bytes_per_point": round(base_int, 2),
        "size_ratio": round(base / bytes_per_point, 1),
        "outage_72h_gb": round(outage_gb, 3),
        "codec_encode_us_per_point": round(encode_us, 3),
        "codec_decode_us_per_point": round(decode_us, 3),
        "samples": points,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
