"""What loop commands changed (enable/disable, parameters), kept across restarts for as long
as the loop's configuration stays the same. The runtime stores them (the audit database);
the runner is handed the function that does (`PersistSettings`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoopSettings:
    fingerprint: str  # the loop's configuration they were made on (Model.fingerprint)
    enabled: bool
    parameters: dict[str, float]
    by: str | None
    ts: int


PersistSettings = Callable[[str, LoopSettings], Awaitable[object]]
