"""What a component emitted, as the platform would read it: an `Events` sink for tests."""

from __future__ import annotations

import json
from typing import Any

from edge_agent.events import Events


class EventLog(list):
    """The event bodies (parsed JSON) handed to the store, in order."""

    def __call__(self, _ts: int, payload: bytes) -> None:
        self.append(json.loads(payload))

    def types(self) -> list[str]:
        return [body["type"] for body in self]

    def events(self, identity: dict[str, Any] | None = None) -> Events:
        return Events(self, identity or {"site": "s", "gateway": "g"})
