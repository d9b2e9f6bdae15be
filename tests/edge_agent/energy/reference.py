"""A plain reference for edge_agent.energy.counters, written from the rules in
docs/energy-accounting.md ("Counters") as simply as possible, sharing nothing with the
module (not its types, not its helpers), and computed another way: the energy used up to
any moment is a piecewise-linear curve through the readings, and an interval's energy is
the curve at its end minus the curve at its start.

A sample is (ts_ms, value, quality string); a result is a dict with the keys start, end,
energy (None when missing), quality ("measured", "estimated", "missing") and flags (a set
of "rollover", "reset").
"""

from __future__ import annotations

import math


def clean(samples):
    """Good, numeric, finite readings, sorted by time; the first of two at one time."""
    seen = []
    times = []
    for ts, value, quality in samples:
        if str(quality) != "good":
            continue
        if type(value) not in (int, float):
            continue
        if not math.isfinite(value):
            continue
        if ts in times:
            continue
        times.append(ts)
        seen.append((ts, float(value)))
    seen.sort()
    return seen


def at_its_pace(readings, i, pace):
    """A wrap no faster than 10x the nearest rising steps before and after reading i-1..i
    (or no such step at all)."""
    rates = []
    for j in range(i - 1, 0, -1):
        if readings[j][1] >= readings[j - 1][1]:
            rates.append(
                (readings[j][1] - readings[j - 1][1]) / (readings[j][0] - readings[j - 1][0])
            )
            break
    for j in range(i + 1, len(readings)):
        if readings[j][1] >= readings[j - 1][1]:
            rates.append(
                (readings[j][1] - readings[j - 1][1]) / (readings[j][0] - readings[j - 1][0])
            )
            break
    return not rates or pace <= 10 * max(rates)


def steps(readings, factor, rollover, max_gap):
    """[t0, t1, energy or None, estimated?, flag or None] between consecutive readings."""
    out = []
    for i in range(1, len(readings)):
        t0, v0 = readings[i - 1]
        t1, v1 = readings[i]
        long = (t1 - t0) > max_gap
        if v1 >= v0:
            out.append([t0, t1, (v1 - v0) * factor, long, None])
        elif (
            rollover is not None
            and (rollover - v0 + v1) >= 0
            and (rollover - v0 + v1) < rollover / 10
            and at_its_pace(readings, i, (rollover - v0 + v1) / (t1 - t0))
        ):
            out.append([t0, t1, (rollover - v0 + v1) * factor, long, "rollover"])
        else:
            out.append([t0, t1, None, True, "reset"])
    # a reset: the rate of the nearest counted step before it, else after it
    for i in range(len(out)):
        if out[i][4] != "reset":
            continue
        rate = None
        for j in range(i - 1, -1, -1):
            if out[j][4] != "reset":
                rate = out[j][2] / (out[j][1] - out[j][0])
                break
        if rate is None:
            for j in range(i + 1, len(out)):
                if out[j][4] != "reset":
                    rate = out[j][2] / (out[j][1] - out[j][0])
                    break
        if rate is not None:
            out[i][2] = rate * (out[i][1] - out[i][0])
    return out


def curve(all_steps, t):
    """Energy used from the first reading up to t (t within the readings)."""
    total = 0.0
    for t0, t1, energy, _long, _flag in all_steps:
        if energy is None:
            continue
        if t >= t1:
            total += energy
        elif t > t0:
            total += energy * (t - t0) / (t1 - t0)
    return total


def intervals(samples, factor, rollover, max_gap, edges):
    readings = clean(samples)
    all_steps = steps(readings, factor, rollover, max_gap)
    results = []
    for i in range(len(edges) - 1):
        a, b = edges[i], edges[i + 1]
        flags = set()
        quality = "measured"
        if not readings or a < readings[0][0] or b > readings[-1][0]:
            quality = "missing"
        for t0, t1, energy, long, flag in all_steps:
            if t1 <= a or t0 >= b:
                continue  # does not overlap [a, b)
            if flag is not None:
                flags.add(flag)
            if energy is None:
                quality = "missing"
            elif long and quality == "measured":
                quality = "estimated"
        energy = None
        if quality != "missing":
            energy = curve(all_steps, b) - curve(all_steps, a)
        results.append({"start": a, "end": b, "energy": energy, "quality": quality, "flags": flags})
    return results


def month_edges(first_year, first_month, count, offset_hours):
    """count + 1 month starts from (first_year, first_month), local time at the offset."""
    edges = []
    year, month = first_year, first_month
    for _ in range(count + 1):
        days = 0
        for y in range(1970, year):
            days += 366 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 365
        lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0:
            lengths[1] = 29
        for m in range(1, month):
            days += lengths[m - 1]
        edges.append((days * 24 - offset_hours) * 3_600_000)
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return edges
