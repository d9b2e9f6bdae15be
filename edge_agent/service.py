"""The agent process: supervision, signals, orderly shutdown and config reload.

One `Runtime` runs the configuration: drivers, pollers, uplink, clock watch and the local
socket, as named tasks in a TaskGroup. SIGTERM/SIGINT: stop polling, commit what was
polled, publish the backlog for at most `uplink.flush_timeout`, say offline, close drivers
in reverse order, exit 0.

SIGHUP (and config_apply): the file is validated again; a bad config is reported and the
running one kept. A valid one is compared with the running one (`reload.plan`): the same
`config_hash` changes nothing; otherwise the runtime changes in place only what depends on
what changed: a device whose settings or link changed is closed and opened again, every
other device keeps its driver, its poller, its schedule and its counters. Only a change of
the store or of the identity (site, gateway) ends the runtime and starts a new one (the
store outlives runtimes, so even that loses nothing). docs/configuration.md, "Reloading".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_loops.protection import FlowInterlock, Protection
from control_loops.runner import LoopRunner
from drivers.base import AnyDriver, Link
from drivers.registry import driver_class
from edge_agent import (
    __version__,
    config_apply,
    logs,
    metrics,
    reload,
    sd_notify,
    status_report,
    watchdog,
)
from edge_agent.alarms.engine import AlarmEngine, AlarmError
from edge_agent.cache import PointCache
from edge_agent.commands import messages
from edge_agent.commands.audit import Audit
from edge_agent.commands.context import Context, Execution
from edge_agent.commands.router import CommandRouter
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.models import AgentConfig
from edge_agent.config_apply import InterruptedApply, PendingApply
from edge_agent.energy.publisher import EnergyPublisher
from edge_agent.events import Events
from edge_agent.hj212.reporter import Hj212Reporter
from edge_agent.local_api import AgentAlreadyRunning, LocalServer
from edge_agent.local_api import Handler as LocalHandler
from edge_agent.local_logs import logs_handler
from edge_agent.points import Batch, Reading, wall_ms
from edge_agent.scheduler import ClockWatch, Poller
from edge_agent.store.outbox import Record, TrafficClass
from edge_agent.store.worker import StoreWorker
from edge_agent.uplink import Uplink

log = logs.get("agent")

DRIVER_CLOSE_TIMEOUT_S = 5.0
BACKLOG_REPORT_S = 60.0
MAX_RESTART_DELAY_S = 60.0
MAX_COMMANDS_IN_FLIGHT = 64
COMMAND_DRAIN_S = 5.0  # how long shutdown waits for commands being carried out
ALARM_TICK_S = 1.0


async def supervise(name: str, factory: Callable[[], Awaitable[None]], events: Events) -> None:
    """Run a task forever: a crash is logged with its trace once, reported as an event,
    and the task restarted with exponential backoff (reset after a minute of health)."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await factory()
            return
        except Exception as exc:
            if time.monotonic() - started > MAX_RESTART_DELAY_S:
                failures = 0
            failures += 1
            delay = min(MAX_RESTART_DELAY_S, 2.0 ** (failures - 1))
            log.exception("task crashed", task=name, restart_in_s=delay)
            events.emit(
                "task_crashed",
                level="error",
                task=name,
                error=f"{type(exc).__name__}: {exc}",
                restart_in_s=delay,
            )
            await asyncio.sleep(delay)


class Control:
    """What the signal handlers and commands ask of the running agent."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.stop = False
        self.new_config: AgentConfig | None = None
        self.pending_apply: PendingApply | None = None

    def request_apply(self, pending: PendingApply) -> None:
        self.pending_apply = pending
        self.request_reload(pending.config)

    def request_stop(self) -> None:
        self.stop = True
        self.changed.set()

    def request_reload(self, config: AgentConfig) -> None:
        self.new_config = config
        self.changed.set()


# -- the pieces a runtime keeps per device ------------------------------------------------------


@dataclass(slots=True)
class _Running:
    """A device being polled."""

    spec: reload.DeviceSpec
    driver: AnyDriver
    poller: Poller
    task: asyncio.Task[None]


class _AlarmsOf:
    """The pollers' watcher: whichever alarm engine the runtime has now (a reload of the
    rules replaces it under pollers that run on)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def observe(self, device: str, readings: Sequence[Reading], now_ms: int) -> None:
        self._runtime.alarms.observe(device, readings, now_ms)

    def device_down(self, device: str, reason: str, now_ms: int) -> None:
        self._runtime.alarms.device_down(device, reason, now_ms)

    def device_recovered(self, device: str, now_ms: int) -> None:
        self._runtime.alarms.device_recovered(device, now_ms)


class Runtime:
    """Everything that depends on the configuration, changed in place on a reload."""

    def __init__(
        self,
        config: AgentConfig,
        store: StoreWorker,
        events: Events,
        started: float,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.store = store
        self.events = events
        self.started = started
        self.cache = PointCache()
        self.identity = config.identity
        self.uplink = Uplink(config, store, __version__, self._on_command, events)
        self.router: CommandRouter | None = None
        self.loops: LoopRunner | None = None
        self.protection: Protection | None = None
        self._commands: set[asyncio.Task] = set()
        self.control: Control | None = None
        self.up = asyncio.Event()  # set once READY was reported
        self.alarms = self._alarm_engine(config)
        # What the process watchdog asks while this runtime runs; None while it starts,
        # changes or stops (deliberate and bounded, not a failure).
        self.health: watchdog.HealthCheck | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._audit: Audit | None = None
        self._devices: dict[str, _Running] = {}  # in the configuration's order
        self._links: dict[str, Link] = {}
        self._guards: dict[str, AnyDriver] = {}  # what the router holds, by device
        self._watcher = _AlarmsOf(self)
        self._uplink_task: asyncio.Task[None] | None = None
        self._control_tasks: list[asyncio.Task[None]] = []  # loops, protection, interlock
        self._router_tasks: list[asyncio.Task[None]] = []  # holds, audit
        self._helpers: list[asyncio.Task[None]] = []
        self._local_task: asyncio.Task[None] | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self.hj212: Hj212Reporter | None = None  # the environmental platforms' data logger
        self._hj212_task: asyncio.Task[None] | None = None
        self._energy_task: asyncio.Task[None] | None = None  # the `energy` messages
        self._confirm: asyncio.Task[None] | None = None
        # Commands wait while the command layer is rebuilt, and those under way are let
        # finish before it is: they go to one router or the other, never half to each.
        self._commands_open = asyncio.Event()
        self._under_way = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pollers(self) -> list[Poller]:
        return [running.poller for running in self._devices.values()]

    def _alarm_engine(self, config: AgentConfig) -> AlarmEngine:
        path = self.store.path.parent / "alarms.json"
        return AlarmEngine(config.alarms, self.store.submit, path, self.identity)

    async def run(
        self,
        control: Control,
        pending: PendingApply | None = None,
        interrupted: InterruptedApply | None = None,
    ) -> AgentConfig | None:
        """Run until asked to stop (None), or until a configuration comes that needs a new
        runtime (returned; `restarts_runtime`). Every other change is applied in place.
        `pending`: the config_apply this runtime confirms; `interrupted`: one the last run
        of the agent left unfinished, still to be answered."""
        self.control = control
        restart = None
        self._audit = await self.store.call(Audit, self.store.path)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                changes = reload.plan(None, self.config)
                await self.apply(self.config, changes)
                for name, factory in (
                    ("clock", ClockWatch(self.events).run),
                    ("backlog-report", self._report_backlog),
                    ("alarms", self._tick_alarms),
                ):
                    self._helpers.append(
                        tg.create_task(supervise(name, factory, self.events), name=name)
                    )
                self._ready()
                self.up.set()
                log.info("agent running", devices=len(self._devices),
                         config_hash=self.config.config_hash)  # fmt: skip
                if pending is not None:
                    self._start_confirm(pending)
                elif interrupted is not None:
                    self._confirm = asyncio.get_running_loop().create_task(
                        self.report_interrupted(interrupted, self.config.commands.apply_confirm),
                        name="report-interrupted-apply",
                    )
                restart = await self._follow(control)
                if self._confirm is not None and not self._confirm.done():
                    self._confirm.cancel()
                await self._shutdown()
        finally:
            if self._audit is not None:
                await self.store.call(self._audit.close)
            for running in reversed(self._devices.values()):
                await _close_driver(running.driver)
            log.info("drivers closed")
        return restart

    async def _follow(self, control: Control) -> AgentConfig | None:
        """Apply the configurations asked for, one after the other, until a stop (None) or
        one that needs a new runtime (returned, its config_apply left in `control`)."""
        while True:
            await control.changed.wait()
            control.changed.clear()
            if control.stop:
                return None
            new, control.new_config = control.new_config, None
            if new is None:
                continue
            if reload.restarts_runtime(self.config, new):
                return new
            if self._confirm is not None and not self._confirm.done():
                self._confirm.cancel()  # a newer configuration came before it was confirmed
            pending, control.pending_apply = control.pending_apply, None
            if new.config_hash == self.config.config_hash:
                log.info("configuration unchanged", config_hash=new.config_hash)
            else:
                changes = reload.plan(self.config, new)
                await self.apply(new, changes)
                log.info("configuration applied", config_hash=new.config_hash,
                         restarted=changes.restarted,
                         started=changes.started, stopped=changes.stopped,
                         commands_rebuilt=changes.control, alarms_rebuilt=changes.alarms,
                         uplink_reconnected=changes.uplink)  # fmt: skip
                self.events.emit("config_applied", config_hash=new.config_hash)
            self._ready()
            if pending is not None:
                self._start_confirm(pending)

    def _ready(self) -> None:
        sd_notify.notify(f"READY=1\nSTATUS=polling {len(self._devices)} devices")

    def _start_confirm(self, pending: PendingApply) -> None:
        """Confirm (or roll back) the config_apply that the running configuration came from.
        Not in the task group: what goes wrong there must not end the runtime."""
        assert self.control is not None
        timeout = self.config.commands.apply_confirm
        self._confirm = asyncio.get_running_loop().create_task(
            self.confirm_apply(pending, self.control, timeout), name="confirm-apply"
        )

    # -- changing the configuration --------------------------------------------------------

    async def apply(self, new: AgentConfig, changes: reload.Plan) -> None:
        """Go over to `new` as `changes` says (at start: everything starts)."""
        self.health = None
        hj212_changed = self._hj212_task is None or self.config.hj212 != new.hj212
        energy_changed = self._energy_task is None or self.config.energy != new.energy
        specs = reload.device_specs(new)
        if changes.alarms:
            self.alarms = self._alarm_engine(new)
        if changes.control:
            await self._stop_control()
        # Together: a device waits for no other's driver to let go (up to 5 s each).
        await asyncio.gather(*(self._stop_device(d, specs.get(d)) for d in changes.stop))
        used = {running.spec.link for running in self._devices.values()}
        self._links = {key: link for key, link in self._links.items() if key in used}
        for index, device_id in enumerate(changes.start):
            # Spread over one interval the devices that start together (all of them at
            # start), so that they do not all poll at the same instant.
            await self._start_device(specs[device_id], index / len(changes.start))
        self._devices = {d: self._devices[d] for d in specs}
        self.config = new
        if changes.control:
            await self._start_control(new)
        elif self.router is not None:
            self._register_commands(self.router)  # config_apply knows the running config
        if changes.uplink:
            await self._connect_uplink(new)
        else:
            self.uplink.announce(new.config_hash)
        assert self._tg is not None
        if changes.local:
            await _cancel(self._local_task)
            self._local_task = self._tg.create_task(self._local_server(), name="local-socket")
        if changes.metrics:
            await _cancel(self._metrics_task)
            self._metrics_task = None
            if (port := new.metrics.prometheus_port) is not None:
                self._metrics_task = self._tg.create_task(self._metrics(port), name="metrics")
        if hj212_changed:
            await self._start_hj212(new)
        if energy_changed:
            await self._start_energy(new)
        assert self._uplink_task is not None
        self.health = watchdog.runtime_health(self.store.stats, self._uplink_task)

    async def _start_energy(self, config: AgentConfig) -> None:
        """The `energy` messages of the closed 15-minute intervals (docs/energy-accounting.md)."""
        await _cancel(self._energy_task)
        self._energy_task = None
        if config.energy is None:
            return
        assert self._tg is not None
        store = self.store

        def submit(ts: int, payload: bytes) -> None:
            store.submit(Record(TrafficClass.EVENT, "energy", ts, payload=payload))

        publisher = EnergyPublisher(config.energy, store.path, submit, self.identity, self.events)
        self._energy_task = self._tg.create_task(
            supervise("energy", publisher.run, self.events), name="energy"
        )

    async def _start_hj212(self, config: AgentConfig) -> None:
        """The data logger for the environmental platforms, made anew when its section
        changed: what it owes is in its spool, so nothing is lost across the restart."""
        await _cancel(self._hj212_task)
        self._hj212_task, self.hj212 = None, None
        if config.hj212 is None:
            return
        assert self._tg is not None
        intervals = {device.id: device.poll_interval for device in config.devices}
        reporter = Hj212Reporter(config.hj212, self.store.path, self.cache, self.events, intervals)
        self.hj212 = reporter
        self._hj212_task = self._tg.create_task(
            supervise("hj212", reporter.run, self.events), name="hj212"
        )

    async def _start_device(self, spec: reload.DeviceSpec, phase: float) -> None:
        assert self._tg is not None
        device = spec.device
        link = self._links.setdefault(spec.link, Link(spec.link, spec.gap))
        driver = driver_class(device.driver)(device, link)
        try:
            await driver.open()
        except Exception as exc:
            log.warning("driver open failed", device=device.id, error=str(exc))
        poller = Poller(
            device,
            driver,
            self.store.submit_batch,
            self.cache,
            self.events,
            device.poll_interval * phase,
            watcher=self._watcher,
        )
        name = f"poll:{device.id}"
        task = self._tg.create_task(supervise(name, poller.run, self.events), name=name)
        self._devices[device.id] = _Running(spec, driver, poller, task)
        self._guards[device.id] = reload.guard(driver)

    async def _stop_device(self, device_id: str, after: reload.DeviceSpec | None) -> None:
        """Stop polling the device and close its driver; `after`: what it restarts as."""
        running = self._devices.pop(device_id)
        guard = self._guards.get(device_id)
        if isinstance(guard, reload.DriverGuard):
            await guard.retire(COMMAND_DRAIN_S)  # a command under way on it finishes first
        if after is None:
            self._guards.pop(device_id, None)
        await _cancel(running.task)
        await _close_driver(running.driver)
        keep = frozenset(p.id for p in after.device.points) if after is not None else frozenset()
        self.cache.forget(device_id, keep)

    async def _start_control(self, config: AgentConfig) -> None:
        """The command layer: protection, router, loops, flow interlock, and their tasks."""
        assert self._tg is not None and self._audit is not None
        audit = self._audit
        devices = [d for d in config.devices if d.enabled]
        state = self.store.path.parent / "protection.json"
        protection = Protection(config.protection, self.cache, state, self.events)
        self.router = router = CommandRouter(
            devices, self._guards, self.cache, self.store, audit, self.identity, protection,
            self.events,
        )  # fmt: skip
        self.loops = LoopRunner(
            config.loops, self.cache, router, self.events,
            persist=functools.partial(self.store.call, audit.save_loop_settings),
        )  # fmt: skip
        self.protection = protection
        self._register_commands(router)
        await router.start()
        # What loop commands changed outlives a restart, not a change of the loop.
        for stale in self.loops.restore(await self.store.call(audit.loop_settings)):
            await self.store.call(audit.delete_loop_settings, stale)
        interlock = FlowInterlock(protection, router, self.events)
        tg = self._tg
        self._control_tasks = [
            tg.create_task(supervise(name, factory, self.events), name=name)
            for name, factory in (
                ("loops", self.loops.run),
                ("protection", protection.run),
                ("flow-interlock", interlock.run),
            )
        ]
        self._router_tasks = [
            tg.create_task(supervise(name, factory, self.events), name=name)
            for name, factory in (("holds", router.expire_holds), ("audit", router.prune_audit))
        ]
        self._commands_open.set()

    async def _stop_control(self) -> None:
        """Loops stop first (their writes under way finish while drivers are open), then
        the commands under way finish; new ones wait for the next router."""
        self._commands_open.clear()
        await _cancel(*self._control_tasks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), COMMAND_DRAIN_S)
        await _cancel(*self._router_tasks)
        self._control_tasks, self._router_tasks = [], []

    async def _connect_uplink(self, config: AgentConfig) -> None:
        """(Re)connect with `config`. Nothing is lost meanwhile: what is not published yet
        stays in the outbox, and the new connection publishes it."""
        assert self._tg is not None
        if self._uplink_task is not None:
            await self.uplink.stop(0)
            try:
                await asyncio.wait_for(self._uplink_task, self.uplink.STOP_MARGIN_S)
            except TimeoutError:
                log.warning("uplink did not stop in time; cancelled")
            self.uplink = Uplink(config, self.store, __version__, self._on_command, self.events)
        factory = self.uplink.run
        self._uplink_task = self._tg.create_task(
            supervise("uplink", factory, self.events), name="uplink"
        )

    async def _shutdown(self) -> None:
        self.health = None  # the uplink is about to end on purpose
        # Loops stop first: their writes in flight finish while drivers and the audit are
        # still open.
        await _cancel(*self._control_tasks)
        if self._commands:  # let writes under way finish (and answer) before drivers close
            await asyncio.wait(list(self._commands), timeout=COMMAND_DRAIN_S)
        await _cancel(*(running.task for running in self._devices.values()))
        await self.store.flush()  # once: what the store refuses now is counted at close
        await self.uplink.stop(self.config.uplink.flush_timeout)
        bound = self.config.uplink.flush_timeout + self.uplink.STOP_MARGIN_S
        assert self._uplink_task is not None
        try:  # on timeout wait_for cancels it (e.g. asleep in its backoff after a crash)
            await asyncio.wait_for(self._uplink_task, bound)
        except TimeoutError:
            log.warning("uplink did not stop in time; cancelled")
        others = (
            *self._router_tasks, *self._helpers, self._local_task, self._metrics_task,
            self._hj212_task, self._energy_task,
        )  # fmt: skip
        for other in others:
            if other is not None:
                other.cancel()

    async def _report_backlog(self) -> None:
        """A journal line a minute while data waits to be published (an outage, a slow
        link), so that the backlog is visible without the CLI."""
        while True:
            await asyncio.sleep(BACKLOG_REPORT_S)
            stats = await self.store.call(self.store.outbox.stats)
            if stats.oldest_ts is None:
                continue
            age_s = time.time() - stats.oldest_ts / 1000
            if self.uplink.state != "connected" or age_s > BACKLOG_REPORT_S:
                log.warning(
                    "backlog waiting",
                    uplink=self.uplink.state,
                    rows=stats.backlog_rows,
                    points=stats.backlog_points,
                    oldest_age_s=round(age_s),
                    used_bytes=stats.used_bytes,
                    evicted_points=stats.evicted_points,
                )

    # -- commands --------------------------------------------------------------------------

    def _register_commands(self, router: CommandRouter) -> None:
        router.register("status", lambda _c, _ctx: self._status_result)
        router.register("rebirth", lambda _c, _ctx: self._rebirth)
        router.register(
            "config_apply",
            config_apply.handler(
                self.config,
                self.config_path,
                self.control.request_apply if self.control else None,
                lambda: self.control is not None and self.control.pending_apply is not None,
            ),
        )
        router.register("alarm_ack", self._prepare_alarm_ack)
        router.register("backfill", self._prepare_backfill)
        if self.loops is not None:
            router.register("loop", self.loops.handle_command)

    def _prepare_backfill(self, command: messages.Backfill, _context: Context) -> Execution:
        if command.since >= command.until:
            raise messages.Rejected(messages.Reason.BAD_RANGE, "since must be before until")
        known = {d.id for d in self.config.devices}
        unknown = sorted(set(command.devices or ()) - known)
        if unknown:
            raise messages.Rejected(
                messages.Reason.UNKNOWN_POINT, f"no device {', '.join(unknown)} configured"
            )
        outbox = self.store.outbox

        async def backfill() -> dict[str, Any]:
            rows, points = await self.store.call(
                outbox.resend, command.since, command.until, command.devices
            )
            self.store.notify()
            stats = await self.store.call(outbox.stats)
            return {"messages": rows, "points": points,
                    "history_oldest_ts": stats.history_oldest_ts}  # fmt: skip

        return backfill

    def _prepare_alarm_ack(self, command: messages.AlarmAck, context: Context) -> Execution:
        by = command.by or context.by or context.source.label
        try:  # refused before it is accepted: unknown_alarm, already_acknowledged
            self.alarms.ackable(command.alarm)
        except AlarmError as exc:
            raise messages.Rejected(messages.Reason(exc.reason), str(exc)) from None

        async def ack() -> dict[str, Any]:
            try:
                return self.alarms.ack(command.alarm, by, command.note, wall_ms())
            except AlarmError as exc:  # acknowledged meanwhile (not while nothing awaits)
                raise messages.Failed(messages.Reason(exc.reason), str(exc)) from None

        return ack

    async def confirm_apply(self, pending: PendingApply, control: Control, timeout: float) -> None:
        await config_apply.confirm(pending, self, control.request_apply, timeout)

    async def report_rollback(self, command_id: str, reason: str) -> None:
        await config_apply.rolled_back(self, command_id, reason)

    async def report_interrupted(self, interrupted: InterruptedApply, timeout: float) -> None:
        await config_apply.report_interrupted(self, interrupted, timeout)

    async def wait_up(self, timeout: float) -> str | None:
        """None once READY and connected to the broker, else what is missing."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.up.wait(), timeout)
        if not self.up.is_set():
            return "the agent did not start"
        while self.uplink.state != "connected":
            if time.monotonic() > deadline:
                return f"no connection to the broker ({self.uplink.last_error or 'connecting'})"
            await asyncio.sleep(0.1)
        return None

    async def _metrics(self, port: int) -> None:
        try:
            await metrics.serve(port, self.status)
        except OSError as exc:  # a convenience: polling and forwarding go on without it
            log.error("metrics port unavailable", port=port, error=str(exc))

    async def _tick_alarms(self) -> None:
        while True:
            await asyncio.sleep(ALARM_TICK_S)
            self.alarms.tick(wall_ms())

    async def loop_list(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {
            "loops": self.loops.status() if self.loops else [],
            "protection": self.protection.status() if self.protection else [],
        }

    async def config_view(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.config_hash,
            "file": str(self.config_path) if self.config_path else None,
        }

    async def alarm_list(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("history"):
            return {"alarms": self.alarms.active(), "history": self.alarms.history()}
        return {"alarms": self.alarms.active()}

    def _on_command(self, payload: bytes, retained: bool) -> None:
        """A message on the command topic (called on the event loop by the uplink)."""
        router = self.router
        if router is None:
            return  # not started yet: the broker redelivers nothing, the platform retries
        if len(self._commands) >= MAX_COMMANDS_IN_FLIGHT:
            router.refuse_busy(payload)
            return
        task = asyncio.get_running_loop().create_task(self._receive(payload, retained))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _receive(self, payload: bytes, retained: bool) -> None:
        async with self._commanding() as router:
            await router.receive(payload, retained=retained)

    @contextlib.asynccontextmanager
    async def _commanding(self) -> AsyncIterator[CommandRouter]:
        """The router to carry out a command, once the command layer is up (it waits while
        the layer is rebuilt); counted while under way."""
        while not self._commands_open.is_set():  # woken, and closed again meanwhile: wait
            await self._commands_open.wait()
        assert self.router is not None
        self._under_way += 1
        self._idle.clear()
        try:
            yield self.router
        finally:
            self._under_way -= 1
            if not self._under_way:
                self._idle.set()

    async def _status_result(self) -> dict[str, Any]:
        return await self.status()

    async def _rebirth(self) -> dict[str, Any]:
        """Publish the current value of every point, one telemetry message per device."""
        now = wall_ms()
        devices = points = 0
        for poller in self.pollers:
            device = poller.device.id
            snapshot = self.cache.snapshot(device)
            if not snapshot:
                continue
            readings = tuple(snapshot.values())
            self.store.submit_batch(Batch(device, now, readings))
            devices, points = devices + 1, points + len(readings)
        return {"devices": devices, "points": points}

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """The technician's command over the local socket (source: manual)."""
        if self.router is None:
            return {"stages": [], "error": "starting"}
        try:
            command = messages.decode(json.dumps(request.get("command")))
        except messages.Rejected as exc:
            return {"stages": [{"id": exc.command_id, "stage": "rejected",
                                "reason": exc.reason.value, "message": exc.message}]}  # fmt: skip
        stages: list[dict[str, Any]] = []
        context = Context(messages.Source.MANUAL, request["peer"])
        async with self._commanding() as router:
            await router.execute(command, context, stages.append)
        return {"stages": stages}

    async def _local_server(self) -> None:
        handlers: dict[str, LocalHandler] = {
            "status": self.status,
            "points": self.points,
            "command": self.command,
            "logs": logs_handler,
            "alarms": self.alarm_list,
            "loops": self.loop_list,
            "config": self.config_view,
            "hj212": self.hj212_view,
        }
        try:
            await LocalServer(self.config.local.socket, handlers).run()
        except (OSError, AgentAlreadyRunning) as exc:
            # The CLI is a convenience; the agent keeps polling and forwarding without it.
            log.error(
                "local socket unavailable", path=str(self.config.local.socket), error=str(exc)
            )

    async def status(self, _request: dict[str, Any] | None = None) -> dict[str, Any]:
        return await status_report.report(
            self.config, self.started, self.store, self.uplink, self.router, self.alarms,
            self.loops, self.pollers, self.hj212,
        )  # fmt: skip

    async def hj212_view(self, request: dict[str, Any]) -> dict[str, Any]:
        """`hj212 status` and `hj212 send` of the CLI."""
        if self.hj212 is None:
            return {"error": "no_hj212"}  # the CLI says it in the technician's words
        if request.get("send") is not None:
            send = request["send"]
            counts = await self.hj212.resend(
                send["since_ms"], send.get("platform"), tuple(send["kinds"])
            )
            return {"queued": counts}
        return {"platforms": await self.hj212.status()}

    async def points(self, request: dict[str, Any]) -> dict[str, Any]:
        snapshot = self.cache.snapshot(request.get("device"))
        holds = {}
        if self.router is not None:
            for ref in snapshot:
                if (hold := self.router.holds.winner(ref)) is not None:
                    holds[ref] = self.router.hold_view(hold)
        return {
            "holds": holds,
            "points": {
                ref: {"value": r.value, "quality": r.quality.value, "reason": r.reason, "ts": r.ts}
                for ref, r in snapshot.items()
            },
        }


async def _cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks and wait until they have ended."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def _close_driver(driver: AnyDriver) -> None:
    try:
        async with asyncio.timeout(DRIVER_CLOSE_TIMEOUT_S):
            await driver.close()
    except Exception as exc:
        log.warning(
            "driver close failed", device=driver.device.id, error=str(exc) or type(exc).__name__
        )


def _store_for(config: AgentConfig) -> StoreWorker:
    s = config.store
    return StoreWorker(
        s.path,
        int(s.disk_budget),
        s.retention,
        s.commit_interval,
        identity=config.identity,
        history_s=s.history,
    )


async def serve(
    config_path: Path, config: AgentConfig, interrupted: InterruptedApply | None = None
) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit code. `interrupted`: a config_apply that
    config_apply.recover() rolled back before `config` was loaded, still to be answered."""
    started = time.monotonic()
    control = Control()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, control.request_stop)
    loop.add_signal_handler(signal.SIGINT, control.request_stop)
    events: Events | None = None  # once the store is open
    reloads: set[asyncio.Task[None]] = set()  # referenced until done (the loop's are weak)

    def on_sighup() -> None:
        if events is None:  # the store is still opening: nothing runs yet to reload
            log.warning("reload ignored: the agent is still starting")
            return
        task = loop.create_task(_reload(config_path, control, events), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)

    store = _store_for(config)
    await store.open()
    events = Events(store.submit_event, config.identity)
    writer = loop.create_task(supervise("store-writer", store.run, events), name="store-writer")
    events.emit(
        "agent_started", version=__version__, config_hash=config.config_hash, pid=os.getpid()
    )
    runtime: Runtime | None = None

    def health() -> str | None:
        # One watchdog for the process: it outlives runtime swaps on SIGHUP, which must not
        # starve it (closing many slow drivers can take longer than WatchdogSec).
        check = runtime.health if runtime is not None else None
        return check() if check is not None else None

    pinger = loop.create_task(watchdog.run(health), name="watchdog")
    pending: PendingApply | None = None
    try:
        while not control.stop:  # a SIGTERM while the store opened: no runtime at all
            runtime = Runtime(config, store, events, started, config_path)
            restart = await runtime.run(control, pending, interrupted)
            interrupted = None
            if restart is None:
                break
            # The store or the identity changed: what the runtime cannot change in place.
            pending, control.pending_apply = control.pending_apply, None
            previous, config = config, restart
            if config.store != previous.store:
                # The outbox moves with its settings; everything committed so far stays in
                # the old file and is published from there by an agent started on it.
                log.warning("store settings changed; reopening", path=str(config.store.path))
            else:
                log.warning("site or gateway changed; reopening the store", **config.identity)
            # The store says who it is in what it writes itself (data_evicted, ...).
            await store.close()
            store = _store_for(config)
            await store.open()
            writer.cancel()
            events = Events(store.submit_event, config.identity)
            writer = loop.create_task(
                supervise("store-writer", store.run, events), name="store-writer"
            )
            events.emit("config_applied", config_hash=config.config_hash)
    finally:
        sd_notify.notify("STOPPING=1")
        pinger.cancel()
        writer.cancel()
        await store.close()
        log.info("agent stopped")
    return 0


async def _reload(path: Path, control: Control, events: Events) -> None:
    try:
        config = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        events.emit(
            "config_rejected",
            level="error",
            file=str(path),
            problems=[str(issue) for issue in exc.issues],
            action="kept the running configuration",
        )
        return
    log.info("configuration valid; applying", config_hash=config.config_hash)
    # systemd's reload protocol: RELOADING=1 now, READY=1 once the runtime runs the new
    # configuration (at once when it is the running one).
    sd_notify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    control.request_reload(config)
