"""Alarm rules: what the site configuration says about when a point is in alarm.

One rule watches one point (or, for `comm_loss`, a whole device). The `type` key picks the
kind of rule; the engine (`engine.py`) evaluates them. Delays and durations are seconds
(`Duration`/`Gap`: "30s", "5m"), limits are in the point's engineering unit.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from edge_agent.config.base import Duration, Gap, Id, Model
from edge_agent.i18n import N_, _

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}

_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_POINT_REF = re.compile(rf"^{_ID}\.{_ID}$")
_DEVICE_OR_POINT = re.compile(rf"^{_ID}(\.{_ID})?$")


def _point_ref(value: str) -> str:
    if not _POINT_REF.match(value):
        example = "e.g. chiller-1.chws_temp"
        raise ValueError(f"expected a point as device.point ({example}), got {value!r}")
    return value


def _device_or_point(value: str) -> str:
    if not _DEVICE_OR_POINT.match(value):
        raise ValueError(
            f"expected a device (e.g. chiller-1) or a point as device.point, got {value!r}"
        )
    return value


PointRef = Annotated[str, AfterValidator(_point_ref)]
DeviceOrPoint = Annotated[str, AfterValidator(_device_or_point)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
StateValue = bool | int | str

# Placeholders a message may use; the engine fills them in.
PLACEHOLDERS = ("value", "limit", "point", "rule", "severity")


class When(Model):
    """Evaluate the rule only while another point has a value (e.g. a pump's run command):
    otherwise its condition counts as false. A pump that is not commanded on has not tripped."""

    point: PointRef
    equals: StateValue


class RuleBase(Model):
    id: Id
    point: PointRef
    severity: Severity = "major"
    message: str = ""  # empty: a default per type; may use {value}, {limit}, {point}...
    enabled: bool = True
    when: When | None = None

    @field_validator("message")
    @classmethod
    def _placeholders(cls, text: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as exc:  # an unmatched "{"
            hint = "write {{ for a literal {"
            raise ValueError(f"message is not a valid template ({exc}); {hint}") from None
        for name in fields:
            if name not in PLACEHOLDERS:
                allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                raise ValueError(f"unknown placeholder {{{name}}} in message (allowed: {allowed})")
        return text

    @property
    def device(self) -> str:
        return self.point.partition(".")[0]

    @property
    def limit_value(self) -> float | StateValue | None:
        """What {limit} means for this rule, and the `limit` field of its payloads."""
        return None


class LimitRule(RuleBase):
    """`high`: in alarm above `limit`, back to normal below `limit - deadband`.
    `low`: in alarm below `limit`, back to normal above `limit + deadband`."""

    type: Literal["high", "low"]
    limit: Finite
    deadband: NonNegative = 0.0
    on_delay: Gap = 0.0  # the condition must hold this long before the alarm is raised
    off_delay: Gap = 0.0  # and be gone this long before it clears

    @property
    def limit_value(self) -> float | StateValue | None:
        return self.limit


class RateRule(RuleBase):
    """In alarm while the value changes by more than `limit` units per minute, measured over
    `window` (from the newest reading at least `window` old to the latest one)."""

    type: Literal["rate"]
    limit: Positive  # units per minute
    window: Duration = 60.0
    direction: Literal["rising", "falling", "either"] = "either"
    on_delay: Gap = 0.0
    off_delay: Gap = 0.0

    @property
    def limit_value(self) -> float | StateValue | None:
        return self.limit


class StuckRule(RuleBase):
    """In alarm when the value has stayed within ± `tolerance` of where it last moved to for
    `duration` (a frozen transmitter or a dead input card); clears when it moves again."""

    type: Literal["stuck"]
    tolerance: NonNegative = 0.0
    duration: Duration

    @property
    def limit_value(self) -> float | StateValue | None:
        return self.tolerance


class CommLossRule(RuleBase):
    """In alarm when no good reading of the device (or of the one point) has arrived for
    `duration`, whether the device was reported down or its poller went quiet."""

    type: Literal["comm_loss"]
    point: DeviceOrPoint
    duration: Duration = 60.0
    severity: Severity = "major"

    @property
    def limit_value(self) -> float | StateValue | None:
        return self.duration


class BadQualityRule(RuleBase):
    """In alarm when the point's quality has not been good (bad or stale) for `duration`."""

    type: Literal["bad_quality"]
    duration: Duration = 60.0

    @property
    def limit_value(self) -> float | StateValue | None:
        return self.duration


class StateRule(RuleBase):
    """In alarm while a binary or multistate value equals `alarm_value`."""

    type: Literal["state"]
    alarm_value: StateValue = True
    on_delay: Gap = 0.0
    off_delay: Gap = 0.0

    @property
    def limit_value(self) -> float | StateValue | None:
        return self.alarm_value


AlarmRule = Annotated[
    LimitRule | RateRule | StuckRule | CommLossRule | BadQualityRule | StateRule,
    Field(discriminator="type"),
]

# Point kinds each rule type can watch (checked against the devices by the config checks).
NUMERIC_KINDS = ("analog", "multistate")
KINDS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "high": NUMERIC_KINDS,
    "low": NUMERIC_KINDS,
    "rate": NUMERIC_KINDS,
    "stuck": NUMERIC_KINDS,
    "state": ("binary", "multistate", "string"),
}

DEFAULT_MESSAGES = {  # in the site's language when raised (edge_agent.i18n)
    "high": N_("{point} high: {value} (limit {limit})"),
    "low": N_("{point} low: {value} (limit {limit})"),
    "rate": N_("{point} changing fast: {value} per minute (limit {limit})"),
    "stuck": N_("{point} stuck at {value}"),
    "comm_loss": N_("{point}: no communication"),
    "bad_quality": N_("{point}: no good reading ({value})"),
    "state": N_("{point} is {value}"),
}


def rule_problems(
    rules: Sequence[AlarmRule], kinds: dict[str, str]
) -> Iterator[tuple[int, tuple[str, ...], str]]:
    """(rule index, key path within the rule, message) for every rule that watches a point
    or device not in `kinds` ("device.point" -> point kind), or a point of the wrong kind.
    Disabled rules are checked too: enabling one later must not be the moment it fails."""
    devices: dict[str, list[str]] = {}
    for ref in kinds:
        device, _dot, point = ref.partition(".")
        devices.setdefault(device, []).append(point)
    for index, rule in enumerate(rules):
        kind = kinds.get(rule.point)
        if "." not in rule.point:  # a whole device (comm_loss)
            if rule.point not in devices:
                yield index, ("point",), _unknown_device(rule.point, devices)
        elif kind is None:
            yield index, ("point",), _unknown_point(rule.point, devices)
        elif kind not in KINDS_FOR_TYPE.get(rule.type, (kind,)):
            *others, last = KINDS_FOR_TYPE[rule.type]
            wanted = last
            if others:
                wanted = _("{some} or {last}").format(some=", ".join(others), last=last)
            message = _("a {type} rule watches {wanted} points; {point} is {kind}").format(
                type=rule.type, wanted=wanted, point=rule.point, kind=kind
            )
            yield index, ("type",), message
        if rule.when is not None and rule.when.point not in kinds:
            yield index, ("when", "point"), _unknown_point(rule.when.point, devices)


def _unknown_device(device: str, devices: dict[str, list[str]]) -> str:
    close = difflib.get_close_matches(device, list(devices), n=1)
    if close:
        return _("unknown device {device!r} (did you mean {close!r}?)").format(
            device=device, close=close[0]
        )
    return _("unknown device {device!r}").format(device=device)


def _unknown_point(ref: str, devices: dict[str, list[str]]) -> str:
    device, _dot, point = ref.partition(".")
    if device not in devices:
        return _("{problem} in {ref!r}").format(problem=_unknown_device(device, devices), ref=ref)
    close = difflib.get_close_matches(point, devices[device], n=1)
    if close:
        message = _("device {device!r} has no point {point!r} (did you mean {close!r}?)")
        return message.format(device=device, point=point, close=close[0])
    return _("device {device!r} has no point {point!r}").format(device=device, point=point)
