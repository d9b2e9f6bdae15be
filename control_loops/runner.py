"""The loop runner: reads inputs from the PointCache, steps each loop on its own period,
and writes outputs through the command path (the router) at AUTO priority, like any other
source.

Rules (docs/control.md, "Loop runner and protection"):
- A stale, bad or missing input puts the loop in its safe state at its next step (so within
  one period): hold, release or a fixed value. One `loop_safe_state` event on the way in,
  one `loop_recovered` on the way out.
- Analog outputs are clamped to `limits`, rate limited (`max_step` per period, `max_rate`
  per second for a PID), and written only when they moved more than `deadband`.
- An output held by a higher source (manual, platform, safety) is never written: the loop
  shows `overridden`, lets go of its own hold (so that the end of the override goes back to
  the device, not to the loop's stale value) and tracks the held value, so that taking over
  again is bumpless.
- Disabling a loop releases its holds.
- One write per output under way at a time; a refused write is retried after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from control_loops import kernels
from control_loops.config import (
    ChwResetLoop,
    DpResetLoop,
    LoopConfig,
    OptimizerLoop,
    PidLoop,
    SafeValue,
    StagingLoop,
    finite,
)
from control_loops.loops import Condenser, Loop, Output, Pid, Reset, Stager, fingerprint
from control_loops.plant_loop import PlantLoop
from control_loops.settings import LoopSettings, PersistSettings
from edge_agent import logs
from edge_agent.cache import PointCache
from edge_agent.commands import messages as m
from edge_agent.commands.context import CommandPath, Context, Execution
from edge_agent.commands.messages import Reason, Rejected, Source
from edge_agent.events import EventSink
from edge_agent.i18n import _
from edge_agent.points import Quality, Value, wall_ms
from edge_agent.recent import Recent

log = logs.get("loops")

RETRY_S = 10.0  # after a refused or failed write, wait at least this (or a period)
TIMINGS_KEPT = 1000
# After start-up, inputs never read yet are awaited this long before the safe state (the
# slowest devices are polled every 30-60 s); meanwhile the loop writes nothing.
STARTUP_GRACE_S = 120.0
WAITING_RECHECK_S = 1.0


def make_loop(cfg: LoopConfig) -> Loop:
    if isinstance(cfg, PidLoop):
        return Pid(cfg)
    if isinstance(cfg, ChwResetLoop | DpResetLoop):
        return Reset(cfg)
    if isinstance(cfg, StagingLoop):
        return Stager(cfg)
    if isinstance(cfg, OptimizerLoop):
        return PlantLoop(cfg)
    return Condenser(cfg)


class LoopRunner:
    """Runs every configured loop in one task, each on its own monotonic deadline."""

    def __init__(
        self,
        loops: Iterable[LoopConfig],
        cache: PointCache,
        commands: CommandPath,
        events: EventSink | None,
        clock: Callable[[], float] = time.monotonic,
        persist: PersistSettings | None = None,
    ) -> None:
        """`persist` saves what a loop command changed (the service: into the audit
        database), so that it outlives a restart; None: it does not."""
        self.loops = {cfg.id: make_loop(cfg) for cfg in loops}
        self.cache = cache
        self.commands = commands
        self.events = events
        self.clock = clock
        self.timings_us = Recent(TIMINGS_KEPT)  # step times of all loops, for metrics
        self._inflight: dict[str, asyncio.Task] = {}  # output -> its write under way
        self._tasks: set[asyncio.Task] = set()
        self._run_id = secrets.token_hex(3)  # command ids stay unique across restarts
        self._first_tick: float | None = None
        self._seq = 0
        self.persist = persist

    def restore(self, saved: dict[str, LoopSettings]) -> list[str]:
        """Before the first tick: re-apply what loop commands changed before a restart (a
        loop the platform disabled stays disabled). Returns the ids whose settings no longer
        apply, because the loop is gone or its configuration changed since."""
        stale = []
        for loop_id, settings in saved.items():
            lp = self.loops.get(loop_id)
            if lp is None or settings.fingerprint != fingerprint(lp.cfg):
                log.info("loop settings dropped: the loop's configuration changed", loop=loop_id)
                stale.append(loop_id)
                continue
            try:
                for name, value in settings.parameters.items():
                    lp.set(name, value)
            except ValueError as exc:
                log.warning("loop settings dropped", loop=loop_id, error=str(exc))
                self.loops[loop_id] = make_loop(lp.cfg)
                stale.append(loop_id)
                continue
            lp.enabled = settings.enabled
            lp.mode = "auto" if lp.enabled else "disabled"
            lp.changed = {"by": settings.by, "ts": settings.ts}
            self._emit("loop_settings_restored", loop=loop_id, enabled=lp.enabled,
                       parameters=settings.parameters, by=settings.by)  # fmt: skip
        return stale

    async def _save(self, lp: Loop, context: Context) -> None:
        by = context.by or context.source.label
        settings = LoopSettings(fingerprint(lp.cfg), lp.enabled, dict(lp.overrides), by, wall_ms())
        lp.changed = {"by": by, "ts": settings.ts}
        if self.persist is None:
            return
        try:
            await self.persist(lp.id, settings)
        except Exception as exc:  # the change is in force; only its persistence failed
            log.error("loop settings not saved: a restart returns to the configuration",
                      loop=lp.id, error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Task: step each loop when due. Cancel it to stop: the writes under way are
        cancelled and awaited, so stop it before the router's store closes."""
        await self.end_orphan_holds()
        if any(not isinstance(lp, Stager) for lp in self.loops.values()):
            await asyncio.to_thread(kernels.warm_up)  # numba: not in the first period
        try:
            while self.loops:
                await self.tick(self.clock())
                due = min(lp.due for lp in self.loops.values() if lp.due is not None)
                await asyncio.sleep(max(0.0, due - self.clock()))
        finally:  # end the writes under way before the router and its store close
            tasks = [*self._tasks, *(t for lp in self.loops.values() for t in lp.jobs())]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def end_orphan_holds(self) -> None:
        """End the automatic holds of loops that no longer run them: removed from the
        configuration, or disabled (by the file, or by a command before a restart). Through
        the router, like every release, so that protection decides what may change."""
        for hold in self.commands.all_holds():
            lp = self.loops.get(hold.by or "")
            if hold.source is not Source.AUTO or (lp is not None and lp.enabled):
                continue
            command = m.Release(v=1, id=self._command_id(hold.by or "loops"), type="release",
                                point=hold.point)  # fmt: skip
            final = await self.commands.execute(command, Context(Source.AUTO, hold.by))
            log.info("hold of a loop not running released", loop=hold.by, point=hold.point,
                     stage=final["stage"], reason=final.get("reason"))  # fmt: skip

    async def tick(self, now: float) -> None:
        """Step every loop that is due at `now` (the first call steps them all)."""
        if self._first_tick is None:
            self._first_tick = now
        for lp in self.loops.values():
            if lp.due is not None and lp.due > now:
                continue
            started = time.perf_counter()
            try:
                self._step(lp, now)
            except Exception as exc:  # one broken loop must not stop the others
                log.exception("loop step failed", loop=lp.id)
                lp.result = _("step failed: {error}").format(error=f"{type(exc).__name__}: {exc}")
            us = (time.perf_counter() - started) * 1e6
            lp.step_us, lp.step_us_max, lp.steps = us, max(lp.step_us_max, us), lp.steps + 1
            self.timings_us.add(us)
            period = lp.interval
            if lp.mode == "waiting":  # look again soon rather than a whole period later
                lp.due = now + min(period, WAITING_RECHECK_S)
                continue
            nxt = (lp.due if lp.due is not None else now) + period
            lp.due = nxt if nxt > now else now + period  # late: no catch-up burst
        await asyncio.sleep(0)  # let the writes just started begin

    async def settle(self) -> None:
        """Wait for the writes and releases under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _step(self, lp: Loop, now: float) -> None:
        dt = lp.interval if lp.last_step is None else max(now - lp.last_step, 1e-3)
        lp.last_step = now
        values, problems = self._read_inputs(lp)
        if not lp.enabled:
            lp.mode = "disabled"
            lp.track(self._actual(lp.cfg.outputs()[0]), values, dt)
            return
        leader = next(
            (
                self.loops[x]
                for x in lp.cfg.yields_to
                if x in self.loops and self.loops[x].in_control
            ),
            None,
        )
        if leader is not None:
            # A fallback while its leader commands: no writes, but follow the outputs so
            # that taking over again is bumpless.
            lp.mode, lp.safe_reason = "standby", None
            lp.written.clear()
            lp.result = _("standing by: {leader} in control").format(leader=leader.id)
            lp.track(self._actual(lp.cfg.outputs()[0]), values, dt)
            return
        problems = lp.bad(problems)
        if problems and self._still_starting(lp, problems, now):
            # Right after start-up the inputs' devices may simply not have been polled yet
            # (a weather station every 30 s): that is no fault, and no event.
            lp.mode, lp.safe_reason = "waiting", "; ".join(problems.values())
            return
        if problems:
            self._safe(lp, problems, values, dt)
            return
        if lp.mode == "safe":
            lp.safe_reason = None
            self._emit("loop_recovered", loop=lp.id)
            # Line the integrator up with the output and the fresh measurement: the first
            # step back in auto then moves the output by one integral step, not by P.
            lp.track(self._actual(lp.cfg.outputs()[0]), values, dt)
        held = {}
        for ref in lp.cfg.outputs():
            hold = self.commands.held_above(ref, Source.AUTO)
            if hold is not None:
                held[ref] = hold.value
                self._let_go(lp, ref)  # the override's end returns to the device, not to us
        lp.mode = "overridden" if held else "auto"
        outputs = lp.compute(values, now, dt, held, self._shaper(lp), self._actual)
        lp.outputs.update(outputs)
        for ref, value in outputs.items():
            if ref not in held:
                self._maybe_write(lp, ref, value, now)

    def _still_starting(self, lp: Loop, problems: dict[str, str], now: float) -> bool:
        first = self._first_tick if self._first_tick is not None else now
        return (
            lp.mode in ("auto", "waiting")
            and lp.writes == 0
            and now - first < STARTUP_GRACE_S
            and all(why.endswith("has no reading") for why in problems.values())
        )

    def _safe(self, lp: Loop, problems: dict[str, str], values: dict, dt: float) -> None:
        reason = "; ".join(f"{name}: {why}" for name, why in problems.items())
        if lp.mode != "safe":
            lp.safe_reason = reason
            self._emit("loop_safe_state", level="warning", loop=lp.id, reason=reason,
                       safe_state=_safe_label(lp.cfg.safe_state))  # fmt: skip
        lp.mode = "safe"
        safe = lp.cfg.safe_state
        outputs = lp.cfg.outputs()
        if safe == "release":
            for ref in outputs:
                self._let_go(lp, ref)
        elif isinstance(safe, SafeValue):
            for ref in outputs:
                if self.commands.held_above(ref, Source.AUTO) is None:
                    self._maybe_write(lp, ref, safe.value, self.clock())
        # The PID follows what the output does meanwhile: taking over again is bumpless.
        value = safe.value if isinstance(safe, SafeValue) else self._actual(outputs[0])
        lp.track(None if value is None else float(value), values, dt)

    # -- inputs and outputs -----------------------------------------------------------------

    def _read_inputs(self, lp: Loop) -> tuple[dict[str, float], dict[str, str]]:
        values: dict[str, float] = {}
        problems: dict[str, str] = {}
        now_ms = wall_ms()
        stale_after = lp.cfg.stale_after
        for name, ref in lp.cfg.inputs().items():
            reading = self.cache.get(ref)
            if reading is None:
                problems[name] = _("{point} has no reading").format(point=ref)
            elif reading.quality not in (Quality.GOOD, Quality.OVERRIDDEN):
                why = f" ({reading.reason})" if reading.reason else ""
                problems[name] = _("{point} is {quality}{why}").format(
                    point=ref, quality=_(reading.quality.value), why=why
                )
            elif stale_after is not None and now_ms - reading.ts > stale_after * 1000:
                age = (now_ms - reading.ts) / 1000
                problems[name] = _("{point} is {age} s old (stale_after {limit} s)").format(
                    point=ref, age=f"{age:.0f}", limit=f"{stale_after:g}"
                )
            elif (value := finite(reading.value)) is None:
                problems[name] = _("{point} is not a number ({value!r})").format(
                    point=ref, value=reading.value
                )
            else:
                values[name] = value
        lp.inputs = {name: values.get(name) for name in lp.cfg.inputs()}
        return values, problems

    def _actual(self, ref: str) -> float | None:
        reading = self.cache.get(ref)
        if reading is None or reading.quality not in (Quality.GOOD, Quality.OVERRIDDEN):
            return None
        return finite(reading.value)

    def _shaper(self, lp: Loop) -> Callable[[str, float, float], float]:
        cfg = lp.cfg

        def shape(ref: str, value: float, dt: float) -> float:
            if cfg.limits is not None:
                value = min(max(value, cfg.limits.min), cfg.limits.max)
            steps = []
            if cfg.max_step is not None:
                steps.append(cfg.max_step)
            max_rate = getattr(cfg, "max_rate", None)
            if max_rate is not None:
                steps.append(max_rate * dt)
            base = finite(lp.written.get(ref))
            if base is None:
                base = self._actual(ref)
            if steps and base is not None:
                step = min(steps)
                value = base + min(max(value - base, -step), step)
            return value

        return shape

    def _kind(self, ref: str) -> str | None:
        return self.commands.kind_of(ref)

    def _maybe_write(self, lp: Loop, ref: str, value: Output, now: float) -> None:
        kind = self._kind(ref)
        if kind is None or ref in self._inflight or lp.retry_at.get(ref, -math.inf) > now:
            return
        if kind == "binary":
            value = bool(value)
            current = lp.written.get(ref)
            if current is None:
                actual = self._actual(ref)
                current = None if actual is None else actual != 0
            if current is not None and bool(current) == value:
                return
        else:
            value = round(float(value), 4) if kind == "analog" else int(value)
            current = finite(lp.written.get(ref))
            if current is None:
                current = self._actual(ref)
            band = lp.cfg.deadband
            holding = self._holds(lp, ref)
            # Without a hold of ours (started, re-enabled) a setpoint is written once to
            # take it; a run command is not (writing "off" to a stopped machine is no stop).
            if (
                holding
                and current is not None
                and (value == current if band == 0 else abs(value - current) <= band)
            ):
                return
        command = m.Write(v=1, id=self._command_id(lp.id), type="write", point=ref, value=value)
        self._spawn(ref, self._write(lp, ref, value, command))

    async def _write(self, lp: Loop, ref: str, value: Value, command: m.Write) -> None:
        final = await self.commands.execute(command, Context(Source.AUTO, lp.id))
        lp.writes += 1
        lp.outcome(ref, value, final)
        stage, reason = final["stage"], final.get("reason")
        if stage == "done":
            lp.written[ref] = value
            lp.result = _("wrote {point} = {value}").format(point=ref, value=value)
            lp.retry_at.pop(ref, None)
            return
        lp.result = f"{stage}: {reason}: {final.get('message')}"
        if reason == Reason.OVERRIDDEN:
            lp.written.pop(ref, None)  # the next step sees the hold and tracks it
        elif reason != Reason.RATE_LIMITED:
            lp.retry_at[ref] = self.clock() + max(lp.cfg.period, RETRY_S)

    def _let_go(self, lp: Loop, ref: str) -> None:
        """Release the loop's own hold on `ref`, if it has one (and is not ending already:
        protection may keep it a while, and asking again every period changes nothing)."""
        lp.written.pop(ref, None)
        if not self._holds(lp, ref) or ref in self._inflight:
            return
        hold = self.commands.hold_of(ref, Source.AUTO)
        if hold is not None and hold.until_ms is not None and hold.until_ms <= wall_ms():
            return
        command = m.Release(v=1, id=self._command_id(lp.id), type="release", point=ref)
        self._spawn(ref, self._release(lp, command))

    def _holds(self, lp: Loop, ref: str) -> bool:
        """The automatic hold on `ref` is this loop's (loops may share an output when one
        is the other's fallback, and each releases only its own)."""
        hold = self.commands.hold_of(ref, Source.AUTO)
        return hold is not None and hold.by == lp.id

    async def _release(self, lp: Loop, command: m.Release) -> dict[str, Any]:
        final = await self.commands.execute(command, Context(Source.AUTO, lp.id))
        if final["stage"] != "done" and final.get("reason") != Reason.NOT_HELD:
            lp.result = f"release {final['stage']}: {final.get('reason')}: {final.get('message')}"
        return final

    def _spawn(self, ref: str, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=f"loop-write:{ref}")
        self._inflight[ref] = task
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if self._inflight.get(ref) is t:
                del self._inflight[ref]
            if not t.cancelled() and t.exception() is not None:
                log.error("loop write crashed", point=ref, error=str(t.exception()))

        task.add_done_callback(done)
        return task

    def _command_id(self, loop_id: str) -> str:
        self._seq += 1
        return f"loop-{loop_id}-{self._run_id}-{self._seq}"

    def _emit(self, type_: str, level: str = "info", **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, level=level, **fields)
        else:
            getattr(log, level)(type_, **fields)

    # -- commands --------------------------------------------------------------------------

    def handle_command(self, command: m.LoopCommand, context: Context) -> Execution:
        """The router's handler of `loop` commands: enable, disable, set a parameter."""
        lp = self.loops.get(command.loop)
        if lp is None:
            known = ", ".join(self.loops) or "none are configured"
            raise Rejected(Reason.UNKNOWN_LOOP, f"no loop {command.loop!r} (loops: {known})")
        if command.action == "enable":
            return lambda: self._enable(lp, context)
        if command.action == "disable":
            return lambda: self._disable(lp, context)
        if command.parameter is None or command.value is None:
            raise Rejected(Reason.MALFORMED, "set needs a parameter and a value")
        value = float(command.value)
        if not math.isfinite(value):
            raise Rejected(Reason.MALFORMED, f"{command.parameter} must be a finite number")
        try:
            lp.set(command.parameter, value)
        except ValueError as exc:
            raise Rejected(Reason.MALFORMED, str(exc)) from None
        log.info("loop parameter set", loop=lp.id, parameter=command.parameter, value=value,
                 by=context.by)  # fmt: skip

        async def done() -> dict[str, Any]:
            await self._save(lp, context)
            return {"loop": lp.id, "parameter": command.parameter, "value": value}

        return done

    async def _enable(self, lp: Loop, context: Context) -> dict[str, Any]:
        if not lp.enabled:
            lp.enabled = True
            lp.mode = "auto"
            lp.enable()
            lp.due = self.clock()  # step at the next tick
            self._emit("loop_enabled", loop=lp.id)
        await self._save(lp, context)
        return {"loop": lp.id, "enabled": True}

    async def _disable(self, lp: Loop, context: Context) -> dict[str, Any]:
        lp.enabled = False
        lp.mode = "disabled"
        await self._save(lp, context)  # before the releases, which may fail
        released = []
        pending: dict[str, str] = {}  # output -> why protection keeps the hold for now
        for ref in lp.cfg.outputs():
            task = self._inflight.get(ref)
            if task is not None:  # a write under way: let it land, then release it
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
            lp.written.pop(ref, None)
            if not self._holds(lp, ref):
                continue
            command = m.Release(v=1, id=self._command_id(lp.id), type="release", point=ref)
            final = await self._release(lp, command)
            if final["stage"] != "done":
                raise m.Failed(Reason.WRITE_FAILED, f"{ref} not released: {final.get('message')}")
            if final["result"].get("pending"):
                pending[ref] = final["result"]["protection"]
            else:
                released.append(ref)
        if pending:  # releases protection holds back for now
            self._emit("loop_disabled", loop=lp.id, released=released, pending=pending)
        else:
            self._emit("loop_disabled", loop=lp.id, released=released)
        return {"loop": lp.id, "enabled": False, "released": released,
                **({"pending": pending} if pending else {})}  # fmt: skip

    # -- status ----------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        out = []
        for lp in self.loops.values():
            entry: dict[str, Any] = {
                "id": lp.id,
                "type": lp.type,
                "mode": lp.mode,
                "enabled": lp.enabled,
                "period": lp.cfg.period,
                "inputs": dict(lp.inputs),
                "outputs": dict(lp.outputs),
                "written": dict(lp.written),
                "result": lp.result,
                "safe_reason": lp.safe_reason,
                "step_us": round(lp.step_us, 1),
                "step_us_max": round(lp.step_us_max, 1),
                "steps": lp.steps,
                "writes": lp.writes,
            }
            if lp.overrides:
                entry["set"] = dict(lp.overrides)
            if lp.changed:
                entry["changed"] = dict(lp.changed)
            if isinstance(lp, Stager):
                entry["staging"] = lp.reason
            entry.update(lp.details())
            out.append(entry)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "loops": len(self.loops),
            "modes": {
                mode: sum(lp.mode == mode for lp in self.loops.values())
                for mode in ("auto", "disabled", "safe", "overridden")
            },
            "step_us_p50": self.timings_us.percentile(0.5),
            "step_us_p99": self.timings_us.percentile(0.99),
            "step_us_max": self.timings_us.max(),
        }


def _safe_label(safe: object) -> str:
    return f"value {safe.value}" if isinstance(safe, SafeValue) else str(safe)
