"""The "logs" request of the local socket: the agent's recent log records (for
`edge-agent logs`), from the ring buffer in edge_agent.logs.

Request: {"cmd": "logs", "n": 100, "level": "warning", "after": 0}; all but cmd optional.
`after` is the `seq` of the last record the client has seen (for --follow).
Answer: {"records": [...oldest first...], "last": seq of the newest record kept}.
"""

from __future__ import annotations

from typing import Any

from edge_agent import logs

MAX_N = logs.RECENT_RECORDS


async def logs_handler(request: dict[str, Any]) -> dict[str, Any]:
    n = request.get("n", 100)
    level = request.get("level")
    after = request.get("after", 0)
    # A bad request is the client's mistake: answer it, no stack trace in the agent's log
    # (the answer's "ok" overrides the server's).
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return _refuse(f"n must be a whole number >= 0, not {n!r}")
    if isinstance(after, bool) or not isinstance(after, int):
        return _refuse(f"after must be a record sequence number, not {after!r}")
    if level is not None and not isinstance(level, str):
        return _refuse(f"level must be a level name, not {level!r}")
    try:
        records = logs.BUFFER.recent(min(n, MAX_N), level, after)
    except ValueError as exc:  # unknown level
        return _refuse(str(exc))
    return {"records": records, "last": logs.BUFFER.last_seq}


def _refuse(message: str) -> dict[str, Any]:
    return {"ok": False, "error": "bad_request", "message": message}
