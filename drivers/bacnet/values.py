"""BACnet values <-> point values: decoding what a device answers, encoding what we write."""

from __future__ import annotations

import math
from typing import Any

from bacpypes3.basetypes import BinaryPV
from bacpypes3.primitivedata import (
    Atomic,
    BitString,
    Boolean,
    CharacterString,
    Double,
    Enumerated,
    Integer,
    Null,
    Real,
    Unsigned,
)

from drivers.bacnet.config import BacnetPoint
from drivers.base import DriverError
from drivers.numbers import float32_meant
from edge_agent.points import Value

MAX_TEXT = 120  # constructed values become text; keep a payload field short


def to_python(value: Any) -> Value:
    """A decoded BACnet value as a plain Python value (constructed ones as short text)."""
    if value is None or isinstance(value, Null):
        return None
    if isinstance(value, BinaryPV):
        return int(value) == 1  # active
    if isinstance(value, Boolean):
        return bool(value)
    if isinstance(value, Enumerated):
        return str(value)  # its name, e.g. "no-fault-detected"
    if isinstance(value, Real):
        return float32_meant(float(value))
    if isinstance(value, Double):
        return float(value)
    if isinstance(value, Unsigned | Integer):
        return int(value)
    if isinstance(value, CharacterString):
        return str(value)
    if isinstance(value, BitString):
        return str(value) or "none"  # set flag names, e.g. "in-alarm;fault"
    if isinstance(value, Atomic):  # object identifiers, dates, times: their own notation
        text = str(value)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(str(to_python(item)) for item in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def present(point: BacnetPoint, value: Any) -> Value:
    """The point's value (its kind, analog scaled). Raises ValueError when it cannot be."""
    plain = to_python(value)
    if plain is None or point.kind == "string":
        return plain if plain is None else str(plain)
    if point.kind == "binary":
        if isinstance(plain, bool | int):
            return bool(plain)
        raise ValueError(f"not a binary value: {plain!r}")
    if isinstance(plain, str):
        raise ValueError(f"not a number: {plain!r}")
    if point.kind == "multistate":
        return int(plain)
    return float(plain) * point.scale + point.offset


def encode(point: BacnetPoint, value: Value) -> Any:
    """The BACnet value to write for a point value; DriverError if it does not fit."""
    if point.kind == "string" or isinstance(value, str) or value is None:
        raise DriverError(f"cannot write {value!r} to {point.kind} point {point.id}")
    if point.kind == "binary":
        return BinaryPV("active" if value else "inactive")
    if point.kind == "multistate":
        if isinstance(value, float) and not value.is_integer():
            raise DriverError(f"{point.id}: multistate value {value} is not a whole number")
        if int(value) < 1:
            raise DriverError(f"{point.id}: multistate states start at 1, got {value}")
        return Unsigned(int(value))
    number = float(value)
    if not math.isfinite(number):
        raise DriverError(f"{point.id}: {value} is not a finite number")
    if point.limits and not point.limits.min <= number <= point.limits.max:
        raise DriverError(f"{point.id}: {number} is outside {point.limits.min}..{point.limits.max}")
    return Real((number - point.offset) / point.scale)


def commanded(point: BacnetPoint, slot: Any) -> Value:
    """The value of one priority-array slot (a PriorityValue choice), or None when the slot
    is empty. A binary slot holds an enumerated 0/1 rather than a BinaryPV."""
    choice = getattr(slot, "_choice", None)
    value = None if choice is None else getattr(slot, choice, None)
    if value is None or isinstance(value, Null) or choice == "null":
        return None
    if point.kind == "binary" and isinstance(value, Enumerated | Unsigned | Integer):
        return int(value) == 1
    return present(point, value)
