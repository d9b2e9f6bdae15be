"""What changed between two effective configurations, named as a technician names it.

`changes(old, new)` compares two `AgentConfig.model_dump(mode="json")` dumps (the running
agent's comes over its socket) and says each difference in one line:

    chiller-1.poll_interval 5s -> 10s
    chiller-1.chws_sp added (point)
    ahu-3 removed (fake device, 4 point(s))
    uplink.keepalive 30s -> 1m

Lists of items with ids (devices, points, links, alarms, loops...) are matched by id, so a
point inserted at the top is one added point, not a shift of every later one. Devices are
named by their id and points as DEVICE.POINT, as everywhere in the CLI; other items by
section and id (`alarms.chw-high.limit`). Values are shown as they are written: durations
and sizes with their unit, read from the configuration models' types.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Iterator
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ByteSize

from edge_agent.config.base import parse_duration
from edge_agent.config.models import AgentConfig
from edge_agent.i18n import N_, _

_ABSENT = object()  # a key that one side does not have
# What an added or removed item is, by the list it is in.
_WHAT = {
    "devices": N_("device"),
    "points": N_("point"),
    "links": N_("link"),
    "alarms": N_("alarm rule"),
    "loops": N_("loop"),
    "protection": N_("protection"),
}
_DISCRIMINATORS = ("driver", "type")  # a changed one replaces the item


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per difference, in the order of the configuration's sections."""
    return list(_mapping(old, new, (), AgentConfig))


# --- walking both dumps ----------------------------------------------------------------


def _mapping(old: dict, new: dict, name: tuple[str, ...], tp: Any) -> Iterator[str]:
    for key in [*new, *(k for k in old if k not in new)]:
        yield from _value(
            old.get(key, _ABSENT), new.get(key, _ABSENT), (*name, key), _field(tp, key)
        )


def _value(old: Any, new: Any, name: tuple[str, ...], tp: Any) -> Iterator[str]:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        yield from _mapping(old, new, name, _model_for(tp, new))
    elif isinstance(old, list) and isinstance(new, list) and _by_id(old) and _by_id(new):
        yield from _items(old, new, name, _item_type(tp))
    elif (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(item, dict) for item in [*old, *new])
    ):
        item_tp = _item_type(tp)
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _value(a, b, (*name[:-1], f"{name[-1]}[{index}]"), item_tp)
    else:
        yield f"{_name(name)} {_show(old, tp)} -> {_show(new, tp)}"


def _items(old: list[dict], new: list[dict], name: tuple[str, ...], tp: Any) -> Iterator[str]:
    """Items matched by id: added, removed, replaced (another driver or type) or changed."""
    section = name[-1]
    # Devices stand by their id alone and points as DEVICE.POINT: the names used everywhere.
    base = name[:-1] if section in ("devices", "points") and len(name) <= 2 else name
    before = {item["id"]: item for item in old}
    after = {item["id"]: item for item in new}
    what = _(_WHAT[section]) if section in _WHAT else _("item")
    for item_id, item in after.items():
        here = (*base, item_id)
        if item_id not in before:
            yield _("{name} added ({what})").format(name=_name(here), what=_summary(item, what))
            continue
        previous = before[item_id]
        replaced = [k for k in _DISCRIMINATORS if k in item and previous.get(k) != item[k]]
        if replaced:
            yield _("{name} replaced ({old} -> {new})").format(
                name=_name(here), old=_summary(previous, what), new=_summary(item, what)
            )
            continue
        yield from _mapping(previous, item, here, _model_for(tp, item))
    for item_id, item in before.items():
        if item_id not in after:
            here = (*base, item_id)
            yield _("{name} removed ({what})").format(name=_name(here), what=_summary(item, what))
    common = [i for i in before if i in after]
    if common != [i for i in after if i in before]:
        yield _("{name}: order changed").format(name=_name(name))


def _by_id(items: list[Any]) -> bool:
    ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    return all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)


def _summary(item: dict, what: str) -> str:
    """'modbus device, 12 point(s)', 'pid loop', 'point'."""
    kind = item.get("driver") or item.get("type")
    text = f"{kind} {what}" if isinstance(kind, str) else what
    points = item.get("points")
    if isinstance(points, list):
        text += _(", {n} point(s)").format(n=len(points))
    return text


def _name(name: tuple[str, ...]) -> str:
    return ".".join(name)


# --- the models' types, for how values are written ---------------------------------------


def _field(tp: Any, key: str) -> Any:
    """The declared type of `key` in model `tp` (with its metadata), or None."""
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return None
    field = tp.model_fields.get(key)
    if field is None:
        return None
    if field.metadata:
        return Annotated[(field.annotation, *field.metadata)]
    return field.annotation


def _strip(tp: Any) -> Any:
    """Without Annotated and Optional."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _model_for(tp: Any, data: dict) -> Any:
    """The model a mapping is validated as: for a union, the member its tag names."""
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        for member in get_args(tp):
            member = _strip(member)
            if not (isinstance(member, type) and issubclass(member, BaseModel)):
                continue
            tags = [k for k in _DISCRIMINATORS if k in member.model_fields and k in data]
            if tags and all(
                data[k] in get_args(_strip(member.model_fields[k].annotation)) for k in tags
            ):
                return member
        return None
    return tp


def _item_type(tp: Any) -> Any:
    tp = _strip(tp)
    if get_origin(tp) in (list, tuple) and get_args(tp):
        return get_args(tp)[0]
    return None


def _is_duration(tp: Any) -> bool:
    while True:
        if get_origin(tp) is Annotated:
            if any(
                isinstance(m, BeforeValidator) and m.func is parse_duration for m in tp.__metadata__
            ):
                return True
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            return len(members) == 1 and _is_duration(members[0])
        else:
            return False


# --- values ------------------------------------------------------------------------------


def _show(value: Any, tp: Any) -> str:
    if value is _ABSENT:
        return _("(not set)")
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and _is_duration(tp):
        return duration_text(float(value))
    stripped = _strip(tp)
    if isinstance(value, int) and isinstance(stripped, type) and issubclass(stripped, ByteSize):
        return size_text(value)
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, str):
        return value if _plain(value) else json.dumps(value)
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)


def _plain(text: str) -> bool:
    """Text that reads back as itself unquoted, and is one word."""
    if not text or text.strip() != text or " " in text:
        return False
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def duration_text(seconds: float) -> str:
    """5.0 -> '5s', 0.1 -> '100ms', 600 -> '10m', 604800 -> '7d', 1.5 -> '1.5s'."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 6):g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def size_text(n: int) -> str:
    """2147483648 -> '2GiB', 500000000 -> '500MB'; other numbers of bytes as they are."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
