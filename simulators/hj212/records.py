"""What the platform holds: one record per (MN, CN, DataTime), and its counters.

A record received again is a `duplicate` when its items are the same (a retransmission: the
logger did not see the ack) and a `conflict` when they differ; the first copy is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum

Items = dict[str, str]  # a record's CP items without its DataTime


class Outcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(slots=True)
class Counts:
    """What one logger (or all of them) sent. Field names are the kinds that `count` takes."""

    frames: int = 0  # frames that passed every check
    acks_sent: int = 0  # well-formed 9014 answers written (not the garbage or bad-crc ones)
    records: int = 0  # distinct records stored
    duplicates: int = 0  # a stored record again, same items (not counted for history answers)
    conflicts: int = 0  # a stored record again, other items
    dropped: int = 0  # ignored on purpose (ack_mode drop-first-n)
    unexpected: int = 0  # a well-formed answer or data packet that no open request awaits
    crc_errors: int = 0
    bad_frames: int = 0  # framing, field forms, CP items, split parts that do not fit
    unknown_mn: int = 0
    wrong_password: int = 0
    bad_st: int = 0
    unknown_cn: int = 0
    bad_data_time: int = 0


@dataclass(frozen=True, slots=True)
class Received:
    """A record as it arrived (what `on_record` sees). `solicited`: it answered one of the
    platform's requests (a history)."""

    mn: str
    cn: str
    data_time: str
    items: Items
    outcome: Outcome
    solicited: bool


KINDS = frozenset(field.name for field in fields(Counts))


class Tally:
    """Counts per MN and in total. A frame whose MN is not trusted (unknown, or unreadable
    on a connection no logger has claimed yet) counts in the total only."""

    def __init__(self) -> None:
        self._total = Counts()
        self._by_mn: dict[str, Counts] = {}

    def count(self, kind: str, mn: str | None) -> None:
        if kind not in KINDS:
            raise KeyError(f"no counter {kind!r}")
        targets = [self._total]
        if mn is not None:
            targets.append(self._by_mn.setdefault(mn, Counts()))
        for counts in targets:
            setattr(counts, kind, getattr(counts, kind) + 1)

    def snapshot(self, mn: str | None = None) -> Counts:
        counts = self._total if mn is None else self._by_mn.get(mn, Counts())
        return replace(counts)


class RecordStore:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, Items]] = {}

    def put(self, mn: str, cn: str, data_time: str, items: Items) -> Outcome:
        held = self._records.setdefault((mn, cn), {})
        first = held.get(data_time)
        if first is None:
            held[data_time] = dict(items)
            return Outcome.NEW
        return Outcome.DUPLICATE if first == items else Outcome.CONFLICT

    def records(self, mn: str, cn: str) -> dict[str, Items]:
        """{DataTime: items} in time order (yyyyMMddHHmmss sorts as time does); a copy."""
        held = self._records.get((mn, cn), {})
        return {data_time: dict(held[data_time]) for data_time in sorted(held)}
