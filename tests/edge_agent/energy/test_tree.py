"""Virtual meters and the tree's balance (issue 14, item 2), from generated meters."""

from __future__ import annotations

import pytest

from edge_agent.energy.coal import CoalFactors
from edge_agent.energy.config import Branch, VirtualMeter
from edge_agent.energy.counters import EnergyQuality, Flag, Interval, Register, energy_between
from edge_agent.energy.tree import balance, combine, evaluate

MIN = 60_000
EDGES = [0, 15 * MIN, 30 * MIN, 45 * MIN]
REGISTER = Register(max_gap_ms=5 * MIN)


def meter(rate: float, until: int = 45) -> list[Interval]:
    """A meter using `rate` a minute, read every minute up to minute `until`."""
    samples = [(m * MIN, 1000.0 + rate * m, "good") for m in range(until + 1)]
    return energy_between(samples, REGISTER, EDGES)


def test_virtual_meters_add_and_subtract_and_nest() -> None:
    series = {"main": meter(10), "plant": meter(6), "lights": meter(3)}
    virtual = [
        VirtualMeter(id="rest", formula="unmetered + lights"),
        VirtualMeter(id="unmetered", formula="main - plant - lights"),
    ]
    got = evaluate(virtual, series)
    assert [i.energy for i in got["unmetered"]] == pytest.approx([15.0, 15.0, 15.0])
    assert [i.energy for i in got["rest"]] == pytest.approx([60.0, 60.0, 60.0])
    assert all(i.quality is EnergyQuality.MEASURED for i in got["rest"])


def test_a_sum_takes_the_worst_quality_and_a_missing_part_makes_it_missing() -> None:
    short = meter(6, until=30)  # no readings after minute 30
    reset = energy_between(
        [(m * MIN, 5.0 if m == 20 else 100.0 + m, "good") for m in range(46)], REGISTER, EDGES
    )
    got = combine([(1, meter(10)), (-1, short), (1, reset)])
    assert [i.quality for i in got] == [
        EnergyQuality.MEASURED,
        EnergyQuality.ESTIMATED,
        EnergyQuality.MISSING,
    ]
    assert got[2].energy is None
    assert got[1].flags == {Flag.RESET}


def test_the_balance_flags_a_node_whose_children_do_not_explain_it() -> None:
    series = {"main": meter(10), "a": meter(6), "b": meter(3.8)}
    node = Branch(parent="main", children=("a", "b"), max_loss_pct=3)
    (first, *_rest) = balance(node, series)
    assert first.loss_pct == pytest.approx(2.0) and not first.exceeded
    series["b"] = meter(3)  # 10 % unexplained
    assert all(b.exceeded for b in balance(node, series))
    series["b"] = meter(5)  # children count 10 % more than the parent: as wrong
    assert all(b.exceeded and b.loss_pct == pytest.approx(-10) for b in balance(node, series))
    series["b"] = meter(3, until=30)  # missing: not judged
    last = balance(node, series)[-1]
    assert last.loss_pct is None and not last.exceeded and last.quality is EnergyQuality.MISSING


def test_standard_coal_by_gb_t_2589() -> None:
    factors = CoalFactors()
    assert factors.kgce("electricity", "kWh", 1000) == pytest.approx(122.9)
    assert factors.kgce("heat", "GJ", 1) == pytest.approx(34.12, abs=0.01)
    assert factors.kgce("water", "m3", 10) is None  # not counted unless asked
    with pytest.raises(ValueError):
        factors.kgce("gas", "m3", 1)  # the supplier's calorific value is the site's
    site = CoalFactors(electricity="equal", equal_kgce_per_kwh=0.300, gas_kgce_per_m3=1.2143)
    assert site.kgce("electricity", "MWh", 1) == pytest.approx(300)
    assert site.kgce("gas", "m3", 100) == pytest.approx(121.43)
