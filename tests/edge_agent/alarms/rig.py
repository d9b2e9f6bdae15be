"""A real engine with a state file in a temporary directory and a list as the outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.rules import AlarmRule
from edge_agent.points import Quality, Reading, Value
from edge_agent.store.outbox import Record, TrafficClass

T0 = 1_764_000_000_000  # a wall-clock instant, ms
S = 1000  # one second in ms
IDENTITY = {"site": "st-marys", "gateway": "plant-b2"}
_RULE = TypeAdapter(AlarmRule)


def rule(**fields: Any) -> AlarmRule:
    """A rule as the config would give it, e.g. rule(id="r", type="high", ...)."""
    return _RULE.validate_python(fields)


def good(point: str, value: Value, ts: int = T0) -> Reading:
    return Reading(point, value, ts)


def bad(point: str, reason: str = "timeout", ts: int = T0) -> Reading:
    return Reading.bad(point, reason, ts)


def stale(point: str, value: Value, ts: int = T0) -> Reading:
    return Reading(point, value, ts, Quality.STALE, "not refreshed")


@dataclass
class Rig:
    path: Path
    records: list[Record] = field(default_factory=list)

    def engine(self, *rules: AlarmRule, now: int = T0) -> AlarmEngine:
        return AlarmEngine(rules, self.records.append, self.path, IDENTITY, now_ms=now)

    def messages(self) -> list[dict[str, Any]]:
        assert all(r.cls is TrafficClass.ALARM and r.stream == "alarm" for r in self.records)
        return [json.loads(r.payload or b"") for r in self.records]

    def events(self) -> list[tuple[str, str, str]]:
        """(event, rule, state) of every published transition, in order."""
        return [(m["event"], m["rule"], m["state"]) for m in self.messages()]

    def saved(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())
