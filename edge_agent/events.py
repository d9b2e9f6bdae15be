"""Operational events: logged once and published to the platform through the outbox.

`EventSink` is what drivers and loops may ask of the runtime (report an event); `Events`
is the runtime's: it makes the message and hands it to `submit` (the store's
`submit_event`), so this module knows nothing of the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from edge_agent import envelope, logs
from edge_agent.points import wall_ms

log = logs.get("event")


class EventSink(Protocol):
    def emit(self, type_: str, *, level: str = "info", **fields: Any) -> None: ...


class Events:
    """`emit("device_down", device="ch-1", reason="timeout")` -> a log line, and the event's
    payload to `submit(ts, payload)`."""

    def __init__(self, submit: Callable[[int, bytes], None], identity: envelope.Identity) -> None:
        self._submit = submit
        self._identity = identity

    def emit(self, type_: str, *, level: str = "info", **fields: Any) -> None:
        getattr(log, level)(type_, **fields)
        ts = wall_ms()
        self._submit(ts, envelope.encode(envelope.message(type_, self._identity, ts, **fields)))
