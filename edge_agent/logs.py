"""structlog set-up: JSON lines for journald, readable console output on a terminal.

The libraries (pymodbus, paho-mqtt, bacpypes3) log through the standard `logging` module;
`configure` routes the root logger into the same processors, renderer, stream and ring
buffer (`_StdlibRoute`), so every line the agent writes has one format. Their loggers stay
at WARNING unless the agent logs at debug. What a library says about a device the agent
already knows is down is counted, not printed (`LIBRARY`, `LibraryRecords`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from edge_agent.i18n import _

RECENT_RECORDS = 2000
# The libraries whose chatter is held while a device is polled and counted while it is down.
LIBRARIES = ("pymodbus", "paho", "bacpypes3")
HELD_PER_POLL = 200  # library records kept back during one poll; more are only counted
SUMMARY_INTERVAL_S = 600.0  # while a device stays down: one count line at most this often


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure once per process. `json=None` picks JSON unless stderr is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=colours())
    )
    number = level_number(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            BUFFER.keep,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=STDERR),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(number, renderer)


class _Stderr:
    """sys.stderr as it is when a line is written (not when logging was configured), one
    object for structlog's lock: the agent's lines and the libraries' never cut into
    each other."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR = cast(TextIO, _Stderr())  # the two methods print() needs


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
        message = _("unknown level {level!r} (use debug, info, warning, error or critical)")
        raise ValueError(message.format(level=level))
    return number


# One per process, like structlog's own configuration: the agent's records.
BUFFER = RecentLogs()


def recent(n: int, level: str | None = None) -> list[dict[str, Any]]:
    """The agent's last `n` log records at `level` or above, oldest first."""
    return BUFFER.recent(n, level)


# -- the libraries' records -------------------------------------------------------------------


class _Scope:
    """Work on one device (a poll, or a command's write): the records logged in it are
    about that device. A poll's scope holds the libraries' records until its outcome."""

    __slots__ = ("device", "held", "polling")

    def __init__(self, device: str, polling: bool) -> None:
        self.device = device
        self.polling = polling
        self.held: list[logging.LogRecord] = []


_SCOPE: ContextVar[_Scope | None] = ContextVar("edge_agent_device_scope", default=None)


class Poll:
    """`with LIBRARY.polling(device) as poll: ... poll.failed = ...`: the libraries'
    records logged during the poll are held; when it ends, a failed poll's are counted
    (the device is down: its `device_down` event says so), a good poll's are written."""

    def __init__(self, records: LibraryRecords, device: str) -> None:
        self._records = records
        self._scope = _Scope(device, polling=True)
        self.failed: bool | None = None  # None: the poll did not finish (cancelled)

    def __enter__(self) -> Poll:
        self._token = _SCOPE.set(self._scope)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        _SCOPE.reset(self._token)
        self._records.poll_ended(self._scope, self.failed)


class LibraryRecords:
    """Which library records are written, and the count of those that are not.

    A library's record (`LIBRARIES`) is about a device when it is logged in that device's
    scope (a poll, a write: `polling`, `about`, also callbacks of connections opened in
    it), or when its text names the device's address (`watch`). Such a record is
    - held while the device's poll runs, then counted if the poll failed, written if not;
    - counted, not written, while the device is known down (its last poll failed);
    - written otherwise, with `device=`. So is every record at debug level (`verbose`).
    Counts are per device and library (`suppressed`); a line `library records suppressed`
    gives them when the device recovers, every SUMMARY_INTERVAL_S while it stays down,
    and when its poller stops."""

    def __init__(self) -> None:
        self.verbose = False
        self._lock = threading.RLock()
        self.output: Callable[[logging.LogRecord], None] | None = None
        self._down: set[str] = set()
        self._totals: dict[str, Counter[str]] = {}
        self._pending: dict[str, Counter[str]] = {}  # not yet in a summary line
        self._summarised: dict[str, float] = {}  # device -> monotonic time of the last one
        self._addresses: dict[str, re.Pattern[str]] = {}

    # -- what the poller and the router say ----------------------------------------------

    def polling(self, device: str) -> Poll:
        return Poll(self, device)

    @contextlib.contextmanager
    def about(self, device: str) -> Iterator[None]:
        """Records logged inside are about `device` (not held: a command's write)."""
        token = _SCOPE.set(_Scope(device, polling=False))
        try:
            yield
        finally:
            _SCOPE.reset(token)

    def watch(self, device: str, addresses: Iterable[str]) -> None:
        """Library records whose text names one of `addresses` are about `device`."""
        texts = [re.escape(a) for a in addresses if a]
        with self._lock:
            if texts:
                self._addresses[device] = re.compile(rf"(?<![\w.])(?:{'|'.join(texts)})(?!\w)")
            else:
                self._addresses.pop(device, None)

    def suppressed(self, device: str) -> Counter[str]:
        """Library -> records about `device` counted instead of written (live, cumulative)."""
        with self._lock:
            return self._totals.setdefault(device, Counter())

    def summarise(self, device: str) -> None:
        """Log the counts not yet logged (a poller stopping: shutdown or reload)."""
        with self._lock:
            pending = self._pending.pop(device, None)
            self._summarised[device] = time.monotonic()
            totals = Counter(self._totals.get(device, ()))
        for library, count in sorted((pending or {}).items()):
            _log.info("library records suppressed", device=device, library=library,
                      count=count, total=totals[library])  # fmt: skip

    # -- what the route asks -------------------------------------------------------------

    def admit(self, record: logging.LogRecord) -> bool:
        """Write `record` now? (Else it is held or counted.)"""
        scope = _SCOPE.get()
        library = _library(record.name)
        if scope is not None:
            record.__dict__["edge_device"] = scope.device
        if library is None or self.verbose:
            return True
        with self._lock:
            if scope is not None:
                if scope.polling:
                    if len(scope.held) < HELD_PER_POLL:
                        scope.held.append(record)
                    else:
                        self._count(scope.device, library)
                    return False
                if scope.device in self._down:
                    self._count(scope.device, library)
                    return False
                return True
            named = self._named(record)
            if not named:
                return True
            record.__dict__["edge_device"] = ",".join(named)
            if all(device in self._down for device in named):
                for device in named:
                    self._count(device, library)
                return False
            return True

    def poll_ended(self, scope: _Scope, failed: bool | None) -> None:
        with self._lock:
            held, scope.held, scope.polling = scope.held, [], False
            device = scope.device
            was_down = device in self._down
            if failed:
                self._down.add(device)
                for record in held:
                    self._count(device, _library(record.name) or record.name)
                held = []
            elif failed is not None:
                self._down.discard(device)
            due = device in self._pending and (
                (failed is False and was_down)
                or (
                    failed
                    and time.monotonic() - self._summarised.get(device, 0.0) >= SUMMARY_INTERVAL_S
                )
            )
            write = self.output
        if write is not None:
            for record in held:
                write(record)
        if due:
            self.summarise(device)

    def _count(self, device: str, library: str) -> None:
        self._totals.setdefault(device, Counter())[library] += 1
        pending = self._pending.get(device)
        if pending is None:  # the first since the last line: the interval starts
            pending = self._pending[device] = Counter()
            self._summarised[device] = time.monotonic()
        pending[library] += 1

    def _named(self, record: logging.LogRecord) -> list[str]:
        if not self._addresses:
            return []
        text = record.getMessage()
        return [device for device, pattern in self._addresses.items() if pattern.search(text)]

    def reset(self) -> None:
        """Forget every device (tests)."""
        with self._lock:
            self._down.clear()
            self._totals.clear()
            self._pending.clear()
            self._summarised.clear()
            self._addresses.clear()


def _library(name: str) -> str | None:
    top = name.partition(".")[0]
    return top if top in LIBRARIES else None


# One per process, like BUFFER.
LIBRARY = LibraryRecords()
_log = get("logs")


class _StdlibRoute(logging.Handler):
    """The root handler: a stdlib record through the agent's processors, renderer, ring
    buffer and stream, unless `LIBRARY` holds or counts it."""

    def __init__(self, renderer: Processor) -> None:
        super().__init__()
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    _stdlib_fields,
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    BUFFER.keep,
                    renderer,
                ],
            )
        )
        self._out = structlog.PrintLogger(STDERR)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if LIBRARY.admit(record):
                self.write(record)
        except Exception:
            self.handleError(record)

    def write(self, record: logging.LogRecord) -> None:
        self._out.msg(self.format(record))


def _stdlib_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The record's own time (a held record is written later), its logger, its device;
    pymodbus' dump of the last frames (any device's) left out: at debug level every frame
    is a record of its own."""
    record: logging.LogRecord = event_dict["_record"]
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat()
    event_dict["timestamp"] = stamp.replace("+00:00", "Z")
    event_dict["logger"] = record.name
    device = getattr(record, "edge_device", None)
    if device is not None:
        event_dict.setdefault("device", device)
    event = event_dict.get("event")
    if record.name.startswith("pymodbus") and isinstance(event, str):
        event_dict["event"] = event.split("\n>>>>>", 1)[0]
    return event_dict


_ROUTE: _StdlibRoute | None = None
_SAVED: tuple[int, dict[str, int]] | None = None


def _route_stdlib(number: int, renderer: Processor) -> None:
    """Root logger -> `_StdlibRoute`. Libraries log at WARNING and above, or everything
    when the agent logs at debug; Python's warnings (deprecations) become records too."""
    global _ROUTE, _SAVED
    root = logging.getLogger()
    if _SAVED is None:
        levels = {name: logging.getLogger(name).level for name in LIBRARIES}
        _SAVED = (root.level, levels)
    if _ROUTE is not None:
        root.removeHandler(_ROUTE)
    _ROUTE = _StdlibRoute(renderer)
    root.addHandler(_ROUTE)
    library_level = logging.DEBUG if number <= logging.DEBUG else max(logging.WARNING, number)
    root.setLevel(library_level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    LIBRARY.verbose = number <= logging.DEBUG
    LIBRARY.output = _ROUTE.write
    logging.captureWarnings(True)


def restore_stdlib() -> None:
    """Undo what `configure` did to stdlib logging (for tests that configure in-process)."""
    global _ROUTE, _SAVED
    root = logging.getLogger()
    if _ROUTE is not None:
        root.removeHandler(_ROUTE)
        _ROUTE = None
    if _SAVED is not None:
        root_level, levels = _SAVED
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        _SAVED = None
    LIBRARY.verbose = False
    LIBRARY.output = None
    logging.captureWarnings(False)
