"""The command audit log, the persisted holds and loop settings, in the outbox's SQLite file.

A second connection to the same database, used only on the store thread. Writes commit
with synchronous=NORMAL: the reply to every command is an outbox row committed with FULL
right after, and that sync covers these rows too (one WAL). Rows are never updated in
place except for their outcome, and are pruned by age and count.

`AuditReader` reads the log without the agent (`edge-agent audit`): read-only, no lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_loops.settings import LoopSettings
from edge_agent.commands.holds import Hold
from edge_agent.commands.messages import Source

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command_audit (
    id TEXT PRIMARY KEY,            -- the command id: a repeat is answered from here
    source TEXT NOT NULL,           -- safety | manual | platform | auto
    type TEXT NOT NULL,
    by TEXT,                        -- unix user, platform identity, loop id
    received_ts INTEGER NOT NULL,
    body TEXT NOT NULL,             -- the command as received
    stage TEXT NOT NULL,            -- received | accepted | rejected | done | failed
    reason TEXT,
    message TEXT,
    result TEXT,                    -- JSON: read-back value and the like
    finished_ts INTEGER
);
CREATE INDEX IF NOT EXISTS command_audit_ts ON command_audit (received_ts);
CREATE TABLE IF NOT EXISTS holds (
    point TEXT NOT NULL,
    source INTEGER NOT NULL,
    value TEXT NOT NULL,            -- JSON
    priority INTEGER,
    command_id TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    expires_ms INTEGER,             -- the hold's end (Hold.until_ms); NULL: until released
    by TEXT,
    PRIMARY KEY (point, source)
);
CREATE TABLE IF NOT EXISTS loop_settings (
    loop TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,      -- the loop's configuration the settings were made on
    enabled INTEGER NOT NULL,
    parameters TEXT NOT NULL,       -- JSON {name: value} set by command
    by TEXT,
    ts INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: str
    source: str
    type: str
    by: str | None
    received_ts: int
    stage: str
    reason: str | None
    message: str | None
    result: dict | None
    finished_ts: int | None

    @property
    def finished(self) -> bool:
        return self.stage in ("rejected", "done", "failed")  # else received or accepted

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


_ROW = "id, source, type, by, received_ts, stage, reason, message, result, finished_ts"


class Audit:
    """Call only on the store thread (`StoreWorker.call`)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def begin(
        self, command_id: str, source: Source, type_: str, by: str | None, body: str, ts: int
    ) -> AuditRow | None:
        """Record a new command; if the id is known already, return its row instead."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO command_audit (id, source, type, by, received_ts, body, stage)"
            " VALUES (?, ?, ?, ?, ?, ?, 'received')",
            (command_id, source.label, type_, by, ts, body),
        )
        return None if cur.rowcount == 1 else self.get(command_id)

    def finish(
        self,
        command_id: str,
        stage: str,
        reason: str | None,
        message: str | None,
        result: dict | None,
        ts: int,
    ) -> None:
        self._db.execute(
            "UPDATE command_audit SET stage = ?, reason = ?, message = ?, result = ?, "
            "finished_ts = ? WHERE id = ?",
            (stage, reason, message, _json(result), ts, command_id),
        )

    def get(self, command_id: str) -> AuditRow | None:
        row = self._db.execute(
            f"SELECT {_ROW} FROM command_audit WHERE id = ?", (command_id,)
        ).fetchone()
        return _audit_row(row) if row else None

    def recent(self, limit: int = 50, source: str | None = None) -> list[AuditRow]:
        where, args = ("WHERE source = ?", (source, limit)) if source else ("", (limit,))
        rows = self._db.execute(
            f"SELECT {_ROW} FROM command_audit {where} ORDER BY received_ts DESC, rowid DESC "
            "LIMIT ?",
            args,
        ).fetchall()
        return [_audit_row(row) for row in rows]

    def prune(self, before_ts: int, keep_rows: int) -> int:
        """Delete rows older than `before_ts`, and beyond the newest `keep_rows`."""
        cur = self._db.execute(
            "DELETE FROM command_audit WHERE received_ts < ? OR rowid <= "
            "(SELECT coalesce(max(rowid), 0) FROM command_audit) - ?",
            (before_ts, keep_rows),
        )
        return cur.rowcount

    # -- holds ---------------------------------------------------------------------------

    def holds(self) -> list[Hold]:
        return [
            Hold(point, Source(source), json.loads(value), priority, cid, since, expires, by)
            for point, source, value, priority, cid, since, expires, by in self._db.execute(
                "SELECT point, source, value, priority, command_id, since_ms, expires_ms, by "
                "FROM holds"
            )
        ]

    def save_hold(self, hold: Hold) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                hold.point,
                int(hold.source),
                json.dumps(hold.value),
                hold.priority,
                hold.command_id,
                hold.since_ms,
                hold.until_ms,
                hold.by,
            ),
        )

    def delete_hold(self, point: str, source: Source) -> None:
        self._db.execute("DELETE FROM holds WHERE point = ? AND source = ?", (point, int(source)))

    # -- loop settings -------------------------------------------------------------------

    def loop_settings(self) -> dict[str, LoopSettings]:
        return {
            loop: LoopSettings(fingerprint, bool(enabled), json.loads(parameters), by, ts)
            for loop, fingerprint, enabled, parameters, by, ts in self._db.execute(
                "SELECT loop, fingerprint, enabled, parameters, by, ts FROM loop_settings"
            )
        }

    def save_loop_settings(self, loop: str, settings: LoopSettings) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO loop_settings VALUES (?, ?, ?, ?, ?, ?)",
            (
                loop,
                settings.fingerprint,
                int(settings.enabled),
                json.dumps(settings.parameters),
                settings.by,
                settings.ts,
            ),
        )

    def delete_loop_settings(self, loop: str) -> None:
        self._db.execute("DELETE FROM loop_settings WHERE loop = ?", (loop,))


# -- reading it without the agent -------------------------------------------------------------

POINT_COMMANDS = ("write", "release")  # what changes a point: listed by default


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One command as the audit holds it: its row and the command as received."""

    row: AuditRow
    command: dict[str, Any]

    @property
    def point(self) -> str | None:
        point = self.command.get("point")
        return point if isinstance(point, str) else None

    def as_dict(self) -> dict[str, Any]:
        row, command, result = self.row, self.command, self.row.result or {}
        return {
            "id": row.id,
            "ts": row.received_ts,
            "type": row.type,
            "point": self.point,
            "value": command.get("value"),
            "priority": command.get("priority"),
            "duration": command.get("duration"),
            "until": result.get("until", command.get("until")),
            "dry_run": bool(command.get("dry_run")),
            "source": row.source,
            "by": row.by,
            "stage": row.stage,
            "reason": row.reason,
            "message": row.message,
            "readback": result.get("readback"),
            "quality": result.get("quality"),
            "effective": result.get("effective"),
            "result": row.result,
            "finished_ts": row.finished_ts,
            "command": command,
        }


class AuditReader:
    """The audit table of an outbox file, read-only (`mode=ro`; `immutable` when the agent
    is stopped: no -wal/-shm files made, see store.history). Raises sqlite3.Error."""

    def __init__(self, path: Path) -> None:
        from edge_agent.store.outbox import open_readonly

        self.path = path
        wal = path.with_name(path.name + "-wal")
        self._db = open_readonly(path, immutable=not wal.exists())
        try:
            self.tables = {
                name
                for (name,) in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        except sqlite3.Error:
            self._db.close()
            raise

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    @property
    def is_store(self) -> bool:
        return "outbox" in self.tables

    @property
    def has_audit(self) -> bool:
        return "command_audit" in self.tables

    def entries(
        self,
        since_ms: int | None = None,
        points: Sequence[str] = (),
        sources: Sequence[str] = (),
        types: Sequence[str] | None = POINT_COMMANDS,
        limit: int | None = 100,
    ) -> list[AuditEntry]:
        """The newest `limit` commands (None: all) received at `since_ms` or later, oldest
        first; `points` are DEVICE.POINT or glob patterns (chiller-1.*); `types` None: all."""
        if not self.has_audit:
            return []
        where: list[str] = ["1"]
        args: list[object] = []
        if since_ms is not None:
            where.append("received_ts >= ?")
            args.append(since_ms)
        if types is not None:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            args.extend(types)
        if sources:
            where.append(f"source IN ({', '.join('?' * len(sources))})")
            args.extend(sources)
        if points:
            where.append(
                "(" + " OR ".join("json_extract(body, '$.point') GLOB ?" for _ in points) + ")"
            )
            args.extend(points)
        rows = self._db.execute(
            f"SELECT {_ROW}, body FROM command_audit WHERE {' AND '.join(where)} "
            "ORDER BY received_ts DESC, rowid DESC LIMIT ?",
            (*args, -1 if limit is None else limit),
        ).fetchall()
        return [AuditEntry(_audit_row(r[:-1]), _body(r[-1])) for r in reversed(rows)]


def _body(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _audit_row(row: tuple) -> AuditRow:
    """An AuditRow from the columns of `_ROW`, in that order."""
    id_, source, type_, by, received_ts, stage, reason, message, result, finished = row
    return AuditRow(
        id_, source, type_, by, received_ts, stage, reason, message,
        json.loads(result) if result else None, finished,
    )  # fmt: skip
