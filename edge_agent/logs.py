"""structlog set-up: JSON lines for journald, readable console output on a terminal."""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections import deque
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

RECENT_RECORDS = 2000


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure once per process. `json=None` picks JSON unless stderr is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=colours())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            BUFFER.keep,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def colours() -> bool:
    """Colour in console logs: on a terminal only, never with NO_COLOR (no-color.org)."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


class RecentLogs:
    """The last `size` records this process logged, for `edge-agent logs` (local socket).

    Costs one dict copy and one deque append per emitted record (records filtered out by
    level never get here). The renderer may change the dict, hence the copy."""

    def __init__(self, size: int = RECENT_RECORDS) -> None:
        self._records: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = itertools.count(1)

    def keep(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        record = dict(event_dict)
        record["seq"] = next(self._seq)
        self._records.append(record)
        return event_dict

    def recent(self, n: int, level: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        """Up to the last `n` records at `level` or above, newer than sequence `after`,
        oldest first. ValueError for an unknown level."""
        least = level_number(level) if level else 0
        records = list(self._records)  # one C-level copy: safe against concurrent appends
        out: list[dict[str, Any]] = []
        for record in reversed(records):
            if len(out) >= n or record["seq"] <= after:
                break
            if least and level_number(record.get("level", "info")) < least:
                continue
            out.append(dict(record))
        out.reverse()
        return out

    @property
    def last_seq(self) -> int:
        records = self._records
        return records[-1]["seq"] if records else 0


def level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown level {level!r} (use debug, info, warning, error or critical)")
    return number


# One per process, like structlog's own configuration: the agent's records.
BUFFER = RecentLogs()


def recent(n: int, level: str | None = None) -> list[dict[str, Any]]:
    """The agent's last `n` log records at `level` or above, oldest first."""
    return BUFFER.recent(n, level)
