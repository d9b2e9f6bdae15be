"""The CommandRouter: one path for platform, technician and control-loop commands.

For every command: dedupe by id (the audit log answers a repeat without executing it),
refuse expired ones, validate (known point, writable, type, limits, equipment protection,
rate), arbitrate by source (safety > manual > platform > auto), then execute and answer in
stages: `accepted` or `rejected`, then `done` (with the read-back) or `failed`. Commands
other than point writes are carried out by handlers the runtime registers (loops, alarms,
config, backfill, status, rebirth).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.base import KEEPS, AnyDriver, DeviceUnavailable, DriverError, Keeps
from edge_agent import envelope, logs
from edge_agent.cache import PointCache
from edge_agent.commands import messages as m
from edge_agent.commands.audit import Audit, AuditRow
from edge_agent.commands.context import Context, Execution, Handler, Reply
from edge_agent.commands.holds import Hold, Holds
from edge_agent.commands.messages import Deferred, Failed, Reason, Rejected, Source
from edge_agent.config.base import DeviceBase, PointBase
from edge_agent.events import EventSink
from edge_agent.points import Quality, Reading, Value, wall_ms
from edge_agent.recent import Recent
from edge_agent.store.outbox import Record, TrafficClass
from edge_agent.store.worker import StoreWorker

log = logs.get("commands")

WRITE_TIMEOUT_FACTOR = 3  # a write and its read-back: a few device timeouts at most
EXPIRY_CHECK_S = 1.0
AUDIT_KEEP_DAYS = 90
AUDIT_KEEP_ROWS = 200_000
LIFE_SAFETY_PRIORITIES = (1, 2)


class Protection(Protocol):
    """Equipment protection: the reason a write may not happen now, or None."""

    def guards(self, ref: str) -> bool: ...

    def check(self, ref: str, value: Value, now_ms: int, source: Source | None) -> str | None: ...

    def written(self, ref: str, value: Value, now_ms: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    ref: str
    device: DeviceBase
    point: PointBase


class CommandRouter:
    def __init__(
        self,
        devices: Sequence[DeviceBase],
        drivers: dict[str, AnyDriver],
        cache: PointCache,
        store: StoreWorker,
        audit: Audit,
        identity: dict[str, str],
        protection: Protection | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.targets = {
            f"{d.id}.{p.id}": Target(f"{d.id}.{p.id}", d, p) for d in devices for p in d.points
        }
        self.drivers = drivers
        self.cache = cache
        self.store = store
        self.audit = audit
        self.identity = identity
        self.protection = protection
        self.events = events
        self.holds = Holds()
        # Holds whose end protection deferred: (point, source) -> (what ended them, why not).
        self._deferred: dict[tuple[str, Source], tuple[str, str]] = {}
        self.handlers: dict[str, Handler] = {
            "write": self._prepare_write,
            "release": self._prepare_release,
            "read": self._prepare_read,
        }
        self._point_locks: dict[str, asyncio.Lock] = {}
        # (ref, source) -> monotonic time of the last write. Per source: a technician's
        # override is never refused because a loop wrote the point a moment ago.
        self._last_write: dict[tuple[str, Source], float] = {}
        self.counts = {"received": 0, "rejected": 0, "done": 0, "failed": 0, "dropped": 0}
        self.latency_ms = Recent()  # accepted -> final, for metrics

    async def start(self) -> None:
        """Load the holds that were in force when the agent stopped."""
        for hold in await self.store.call(self.audit.holds):
            if hold.point in self.targets:
                self.holds.put(hold)
                continue
            # Gone from the configuration (or its device disabled): nothing can be written
            # to it any more, so nothing changes on the device either, which keeps the value.
            log.warning("hold dropped: the point is no longer configured", point=hold.point,
                        source=hold.source.label, value=hold.value,
                        priority=hold.priority)  # fmt: skip
            await self.store.call(self.audit.delete_hold, hold.point, hold.source)

    def register(self, type_: str, handler: Handler) -> None:
        self.handlers[type_] = handler

    # -- entry points ----------------------------------------------------------------------

    async def receive(self, payload: bytes, *, retained: bool = False) -> None:
        """A message from the platform's command topic; every reply goes to the outbox."""
        self.counts["received"] += 1
        try:
            command = m.decode(payload)
            if retained:
                raise Rejected(Reason.RETAINED, "retained messages are never executed",
                               command.id, command.type)  # fmt: skip
        except Rejected as exc:
            if exc.command_id is None:
                self.counts["dropped"] += 1
                log.warning("command dropped", reason=exc.reason.value, error=exc.message,
                            size=len(payload))  # fmt: skip
                return
            self.counts["rejected"] += 1
            log.info("command rejected", id=exc.command_id, reason=exc.reason.value,
                     error=exc.message)  # fmt: skip
            self._publish(
                _stage(exc.command_id, exc.command_type, "rejected", exc.reason, exc.message)
            )
            return
        await self.execute(command, Context(Source.PLATFORM, "platform"), self._publish)

    def refuse_busy(self, payload: bytes) -> None:
        """Too many commands under way: say so (if the message has a usable id)."""
        self.counts["received"] += 1
        command_id: str | int | float | None
        type_: str | None
        try:
            command = m.decode(payload)
            command_id, type_ = command.id, command.type
        except Rejected as exc:
            command_id, type_ = exc.command_id, exc.command_type
        if command_id is None:
            self.counts["dropped"] += 1
            return
        self.counts["rejected"] += 1
        self._publish(_stage(command_id, type_, "rejected", Reason.BUSY,
                             "too many commands under way; try again"))  # fmt: skip

    async def execute(
        self, command: m.Command, context: Context, reply: Reply | None = None
    ) -> dict[str, Any]:
        """Run one command; returns its final stage message (also sent to `reply`)."""
        send = reply or (lambda _message: None)
        body = command.model_dump_json()
        try:
            previous = await self.store.call(
                self.audit.begin, command.id, context.source, command.type, context.by, body,
                wall_ms(),
            )  # fmt: skip
        except Exception as exc:  # the audit must work, or nothing is done
            log.error("command audit failed", id=command.id, error=str(exc))
            final = _stage(command.id, command.type, "rejected", Reason.BUSY,
                           f"the audit log cannot be written: {exc}")  # fmt: skip
            send(final)
            return final
        if previous is not None:
            final = _replay(previous)
            send(final)
            return final
        started = time.monotonic()
        try:
            if command.expires is not None and command.expires <= wall_ms():
                raise Rejected(Reason.EXPIRED, f"expired at {command.expires} (ms since epoch)")
            handler = self.handlers.get(command.type)
            if handler is None:
                raise Rejected(Reason.UNAVAILABLE, f"{command.type} is not available here")
            execution = handler(command, context)
        except Rejected as exc:
            return await self._finish(
                command, context, send, "rejected", exc.reason, exc.message, None
            )
        send(_stage(command.id, command.type, "accepted"))
        try:
            with self._about_device(command):  # the libraries' log records name the device
                result = await execution()
        except Deferred:
            await self.store.call(self.audit.finish, command.id, "accepted", None, None, None,
                                  wall_ms())  # fmt: skip
            return _stage(command.id, command.type, "accepted")
        except Failed as exc:
            final = await self._finish(
                command, context, send, "failed", exc.reason, exc.message, exc.detail or None
            )
        except Rejected as exc:  # found out only while executing (e.g. a race with a hold)
            final = await self._finish(
                command, context, send, "failed", exc.reason, exc.message, None
            )
        except Exception as exc:
            log.exception("command crashed", id=command.id, type=command.type)
            final = await self._finish(command, context, send, "failed", Reason.INTERNAL,
                                       f"{type(exc).__name__}: {exc}", None)  # fmt: skip
        else:
            final = await self._finish(command, context, send, "done", None, None, result)
        self.latency_ms.add((time.monotonic() - started) * 1000)
        return final

    async def _finish(
        self,
        command: m.Command,
        context: Context,
        send: Reply,
        stage: str,
        reason: Reason | None,
        message: str | None,
        result: dict[str, Any] | None,
    ) -> dict[str, Any]:
        self.counts[stage] += 1
        reason_text = reason.value if reason else None
        try:
            await self.store.call(
                self.audit.finish, command.id, stage, reason_text, message, result, wall_ms()
            )
        except Exception as exc:
            log.error("command audit failed", id=command.id, error=str(exc))
        if isinstance(command, m.Write | m.Release):
            _log_point_command(command, context, stage, reason_text, message, result)
        elif stage != "done":
            log.info(f"command {stage}", id=command.id, type=command.type, reason=reason_text,
                     error=message)  # fmt: skip
        final = _stage(command.id, command.type, stage, reason, message, result)
        send(final)
        return final

    async def complete(
        self,
        command_id: str,
        type_: str,
        stage: str,
        reason: Reason | None = None,
        message: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Give a deferred command its final stage (audit and platform reply)."""
        self.counts[stage] += 1
        await self.store.call(
            self.audit.finish, command_id, stage, reason.value if reason else None, message,
            result, wall_ms(),
        )  # fmt: skip
        self._publish(_stage(command_id, type_, stage, reason, message, result))

    def _about_device(self, command: m.Command) -> contextlib.AbstractContextManager[None]:
        target = self.targets.get(getattr(command, "point", ""))
        return logs.LIBRARY.about(target.device.id) if target else contextlib.nullcontext()

    def _publish(self, stage: dict[str, Any]) -> None:
        ts = stage["ts"]
        fields = {k: v for k, v in stage.items() if k != "ts"}
        payload = envelope.encode(envelope.message("command_result", self.identity, ts, **fields))
        self.store.submit(
            Record(TrafficClass.COMMAND_RESULT, "ack", ts, payload=payload), urgent=True
        )

    # -- points ----------------------------------------------------------------------------

    def target(self, ref: str, *, writing: bool) -> Target:
        target = self.targets.get(ref)
        if target is None:
            raise Rejected(Reason.UNKNOWN_POINT, f"no point {ref} in the configuration")
        if writing and not target.point.writable:
            raise Rejected(Reason.READ_ONLY, f"{ref} is read-only")
        if target.device.id not in self.drivers:
            raise Rejected(Reason.UNKNOWN_POINT, f"device {target.device.id} is disabled")
        return target

    def _prepare_write(self, command: m.Write, context: Context) -> Execution:
        target = self.target(command.point, writing=True)
        value = _coerce(target.point, command.value)
        _check_limits(target, value)
        if command.priority is not None and not self.drivers[target.device.id].priorities:
            raise Rejected(
                Reason.PRIORITY_UNSUPPORTED,
                f"{target.ref} has no priority array ({target.device.driver}); leave priority out",
            )
        if command.priority in LIFE_SAFETY_PRIORITIES and not getattr(
            getattr(target.point, "bacnet", None), "allow_life_safety_priority", False
        ):
            raise Rejected(
                Reason.PRIORITY_RESERVED,
                f"priority {command.priority} is reserved for life safety on {target.ref}",
            )
        self._check_arbitration(target.ref, context.source)
        now = wall_ms()
        self._check_protection(target.ref, value, context.source, now)
        self._check_rate(target, context.source)
        until = command.until
        if command.duration is not None:
            until = now + int(command.duration * 1000)
        if until is not None and until <= now:
            raise Rejected(Reason.EXPIRED, "the hold would already have ended (until is past)")
        hold = Hold(target.ref, context.source, value, command.priority, command.id, now,
                    until, context.by)  # fmt: skip
        if command.dry_run:

            async def validated() -> dict[str, Any]:
                return {"point": target.ref, "value": value, "dry_run": True}

            return validated
        self._last_write[target.ref, context.source] = time.monotonic()  # reserve the slot
        return lambda: self._write_hold(target, hold)

    def _check_arbitration(self, ref: str, source: Source) -> None:
        blocker = self.holds.blocker(ref, source)
        if blocker is not None:
            until = (
                "until released"
                if blocker.until_ms is None
                else (f"until {_iso(blocker.until_ms)}")
            )
            raise Rejected(
                Reason.OVERRIDDEN,
                f"{ref} is held by {blocker.source.label}"
                f"{f' ({blocker.by})' if blocker.by else ''} {until}",
            )

    def _check_protection(self, ref: str, value: Value, source: Source, now: int) -> None:
        if self.protection is None:
            return
        problem = self.protection.check(ref, value, now, source)
        if problem is not None:
            raise Rejected(Reason.PROTECTION, problem)

    def _check_rate(self, target: Target, source: Source) -> None:
        interval = target.point.min_write_interval
        last = self._last_write.get((target.ref, source))
        if source is Source.SAFETY or last is None or interval <= 0:
            return
        wait = last + interval - time.monotonic()
        if wait > 0:
            raise Rejected(
                Reason.RATE_LIMITED,
                f"{target.ref} takes at most one write every {interval:g} s; "
                f"try again in {wait:.1f} s",
            )

    async def _write_hold(self, target: Target, hold: Hold) -> dict[str, Any]:
        async with self._lock(target.ref):
            self._check_arbitration(target.ref, hold.source)  # a higher hold may have come
            readback = await self._device_write(target, hold.value, hold.priority)
            self.holds.put(hold)
            self._deferred.pop((hold.point, hold.source), None)  # a new hold, not ending
            await self.store.call(self.audit.save_hold, hold)
        return _write_result(target.ref, hold, readback)

    async def _device_write(self, target: Target, value: Value, priority: int | None) -> Reading:
        driver = self.drivers[target.device.id]
        timeout = target.device.timeout * WRITE_TIMEOUT_FACTOR + 1
        try:
            async with asyncio.timeout(timeout):
                readback = await driver.write(target.point, value, priority)
        except TimeoutError:
            raise Failed(Reason.DEVICE_UNAVAILABLE, f"no answer within {timeout:g} s") from None
        except DeviceUnavailable as exc:
            raise Failed(Reason.DEVICE_UNAVAILABLE, exc.reason) from None
        except DriverError as exc:
            raise Failed(Reason.WRITE_FAILED, str(exc)) from None
        self.cache.update(target.device.id, [readback])
        if self.protection is not None:
            self.protection.written(target.ref, value, wall_ms())
        if readback.quality is not Quality.GOOD:
            raise Failed(
                Reason.READBACK_MISMATCH,
                f"written, but the read-back is {readback.quality.value}: {readback.reason}",
                readback=None,
            )
        if not _same(value, readback.value):
            raise Failed(
                Reason.READBACK_MISMATCH,
                f"wrote {value!r} but the device reads back {readback.value!r}",
                readback=readback.value,
            )
        return readback

    def _prepare_release(self, command: m.Release, context: Context) -> Execution:
        target = self.target(command.point, writing=True)
        held = self.holds.get(target.ref, context.source)
        if held is None:
            raise Rejected(Reason.NOT_HELD, f"{target.ref} is not held by {context.source.label}")
        return lambda: self._end_hold(target, context.source, "release")

    async def _end_hold(self, target: Target, source: Source, cause: str) -> dict[str, Any]:
        """End `source`'s hold (every way a hold ends comes here: a release, its time up,
        a loop disabled or removed). What the point falls back to — the next hold's value,
        or the device's own (BACnet: the rest of its priority array; Modbus keeps the last
        value) — is a new command to the equipment: when protection refuses that change
        now, the hold stays in force and ends as soon as it may (`pending`)."""
        async with self._lock(target.ref):
            hold = self.holds.get(target.ref, source)
            if hold is None:  # ended meanwhile
                return {"point": target.ref, "released": source.label, "effective": "unchanged"}
            winner = self.holds.winner(target.ref)
            if winner is not hold:  # not in force: nothing changes on the device
                await self._forget(hold)
                if cause != "release":  # its time ran out beneath another: say so too
                    current = self.cache.get(target.ref)
                    self._emit("hold_ended", point=target.ref, source=source.label, by=hold.by,
                               cause=cause, effective=winner.source.label if winner else "device",
                               readback=None if current is None else current.value)  # fmt: skip
                return {"point": target.ref, "released": source.label, "effective": "unchanged"}
            following = self.holds.beneath(target.ref, source)
            fallback: Value | Keeps = KEEPS  # what the point will carry: a change?
            if following is not None:
                fallback = following.value
            elif self._guarded(target):
                fallback = await self._released_value(target, hold)
            refused = None
            if self.protection is not None and fallback is not KEEPS:
                refused = self.protection.check(
                    target.ref, fallback, wall_ms(), following.source if following else None
                )
            if refused is not None:
                await self._defer_end(hold, refused, cause)
                return {
                    "point": target.ref,
                    "released": source.label,
                    "effective": source.label,
                    "pending": True,
                    "protection": refused,
                }
            if following is not None:
                readback = await self._device_write(target, following.value, following.priority)
                effective = following.source.label
            else:
                readback = await self._device_release(target, hold.priority)
                effective = "device"
                if self.protection is not None and fallback is not KEEPS:
                    self.protection.written(target.ref, fallback, wall_ms())  # a stop, say
            deferred = self._deferred.get((target.ref, source), (None, None))[0]
            await self._forget(hold)
        result = {"point": target.ref, "released": source.label, "effective": effective,
                  "readback": readback.value, "quality": readback.quality.value}  # fmt: skip
        if cause != "release" or deferred is not None:  # nobody is waiting for a reply
            self._emit(
                "hold_ended",
                point=target.ref,
                source=source.label,
                by=hold.by,
                cause=deferred or cause,
                effective=effective,
                readback=readback.value,
            )
        return result

    def _guarded(self, target: Target) -> bool:
        return self.protection is not None and self.protection.guards(target.ref)

    async def _released_value(self, target: Target, hold: Hold) -> Value | Keeps:
        """What the device will carry once `hold` is relinquished (asked of it now)."""
        driver = self.drivers[target.device.id]
        try:
            async with asyncio.timeout(target.device.timeout * WRITE_TIMEOUT_FACTOR + 1):
                return await driver.released_value(target.point, hold.priority)
        except (TimeoutError, DeviceUnavailable) as exc:
            raise Failed(Reason.DEVICE_UNAVAILABLE, str(exc) or "no answer") from None
        except DriverError as exc:
            why = f"cannot tell what a release changes: {exc}"
            raise Failed(Reason.WRITE_FAILED, why) from None

    async def _defer_end(self, hold: Hold, refused: str, cause: str) -> None:
        """Keep `hold` in force, due to end: the expiry task ends it once protection lets."""
        now = wall_ms()
        if hold.until_ms is None or hold.until_ms > now:
            hold = dataclasses.replace(hold, until_ms=now)
            self.holds.put(hold)
            await self.store.call(self.audit.save_hold, hold)
        key = (hold.point, hold.source)
        first = key not in self._deferred
        self._deferred[key] = (self._deferred.get(key, (cause, ""))[0], refused)
        if first:  # the event is the one log line
            self._emit(
                "hold_end_deferred",
                level="warning",
                point=hold.point,
                source=hold.source.label,
                by=hold.by,
                cause=cause,
                reason=refused,
            )

    async def _forget(self, hold: Hold) -> None:
        self.holds.remove(hold.point, hold.source)
        self._deferred.pop((hold.point, hold.source), None)
        await self.store.call(self.audit.delete_hold, hold.point, hold.source)

    def _emit(self, type_: str, level: str = "info", **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, level=level, **fields)
        else:
            getattr(log, level)(type_, **fields)

    async def _device_release(self, target: Target, priority: int | None) -> Reading:
        driver = self.drivers[target.device.id]
        try:
            async with asyncio.timeout(target.device.timeout * WRITE_TIMEOUT_FACTOR + 1):
                reading = await driver.release(target.point, priority)
        except (TimeoutError, DeviceUnavailable) as exc:
            raise Failed(Reason.DEVICE_UNAVAILABLE, str(exc) or "no answer") from None
        except DriverError as exc:
            raise Failed(Reason.WRITE_FAILED, str(exc)) from None
        self.cache.update(target.device.id, [reading])
        return reading

    def _prepare_read(self, command: m.Read, context: Context) -> Execution:
        target = self.target(command.point, writing=False)

        async def read() -> dict[str, Any]:
            driver = self.drivers[target.device.id]
            try:
                async with asyncio.timeout(target.device.timeout * WRITE_TIMEOUT_FACTOR + 1):
                    (reading,) = await driver.read([target.point])
            except (TimeoutError, DeviceUnavailable) as exc:
                raise Failed(Reason.DEVICE_UNAVAILABLE, str(exc) or "no answer") from None
            self.cache.update(target.device.id, [reading])
            return _reading_result(target.ref, reading)

        return read

    async def expire_holds(self) -> None:
        """Task: end holds whose time is up (an override that ran out, or an end that
        protection deferred), each as soon as it may."""
        failing: set[tuple[str, Source]] = set()
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            for hold in self.holds.expired(wall_ms()):
                key = (hold.point, hold.source)
                try:
                    await self._end_hold(self.targets[hold.point], hold.source, "expired")
                except Failed as exc:
                    if key not in failing:  # once, not every second
                        log.warning("expired hold not ended; retrying", point=hold.point,
                                    source=hold.source.label, error=exc.message)  # fmt: skip
                    failing.add(key)
                    continue
                failing.discard(key)

    async def prune_audit(self) -> None:
        """Task: keep the audit log bounded."""
        while True:
            before = wall_ms() - AUDIT_KEEP_DAYS * 86_400_000
            await self.store.call(self.audit.prune, before, AUDIT_KEEP_ROWS)
            await asyncio.sleep(3600)

    # -- the CommandPath protocol's reads (commands.context) ---------------------------------

    def hold_of(self, ref: str, source: Source) -> Hold | None:
        return self.holds.get(ref, source)

    def held_above(self, ref: str, source: Source) -> Hold | None:
        return self.holds.blocker(ref, source)

    def all_holds(self) -> list[Hold]:
        return self.holds.all()

    def kind_of(self, ref: str) -> str | None:
        target = self.targets.get(ref)
        return None if target is None else target.point.kind

    def _lock(self, ref: str) -> asyncio.Lock:
        return self._point_locks.setdefault(ref, asyncio.Lock())

    def hold_view(self, hold: Hold) -> dict[str, Any]:
        """A hold as status and the CLI show it; `ending`: why its due end waits."""
        view = hold.as_dict()
        deferred = self._deferred.get((hold.point, hold.source))
        if deferred is not None:
            view["ending"] = deferred[1]
        return view

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "holds": [self.hold_view(h) for h in self.holds.all()],
            "latency_ms_p50": self.latency_ms.percentile(0.5),
            "latency_ms_p99": self.latency_ms.percentile(0.99),
        }


# -- helpers ---------------------------------------------------------------------------------


def _log_point_command(
    command: m.Write | m.Release,
    context: Context,
    stage: str,
    reason: str | None,
    message: str | None,
    result: dict[str, Any] | None,
) -> None:
    """One line per write and release, whatever its outcome: who, what, the read-back
    (the audit table has the same, `edge-agent audit` lists it). A failure is a warning.
    A loop's writes (AUTO) are at debug level, but for failures other than a device down,
    not to wash the technician's writes out of the recent records."""
    fields: dict[str, Any] = {"id": command.id, "point": command.point}
    if isinstance(command, m.Write):
        fields["value"] = command.value
        if command.priority is not None:
            fields["priority"] = command.priority
        if command.duration is not None:
            fields["duration_s"] = command.duration
        if command.until is not None:
            fields["until"] = _iso(command.until)
        if command.dry_run:
            fields["dry_run"] = True
    fields["source"] = context.source.label
    fields["by"] = context.by
    if reason is not None:
        fields["reason"] = reason
        fields["error"] = message
    for key in ("readback", "quality", "effective", "pending", "protection"):
        if result and key in result:
            fields[key] = result[key]
    level = logging.WARNING if stage == "failed" else logging.INFO
    if context.source is Source.AUTO and (
        stage != "failed" or reason == Reason.DEVICE_UNAVAILABLE.value
    ):
        # A loop writes whenever an output moves and retries what was refused; a device
        # that is down says so once (device_down), not at every retry.
        level = logging.DEBUG
    log.log(level, f"{command.type} {stage}", **fields)


def _coerce(point: PointBase, value: Value) -> float | int | bool | str:
    """The command's value as the point's kind takes it; `Rejected` when it does not fit."""
    kind = point.kind
    if type(value) is float and value.is_integer() and kind != "analog":
        value = int(value)  # JSON has one number type: 1.0 is the integer 1
    if kind == "binary":
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):
            return bool(value)
    elif kind == "analog":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise Rejected(Reason.WRONG_TYPE, f"{point.id} takes a finite number")
            return value
    elif kind == "multistate":
        if type(value) is int:
            return value
    elif isinstance(value, str):
        return value
    expected = {"binary": "true or false", "analog": "a number", "multistate": "an integer"}
    raise Rejected(
        Reason.WRONG_TYPE,
        f"{point.id} is {kind} and takes {expected.get(kind, 'text')}, not {value!r}",
    )


def _check_limits(target: Target, value: float | int | bool | str) -> None:
    limits = target.point.limits
    if limits is None or isinstance(value, bool | str):
        return
    if not limits.min <= value <= limits.max:
        raise Rejected(
            Reason.OUT_OF_LIMITS,
            f"{target.ref} takes {limits.min:g} to {limits.max:g}"
            f"{' ' + target.point.unit if target.point.unit else ''}, not {value!r}",
        )


def _same(written: Value, readback: Value) -> bool:
    if isinstance(written, bool) or isinstance(readback, bool):
        return bool(written) == bool(readback) if readback is not None else False
    if isinstance(written, int | float) and isinstance(readback, int | float):
        # Scaled registers and float32 carry only so many digits.
        return math.isclose(written, readback, rel_tol=1e-4, abs_tol=1e-3)
    return written == readback


def _write_result(ref: str, hold: Hold, readback: Reading) -> dict[str, Any]:
    return {
        "point": ref,
        "value": hold.value,
        "readback": readback.value,
        "quality": readback.quality.value,
        "source": hold.source.label,
        "until": hold.until_ms,  # the hold's end (ms); None: until released
    }


def _reading_result(ref: str, reading: Reading) -> dict[str, Any]:
    result: dict[str, Any] = {
        "point": ref,
        "value": reading.value,
        "quality": reading.quality.value,
        "read_ts": reading.ts,
    }
    if reading.reason:
        result["quality_reason"] = reading.reason
    return result


def _stage(
    command_id: str | int | float,
    type_: str | None,
    stage: str,
    reason: Reason | None = None,
    message: str | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": command_id, "command": type_, "stage": stage, "ts": wall_ms()}
    if reason is not None:
        out["reason"] = reason.value
        out["message"] = message
    if result is not None:
        out["result"] = result
    return out


def _replay(row: AuditRow) -> dict[str, Any]:
    """The answer to a repeated id: what the first one came to (never executed again)."""
    if not row.finished:
        out = _stage(row.id, row.type, "accepted")
    else:
        reason = Reason(row.reason) if row.reason else None
        out = _stage(row.id, row.type, row.stage, reason, row.message, row.result)
    out["duplicate"] = True
    return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
