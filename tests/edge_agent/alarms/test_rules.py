"""Alarm rules in the site configuration: parsing, and file:line errors for wrong rules."""

from __future__ import annotations

import pytest

from edge_agent.alarms.rules import CommLossRule, LimitRule, StateRule
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config_text

SITE = """\
site: {id: st-marys}
gateway: {id: plant-b2}
uplink: {endpoints: [{host: broker-1}]}
devices:
  - id: chiller-1
    driver: fake
    points:
      - {id: chws_temp, unit: degC}
      - {id: fault, kind: binary}
      - {id: enable, kind: binary, writable: true}
alarms:
"""  # rules start at line 12


def load(rules: str):
    return load_config_text(SITE + rules, "site.yaml")


def issues(rules: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(rules)
    return [(i.line, i.path, i.message) for i in caught.value.issues]


def test_every_rule_type_parses() -> None:
    config = load(
        """\
  - {id: warm, type: high, point: chiller-1.chws_temp, limit: 9, deadband: 0.5,
     on_delay: 5m, off_delay: 30s, severity: critical, message: "{point} at {value}"}
  - {id: cold, type: low, point: chiller-1.chws_temp, limit: 4}
  - {id: fast, type: rate, point: chiller-1.chws_temp, limit: 0.5, window: 2m}
  - {id: frozen, type: stuck, point: chiller-1.chws_temp, tolerance: 0.01, duration: 1h}
  - {id: gone, type: comm_loss, point: chiller-1}
  - {id: gone-point, type: comm_loss, point: chiller-1.chws_temp, duration: 90s}
  - {id: unreadable, type: bad_quality, point: chiller-1.chws_temp, duration: 2m}
  - {id: trip, type: state, point: chiller-1.fault, when: {point: chiller-1.enable, equals: true}}
"""
    )
    warm, cold, fast, frozen, gone, *_, trip = config.alarms
    assert isinstance(warm, LimitRule) and (warm.on_delay, warm.off_delay) == (300.0, 30.0)
    assert warm.severity == "critical" and cold.severity == "major" and cold.deadband == 0
    assert fast.window == 120.0 and fast.direction == "either" and frozen.duration == 3600.0
    assert isinstance(gone, CommLossRule) and gone.duration == 60.0 and gone.device == "chiller-1"
    assert isinstance(trip, StateRule) and trip.alarm_value is True and trip.when is not None


CASES = {
    "unknown type": (
        "  - {id: a, type: hi, point: chiller-1.chws_temp, limit: 1}\n",
        [(12, "alarms[0].type", "expected one of 'high', 'low', 'rate', 'stuck', 'comm_loss', "
          "'bad_quality', 'state' (got 'hi')")],
    ),
    "missing limit": (
        "  - {id: a, type: high, point: chiller-1.chws_temp}\n",
        [(12, "alarms[0].limit", "required key missing")],
    ),
    "key of another type": (
        "  - {id: a, type: state, point: chiller-1.fault, deadband: 1}\n",
        [(12, "alarms[0].deadband", "unknown key 'deadband' (allowed: id, point, severity, "
          "message, enabled, when, type, alarm_value, on_delay, off_delay)")],
    ),
    "point without device": (
        "  - {id: a, type: high, point: chws_temp, limit: 1}\n",
        [(12, "alarms[0].point", "expected a point as device.point (e.g. chiller-1.chws_temp), "
          "got 'chws_temp'")],
    ),
    "bad severity": (
        "  - {id: a, type: high, point: chiller-1.chws_temp, limit: 1, severity: high}\n",
        [(12, "alarms[0].severity", "expected one of 'critical', 'major', 'minor', 'warning' "
          "(got 'high')")],
    ),
    "negative delay": (
        "  - {id: a, type: high, point: chiller-1.chws_temp, limit: 1,\n     on_delay: -5s}\n",
        [(13, "alarms[0].on_delay", "expected a duration such as 5s, 500ms, 2m, got '-5s'")],
    ),
    "unknown placeholder": (
        "  - id: a\n    type: high\n    point: chiller-1.chws_temp\n    limit: 1\n"
        "    message: 'too warm: {temp}'\n",
        [(16, "alarms[0].message", "unknown placeholder {temp} in message (allowed: {value}, "
          "{limit}, {point}, {rule}, {severity})")],
    ),
    # Cross-checks against the devices.
    "unknown point": (
        "  - {id: a, type: high, point: chiller-1.chws_tmp, limit: 1}\n",
        [(12, "alarms[0].point", "device 'chiller-1' has no point 'chws_tmp' "
          "(did you mean 'chws_temp'?)")],
    ),
    "unknown device": (
        "  - {id: a, type: high, point: chiller-2.chws_temp, limit: 1}\n",
        [(12, "alarms[0].point", "unknown device 'chiller-2' (did you mean 'chiller-1'?) "
          "in 'chiller-2.chws_temp'")],
    ),
    "unknown device of a comm loss rule": (
        "  - {id: a, type: comm_loss, point: boiler}\n",
        [(12, "alarms[0].point", "unknown device 'boiler'")],
    ),
    "unknown guard point": (
        "  - id: a\n    type: state\n    point: chiller-1.fault\n"
        "    when: {point: chiller-1.run, equals: true}\n",
        [(15, "alarms[0].when.point", "device 'chiller-1' has no point 'run'")],
    ),
    "limit on a binary point": (
        "  - {id: a, type: high, point: chiller-1.fault, limit: 0.5}\n",
        [(12, "alarms[0].type", "a high rule watches analog or multistate points; "
          "chiller-1.fault is binary")],
    ),
    "state of an analog point": (
        "  - {id: a, type: state, point: chiller-1.chws_temp, alarm_value: 1}\n",
        [(12, "alarms[0].type", "a state rule watches binary, multistate or string points; "
          "chiller-1.chws_temp is analog")],
    ),
    "duplicate rule id": (
        "  - {id: a, type: high, point: chiller-1.chws_temp, limit: 9}\n"
        "  - {id: a, type: low, point: chiller-1.chws_temp, limit: 4}\n",
        [(13, "alarms[1].id", "duplicate alarm rule id 'a' (first at line 12)")],
    ),
    "disabled rules are checked too": (
        "  - {id: a, type: high, point: chiller-1.nope, limit: 9, enabled: false}\n",
        [(12, "alarms[0].point", "device 'chiller-1' has no point 'nope'")],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("rules", "expected"), CASES.values(), ids=CASES.keys())
def test_one_mistake_one_issue(rules: str, expected: list) -> None:
    assert issues(rules) == expected


def test_alarms_default_to_none() -> None:
    assert load("  []\n").alarms == ()
