"""The `energy:` section: the site's facts, the meters, virtual meters and the meter tree
(docs/energy-accounting.md).

Types and what one item can check alone are validated here by pydantic; what spans items
(unknown or repeated ids, cycles, units that do not add up, a meter in two branches) by
`energy_problems`, which the config's cross-checks report at file:line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from edge_agent.config.base import Duration, Id, Model
from edge_agent.energy.categories import CATEGORIES, MEDIA, Medium
from edge_agent.energy.counters import Register
from edge_agent.i18n import _

Loc = tuple[str | int, ...]
_REF = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
PointRef = Annotated[str, Field(pattern=_REF)]
Ratio = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_FORMULA = re.compile(rf"\s*-?\s*{_ID}(\s*[+-]\s*{_ID})*\s*")
_TERM = re.compile(rf"([+-]?)\s*({_ID})")


def _formula(value: str) -> str:
    if not _FORMULA.fullmatch(value):
        raise ValueError(
            _("expected meter ids joined by + and -, such as 'main - plant - lighting'")
        )
    return value


def _tz_offset(value: str) -> str:
    if not re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", value):
        raise ValueError(_("expected a UTC offset such as +08:00"))
    return value


def _category(value: str | None) -> str | None:
    if value is not None and value not in CATEGORIES:
        listed = ", ".join(CATEGORIES)
        raise ValueError(
            _("unknown category {value!r} (categories: {listed})").format(
                value=value, listed=listed
            )
        )
    return value


def _sub_item(value: str | None, info: ValidationInfo) -> str | None:
    if value is None:
        return value
    category = info.data.get("category")
    if category is None:
        if "category" in info.data:  # not given, rather than given wrong
            raise ValueError(_("a sub_item needs its category"))
        return value
    items = CATEGORIES[category][2]
    if value not in items:
        raise ValueError(
            _("{category} has no sub-item {value!r} (its sub-items: {listed})").format(
                category=category, value=value, listed=", ".join(items)
            )
        )
    return value


class SiteFacts(Model):
    """What indicators divide by. Outpatient visits and revenue are the platform's to send
    (issue 14, item 3); they will have their place beside these."""

    floor_area_m2: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    beds: int | None = Field(default=None, ge=1)


class Meter(Model):
    id: Id
    name: str = ""
    point: PointRef  # the cumulative register, of any driver
    medium: Medium
    unit: str
    category: Annotated[str | None, AfterValidator(_category)] = None  # electricity only
    sub_item: Annotated[str | None, AfterValidator(_sub_item)] = None
    ct_ratio: Ratio = 1.0
    pt_ratio: Ratio = 1.0
    multiplier: Ratio = 1.0
    rollover: float | None = Field(None, gt=0, allow_inf_nan=False)  # the register's maximum
    max_gap: Duration = 300.0  # a longer time between readings is a gap: estimated

    @field_validator("unit")
    @classmethod
    def _unit_of_medium(cls, unit: str, info: ValidationInfo) -> str:
        medium = info.data.get("medium")
        if medium is not None and unit not in MEDIA[medium][2]:
            raise ValueError(
                _("{medium} is counted in {units}, not {unit!r}").format(
                    medium=medium, units=", ".join(MEDIA[medium][2]), unit=unit
                )
            )
        return unit

    @field_validator("category")
    @classmethod
    def _electricity_only(cls, category: str | None, info: ValidationInfo) -> str | None:
        medium = info.data.get("medium")
        if category is not None and medium is not None and medium != "electricity":
            raise ValueError(_("only electricity has sub-metering categories"))
        return category

    @property
    def register(self) -> Register:
        factor = self.ct_ratio * self.pt_ratio * self.multiplier
        return Register(factor, self.rollover, round(self.max_gap * 1000))


class VirtualMeter(Model):
    """A sum and difference of meters and other virtual meters, interval by interval."""

    id: Id
    name: str = ""
    formula: Annotated[str, AfterValidator(_formula)]
    category: Annotated[str | None, AfterValidator(_category)] = None
    sub_item: Annotated[str | None, AfterValidator(_sub_item)] = None

    @property
    def terms(self) -> tuple[tuple[int, str], ...]:
        """(+1 or -1, meter id) for each term of the formula."""
        return tuple((-1 if sign == "-" else 1, name) for sign, name in _TERM.findall(self.formula))


class Branch(Model):
    """A node of the meter tree: its children's sum is checked against it."""

    parent: Id
    children: tuple[Id, ...] = Field(min_length=1)
    max_loss_pct: float = Field(5.0, ge=0, le=100)  # parent - children, % of the parent


class Energy(Model):
    timezone: Annotated[str, AfterValidator(_tz_offset)] = "+08:00"  # of interval edges
    site: SiteFacts = SiteFacts()
    meters: tuple[Meter, ...]
    virtual: tuple[VirtualMeter, ...] = ()
    tree: tuple[Branch, ...] = ()

    @property
    def tz_offset_ms(self) -> int:
        sign = -1 if self.timezone[0] == "-" else 1
        hours, minutes = self.timezone[1:].split(":")
        return sign * (int(hours) * 3600 + int(minutes) * 60) * 1000


Problem = tuple[Loc, str, Loc | None]  # (where, message, the earlier item it collides with)


def energy_problems(energy: Energy) -> Iterator[Problem]:
    """What spans items of the section; each at its key, relative to `energy`."""
    where: dict[str, Loc] = {}
    ids = [("meters", i, m.id) for i, m in enumerate(energy.meters)]
    ids += [("virtual", i, v.id) for i, v in enumerate(energy.virtual)]
    for key, index, name in ids:
        if name in where:
            message = _("duplicate meter id {id!r}").format(id=name)
            yield (key, index, "id"), message, where[name]
        else:
            where[name] = (key, index, "id")
    yield from _virtual(energy, set(where))
    yield from _mismatches(energy)
    kinds = _kinds(energy)
    for index, virtual in enumerate(energy.virtual):
        kind = kinds.get(virtual.id)
        if virtual.category is not None and kind is not None and kind[0] != "electricity":
            message = _("only electricity has sub-metering categories")
            yield ("virtual", index, "category"), message, None
    yield from _tree(energy, set(where), kinds)


def _virtual(energy: Energy, known: set[str]) -> Iterator[Problem]:
    parts = {v.id: [name for _sign, name in v.terms] for v in energy.virtual}
    reported: set[frozenset[str]] = set()
    for index, virtual in enumerate(energy.virtual):
        at: Loc = ("virtual", index, "formula")
        for name in parts[virtual.id]:
            if name not in known:
                yield at, _("unknown meter {id!r}").format(id=name), None
        cycle = _cycle_through(virtual.id, parts)
        if cycle is not None and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            path = " -> ".join([*cycle, cycle[0]])
            yield at, _("virtual meters that add up to themselves: {path}").format(path=path), None


def _cycle_through(start: str, parts: dict[str, list[str]]) -> list[str] | None:
    """The shortest chain of virtual meters from `start` back to itself, if any."""
    paths = [[start]]
    seen = {start}
    while paths:
        longer = []
        for path in paths:
            for name in parts.get(path[-1], []):
                if name == start:
                    return path
                if name not in seen and name in parts:
                    seen.add(name)
                    longer.append([*path, name])
        paths = longer
    return None


def _kinds(energy: Energy) -> dict[str, tuple[str, str]]:
    """(medium, unit) of every meter and of every virtual meter whose parts agree."""
    kinds = {m.id: (str(m.medium), m.unit) for m in energy.meters}
    pending = {v.id: [name for _sign, name in v.terms] for v in energy.virtual}
    progress = True
    while pending and progress:
        progress = False
        for name, parts in list(pending.items()):
            if all(part in kinds for part in parts):
                found = {kinds[part] for part in parts}
                if len(found) == 1:
                    kinds[name] = found.pop()
                del pending[name]
                progress = True
            elif any(part not in kinds and part not in pending for part in parts):
                del pending[name]  # an unknown part: reported as such
                progress = True
    return kinds


def _mismatches(energy: Energy) -> Iterator[Problem]:
    """Parts of a virtual meter of different media or units."""
    kinds = _kinds(energy)
    for index, virtual in enumerate(energy.virtual):
        terms = [(name, kinds[name]) for _sign, name in virtual.terms if name in kinds]
        for name, kind in terms[1:]:
            first, first_kind = terms[0]
            if kind != first_kind:
                message = _("{a} ({a_kind}) and {b} ({b_kind}) cannot be added").format(
                    a=first, a_kind=" ".join(first_kind), b=name, b_kind=" ".join(kind)
                )
                yield ("virtual", index, "formula"), message, None
                break


def _tree(energy: Energy, known: set[str], kinds: dict[str, tuple[str, str]]) -> Iterator[Problem]:
    parent_at: dict[str, Loc] = {}
    child_at: dict[str, Loc] = {}
    children: dict[str, tuple[str, ...]] = {}
    for index, branch in enumerate(energy.tree):
        at: Loc = ("tree", index, "parent")
        if branch.parent not in known:
            yield at, _("unknown meter {id!r}").format(id=branch.parent), None
        if branch.parent in parent_at:
            message = _("{id} is the parent of two branches").format(id=branch.parent)
            yield at, message, parent_at[branch.parent]
        else:
            parent_at[branch.parent] = at
            children[branch.parent] = branch.children
        for n, child in enumerate(branch.children):
            child_loc: Loc = ("tree", index, "children", n)
            if child not in known:
                yield child_loc, _("unknown meter {id!r}").format(id=child), None
                continue
            if child in child_at:
                message = _("{id} is in two branches of the tree").format(id=child)
                yield child_loc, message, child_at[child]
                continue
            child_at[child] = child_loc
            parent_kind, kind = kinds.get(branch.parent), kinds.get(child)
            if parent_kind is not None and kind is not None and parent_kind != kind:
                message = _("{child} ({kind}) is not comparable with {parent} ({p_kind})").format(
                    child=child,
                    kind=" ".join(kind),
                    parent=branch.parent,
                    p_kind=" ".join(parent_kind),
                )
                yield child_loc, message, None
    for index, branch in enumerate(energy.tree):
        if _cycle_through(branch.parent, {k: list(v) for k, v in children.items()}):
            message = _("{id} is below itself in the tree").format(id=branch.parent)
            yield ("tree", index, "parent"), message, None
