"""The agent process: supervision, signals, orderly shutdown and config reload.

One `Runtime` runs one configuration: drivers, pollers, uplink, clock watch and the local
socket, as named tasks in a TaskGroup. The store outlives runtimes, so a reload loses
nothing. SIGTERM/SIGINT: stop polling, commit what was polled, publish the backlog for at
most `uplink.flush_timeout`, say offline, close drivers in reverse order, exit 0.
SIGHUP: validate the file again; a bad config is reported and the running one kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from control_loops.protection import FlowInterlock, Protection
from control_loops.runner import LoopRunner
from drivers.base import AnyDriver, Link
from drivers.registry import driver_class
from edge_agent import __version__, config_apply, logs, metrics, sd_notify, status_report, watchdog
from edge_agent.alarms.engine import AlarmEngine, AlarmError
from edge_agent.cache import PointCache
from edge_agent.commands import messages
from edge_agent.commands.audit import Audit
from edge_agent.commands.context import Context, Execution
from edge_agent.commands.router import CommandRouter
from edge_agent.config.base import DeviceBase
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.models import AgentConfig
from edge_agent.config_apply import InterruptedApply, PendingApply
from edge_agent.events import Events
from edge_agent.local_api import AgentAlreadyRunning, LocalServer
from edge_agent.local_api import Handler as LocalHandler
from edge_agent.local_logs import logs_handler
from edge_agent.points import Batch, wall_ms
from edge_agent.scheduler import ClockWatch, Poller
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


class Runtime:
    """Everything that depends on one configuration."""

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
        self.pollers: list[Poller] = []
        self.router: CommandRouter | None = None
        self.loops: LoopRunner | None = None
        self.protection: Protection | None = None
        self._commands: set[asyncio.Task] = set()
        self.control: Control | None = None
        self.up = asyncio.Event()  # set once READY was reported
        self.alarms = AlarmEngine(
            config.alarms, store.submit, store.path.parent / "alarms.json", self.identity
        )
        # What the process watchdog asks while this runtime runs; None while it starts or
        # stops (a swap or a shutdown is deliberate and bounded, not a failure).
        self.health: watchdog.HealthCheck | None = None

    async def run(self, control: Control) -> None:
        self.control = control
        devices = [d for d in self.config.devices if d.enabled]
        async with contextlib.AsyncExitStack() as stack:
            links: dict[str, Link] = {}
            gaps = {link.id: link.gap for link in self.config.links}
            drivers: dict[str, AnyDriver] = {}
            for index, device in enumerate(devices):
                driver = drivers[device.id] = await self._open_driver(device, links, gaps, stack)
                stagger = device.poll_interval * index / max(1, len(devices))
                self.pollers.append(
                    Poller(
                        device,
                        driver,
                        self.store.submit_batch,
                        self.cache,
                        self.events,
                        stagger,
                        watcher=self.alarms,
                    )
                )
            audit = await self.store.call(Audit, self.store.path)
            stack.push_async_callback(self.store.call, audit.close)
            state_dir = self.store.path.parent
            protection = Protection(
                self.config.protection, self.cache, state_dir / "protection.json", self.events
            )
            self.router = CommandRouter(
                devices, drivers, self.cache, self.store, audit, self.identity, protection,
                self.events,
            )  # fmt: skip
            self.loops = LoopRunner(
                self.config.loops, self.cache, self.router, self.events,
                persist=functools.partial(self.store.call, audit.save_loop_settings),
            )  # fmt: skip
            self.protection = protection
            self._register_commands(self.router)
            await self.router.start()
            # What loop commands changed outlives a restart, not a change of the loop.
            for stale in self.loops.restore(await self.store.call(audit.loop_settings)):
                await self.store.call(audit.delete_loop_settings, stale)
            interlock = FlowInterlock(protection, self.router, self.events)
            async with asyncio.TaskGroup() as tg:
                uplink = tg.create_task(
                    supervise("uplink", self.uplink.run, self.events), name="uplink"
                )
                polls = [
                    tg.create_task(
                        supervise(f"poll:{p.device.id}", p.run, self.events),
                        name=f"poll:{p.device.id}",
                    )
                    for p in self.pollers
                ]
                helpers = [
                    tg.create_task(
                        supervise("clock", ClockWatch(self.events).run, self.events), name="clock"
                    ),
                    tg.create_task(self._local_server(), name="local-socket"),
                    tg.create_task(
                        supervise("backlog-report", self._report_backlog, self.events),
                        name="backlog-report",
                    ),
                    tg.create_task(
                        supervise("holds", self.router.expire_holds, self.events), name="holds"
                    ),
                    tg.create_task(
                        supervise("audit", self.router.prune_audit, self.events), name="audit"
                    ),
                    tg.create_task(
                        supervise("alarms", self._tick_alarms, self.events), name="alarms"
                    ),
                ]
                control_tasks = [
                    tg.create_task(supervise(name, factory, self.events), name=name)
                    for name, factory in (
                        ("loops", self.loops.run),
                        ("protection", protection.run),
                        ("flow-interlock", interlock.run),
                    )
                ]
                if (port := self.config.metrics.prometheus_port) is not None:
                    helpers.append(tg.create_task(self._metrics(port), name="metrics"))
                self.health = watchdog.runtime_health(self.store.stats, uplink)
                sd_notify.notify(f"READY=1\nSTATUS=polling {len(devices)} devices")
                self.up.set()
                log.info("agent running", devices=len(devices), config_hash=self.config.config_hash)
                await control.changed.wait()
                # Loops stop first: their writes in flight finish while drivers and the
                # audit are still open.
                for task in control_tasks:
                    task.cancel()
                await asyncio.gather(*control_tasks, return_exceptions=True)
                await self._shutdown(polls, uplink, helpers)
        log.info("drivers closed")

    async def _open_driver(
        self,
        device: DeviceBase,
        links: dict[str, Link],
        gaps: dict[str, float],
        stack: contextlib.AsyncExitStack,
    ) -> AnyDriver:
        cls = driver_class(device.driver)
        key = device.link or cls.link_key(device)
        link = links.setdefault(key, Link(key, gaps.get(device.link or "", 0.0)))
        driver = cls(device, link)
        try:
            await driver.open()
        except Exception as exc:
            log.warning("driver open failed", device=device.id, error=str(exc))
        stack.push_async_callback(_close_driver, driver)
        return driver

    async def _shutdown(
        self, polls: list[asyncio.Task], uplink: asyncio.Task, helpers: list[asyncio.Task]
    ) -> None:
        self.health = None  # the uplink is about to end on purpose
        if self._commands:  # let writes under way finish (and answer) before drivers close
            await asyncio.wait(list(self._commands), timeout=COMMAND_DRAIN_S)
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        await self.store.flush()  # once: what the store refuses now is counted at close
        await self.uplink.stop(self.config.uplink.flush_timeout)
        bound = self.config.uplink.flush_timeout + self.uplink.STOP_MARGIN_S
        try:  # on timeout wait_for cancels it (e.g. asleep in its backoff after a crash)
            await asyncio.wait_for(uplink, bound)
        except TimeoutError:
            log.warning("uplink did not stop in time; cancelled")
        for task in helpers:
            task.cancel()

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
        task = asyncio.get_running_loop().create_task(router.receive(payload, retained=retained))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

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
        router = self.router
        if router is None:
            return {"stages": [], "error": "starting"}
        try:
            command = messages.decode(json.dumps(request.get("command")))
        except messages.Rejected as exc:
            return {"stages": [{"id": exc.command_id, "stage": "rejected",
                                "reason": exc.reason.value, "message": exc.message}]}  # fmt: skip
        stages: list[dict[str, Any]] = []
        context = Context(messages.Source.MANUAL, request["peer"])
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
            self.loops, self.pollers,
        )  # fmt: skip

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

    def reload() -> None:
        if events is None:  # the store is still opening: nothing runs yet to reload
            log.warning("reload ignored: the agent is still starting")
            return
        task = loop.create_task(_reload(config_path, control, events), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)

    store = _store_for(config)
    await store.open()
    identity = config.identity
    events = Events(store.submit_event, identity)
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
            control.changed.clear()
            runtime = Runtime(config, store, events, started, config_path)
            confirm = None
            if pending is not None:
                confirm = loop.create_task(
                    runtime.confirm_apply(pending, control, config.commands.apply_confirm),
                    name="confirm-apply",
                )
            elif interrupted is not None:
                confirm = loop.create_task(
                    runtime.report_interrupted(interrupted, config.commands.apply_confirm),
                    name="report-interrupted-apply",
                )
                interrupted = None
            await runtime.run(control)
            if confirm is not None and not confirm.done():
                confirm.cancel()
            if control.stop:
                break
            pending, control.pending_apply = control.pending_apply, None
            previous, config = config, control.new_config or config
            if config.store != previous.store:
                # The outbox moves with its settings; everything committed so far stays in
                # the old file and is published from there by an agent started on it.
                log.warning("store settings changed; reopening", path=str(config.store.path))
                await store.close()
                store = _store_for(config)
                await store.open()
                writer.cancel()
                events = Events(store.submit_event, identity)
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
    # systemd's reload protocol: RELOADING=1 now, READY=1 when the new runtime is up.
    sd_notify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    control.request_reload(config)
