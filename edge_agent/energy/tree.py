"""Virtual meters and the balance of the meter tree, interval by interval (pure).

A virtual meter's interval is the signed sum of its parts' same interval; its quality the
worst of theirs, and missing (energy None) if any part is missing. The balance of a tree
node compares the parent with the sum of its children: the loss is (parent - children) /
parent, in %; more than the node's `max_loss_pct` (or children above the parent by more
than it: a meter that counts too much, or sits in the wrong branch) is a finding, which
the agent turns into an alarm. Intervals with a missing part are not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_agent.energy.config import Branch, VirtualMeter
from edge_agent.energy.counters import EnergyQuality, Interval, worst


def combine(terms: Sequence[tuple[int, Sequence[Interval]]]) -> list[Interval]:
    """(sign, intervals) of each part, all over the same edges -> the signed sum."""
    if not terms:
        return []
    count = len(terms[0][1])
    out = []
    for index in range(count):
        parts = [(sign, series[index]) for sign, series in terms]
        first = parts[0][1]
        if any((p.start, p.end) != (first.start, first.end) for _s, p in parts):
            raise ValueError("the parts of a sum must share their intervals")
        quality = worst(p.quality for _s, p in parts)
        energy = None
        if quality is not EnergyQuality.MISSING:
            energy = sum(sign * (p.energy or 0.0) for sign, p in parts)
        flags = frozenset().union(*(p.flags for _s, p in parts))
        out.append(Interval(first.start, first.end, energy, quality, flags))
    return out


def evaluate(
    virtual: Sequence[VirtualMeter], meters: Mapping[str, Sequence[Interval]]
) -> dict[str, list[Interval]]:
    """Every meter's and virtual meter's intervals; the config guarantees no cycle."""
    known: dict[str, list[Interval]] = {name: list(series) for name, series in meters.items()}
    pending = list(virtual)
    while pending:
        ready = [v for v in pending if all(name in known for _s, name in v.terms)]
        if not ready:
            names = ", ".join(v.id for v in pending)
            raise ValueError(f"virtual meters with unknown or circular parts: {names}")
        for item in ready:
            known[item.id] = combine([(sign, known[name]) for sign, name in item.terms])
            pending.remove(item)
    return known


@dataclass(frozen=True, slots=True)
class Balance:
    parent: str
    start: int
    end: int
    parent_energy: float | None
    children_energy: float | None
    loss_pct: float | None  # None: a part missing, or a parent of zero
    quality: EnergyQuality
    exceeded: bool  # the finding: |loss| over the allowed


def balance(branch: Branch, series: Mapping[str, Sequence[Interval]]) -> list[Balance]:
    parent = series[branch.parent]
    children = combine([(1, series[name]) for name in branch.children])
    out = []
    for top, below in zip(parent, children, strict=True):
        quality = worst((top.quality, below.quality))
        loss = None
        if quality is not EnergyQuality.MISSING and top.energy:
            loss = (top.energy - (below.energy or 0.0)) / top.energy * 100
        exceeded = loss is not None and abs(loss) > branch.max_loss_pct
        out.append(
            Balance(
                branch.parent, top.start, top.end, top.energy, below.energy, loss, quality, exceeded
            )
        )
    return out
