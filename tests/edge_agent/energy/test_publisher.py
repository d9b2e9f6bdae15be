"""The `energy` messages: each closed quarter hour once, revised when late data change it,
neither repeated nor skipped across a restart, and a balance over its allowed loss told."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.energy.config import Energy
from edge_agent.energy.publisher import EnergyPublisher
from edge_agent.points import Batch, Reading
from edge_agent.store.outbox import Outbox, Record, TrafficClass

T0 = int(datetime(2026, 12, 6, 2, 0, tzinfo=UTC).timestamp() * 1000)  # 10:00 local
MINUTE = 60_000
MODEL = Energy.model_validate({
    "meters": [
        {"id": "main", "point": "m.main", "medium": "electricity", "unit": "kWh"},
        {"id": "plant", "point": "m.plant", "medium": "electricity", "unit": "kWh",
         "category": "air_conditioning", "sub_item": "plant"},
    ],
    "tree": [{"parent": "main", "children": ["plant"], "max_loss_pct": 60}],
})  # fmt: skip


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def emit(self, type_: str, *, level: str = "info", **fields: object) -> None:
        self.seen.append((type_, fields))


def polls(minutes: range, plant_per_minute: float = 0.5) -> list[Record]:
    out = []
    for m in minutes:
        ts = T0 + m * MINUTE
        readings = (
            Reading("main", 1000.0 + m, ts),
            Reading("plant", 50.0 + m * plant_per_minute, ts),
        )
        out.append(Record(TrafficClass.TELEMETRY, "m", ts, batch=Batch("m", ts, readings)))
    return out


def append(path: Path, records: list[Record]) -> None:
    box = Outbox(path, 10**9, 30 * 86_400.0)
    box.append(records)
    box.close()


def publisher(tmp_path: Path, now: list[int], events: Events, sent: list[dict]) -> EnergyPublisher:
    return EnergyPublisher(
        MODEL, tmp_path / "outbox.db", lambda ts, body: sent.append(json.loads(body)),
        {"site": "s", "gateway": "g"}, events, clock=lambda: now[0],
    )  # fmt: skip


async def test_each_quarter_once_then_revised_by_late_data(tmp_path: Path) -> None:
    store = tmp_path / "outbox.db"
    append(store, polls(range(-5, 31)))  # readings up to 10:30, then the meter falls silent
    now, sent, events = [T0 + 46 * MINUTE], [], Events()  # 10:45 has closed and settled
    first = publisher(tmp_path, now, events, sent)
    await first.publish_due()
    by_start = {m["start"]: m for m in sent if m["start"] >= T0}
    quarters = [T0 + q * 15 * MINUTE for q in range(3)]
    assert sorted(by_start) == quarters
    assert by_start[T0]["meters"]["main"] == {"energy": 15.0, "unit": "kWh", "quality": "measured"}
    assert by_start[T0]["categories"]["air_conditioning"]["energy"] == 7.5
    assert by_start[quarters[2]]["meters"]["main"]["quality"] == "missing"  # nothing after 10:30
    assert all(m["type"] == "energy" and m["revision"] == 0 for m in sent)
    assert await first.publish_due() == 0  # nothing new, nothing changed

    append(store, polls(range(50, 61)))  # the meter answers again: the gap is estimated now
    now[0] = T0 + 61 * MINUTE
    sent.clear()
    again = publisher(tmp_path, now, events, sent)  # a restart, too
    await again.publish_due()
    revised = {m["start"]: m for m in sent}
    assert revised[quarters[2]]["revision"] == 1
    assert revised[quarters[2]]["meters"]["main"]["quality"] == "estimated"
    assert abs(revised[quarters[2]]["meters"]["main"]["energy"] - 15.0) < 1e-6
    assert T0 not in revised  # measured, unchanged: not sent again
    assert T0 + 45 * MINUTE in revised and revised[T0 + 45 * MINUTE]["revision"] == 0


async def test_a_balance_over_its_loss_is_an_event_once(tmp_path: Path) -> None:
    append(tmp_path / "outbox.db", polls(range(-5, 20), plant_per_minute=0.2))  # 80 % loss
    now, sent, events = [T0 + 16 * MINUTE], [], Events()
    await publisher(tmp_path, now, events, sent).publish_due()
    quarter = next(m for m in sent if m["start"] == T0)
    assert quarter["balance"]["main"]["exceeded"] is True
    exceeded = [fields for kind, fields in events.seen if kind == "energy_balance_exceeded"]
    assert [e["start"] for e in exceeded if e["start"] >= T0] == [T0]
