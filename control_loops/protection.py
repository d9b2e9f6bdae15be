"""Equipment protection: minimum on and off times, starts per hour, minimum flow.

`Protection` is the CommandRouter's protection hook: every write of a protected run
command, from any source, is checked first (`check`) and recorded once written
(`written`). Starts and stops that the agent did not command (a chiller started on its own
panel, a trip) are picked up from the running status (`observe`, also a task). The history
is kept in a small JSON file, so that a restart does not reset the minimum off timer.

What the agent believes about a machine is the newer of its own last command and the last
change of its status. A status that still disagrees with a command after `CONFIRM_S` (or
the minimum off time, if longer) wins: the command did not take.

`FlowInterlock` stops a running machine whose flow stays below its minimum, at SAFETY
priority, and lets go once a restart would be allowed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from control_loops.config import EquipmentProtection, finite
from edge_agent import logs
from edge_agent.cache import PointCache
from edge_agent.commands import messages as m
from edge_agent.commands.context import CommandPath, Context
from edge_agent.commands.messages import Source
from edge_agent.events import EventSink
from edge_agent.points import Quality, Value, wall_ms

log = logs.get("protection")

HOUR_MS = 3_600_000
CONFIRM_S = 600.0  # how long a status may lag a command before the status is believed
OBSERVE_S = 1.0


@dataclass
class _History:
    """What is known about one machine (times in wall-clock ms)."""

    starts: list[int] = field(default_factory=list)  # within the last hour
    last_start: int | None = None
    last_stop: int | None = None
    running: bool | None = None  # the belief; None: nothing known yet
    since: int | None = None  # when the belief last changed or was confirmed
    status: bool | None = None  # the last good status seen
    command: bool | None = None  # the last run command written


class Protection:
    """Implements the router's `Protection` protocol for the configured machines."""

    def __init__(
        self,
        entries: Iterable[EquipmentProtection],
        cache: PointCache,
        state_path: Path | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.entries = {e.run_command: e for e in entries}
        self.cache = cache
        self.state_path = state_path
        self.events = events
        self.history = {e.id: _History() for e in self.entries.values()}
        self.refused = 0
        # Until a machine's status is first seen, a machine with no history at all is
        # treated as having just started and stopped when the agent came up.
        self._born = wall_ms()
        self._load()

    # -- the router's protocol ------------------------------------------------------------

    def guards(self, ref: str) -> bool:
        return ref in self.entries

    def check(
        self, ref: str, value: Value, now_ms: int, source: Source | None = None
    ) -> str | None:
        """Why writing `value` to `ref` now would harm the machine, or None.

        Only changes count: starting a running machine or stopping a stopped one is
        allowed. But a run command going from off to on is checked as a start even when
        the status says running: a stop the status does not show yet would make it one.
        A stop is always allowed at SAFETY priority (when the router passes the source)
        and while the flow is below its minimum: no flow is the reason to stop.
        """
        entry = self.entries.get(ref)
        if entry is None:
            return None
        h = self._known(self._observe(entry, now_ms))
        start = bool(value)
        problem = None
        if start and (not h.running or h.command is not True):
            problem = self._start_problem(entry, h, now_ms)
        elif not start and h.running is not False and source is not Source.SAFETY:
            # Running, or not known to be stopped: a stop must respect the minimum on time.
            problem = self._stop_problem(entry, h, now_ms)
        if problem is not None:
            self.refused += 1
        return problem

    def written(self, ref: str, value: Value, now_ms: int) -> None:
        entry = self.entries.get(ref)
        if entry is None:
            return
        h = self._observe(entry, now_ms)
        start = bool(value)
        if start and (not h.running or h.command is not True):
            self._started(h, now_ms)
        elif not start and (h.running is not False or h.command is not False):
            h.last_stop = now_ms
        h.running, h.since, h.command = start, now_ms, start
        self._save()

    # -- status --------------------------------------------------------------------------

    def observe(self, now_ms: int | None = None) -> None:
        """Pick up status changes of every machine (the agent did not command them all)."""
        now = wall_ms() if now_ms is None else now_ms
        for entry in self.entries.values():
            self._observe(entry, now)

    async def run(self) -> None:
        """Task: observe the status points once a second."""
        while True:
            self.observe()
            await asyncio.sleep(OBSERVE_S)

    def running(self, ref: str, now_ms: int | None = None) -> bool | None:
        """What the agent believes about the machine whose run command is `ref`."""
        entry = self.entries[ref]
        return self._observe(entry, wall_ms() if now_ms is None else now_ms).running

    def status(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        now = wall_ms() if now_ms is None else now_ms
        out = []
        for entry in self.entries.values():
            h = self._observe(entry, now)
            out.append(
                {
                    "id": entry.id,
                    "running": h.running,
                    "starts_last_hour": len(_recent(h.starts, now)),
                    "last_start": h.last_start,
                    "last_stop": h.last_stop,
                    "start_blocked": (
                        None if h.running else self._start_problem(entry, self._known(h), now)
                    ),
                }
            )
        return out

    def _status(self, entry: EquipmentProtection) -> bool | None:
        reading = self.cache.get(entry.running)
        if reading is None or reading.quality not in (Quality.GOOD, Quality.OVERRIDDEN):
            return None
        value = finite(reading.value)
        return None if value is None else value != 0

    def _observe(self, entry: EquipmentProtection, now: int) -> _History:
        h = self.history[entry.id]
        changed = self._clock_went_back(h, now)
        status = self._status(entry)
        if status is not None:
            edge = h.status is not None and status != h.status
            h.status = status
            if h.running is None:
                # First sight. With no record of when it started (or stopped), it is taken
                # to have done so just now: the minimum on (off) time runs from here.
                if status and h.last_start is None:
                    h.last_start = now
                elif not status and h.last_stop is None:
                    h.last_stop = now
                h.running, h.since = status, now
                changed = True
            elif status != h.running and (edge or now - (h.since or 0) > self._confirm_ms(entry)):
                # Started or stopped without the agent, or a command that did not take.
                if status:
                    self._started(h, now)
                else:
                    h.last_stop = now
                h.running, h.since = status, now
                changed = True
                log.info("status change seen", machine=entry.id, running=status)
            elif edge:  # the status confirms the command: time it from the actual change
                if status:
                    h.last_start = now
                else:
                    h.last_stop = now
                h.since = now
                changed = True
        if changed:
            self._save()
        return h

    def _known(self, h: _History) -> _History:
        """`h`, or for a machine never seen and with no record: one that has just started
        and stopped at the agent's start (both minimum times hold from then)."""
        if h.running is None and h.last_start is None and h.last_stop is None:
            return dataclasses.replace(h, last_start=self._born, last_stop=self._born)
        return h

    def _confirm_ms(self, entry: EquipmentProtection) -> float:
        return max(CONFIRM_S, entry.min_off) * 1000

    @staticmethod
    def _started(h: _History, now: int) -> None:
        h.starts = [*_recent(h.starts, now), now]
        h.last_start = now

    @staticmethod
    def _clock_went_back(h: _History, now: int) -> bool:
        # After a wall-clock step backwards, a time "in the future" would lock the machine
        # out for as long as the step; counting it from now bounds that by the limit itself.
        changed = False
        for name in ("last_start", "last_stop", "since"):
            if (getattr(h, name) or 0) > now:
                setattr(h, name, now)
                changed = True
        if any(t > now for t in h.starts):
            h.starts = [min(t, now) for t in h.starts]
            changed = True
        return changed

    # -- the rules -----------------------------------------------------------------------

    def _start_problem(self, entry: EquipmentProtection, h: _History, now: int) -> str | None:
        if entry.min_off and h.last_stop is not None:
            off = (now - h.last_stop) / 1000
            if off < entry.min_off:
                return (
                    f"{entry.id}: stopped {off:.0f} s ago, minimum off time is "
                    f"{entry.min_off:g} s (start allowed in {entry.min_off - off:.0f} s)"
                )
        if entry.max_starts_per_hour is not None:
            recent = _recent(h.starts, now)
            if len(recent) >= entry.max_starts_per_hour:
                wait = (recent[-entry.max_starts_per_hour] + HOUR_MS - now) / 1000
                return (
                    f"{entry.id}: {len(recent)} starts in the last hour, at most "
                    f"{entry.max_starts_per_hour} (next start allowed in {wait:.0f} s)"
                )
        flow = entry.min_flow
        if flow is not None:
            value = self._flow(entry)
            if value is None:
                return f"{entry.id}: flow {flow.point} unknown, a start needs {flow.value:g}"
            if value < flow.value:
                return f"{entry.id}: flow {value:g} is below the minimum {flow.value:g} to start"
        return None

    def _stop_problem(self, entry: EquipmentProtection, h: _History, now: int) -> str | None:
        flow = self._flow(entry)
        if entry.min_flow is not None and flow is not None and flow < entry.min_flow.value:
            return None
        if entry.min_on and h.last_start is not None:
            on = (now - h.last_start) / 1000
            if on < entry.min_on:
                return (
                    f"{entry.id}: started {on:.0f} s ago, minimum on time is "
                    f"{entry.min_on:g} s (stop allowed in {entry.min_on - on:.0f} s)"
                )
        return None

    def _flow(self, entry: EquipmentProtection) -> float | None:
        if entry.min_flow is None:
            return None
        reading = self.cache.get(entry.min_flow.point)
        if reading is None or reading.quality not in (Quality.GOOD, Quality.OVERRIDDEN):
            return None
        return finite(reading.value)

    # -- state file ----------------------------------------------------------------------

    def _load(self) -> None:
        path = self.state_path
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            for key, saved in data["machines"].items():
                if key in self.history:
                    self.history[key] = _History(**saved)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unknown history: act as if every machine had just started and stopped, so
            # that the minimum on and off times hold from now rather than not at all.
            now = wall_ms()
            for h in self.history.values():
                h.last_start = h.last_stop = now
            log.warning("protection state unreadable; timers restart now", path=str(path),
                        error=str(exc))  # fmt: skip
            if self.events is not None:
                self.events.emit("protection_state_lost", level="warning", error=str(exc))

    def _save(self) -> None:
        path = self.state_path
        if path is None:
            return
        data = {"v": 1, "machines": {k: asdict(h) for k, h in self.history.items()}}
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("protection state not saved", path=str(path), error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()


def _recent(starts: list[int], now: int) -> list[int]:
    return [t for t in starts if now - t < HOUR_MS]


# ---- flow interlock ---------------------------------------------------------------------


class FlowInterlock:
    """Stops a running machine whose flow stays below `min_flow.value` for `min_flow.delay`.

    The stop is a SAFETY write (it beats every other source and is never rate limited).
    The hold is let go once the flow has been back for the delay and a start would be
    allowed (minimum off time, starts per hour): the source below it then takes over.
    An unknown flow (stale, bad) never trips: a lost meter is an alarm, not a reason to
    stop a chiller.
    """

    def __init__(
        self,
        protection: Protection,
        commands: CommandPath,
        events: EventSink | None,
        period: float = 1.0,
    ) -> None:
        self.protection = protection
        self.commands = commands
        self.events = events
        self.period = period
        self.guarded = [e for e in protection.entries.values() if e.min_flow is not None]
        self._low_since: dict[str, float] = {}
        self._ok_since: dict[str, float] = {}
        self.tripped: set[str] = set()
        self._run = secrets.token_hex(3)
        self._seq = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.tick(loop.time())
            await asyncio.sleep(self.period)

    async def tick(self, now_s: float) -> None:
        """One check of every guarded machine; `now_s` is monotonic (the delays)."""
        self.protection.observe()
        for entry in self.guarded:
            flow = self.protection._flow(entry)
            assert entry.min_flow is not None
            low = flow is not None and flow < entry.min_flow.value
            ok = flow is not None and not low
            if low:
                self._ok_since.pop(entry.id, None)
                since = self._low_since.setdefault(entry.id, now_s)
            else:
                self._low_since.pop(entry.id, None)
                since = self._ok_since.setdefault(entry.id, now_s) if ok else now_s
            elapsed = now_s - since
            if entry.id in self.tripped:
                if ok and elapsed >= entry.min_flow.delay:
                    await self._reset(entry)
            elif (
                low
                and elapsed >= entry.min_flow.delay
                and self.protection.running(entry.run_command)
            ):
                await self._trip(entry, flow)

    async def _trip(self, entry: EquipmentProtection, flow: float | None) -> None:
        assert entry.min_flow is not None
        write = m.Write(v=1, id=self._id(entry), type="write", point=entry.run_command, value=False)
        final = await self.commands.execute(write, Context(Source.SAFETY, "flow-interlock"))
        if final["stage"] != "done":
            log.error("flow interlock could not stop", machine=entry.id,
                      reason=final.get("reason"), error=final.get("message"))  # fmt: skip
        self.tripped.add(entry.id)
        if self.events is not None:
            self.events.emit("flow_interlock_trip", level="error", machine=entry.id,
                             flow=flow, minimum=entry.min_flow.value, stage=final["stage"],
                             reason=final.get("reason"))  # fmt: skip

    async def _reset(self, entry: EquipmentProtection) -> None:
        # Let go only once a start would be allowed: the source beneath may want to run it
        # (the router would then keep the hold, pending, until then anyway).
        if self.protection.check(entry.run_command, True, wall_ms()) is not None:
            return
        release = m.Release(v=1, id=self._id(entry), type="release", point=entry.run_command)
        final = await self.commands.execute(release, Context(Source.SAFETY, "flow-interlock"))
        if final["stage"] == "done" or final.get("reason") == m.Reason.NOT_HELD:
            self.tripped.discard(entry.id)
            if self.events is not None:
                self.events.emit("flow_interlock_reset", machine=entry.id)

    def _id(self, entry: EquipmentProtection) -> str:
        self._seq += 1
        return f"interlock-{entry.id}-{self._run}-{self._seq}"
