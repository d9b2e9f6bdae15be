"""Building blocks of the configuration models, shared by the agent and the drivers.

Drivers define their device and point models by subclassing `DeviceBase` and `PointBase`
(see `drivers/fake.py`), so that validating a config never imports a protocol library.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from edge_agent.i18n import _


class Model(BaseModel):
    """Immutable, strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def fingerprint(self) -> str:
        """Identifies the effective values: comments and layout in a file do not change it."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]

# One duration: a number of seconds, or terms with units from the largest to the smallest,
# each unit once: 500ms, 5s, 2m, 1h30m, 1d12h, 2h 30m, 1.5h. ASCII digits only.
_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_LARGEST_FIRST = ("d", "h", "m", "s", "ms")


def parse_duration(value: object) -> object:
    """'500ms', '5s', '2m', '1h30m', '7d' or a plain number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError(_("expected a duration such as 5s, 500ms, 2m"))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        seconds = duration_seconds(value)
        if seconds is not None:
            return seconds
    raise ValueError(
        _("expected a duration such as 5s, 500ms, 2m, got {value!r}").format(value=value)
    )


def duration_seconds(text: str) -> float | None:
    """Seconds, or None if `text` is no duration. Raises ValueError for units out of order
    (30m1h, 1h1h): more likely a slip than meant, and said as such."""
    stripped = text.strip()
    terms: list[tuple[str, str | None]] = []
    position = 0
    while position < len(stripped):
        match = _TERM.match(stripped, position)
        if match is None:
            return None
        terms.append((match.group(1), match.group(2)))
        position = match.end()
    if not terms:
        return None
    if len(terms) == 1 and terms[0][1] is None:
        return float(terms[0][0])  # a plain number of seconds
    if any(unit is None for _, unit in terms):
        return None  # 1m30: every term of a compound duration has its unit
    ranks = [_LARGEST_FIRST.index(unit) for _, unit in terms if unit is not None]
    if ranks != sorted(set(ranks)):
        raise ValueError(
            _(
                "{text!r}: write the units from the largest to the smallest, each once "
                "(1h30m, not 30m1h)"
            ).format(text=text)
        )
    return sum(float(number) * _UNIT_S[unit] for number, unit in terms if unit is not None)


# Seconds. Accepts numbers or strings with a unit. Finite: `.inf` would silently mean never.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, allow_inf_nan=False)]
# Seconds, zero allowed (an idle gap, a simulated latency).
Gap = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]


class Limits(Model):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.min > self.max:
            raise ValueError(
                _("min ({min}) is greater than max ({max})").format(min=self.min, max=self.max)
            )
        return self


class PointBase(Model):
    """Fields every point has, whatever its protocol."""

    id: Id
    name: str = ""
    kind: Annotated[str, Field(pattern=r"^(analog|binary|multistate|string)$")] = "analog"
    unit: str = ""
    writable: bool = False
    limits: Limits | None = None
    # Commands may write the point at most this often (EEPROM-backed registers wear out;
    # a runaway script must not hammer a device). Equipment protection comes on top.
    min_write_interval: Gap = 1.0
    # engineering value = raw * scale + offset (finite: .nan would turn every reading into NaN)
    scale: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    offset: Annotated[float, Field(allow_inf_nan=False)] = 0.0


class DeviceBase(Model):
    """Fields every device has. Subclasses fix `driver` to a literal and type `points`
    (`list[ModbusPoint]`: a read-only `Sequence` here, so that each may narrow it)."""

    id: Id
    name: str = ""
    driver: str
    link: Id | None = None  # a shared physical link from `links:`; default: the driver decides
    enabled: bool = True
    poll_interval: Duration = 5.0
    timeout: Duration = 2.0  # per request
    points: Sequence[PointBase] = Field(min_length=1)
