"""Operational events: logged once and published to the platform through the outbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_agent import logs
from edge_agent.points import wall_ms
from edge_agent.store.losses import event_payload
from edge_agent.store.outbox import Record, TrafficClass

log = logs.get("event")


class Events:
    """`emit("device_down", device="ch-1", reason="timeout")` -> a log line and an EVENT record."""

    def __init__(self, submit: Callable[[Record], None], identity: dict[str, str]) -> None:
        self._submit = submit
        self._identity = identity

    def emit(self, type_: str, *, level: str = "info", **fields: Any) -> None:
        getattr(log, level)(type_, **fields)
        ts = wall_ms()
        payload = event_payload(type_, self._identity, ts, **fields)
        self._submit(Record(TrafficClass.EVENT, "event", ts, payload=payload))
