"""What the platform shows of what it received: one short line per record (the CLI prints
those of minute, hour and day data, so the demo shows the bureau receiving them) and a
JSON-lines log of every frame."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from edge_agent.hj212.frame import Packet
from simulators.hj212.checks import TIME_FORMAT
from simulators.hj212.records import Items, Outcome, Received

_SHOWN_VALUE = ("Avg", "Rtd", "Cou", "Max", "Min")  # the first one a pollutant has


def record_line(record: Received, *, with_mn: bool = False) -> str:
    """`bureau  2051  2026-12-06 10:20  w01018 Avg=48.2 N  w00000 Avg=12.50 N`, then
    `(again)` for a duplicate or `CONFLICT` for a record whose values changed."""
    when = datetime.strptime(record.data_time, TIME_FORMAT).strftime("%Y-%m-%d %H:%M")
    head = ["bureau", record.mn] if with_mn else ["bureau"]
    parts = [*head, record.cn, when, *_pollutants(record.items)]
    if record.outcome is Outcome.DUPLICATE:
        parts.append("(again)")
    elif record.outcome is Outcome.CONFLICT:
        parts.append("CONFLICT")
    return "  ".join(parts)


def _pollutants(items: Items) -> list[str]:
    """`code Field=value Flag` per pollutant, in the order of the CP."""
    fields: dict[str, dict[str, str]] = {}
    for key, value in items.items():
        code, dash, name = key.partition("-")
        if dash:
            fields.setdefault(code, {})[name] = value
    shown = []
    for code, named in fields.items():
        text = [code]
        text += [f"{name}={named[name]}" for name in _SHOWN_VALUE if name in named][:1]
        if "Flag" in named:
            text.append(named["Flag"])
        shown.append(" ".join(text))
    return shown


class JsonLog:
    """One JSON object a line, flushed as written (a demo tails it)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def frame(
        self,
        at: datetime,
        peer: str,
        verdict: str,
        packet: Packet | None,
        *,
        reason: str | None = None,
        qn: str | None = None,
    ) -> None:
        """A received frame, what the platform made of it (`verdict`: new, duplicate,
        conflict, part, answer, data, unexpected, dropped, calibration, or the counter of a
        fault) and, for a fault, why."""
        entry: dict[str, Any] = {
            "at": at.isoformat(timespec="milliseconds"),
            "peer": peer,
            "verdict": verdict,
        }
        if packet is not None:
            entry.update(mn=packet.mn, cn=packet.cn, qn=packet.qn, segment=packet.segment())
        elif qn is not None:
            entry["qn"] = qn
        if reason is not None:
            entry["reason"] = reason
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
