"""The plant's tag table (`tags.yaml`, data) and the one binder that turns it into getters
and setters on a plant room.

The table says, per equipment kind and tag, which attribute (or named computed value) a
tag reads, its unit, description, kind and limits, and how it is written: a cast onto the
attribute it reads, or a named setter. What cannot be data (computed values, setters with
side effects) is code, named in the table and handed to `bind` by the plant.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from edge_agent.config.base import Id, Model

Value = float | int | bool
TABLE_PATH = Path(__file__).with_name("tags.yaml")
# "name", "a.b", "a.b[2]": attributes, dotted, optionally an index into the last one.
_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\[(\d+)\])?$")
_CASTS: dict[str, Callable[[Value], Value]] = {"float": float, "bool": bool}
_CAST_KIND = {"float": "analog", "bool": "binary"}


@dataclass(frozen=True)
class TagInfo:
    unit: str
    writable: bool
    min: float | None
    max: float | None
    description: str
    kind: str  # "analog" | "binary" | "multistate"


@dataclass(frozen=True)
class Binding:
    info: TagInfo
    get: Callable[[], Value]
    set: Callable[[Value], None] | None


class TagSpec(Model):
    read: str | None = Field(default=None, pattern=_PATH.pattern)  # default: the suffix
    compute: str | None = None
    scale: float | None = None
    unit: str = ""
    description: str = ""
    kind: Literal["analog", "binary", "multistate"] = "analog"
    write: str | None = None
    # int | float keeps the number's type (0 and 0.0 print differently in messages).
    min: int | float | None = None
    max: int | float | None = None
    max_count: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TagSpec:
        if self.read is not None and self.compute is not None:
            raise ValueError("give read or compute, not both")
        if self.max is not None and self.max_count is not None:
            raise ValueError("give max or max_count, not both")
        if self.scale is not None and self.kind != "analog":
            raise ValueError(f"scale applies to analog tags, not {self.kind}")
        if self.write in _CASTS:
            if _CAST_KIND[self.write] != self.kind:
                raise ValueError(f"write: {self.write} does not fit a {self.kind} tag")
            if self.compute is not None or self.scale is not None:
                raise ValueError(f"write: {self.write} needs a plain read (no compute, scale)")
            if self.read is not None and not self.read.isidentifier():
                raise ValueError(f"write: {self.write} needs a plain attribute, not {self.read}")
        return self


class KindSpec(Model):
    each: tuple[str, ...] = ()  # PlantRoom lists: one set of tags per item
    object: str | None = None  # the PlantRoom attribute read; none: the plant room
    tags: dict[str, TagSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> KindSpec:
        if self.each and self.object is not None:
            raise ValueError("give each or object, not both")
        return self


@functools.cache
def load_table(path: Path = TABLE_PATH) -> dict[str, KindSpec]:
    """The table, checked (ValueError naming the entry if it is malformed); read once."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return TypeAdapter(dict[Id, KindSpec]).validate_python(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None


def bind(
    table: Mapping[str, KindSpec],
    root: Any,
    computed: Mapping[str, Callable[[Any], Value]],
    setters: Mapping[str, Callable[[Any, Value], None]],
) -> dict[str, Binding]:
    """Every tag of `table` bound to `root` (the plant room), in the table's order.

    `computed[name](obj)` gives a computed tag's value, `setters[name](obj, value)` writes
    a tag with a named setter; `obj` is the equipment item or the kind's object.
    ValueError if the table names something `root` or the two mappings lack.
    """
    tags: dict[str, Binding] = {}
    for kind, spec in table.items():
        if spec.each:
            members = [(item.config.id, item) for name in spec.each for item in getattr(root, name)]
        else:
            members = [(kind, attrgetter(spec.object)(root) if spec.object else root)]
        for prefix, obj in members:
            for suffix, tag in spec.tags.items():
                name = f"{prefix}.{suffix}"
                try:
                    tags[name] = _bind(tag, suffix, obj, root, computed, setters)
                except (AttributeError, ValueError) as exc:
                    raise ValueError(f"{TABLE_PATH.name}: {kind}.{suffix}: {exc}") from None
    return tags


def _bind(
    tag: TagSpec,
    suffix: str,
    obj: Any,
    root: Any,
    computed: Mapping[str, Callable[[Any], Value]],
    setters: Mapping[str, Callable[[Any, Value], None]],
) -> Binding:
    upper = len(getattr(root, tag.max_count)) if tag.max_count is not None else tag.max
    info = TagInfo(tag.unit, tag.write is not None, tag.min, upper, tag.description, tag.kind)
    return Binding(info, _getter(tag, suffix, obj, computed), _setter(tag, suffix, obj, setters))


def _getter(
    tag: TagSpec, suffix: str, obj: Any, computed: Mapping[str, Callable[[Any], Value]]
) -> Callable[[], Value]:
    if tag.compute is not None:
        if tag.compute not in computed:
            raise ValueError(f"no computed value {tag.compute!r}")
        get: Callable[[], Value] = functools.partial(computed[tag.compute], obj)
    else:
        match = _PATH.match(tag.read or suffix)
        assert match is not None  # the model checked the pattern
        attributes, index = match[1], match[2]
        attrgetter(attributes)(obj)  # AttributeError now, not at the first read
        get = functools.partial(attrgetter(attributes), obj)
        if index is not None:
            get = _indexed(get, int(index))
    if tag.scale is not None:
        get = _scaled(get, tag.scale)
    if tag.kind == "multistate":
        get = _as_int(get)
    return get


def _indexed(get: Callable[[], Any], index: int) -> Callable[[], Value]:
    return lambda: get()[index]


def _scaled(get: Callable[[], Value], scale: float) -> Callable[[], Value]:
    return lambda: scale * get()


def _as_int(get: Callable[[], Value]) -> Callable[[], Value]:
    return lambda: int(get())


def _setter(
    tag: TagSpec, suffix: str, obj: Any, setters: Mapping[str, Callable[[Any, Value], None]]
) -> Callable[[Value], None] | None:
    if tag.write is None:
        return None
    if tag.write in _CASTS:
        attribute, cast = tag.read or suffix, _CASTS[tag.write]
        return lambda value: setattr(obj, attribute, cast(value))
    if tag.write not in setters:
        raise ValueError(f"no setter {tag.write!r}")
    return functools.partial(setters[tag.write], obj)
