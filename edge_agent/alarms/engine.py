"""The alarm engine: evaluates the rules on every poll, keeps the alarm list, publishes
every transition through the outbox and keeps the list on disk across restarts.

Lifecycle (ISA-18.2 style). An alarm occurrence is raised `active` (unacknowledged). An
acknowledgement makes it `acknowledged`; the condition going away makes it `cleared`. It
leaves the list only once it is both cleared and acknowledged, so a condition that came and
went while nobody was looking stays listed (`cleared`, unacknowledged) until acknowledged.
A rule has at most one occurrence in the list: raising again while the previous occurrence
is still listed (cleared, unacknowledged) closes that one as `superseded` and starts a new
occurrence with a new id.

Time. Every timer uses the `now_ms` the caller passes (wall-clock ms, as for readings), so
tests drive time directly and the agent passes `wall_ms()`.

Order of effects on a transition: the list changes in memory, the record is handed to
`publish` (the outbox), then the list is written to disk. A crash in between can at worst
raise an alarm twice after the restart; it cannot lose one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import TypeAdapter, ValidationError

from edge_agent import envelope, logs
from edge_agent.alarms.rules import (
    DEFAULT_MESSAGES,
    SEVERITY_RANK,
    AlarmRule,
    BadQualityRule,
    CommLossRule,
    LimitRule,
    RateRule,
    StateRule,
    StuckRule,
    When,
)
from edge_agent.i18n import _
from edge_agent.points import Quality, Reading, Value, wall_ms
from edge_agent.store.outbox import Record, TrafficClass

log = logs.get("alarms")

STATE_VERSION = 1
ENDED_KEPT = 200  # ended occurrences kept for `edge-agent alarms --history`, newest
AlarmState = Literal["active", "acknowledged", "cleared"]
ACTIVE: Final = "active"
ACKNOWLEDGED: Final = "acknowledged"
CLEARED: Final = "cleared"


class AlarmError(Exception):
    """A request about an alarm that cannot be done; `reason` is machine-readable."""

    reason = "alarm_error"


class UnknownAlarm(AlarmError):
    reason = "unknown_alarm"


class AlreadyAcknowledged(AlarmError):
    reason = "already_acknowledged"


@dataclass(slots=True)
class Alarm:
    """One occurrence of an alarm, as listed, published and saved."""

    id: str
    rule: str
    point: str
    severity: str
    state: AlarmState
    raised_ts: int
    value: bool | int | float | str | None
    limit: bool | int | float | str | None
    message: str
    acked: bool = False
    ack_ts: int | None = None
    ack_by: str | None = None
    ack_note: str | None = None
    cleared_ts: int | None = None
    clear_value: bool | int | float | str | None = None


_STORED = TypeAdapter(list[Alarm])
_ENDED = TypeAdapter(list[dict[str, Any]])


def _number(value: Value) -> float | None:
    """A usable number, or None (booleans, text, NaN and infinities are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _equal(value: Value, expected: bool | int | str) -> bool:
    # A BACnet multistate may arrive as its state's name, a Modbus one as a number.
    return value == expected or (isinstance(expected, str) and str(value) == expected)


def _shown(value: Value) -> Value:
    return round(value, 3) if isinstance(value, float) else value


# --- per-rule evaluation ---------------------------------------------------------------------


class _Watch:
    """The live state of one rule: its condition and a pending raise or clear.

    `raw` is the rule's own condition from the latest evidence (None: not known yet, which
    neither raises nor clears). A `when` that does not hold makes the condition false.
    """

    timed = False  # re-evaluated by tick() even without readings

    def __init__(self, rule: AlarmRule, start_ms: int) -> None:
        self.rule = rule
        self.on_ms = round(getattr(rule, "on_delay", 0.0) * 1000)
        self.off_ms = round(getattr(rule, "off_delay", 0.0) * 1000)
        self.raw: bool | None = None
        self.when_ok: bool | None = True if rule.when is None else None  # None: not read yet
        self.since: int | None = None  # when the pending raise (or clear) began
        self.in_alarm = False
        self.value: Value = None  # the value that goes with the condition
        self.current: Value = None  # the latest value of the point, for the list

    @property
    def want(self) -> bool | None:
        if self.when_ok is None:
            return None
        return self.raw if self.when_ok else False

    def feed(self, reading: Reading, now: int) -> None:
        if reading.quality is Quality.GOOD:
            self.current = reading.value
            number = self.usable(reading.value)
            if number is not None:
                self.judge(number, now)
        else:
            self.bad(reading, now)

    def usable(self, value: Value) -> Any:
        return _number(value)

    def judge(self, value: Any, now: int) -> None:
        raise NotImplementedError

    def bad(self, reading: Reading, now: int) -> None:
        """A reading without a trustworthy value leaves the condition as it was."""

    def tick(self, now: int) -> None:
        """Time-based rules re-evaluate here."""


class _Limit(_Watch):
    rule: LimitRule

    def judge(self, value: float, now: int) -> None:
        rule = self.rule
        if rule.type == "high":
            self.raw = value >= rule.limit - rule.deadband if self.in_alarm else value > rule.limit
        else:
            self.raw = value <= rule.limit + rule.deadband if self.in_alarm else value < rule.limit
        self.value = value


class _Rate(_Watch):
    rule: RateRule

    def __init__(self, rule: RateRule, start_ms: int) -> None:
        super().__init__(rule, start_ms)
        self.window_ms = round(rule.window * 1000)
        self.samples: deque[tuple[int, float]] = deque()

    def judge(self, value: float, now: int) -> None:
        samples = self.samples
        samples.append((now, value))
        horizon = now - self.window_ms
        # Keep the newest sample at least a window old as the reference.
        while len(samples) > 1 and samples[1][0] <= horizon:
            samples.popleft()
        then, before = samples[0]
        if then > horizon or now == then:
            return  # less than a window of history: not known yet
        rate = (value - before) * 60_000.0 / (now - then)
        self.value = rate
        direction = self.rule.direction
        signed = rate if direction == "rising" else -rate if direction == "falling" else abs(rate)
        self.raw = signed > self.rule.limit

    def bad(self, reading: Reading, now: int) -> None:
        self.samples.clear()  # a gap: measure afresh over a whole window


class _Stuck(_Watch):
    rule: StuckRule

    def __init__(self, rule: StuckRule, start_ms: int) -> None:
        super().__init__(rule, start_ms)
        self.duration_ms = round(rule.duration * 1000)
        self.anchor: float | None = None
        self.anchor_ts = 0

    def judge(self, value: float, now: int) -> None:
        if self.anchor is None or abs(value - self.anchor) > self.rule.tolerance:
            self.anchor, self.anchor_ts = value, now
        self.raw = now - self.anchor_ts >= self.duration_ms
        self.value = value

    def bad(self, reading: Reading, now: int) -> None:
        self.anchor = None  # unknown meanwhile: the stillness is timed afresh


class _State(_Watch):
    rule: StateRule

    def usable(self, value: Value) -> Any:
        return value  # any value can be compared

    def judge(self, value: Value, now: int) -> None:
        self.raw = _equal(value, self.rule.alarm_value)
        self.value = value


class _BadQuality(_Watch):
    rule: BadQualityRule
    timed = True

    def __init__(self, rule: BadQualityRule, start_ms: int) -> None:
        super().__init__(rule, start_ms)
        self.duration_ms = round(rule.duration * 1000)
        self.bad_since: int | None = None

    def feed(self, reading: Reading, now: int) -> None:
        if reading.quality in (Quality.BAD, Quality.STALE):
            if self.bad_since is None:
                self.bad_since = now
            self.value = reading.reason or str(reading.quality)
            self.tick(now)
        else:
            self.current = reading.value
            self.bad_since, self.raw = None, False

    def tick(self, now: int) -> None:
        if self.bad_since is not None:
            self.raw = now - self.bad_since >= self.duration_ms


class _CommLoss(_Watch):
    rule: CommLossRule
    timed = True

    def __init__(self, rule: CommLossRule, start_ms: int) -> None:
        super().__init__(rule, start_ms)
        self.duration_ms = round(rule.duration * 1000)
        self.last_good = start_ms  # silence counts from the start of the engine
        self.value = "no data"

    def heard(self, now: int) -> None:
        self.last_good, self.raw = now, False

    def lost(self, reason: str | None, now: int) -> None:
        if reason:
            self.value = reason
        self.tick(now)

    def tick(self, now: int) -> None:
        # Silence only ever proves a loss; being heard (above) proves the link is back. So an
        # alarm restored at start-up stays until the device is actually heard again.
        if now - self.last_good >= self.duration_ms:
            self.raw = True


_WATCHES: dict[str, type[_Watch]] = {
    "high": _Limit,
    "low": _Limit,
    "rate": _Rate,
    "stuck": _Stuck,
    "state": _State,
    "bad_quality": _BadQuality,
    "comm_loss": _CommLoss,
}


@dataclass(slots=True)
class _DeviceIndex:
    """Everything one device's readings can touch; points not listed cost nothing."""

    points: dict[str, list[_Watch]]  # point -> watches of that point
    guards: dict[str, list[_Watch]]  # point -> watches whose `when` reads that point
    comm: list[_CommLoss]  # comm_loss rules of the whole device


# --- the engine ------------------------------------------------------------------------------


class AlarmEngine:
    def __init__(
        self,
        rules: Sequence[AlarmRule],
        publish: Callable[[Record], None],
        state_path: Path,
        identity: dict[str, str],
        *,
        now_ms: int | None = None,
    ) -> None:
        now = wall_ms() if now_ms is None else now_ms
        self._publish = publish
        self._path = Path(state_path)
        self._identity = dict(identity)
        self._watches: dict[str, _Watch] = {}
        self._devices: dict[str, _DeviceIndex] = {}
        self._timed: list[_Watch] = []
        self._pending: set[_Watch] = set()
        self._alarms: dict[str, Alarm] = {}  # rule id -> its listed occurrence
        # Occurrences that left the list, oldest first: as listed, with why and when.
        self._ended: deque[dict[str, Any]] = deque(maxlen=ENDED_KEPT)
        disabled = set()
        for rule in rules:
            if rule.id in self._watches or rule.id in disabled:
                raise ValueError(f"duplicate alarm rule id {rule.id!r}")
            if not rule.enabled:
                disabled.add(rule.id)
                continue
            self._add(rule, now)
        self._restore(now, disabled)

    def _add(self, rule: AlarmRule, now: int) -> None:
        watch = _WATCHES[rule.type](rule, now)
        self._watches[rule.id] = watch
        if watch.timed:
            self._timed.append(watch)
        device, _, point = rule.point.partition(".")
        index = self._index(device)
        if isinstance(watch, _CommLoss) and not point:
            index.comm.append(watch)
        else:
            index.points.setdefault(point, []).append(watch)
        if rule.when is not None:
            guard_device, _, guard_point = rule.when.point.partition(".")
            self._index(guard_device).guards.setdefault(guard_point, []).append(watch)

    def _index(self, device: str) -> _DeviceIndex:
        index = self._devices.get(device)
        if index is None:
            index = self._devices[device] = _DeviceIndex({}, {}, [])
        return index

    # --- inputs ------------------------------------------------------------------------------

    def observe(self, device: str, readings: Sequence[Reading], now_ms: int) -> None:
        """One poll result of `device` (called for every poll)."""
        index = self._devices.get(device)
        if index is None:
            return
        points, guards = index.points, index.guards
        for reading in readings:
            watches = points.get(reading.point)
            if watches is not None:
                for watch in watches:
                    if isinstance(watch, _CommLoss):
                        if reading.quality is not Quality.BAD:
                            watch.heard(now_ms)
                        else:
                            watch.lost(reading.reason, now_ms)
                    else:
                        watch.feed(reading, now_ms)
                    self._drive(watch, now_ms)
            guarded = guards.get(reading.point) if guards else None
            if guarded is not None:
                for watch in guarded:
                    self._guard(watch, reading)
                    self._drive(watch, now_ms)
        if index.comm:
            good = any(r.quality is not Quality.BAD for r in readings)
            reason = None if good else next((r.reason for r in readings if r.reason), None)
            for watch in index.comm:
                if good:
                    watch.heard(now_ms)
                else:
                    watch.lost(reason, now_ms)
                self._drive(watch, now_ms)

    def device_down(self, device: str, reason: str, now_ms: int) -> None:
        """The poller gave the device up; comm_loss rules raise once their duration is up."""
        for watch in self._comm_watches(device):
            watch.lost(reason, now_ms)
            self._drive(watch, now_ms)

    def device_recovered(self, device: str, now_ms: int) -> None:
        for watch in self._comm_watches(device):
            watch.heard(now_ms)
            self._drive(watch, now_ms)

    def tick(self, now_ms: int) -> None:
        """Advance timers (about once a second): delays, silence, lasting bad quality."""
        for watch in self._timed:
            watch.tick(now_ms)
            self._drive(watch, now_ms)
        for watch in list(self._pending):
            self._drive(watch, now_ms)

    def _comm_watches(self, device: str) -> Iterable[_CommLoss]:
        index = self._devices.get(device)
        if index is None:
            return ()
        point_level = [w for ws in index.points.values() for w in ws if isinstance(w, _CommLoss)]
        return [*index.comm, *point_level]

    @staticmethod
    def _guard(watch: _Watch, reading: Reading) -> None:
        when = watch.rule.when
        assert isinstance(when, When)
        if reading.quality is Quality.GOOD:
            watch.when_ok = _equal(reading.value, when.equals)

    # --- transitions ---------------------------------------------------------------------------

    def _drive(self, watch: _Watch, now: int) -> None:
        want = watch.want
        if want is None or want == watch.in_alarm:
            if watch.since is not None:
                watch.since = None
                self._pending.discard(watch)
            return
        if watch.since is None:
            watch.since = now
            self._pending.add(watch)
        if now - watch.since >= (watch.on_ms if want else watch.off_ms):
            watch.since = None
            self._pending.discard(watch)
            if want:
                self._raise(watch, now)
            else:
                self._clear(watch, now)

    def _raise(self, watch: _Watch, now: int) -> None:
        rule = watch.rule
        occurrence = f"{rule.id}-{now}"
        previous = self._alarms.pop(rule.id, None)
        if previous is not None:  # cleared, never acknowledged: the new one takes its place
            if previous.id == occurrence:
                occurrence += "-2"
            self._emit(previous, "superseded", now, closed=True, superseded_by=occurrence)
            self._end(previous, "superseded", now)
        alarm = Alarm(
            id=occurrence,
            rule=rule.id,
            point=rule.point,
            severity=rule.severity,
            state=ACTIVE,
            raised_ts=now,
            value=_shown(watch.value),
            limit=rule.limit_value,
            message=self._message(rule, watch.value),
        )
        self._alarms[rule.id] = alarm
        watch.in_alarm = True
        log.warning(
            "alarm raised",
            rule=rule.id,
            point=rule.point,
            severity=rule.severity,
            value=alarm.value,
        )
        self._emit(alarm, "raised", now)
        self._save()

    def _clear(self, watch: _Watch, now: int) -> None:
        watch.in_alarm = False
        alarm = self._alarms.get(watch.rule.id)
        if alarm is None:  # cannot happen: in_alarm always goes with a listed occurrence
            return
        alarm.state, alarm.cleared_ts, alarm.clear_value = CLEARED, now, _shown(watch.value)
        closed = alarm.acked
        if closed:
            del self._alarms[alarm.rule]
            self._end(alarm, "cleared", now)
        log.info("alarm cleared", rule=alarm.rule, id=alarm.id, acknowledged=alarm.acked)
        self._emit(alarm, "cleared", now, closed=closed)
        self._save()

    def ack(
        self, alarm_id_or_rule_id: str, by: str, note: str | None = None, now_ms: int | None = None
    ) -> dict[str, Any]:
        """Acknowledge a listed alarm, by occurrence id or rule id; returns it as listed.

        Raises UnknownAlarm if nothing in the list has that id, AlreadyAcknowledged if it
        was acknowledged before."""
        now = wall_ms() if now_ms is None else now_ms
        alarm = self.ackable(alarm_id_or_rule_id)
        alarm.acked, alarm.ack_ts, alarm.ack_by, alarm.ack_note = True, now, by, note
        closed = alarm.state == CLEARED
        if closed:
            del self._alarms[alarm.rule]
            self._end(alarm, "acknowledged", now)
        else:
            alarm.state = ACKNOWLEDGED
        log.info("alarm acknowledged", rule=alarm.rule, id=alarm.id, by=by)
        self._emit(alarm, "acknowledged", now, closed=closed)
        self._save()
        return self._view(alarm)

    def ackable(self, alarm_id_or_rule_id: str) -> Alarm:
        """The listed alarm an `ack` would acknowledge; UnknownAlarm or AlreadyAcknowledged
        when there is none (a command checks this before it is accepted)."""
        alarm = self._find(alarm_id_or_rule_id)
        if alarm is None:
            raise UnknownAlarm(f"no alarm {alarm_id_or_rule_id!r} in the list")
        if alarm.acked:
            raise AlreadyAcknowledged(
                f"alarm {alarm.id} was already acknowledged by {alarm.ack_by}"
            )
        return alarm

    def _end(self, alarm: Alarm, why: str, now: int) -> None:
        """`alarm` left the list (`why`: the transition that closed it, or the reason)."""
        self._ended.append({**asdict(alarm), "closed": why, "closed_ts": now})

    def _find(self, target: str) -> Alarm | None:
        alarm = self._alarms.get(target)
        if alarm is not None:
            return alarm
        return next((a for a in self._alarms.values() if a.id == target), None)

    def _message(self, rule: AlarmRule, value: Value) -> str:
        template = rule.message or _(DEFAULT_MESSAGES[rule.type])
        fields = {
            "value": _shown(value),
            "limit": rule.limit_value,
            "point": rule.point,
            "rule": rule.id,
            "severity": rule.severity,
        }
        try:
            return template.format(**fields)
        except (ValueError, TypeError, KeyError, IndexError):  # e.g. {value:.1f} of a text
            return _("{template} (value {value})").format(template=template, value=fields["value"])

    def _emit(self, alarm: Alarm, event: str, now: int, closed: bool = False, **extra: Any) -> None:
        body = envelope.message(
            "alarm", self._identity, now, event=event, **asdict(alarm), closed=closed, **extra
        )
        payload = envelope.encode(body)
        try:
            self._publish(Record(TrafficClass.ALARM, "alarm", now, payload=payload))
        except Exception as exc:  # the alarm still stands locally, and on disk
            log.error(
                "alarm not handed to the outbox",
                rule=alarm.rule,
                transition=event,
                error=f"{type(exc).__name__}: {exc}",
            )

    # --- views ---------------------------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        """The alarm list: unacknowledged first, then by severity, newest first."""
        alarms = sorted(
            self._alarms.values(),
            key=lambda a: (a.acked, SEVERITY_RANK.get(a.severity, 9), -a.raised_ts),
        )
        return [self._view(a) for a in alarms]

    def history(self) -> list[dict[str, Any]]:
        """The occurrences that left the list (cleared and acknowledged, superseded, or
        their rule removed), newest first: each as listed, with `closed` (why) and
        `closed_ts`; the last `ENDED_KEPT` of them, across restarts."""
        return [dict(ended) for ended in reversed(self._ended)]

    def summary(self) -> dict[str, int]:
        """Counts for a status line."""
        alarms = self._alarms.values()
        counts = {
            "listed": len(self._alarms),
            "unacknowledged": sum(not a.acked for a in alarms),
            "active": sum(a.state != CLEARED for a in alarms),
        }
        for severity in SEVERITY_RANK:
            counts[severity] = sum(a.severity == severity and a.state != CLEARED for a in alarms)
        return counts

    def _view(self, alarm: Alarm) -> dict[str, Any]:
        view = asdict(alarm)
        watch = self._watches.get(alarm.rule)
        view["current"] = _shown(watch.current) if watch is not None else None
        return view

    # --- persistence ---------------------------------------------------------------------------

    def _restore(self, now: int, disabled: set[str]) -> None:
        changed = False
        for alarm in self._load(now):
            watch = self._watches.get(alarm.rule)
            if watch is None:
                reason = "rule disabled" if alarm.rule in disabled else "rule removed"
                if alarm.state != CLEARED:
                    alarm.state, alarm.cleared_ts = CLEARED, now
                log.info("alarm dropped", rule=alarm.rule, id=alarm.id, reason=reason)
                self._emit(alarm, "cleared", now, closed=True, reason=reason)
                self._end(alarm, reason, now)
                changed = True
                continue
            self._alarms[alarm.rule] = alarm
            # Still in alarm: not raised again; it clears when its condition is seen gone.
            watch.in_alarm = alarm.state != CLEARED
            watch.value = alarm.value
        if changed:
            self._save()

    def _load(self, now: int) -> list[Alarm]:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("alarm state unreadable", path=str(self._path), error=str(exc))
            return []
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("v") != STATE_VERSION:
                raise ValueError(f"not an alarm state file of version {STATE_VERSION}")
            alarms = _STORED.validate_python(document.get("alarms"))
            self._ended.extend(_ENDED.validate_python(document.get("ended") or []))
            return alarms
        except (ValueError, ValidationError) as exc:  # JSON, UTF-8 and schema errors
            aside = self._path.with_name(f"{self._path.name}.corrupt-{now}")
            try:
                os.replace(self._path, aside)
            except OSError as move:
                aside_text = f"could not be moved aside ({move.strerror or move})"
            else:
                aside_text = f"moved to {aside}"
            problem = str(exc).splitlines()[0]
            log.warning(
                "alarm state corrupt; starting with an empty alarm list",
                path=str(self._path),
                problem=problem,
                file=aside_text,
            )
            return []

    def _save(self) -> None:
        """Atomic replace: a power cut leaves the old list or the new one, never half."""
        document = {
            "v": STATE_VERSION,
            "alarms": [asdict(a) for a in self._alarms.values()],
            "ended": list(self._ended),  # optional: a file of an older version has none
        }
        data = json.dumps(document, separators=(",", ":"), default=str).encode()
        path = self._path
        tmp = path.with_name(f"{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            log.error("alarm state not saved", path=str(path), error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
