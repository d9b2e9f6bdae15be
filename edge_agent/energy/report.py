"""An energy report over a span, from the meters' readings (docs/energy-accounting.md).

Per meter and virtual meter: the energy of each interval of the period (day, month, ...)
with its quality; per sub-metering category the sum of the meters that carry it; standard
coal for each medium; the indicators the site's facts allow (kWh/m2, kWh per bed); the
tree's balance. Pure: the caller reads the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.energy.coal import CoalFactors
from edge_agent.energy.config import Energy
from edge_agent.energy.counters import (
    EnergyQuality,
    Interval,
    Period,
    Sample,
    boundaries,
    energy_between,
    worst,
)
from edge_agent.energy.tree import Balance, balance, combine, evaluate


@dataclass(frozen=True, slots=True)
class Line:
    """One meter, virtual meter or category over the report's intervals."""

    id: str
    name: str
    medium: str
    unit: str
    intervals: list[Interval]
    category: str | None = None

    @property
    def total(self) -> float | None:
        """The energy of the intervals that have one; None when none has."""
        known = [i.energy for i in self.intervals if i.energy is not None]
        return sum(known) if known else None

    @property
    def quality(self) -> EnergyQuality:
        return worst(i.quality for i in self.intervals)


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    edges: list[int]
    meters: list[Line]  # meters, then virtual meters, in the configuration's order
    categories: list[Line]
    coal_kgce: dict[str, float | None]  # by medium
    indicators: dict[str, float | None]
    balances: dict[str, list[Balance]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (the CLI's --json)."""

        def line(item: Line) -> dict[str, Any]:
            return {
                "id": item.id, "name": item.name, "medium": item.medium, "unit": item.unit,
                "category": item.category, "total": item.total, "quality": item.quality.value,
                "intervals": [
                    {"start": i.start, "end": i.end, "energy": i.energy,
                     "quality": i.quality.value, "flags": sorted(f.value for f in i.flags)}
                    for i in item.intervals
                ],
            }  # fmt: skip

        balances = {
            parent: [
                {"start": b.start, "end": b.end, "loss_pct": b.loss_pct,
                 "quality": b.quality.value, "exceeded": b.exceeded}
                for b in items
            ]
            for parent, items in self.balances.items()
        }  # fmt: skip
        return {
            "period": self.period,
            "edges": self.edges,
            "meters": [line(m) for m in self.meters],
            "categories": [line(c) for c in self.categories],
            "coal_kgce": self.coal_kgce,
            "indicators": self.indicators,
            "balances": balances,
        }


def build(
    config: Energy,
    samples: Mapping[str, Sequence[Sample]],
    period: Period,
    start: int,
    end: int,
    tz_offset_ms: int,
    coal: CoalFactors | None = None,
) -> Report:
    """The report of [start, end) in intervals of `period`; `samples` by point ref."""
    edges = boundaries(period, start, end, tz_offset_ms)
    edges[-1] = min(edges[-1], end)  # the interval under way counts up to `end`
    measured = {
        meter.id: energy_between(samples.get(meter.point, ()), meter.register, edges)
        for meter in config.meters
    }
    series = evaluate(config.virtual, measured)
    kinds = {m.id: (m.name, m.medium, m.unit, m.category) for m in config.meters}
    for virtual in config.virtual:
        _sign, first = virtual.terms[0]
        _name, medium, unit, _category = kinds[first]
        kinds[virtual.id] = (virtual.name, medium, unit, virtual.category)
    lines = [
        Line(key, kinds[key][0], kinds[key][1], kinds[key][2], series[key], kinds[key][3])
        for key in [*(m.id for m in config.meters), *(v.id for v in config.virtual)]
    ]
    categories = _categories(lines)
    coal_kgce = _coal(lines, coal or CoalFactors())
    return Report(
        period, edges, lines, categories, coal_kgce, _indicators(config, lines),
        {branch.parent: balance(branch, series) for branch in config.tree},
    )  # fmt: skip


def _categories(lines: list[Line]) -> list[Line]:
    by_category: dict[str, list[Line]] = {}
    for item in lines:
        if item.category is not None:
            by_category.setdefault(item.category, []).append(item)
    return [
        Line(category, category, parts[0].medium, parts[0].unit,
             combine([(1, p.intervals) for p in parts]), category)
        for category, parts in by_category.items()
    ]  # fmt: skip


def _coal(lines: list[Line], coal: CoalFactors) -> dict[str, float | None]:
    """kgce per medium, from the meters without a category parent: the meters that are
    totals (no category) and are not virtual differences would double count, so the
    media are summed from each medium's largest meter (its site total)."""
    out: dict[str, float | None] = {}
    by_medium: dict[str, list[Line]] = {}
    for item in lines:
        by_medium.setdefault(item.medium, []).append(item)
    for medium, items in by_medium.items():
        totals = [i for i in items if i.total is not None]
        if not totals:
            out[medium] = None
            continue
        site = max(totals, key=lambda i: i.total or 0.0)
        out[medium] = coal.kgce(medium, site.unit, site.total or 0.0)
    return out


def _indicators(config: Energy, lines: list[Line]) -> dict[str, float | None]:
    electricity = [i.total for i in lines if i.medium == "electricity" and i.total is not None]
    site_kwh = max(electricity) if electricity else None
    facts = config.site
    area = getattr(facts, "floor_area_m2", None)
    beds = getattr(facts, "beds", None)
    return {
        "electricity_kwh": site_kwh,
        "kwh_per_m2": site_kwh / area if site_kwh is not None and area else None,
        "kwh_per_bed": site_kwh / beds if site_kwh is not None and beds else None,
    }
