"""Read the agent's local telemetry history (the outbox file) without disturbing the agent.

For `edge-agent export` and `trend`, whether the agent runs or not. The reader takes no
store lock and never writes: it opens the file read-only (`mode=ro`) and reads one WAL
snapshot, concurrently with the agent's writer. When no `-wal` file exists (the agent is
stopped) it opens the file `immutable`, so that SQLite creates no `-wal`/`-shm` files
either: created by root (`sudo edge-agent export`), they would lock the agent out of its
own store at its next start.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

from edge_agent.i18n import _
from edge_agent.points import Value
from edge_agent.store.outbox import SCHEMA_VERSION, Row, iter_history, open_readonly

_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = {"outbox", "streams", "schemas", "counters"}

Reading = tuple[str, int, Value, str]  # ("device.point", ts ms, value, quality)


class HistoryError(Exception):
    """The store cannot be read; the message is one line naming the file."""


class HistoryReader:
    """Read-only access to the telemetry kept in an outbox file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.damaged = 0  # rows skipped because their body did not decode
        check_store_file(self.path)
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            self._db = open_readonly(self.path, immutable=not wal.exists())
            tables = {
                name
                for (name,) in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            self.version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path} is not a readable edge-agent store: {exc}") from exc
        if self.version > SCHEMA_VERSION:
            self._db.close()
            raise HistoryError(
                f"{self.path} was written by a newer edge-agent (store schema {self.version}, "
                f"this one reads up to {SCHEMA_VERSION}): upgrade edge-agent"
            )
        if self.version < 1 or not tables >= _TABLES:
            self._db.close()
            message = _("{path} is an SQLite database but not an edge-agent store")
            raise HistoryError(message.format(path=self.path))

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # -- what is there -----------------------------------------------------------------

    def devices(self) -> list[str]:
        return [
            name for (name,) in self._query("SELECT name FROM streams WHERE kind = 0 ORDER BY name")
        ]

    def points(self, device: str) -> list[str]:
        """The points of `device` in its newest stored poll ([] if it has none)."""
        found = self._query(
            "SELECT s.points FROM outbox o JOIN schemas s ON s.id = o.schema_id "
            "WHERE o.cls = 0 AND o.stream = (SELECT id FROM streams WHERE kind = 0 AND name = ?) "
            "ORDER BY o.id DESC LIMIT 1",
            (device,),
        )
        return list(json.loads(found[0][0])) if found else []

    def span(self) -> tuple[int | None, int | None]:
        """About the oldest and newest poll time stored (ms; (None, None) when empty): from
        the ends of the indexes, without reading the whole file."""
        if self.version >= 2:
            ends = [
                "SELECT min(ts), max(ts) FROM outbox INDEXED BY outbox_history "
                "WHERE cls = 0 AND sent = 1",
                "SELECT (SELECT ts FROM outbox INDEXED BY outbox_unsent WHERE cls = 0 AND "
                "sent = 0 ORDER BY id LIMIT 1), (SELECT ts FROM outbox INDEXED BY "
                "outbox_unsent WHERE cls = 0 AND sent = 0 ORDER BY id DESC LIMIT 1)",
            ]
        else:
            ends = [
                "SELECT (SELECT ts FROM outbox WHERE cls = 0 ORDER BY id LIMIT 1), "
                "(SELECT ts FROM outbox WHERE cls = 0 ORDER BY id DESC LIMIT 1)"
            ]
        stamps = [self._query(sql)[0] for sql in ends]
        oldest = [ts for ts, _ in stamps if ts is not None]
        newest = [ts for _, ts in stamps if ts is not None]
        return min(oldest, default=None), max(newest, default=None)

    def check(self, points: Sequence[str] = (), devices: Sequence[str] = ()) -> None:
        """Raise HistoryError naming what is unknown (with what is known)."""
        known = self.devices()
        for device in [*devices, *(_split(ref)[0] for ref in points)]:
            if device not in known:
                listed = ", ".join(known) if known else "none"
                raise HistoryError(f"no device {device!r} in {self.path} (devices: {listed})")
        for ref in points:
            device, point = _split(ref)
            names = self.points(device)
            if point not in names:
                raise HistoryError(
                    f"device {device!r} has no point {point!r} (points: {', '.join(names)})"
                )

    # -- reading -----------------------------------------------------------------------

    def rows(
        self, since_ms: int, until_ms: int, devices: Sequence[str] | None = None
    ) -> Iterator[Row]:
        """Telemetry rows (device polls), delivered and not, since_ms <= ts < until_ms,
        ordered by (ts, id)."""

        def damaged(*_args: object) -> None:
            self.damaged += 1

        try:
            yield from iter_history(self._db, since_ms, until_ms, devices, damaged=damaged)
        except sqlite3.Error as exc:
            raise HistoryError(f"reading {self.path} failed: {exc}") from exc

    def readings(
        self,
        since_ms: int,
        until_ms: int,
        points: Sequence[str] | None = None,
        *,
        devices: Sequence[str] | None = None,
    ) -> Generator[Reading, None, None]:
        """(ref "device.point", ts ms, value, quality) of every stored reading of `points`
        (refs) or of `devices` (all their points), or of everything when both are None,
        whose poll is in since_ms <= ts < until_ms; in poll order. The ts is the reading's
        own (a source timestamp may precede its poll's)."""
        wanted: dict[str, set[str] | None] = dict.fromkeys(devices or ())  # None: all points
        for ref in points or ():
            device, point = _split(ref)
            if device not in wanted:
                wanted[device] = set()
            chosen = wanted[device]
            if chosen is not None:
                chosen.add(point)
        everything = points is None and devices is None
        streams = None if everything else list(wanted)
        for row in self.rows(since_ms, until_ms, streams):
            assert row.batch is not None
            only = None if everything else wanted.get(row.stream)
            prefix = row.stream + "."
            for r in row.batch.readings:
                if only is None or r.point in only:
                    yield prefix + r.point, r.ts, r.value, r.quality.value

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"reading {self.path} failed: {exc}") from exc


def _split(ref: str) -> tuple[str, str]:
    device, dot, point = ref.partition(".")
    if not dot or not device or not point:
        raise HistoryError(f"{ref!r} is not a point reference: write it as DEVICE.POINT")
    return device, point


def check_store_file(path: Path) -> None:
    """HistoryError, saying which, unless `path` is a readable SQLite file (the first
    check of everything that reads a store: history, the audit)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise HistoryError(_("no edge-agent store at {path}").format(path=path)) from None
    except IsADirectoryError:
        message = _("{path} is a directory, not an edge-agent store")
        raise HistoryError(message.format(path=path)) from None
    except PermissionError:
        message = _("no permission to read {path} (technicians need the group edge-agent)")
        raise HistoryError(message.format(path=path)) from None
    except OSError as exc:
        message = _("cannot read {path}: {error}")
        raise HistoryError(message.format(path=path, error=exc.strerror or exc)) from None
    if head != _SQLITE_MAGIC:
        message = _("{path} is not an edge-agent store (not an SQLite database)")
        raise HistoryError(message.format(path=path))
