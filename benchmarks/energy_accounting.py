"""Energy accounting over 35 simulated days (docs/benchmarks.md, `energy_accounting`).

40 meters on 4 RS-485 buses (a device of 10 meters each), read every minute for 35 days,
their registers' true energy known: rollovers (registers of 99,999.99 kWh that wrap),
resets, one meter replaced (its register starts again from 0), and a 6-hour outage of all
readings. The polls go into a real outbox as history; a month's report (by day, every
meter, virtual meter and category) is then made from it the way `edge-agent energy
--period month` does (`month_report_s`), and compared with the true energy
(`total_error_pct`); every quarter hour that the outage touches must be flagged
(`unflagged_gaps`). Baseline in the same run: summing each meter's register differences
in a plain loop (no rollover, reset or interval logic) over the same readings.

    python -m benchmarks.energy_accounting [--days 35] [--meters 40]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import emit
from edge_agent.energy.config import Energy
from edge_agent.energy.counters import EnergyQuality, boundaries, energy_between
from edge_agent.energy.report import build
from edge_agent.points import Batch, Reading
from edge_agent.store.history import HistoryReader
from edge_agent.store.outbox import Outbox, Record, TrafficClass

MINUTE_MS = 60_000
TZ_MS = 8 * 3_600_000
ROLLOVER = 99_999.99
PER_BUS = 10
START = int(datetime(2026, 10, 31, 16, 0, tzinfo=UTC).timestamp() * 1000)  # 11-01 00:00 +08


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def model(meters: int) -> Energy:
    categories = ["lighting_sockets", "air_conditioning", "power", "special"]
    subs = {"lighting_sockets": "rooms", "air_conditioning": "plant", "power": "lifts",
            "special": "it_room"}  # fmt: skip
    return Energy.model_validate({
        "meters": [
            {"id": f"m{n:02d}", "point": f"bus{n // PER_BUS}.m{n:02d}", "medium": "electricity",
             "unit": "kWh", "rollover": ROLLOVER, "category": categories[n % 4],
             "sub_item": subs[categories[n % 4]]}
            for n in range(meters)
        ],
    })  # fmt: skip


def simulate(meters: int, days: int, rng: random.Random) -> tuple[list[Record], dict, tuple]:
    """The polls (with the outage left out) and each meter's true energy per minute."""
    minutes = days * 1440
    outage = (rng.randrange(2 * 1440, minutes - 2 * 1440), 360)  # 6 hours
    replaced = rng.randrange(meters), rng.randrange(1440, minutes - 1440)
    resets = {(rng.randrange(meters), rng.randrange(1440, minutes - 1440)) for _ in range(3)}
    register = [rng.uniform(0, ROLLOVER) for _ in range(meters)]
    base_kw = [rng.uniform(5, 200) for _ in range(meters)]
    true_kwh = [[0.0] * minutes for _ in range(meters)]
    polls: list[Record] = []
    for minute in range(minutes):
        ts = START + minute * MINUTE_MS
        hour = (minute // 60) % 24
        shape = 0.6 + 0.4 * (8 <= hour < 20)
        buses: dict[int, list[Reading]] = {}
        for n in range(meters):
            kwh = base_kw[n] * shape * rng.uniform(0.9, 1.1) / 60
            true_kwh[n][minute] = kwh
            register[n] += kwh
            if (n, minute) == replaced or (n, minute) in resets:
                register[n] = kwh  # a new register from 0 (its first minute counted)
            if register[n] > ROLLOVER:
                register[n] -= ROLLOVER + 0.01
            if not outage[0] <= minute < outage[0] + outage[1]:
                buses.setdefault(n // PER_BUS, []).append(
                    Reading(f"m{n:02d}", round(register[n], 2), ts)
                )
        for bus, readings in buses.items():
            polls.append(Record(TrafficClass.TELEMETRY, f"bus{bus}", ts,
                                batch=Batch(f"bus{bus}", ts, tuple(readings))))  # fmt: skip
    return polls, {"kwh": true_kwh}, (outage, replaced, resets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--meters", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(20261206)
    energy = model(args.meters)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "outbox.db"
        log(f"simulating {args.days} days of {args.meters} meters read every minute")
        polls, truth, (outage, replaced, resets) = simulate(args.meters, args.days, rng)
        box = Outbox(store, 10**11, 400 * 86_400.0)
        for at in range(0, len(polls), 5000):
            box.append(polls[at : at + 5000])
        rows = len(polls)
        size = store.stat().st_size
        box.close()

        # The month: 30 days from the third (so that readings exist before and after it).
        month_start = START + 2 * 1440 * MINUTE_MS
        month_end = month_start + 30 * 1440 * MINUTE_MS
        refs = [m.point for m in energy.meters]
        began = time.perf_counter()
        with HistoryReader(store) as history:
            samples: dict[str, list] = {ref: [] for ref in refs}
            for ref, ts, value, quality in history.readings(
                month_start - 3_600_000, month_end + 3_600_000, refs
            ):
                samples[ref].append((ts, value, quality))
        read_s = time.perf_counter() - began
        report = build(energy, samples, "day", month_start, month_end, TZ_MS)
        month_report_s = time.perf_counter() - began

        # Baseline: a plain loop over the same readings, differences summed.
        began = time.perf_counter()
        naive = {}
        for ref, points in samples.items():
            total, last = 0.0, None
            for ts, value, _q in points:
                if month_start <= ts < month_end and last is not None:
                    total += value - last
                last = value
            naive[ref] = total
        baseline_s = time.perf_counter() - began

        first_minute = (month_start - START) // MINUTE_MS
        last_minute = (month_end - START) // MINUTE_MS
        true_total = {
            f"m{n:02d}": sum(truth["kwh"][n][first_minute:last_minute]) for n in range(args.meters)
        }
        categories = {}
        for meter in energy.meters:
            categories.setdefault(meter.category, 0.0)
            categories[meter.category] += true_total[meter.id]
        errors = []
        for line in report.categories:
            errors.append(
                abs((line.total or 0.0) - categories[line.id]) / categories[line.id] * 100
            )
        meter_errors = [
            abs((line.total or 0.0) - true_total[line.id]) / true_total[line.id] * 100
            for line in report.meters
        ]

        # Every quarter hour the outage touches must not be `measured`.
        out_start = START + outage[0] * MINUTE_MS
        out_end = out_start + outage[1] * MINUTE_MS
        edges = boundaries("15min", out_start - 3_600_000, out_end + 3_600_000, TZ_MS)
        unflagged = 0
        for meter in energy.meters:
            for interval in energy_between(samples[meter.point], meter.register, edges):
                touches = interval.start < out_end and interval.end > out_start
                if touches and interval.quality is EnergyQuality.MEASURED:
                    unflagged += 1

    emit({
        "days": args.days,
        "meters": args.meters,
        "readings": sum(len(p.batch.readings) for p in polls if p.batch is not None),
        "rollovers_and_resets": {"replaced": list(replaced), "resets": sorted(resets)},
        "outage_h": outage[1] / 60,
        "total_error_pct": round(max(errors), 6),
        "meter_error_pct_max": round(max(meter_errors), 6),
        "unflagged_gaps": unflagged,
        "month_report_s": round(month_report_s, 3),
        "month_read_s": round(read_s, 3),
        "baseline_naive_sum_s": round(baseline_s, 3),
        "naive_error_pct_max": round(max(
            abs(naive[m.point] - true_total[m.id]) / true_total[m.id] * 100
            for m in energy.meters
        ), 3),
        "rows_per_meter_day": round(rows / args.meters / args.days, 1),
        "bytes_per_meter_day": round(size / args.meters / args.days),
    })  # fmt: skip


if __name__ == "__main__":
    main()
