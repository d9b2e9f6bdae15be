"""A plain reference for edge_agent.hj212.aggregate, written from the rules in
docs/hj212-aggregates.md as simply as possible: loops over plain tuples, nothing shared
with the module (not its types, not its helpers), slow on purpose.

A sample is (ts_ms, value, flag letter); a record is a dict with the keys of the module's
Record; flags are the letters "N", "F", ... as strings.
"""

from __future__ import annotations

from decimal import Decimal

HOUR = 3_600_000
TIES = ["D", "C", "M", "F", "T", "S", "B"]  # the first of these wins a tie


def needed(fraction: float, expected: int) -> int:
    """The smallest whole count that is at least fraction * expected, and at least 1."""
    n = 1
    while Decimal(n) < Decimal(str(fraction)) * expected:
        n += 1
    return n


def median(numbers: list[float]) -> float:
    ordered = sorted(numbers)
    half = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / 2


def spacing(times: list[int], nominal: float) -> float:
    """The median time between consecutive samples; nominal when there are fewer than two."""
    times = sorted(times)
    if len(times) < 2:
        return nominal
    steps = []
    for i in range(len(times) - 1):
        steps.append(times[i + 1] - times[i])
    return median(steps)


def flag(valid: bool, flags: list[str]) -> str:
    if valid:
        return "N"
    counts: dict[str, int] = {}
    for f in flags:
        if f != "N":
            counts[f] = counts.get(f, 0) + 1
    if not counts:
        return "B"
    best = None
    for f in TIES:
        if f in counts and (best is None or counts[f] > counts[best]):
            best = f
    return best


def flow_at(flow: list[tuple[int, float | None, str]], t: int, nominal: float) -> float | None:
    """The latest flow sample at or before t, if valid and younger than 2 flow spacings."""
    latest = None
    for sample in flow:
        if sample[0] <= t and (latest is None or sample[0] > latest[0]):
            latest = sample
    if latest is None:
        return None
    too_old = 2 * spacing([s[0] for s in flow], nominal)
    if t - latest[0] >= too_old:
        return None
    if latest[2] != "N":
        return None
    return latest[1]


def minute(
    code: str,
    samples: list[tuple[int, float | None, str]],
    start: int,
    end: int,
    expected: int,
    fraction: float,
    flow: list[tuple[int, float | None, str]] | None,
    cou: str,
    weighting: str,
) -> dict:
    inside = sorted([s for s in samples if start <= s[0] < end])
    nominal = (end - start) / expected
    cap = 2 * spacing([s[0] for s in inside], nominal)

    valid = []  # (ts, value, the time it stands for)
    for i in range(len(inside)):
        ts, value, f = inside[i]
        following = inside[i + 1][0] if i + 1 < len(inside) else end
        stands = min(following - ts, cap)
        if i == 0:
            stands += min(ts - start, cap)
        if f == "N":
            valid.append((ts, value, stands))

    values = [v for _, v, _ in valid]
    avg = sum(values) / len(values) if values else None

    paired = []  # (concentration, flow, time)
    if flow is not None:
        for ts, value, stands in valid:
            q = flow_at(flow, ts, nominal)
            if q is not None:
                paired.append((value, q, stands))

    if weighting == "flow":
        top = 0.0
        bottom = 0.0
        for c, q, _ in paired:
            top += c * q
            bottom += q
        if paired and bottom > 0:
            avg = top / bottom

    total = None
    if cou == "volume" and valid:
        total = 0.0
        for _, q, stands in valid:
            total += q * stands / HOUR
    if cou == "load" and paired:
        grams = 0.0
        for c, q, stands in paired:
            grams += c * q * stands / HOUR
        total = grams / 1000

    is_valid = len(valid) >= needed(fraction, expected)
    return {
        "code": code,
        "start_ms": start,
        "end_ms": end,
        "min": min(values) if values else None,
        "avg": avg,
        "max": max(values) if values else None,
        "cou": total,
        "flag": flag(is_valid, [s[2] for s in inside]),
        "valid": is_valid,
        "valid_count": len(valid),
        "expected_count": expected,
    }


def rolled(
    code: str,
    records: list[dict],
    start: int,
    end: int,
    expected: int,
    min_valid: int,
    weighting: str,
    flow_records: list[dict] | None,
) -> dict:
    inside = [r for r in records if r["start_ms"] >= start and r["end_ms"] <= end]
    valid = [r for r in inside if r["valid"]]

    avgs = [r["avg"] for r in valid if r["avg"] is not None]
    avg = sum(avgs) / len(avgs) if avgs else None
    if weighting == "flow":
        top = 0.0
        bottom = 0.0
        found = False
        for r in valid:
            for f in flow_records or []:
                same = f["start_ms"] == r["start_ms"] and f["end_ms"] == r["end_ms"]
                if same and f["cou"] is not None and r["avg"] is not None:
                    top += r["avg"] * f["cou"]
                    bottom += f["cou"]
                    found = True
        if found and bottom > 0:
            avg = top / bottom

    lows = [r["min"] for r in valid if r["min"] is not None]
    highs = [r["max"] for r in valid if r["max"] is not None]
    total = None
    for r in inside:
        if r["cou"] is not None:
            total = r["cou"] if total is None else total + r["cou"]
    is_valid = len(valid) >= min_valid
    return {
        "code": code,
        "start_ms": start,
        "end_ms": end,
        "min": min(lows) if lows else None,
        "avg": avg,
        "max": max(highs) if highs else None,
        "cou": total,
        "flag": flag(is_valid, [r["flag"] for r in inside]),
        "valid": is_valid,
        "valid_count": len(valid),
        "expected_count": expected,
    }
