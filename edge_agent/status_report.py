"""What the running agent reports about itself: `edge-agent status`, the platform's `status`
command and the metrics all read this one report (docs/mqtt-api.md shows it)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from edge_agent import __version__

if TYPE_CHECKING:
    from control_loops.runner import LoopRunner
    from edge_agent.alarms.engine import AlarmEngine
    from edge_agent.commands.router import CommandRouter
    from edge_agent.config.models import AgentConfig
    from edge_agent.hj212.reporter import Hj212Reporter
    from edge_agent.scheduler import Poller
    from edge_agent.store.worker import StoreWorker
    from edge_agent.uplink import Uplink

STATUS_ALARMS = 10  # the most pressing alarms shown (all of them: `edge-agent alarms`)


async def report(
    config: AgentConfig,
    started: float,
    store: StoreWorker,
    uplink: Uplink,
    router: CommandRouter | None,
    alarms: AlarmEngine,
    loops: LoopRunner | None,
    pollers: Iterable[Poller],
    hj212: Hj212Reporter | None = None,
) -> dict[str, Any]:
    """The report; `started` is the monotonic time the process started."""
    outbox = await store.call(store.outbox.stats)
    return {
        "version": __version__,
        "pid": os.getpid(),
        **config.identity,
        "config_hash": config.config_hash,
        "uptime_s": round(time.monotonic() - started, 1),
        "uplink": uplink.stats(),
        "commands": router.stats() if router else None,
        "alarms": {**alarms.summary(), "list": alarms.active()[:STATUS_ALARMS]},
        "loops": loops.status() if loops else [],
        "store": {**dataclasses.asdict(outbox), **store.stats()},
        "devices": {
            p.device.id: {
                "driver": p.device.driver,
                "points": len(p.device.points),
                **p.health.as_dict(),
            }
            for p in pollers
        },
        "hj212": await hj212.summary() if hj212 is not None else None,
    }
