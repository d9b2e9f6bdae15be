"""The envelope of every message in the MQTT contract (docs/mqtt-api.md): `v`, `type`, the
site and gateway ids, `ts` — made here and nowhere else. `seq` and `historical` are added
when a stored message is published (`payloads.render`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

VERSION = 1
Identity = Mapping[str, str]  # {"site": ..., "gateway": ...}: AgentConfig.identity

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def message(type_: str, identity: Identity, ts: int, **fields: Any) -> dict[str, Any]:
    """A message of `type_` made at `ts` (ms since the epoch) by the gateway `identity`."""
    return {"v": VERSION, "type": type_, **identity, "ts": ts, **fields}


def encode(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; values JSON cannot carry (a Path, an enum) as their text."""
    return _dumps(body).encode()
