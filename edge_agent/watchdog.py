"""The systemd watchdog: `WATCHDOG=1` every `WATCHDOG_USEC / 2`, but only while healthy.

systemd restarts the agent when pings stop for `WatchdogSec`. So a ping must mean more than
"the process exists": the event loop runs (this task gets scheduled), the store writer is
committing, and the uplink task is alive. A broker outage is not an agent failure (the
outbox is built for it); a crashed, restarting-with-backoff uplink task is.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from edge_agent import logs, sd_notify

log = logs.get("watchdog")

# A health check returns None when healthy, else why not (shown in `systemctl status`).
HealthCheck = Callable[[], str | None]

# A store error must persist this long before pings stop: SQLITE_BUSY or a brief I/O hiccup
# is retried by the writer, and a restart would drop the polls it holds in memory.
STORE_GRACE_S = 60.0


def interval_from_env(env: Mapping[str, str] | None = None) -> float | None:
    """Half of WATCHDOG_USEC in seconds; None when systemd set no watchdog for us."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # inherited by a child process: the watchdog is not ours to feed
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring an invalid WATCHDOG_USEC", value=usec)
        return None
    return value / 2e6 if value > 0 else None


def in_crash_backoff(task: asyncio.Task[Any]) -> bool:
    """True while a `service.supervise` task sleeps before restarting its crashed factory.

    `supervise` awaits the factory's coroutine while it runs and `asyncio.sleep` only in
    its restart backoff, so the coroutine it awaits tells the two apart."""
    awaited = getattr(task.get_coro(), "cr_await", None)
    return getattr(awaited, "cr_code", None) is asyncio.sleep.__code__


def runtime_health(
    store_stats: Callable[[], Mapping[str, object]],
    uplink_task: asyncio.Task[Any],
    *,
    store_grace_s: float = STORE_GRACE_S,
    clock: Callable[[], float] = time.monotonic,
) -> HealthCheck:
    """The Runtime's health: store writer committing, uplink task running (any state)."""
    failing_since: float | None = None

    def check() -> str | None:
        nonlocal failing_since
        error = store_stats().get("error")
        if error is None:
            failing_since = None
        else:
            now = clock()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= store_grace_s:
                return f"store failing for {now - failing_since:.0f} s: {error}"
        if uplink_task.done():
            return "uplink task ended"
        if in_crash_backoff(uplink_task):
            return "uplink task crashed (restarting with backoff)"
        return None

    return check


async def run(check: HealthCheck, interval: float | None = None) -> None:
    """Feed the watchdog while `check()` is None. Without a watchdog: return at once."""
    interval = interval_from_env() if interval is None else interval
    if interval is None:
        return
    log.info("watchdog enabled", ping_every_s=round(interval, 3))
    unhealthy: str | None = None
    while True:
        try:
            reason = check()
        except Exception as exc:  # a broken check must not look healthy
            reason = f"health check failed: {type(exc).__name__}: {exc}"
        if reason is None:
            sd_notify.notify("WATCHDOG=1")
            if unhealthy is not None:
                log.info("healthy again; watchdog pings resumed", was=unhealthy)
                sd_notify.notify("STATUS=running")
        elif reason != unhealthy:
            # Pings stop; systemd restarts us after WatchdogSec unless this clears.
            log.error("unhealthy; withholding watchdog pings", reason=reason)
            sd_notify.notify(f"STATUS=unhealthy: {reason}")
        unhealthy = reason
        await asyncio.sleep(interval)
