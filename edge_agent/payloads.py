"""Topics and JSON payloads of the MQTT contract (docs/mqtt-api.md, version 1)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from edge_agent import envelope
from edge_agent.envelope import Identity
from edge_agent.points import Batch, Quality
from edge_agent.store.outbox import Row, TrafficClass


@dataclass(frozen=True, slots=True)
class Topics:
    """`{prefix}/{site}/{gateway}/...`"""

    root: str

    @classmethod
    def for_gateway(cls, prefix: str, site: str, gateway: str) -> Topics:
        return cls(f"{prefix}/{site}/{gateway}")

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def command(self) -> str:
        """The one topic the gateway takes commands from."""
        return f"{self.root}/cmd"

    def telemetry(self, device: str) -> str:
        return f"{self.root}/telemetry/{device}"

    def stream(self, suffix: str) -> str:
        return f"{self.root}/{suffix}"


def status(identity: Identity, state: str, ts: int, **extra: object) -> bytes:
    return envelope.encode(envelope.message("status", identity, ts, state=state, **extra))


def render(row: Row, topics: Topics, identity: Identity, historical: bool) -> tuple[str, bytes]:
    """The topic and payload of an outbox row."""
    if row.cls is TrafficClass.TELEMETRY:
        assert row.batch is not None
        body = telemetry(row.batch, row.seq, identity, historical)
        return topics.telemetry(row.stream), body
    # Other classes were rendered when they happened; the stream seq and the replay flag
    # are only known now.
    assert row.payload is not None
    message = json.loads(row.payload)
    message["seq"] = row.seq
    message["historical"] = historical
    return topics.stream(row.stream), envelope.encode(message)


def telemetry(batch: Batch, seq: int, identity: Identity, historical: bool) -> bytes:
    """One device poll. `values` has every point (null when bad); `quality` only the
    exceptions: points that are not good, or whose source timestamp differs from `ts`."""
    values: dict[str, object] = {}
    quality: dict[str, dict[str, object]] = {}
    for r in batch.readings:
        value = r.value
        if type(value) is float and not math.isfinite(value):
            # JSON has no NaN/inf; say what it was instead of inventing a number.
            quality[r.point] = {"q": 0, "status": "bad", "reason": f"non-finite value {value}"}
            value = None
        values[r.point] = value
        if r.quality is not Quality.GOOD or r.ts != batch.ts:
            entry: dict[str, object] = {"q": r.quality.sparkplug, "status": r.quality.value}
            if r.reason:
                entry["reason"] = r.reason
            if r.ts != batch.ts:
                entry["ts"] = r.ts
            quality[r.point] = entry
    message = envelope.message("telemetry", identity, batch.ts, device=batch.stream, seq=seq,
                               historical=historical, values=values)  # fmt: skip
    if quality:
        message["quality"] = quality
    return envelope.encode(message)
