from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import structlog

from edge_agent import scheduler, service
from edge_agent.config.models import AgentConfig
from edge_agent.store.worker import StoreLocked, StoreWorker
from tests.events import EventLog
from tests.harness import fake_device, site_config


class Recorder:
    def __init__(self) -> None:
        self.records = EventLog()
        self.events = self.records.events()

    def bodies(self) -> list[dict]:
        return list(self.records)


async def test_a_crashed_task_is_reported_and_restarted_with_backoff(monkeypatch):
    monkeypatch.setattr(service, "MAX_RESTART_DELAY_S", 0.05)
    rec = Recorder()
    calls = []

    async def flaky() -> None:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 3:
            raise RuntimeError(f"boom {len(calls)}")

    await asyncio.wait_for(service.supervise("flaky", flaky, rec.events), 5)
    assert len(calls) == 3
    crashed = [b for b in rec.bodies() if b["type"] == "task_crashed"]
    assert [c["error"] for c in crashed] == ["RuntimeError: boom 1", "RuntimeError: boom 2"]
    assert all(c["task"] == "flaky" for c in crashed)


async def test_cancellation_is_not_a_crash():
    rec = Recorder()
    task = asyncio.create_task(service.supervise("sleeper", lambda: asyncio.sleep(60), rec.events))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and rec.records == []


async def test_a_wall_clock_step_is_reported(monkeypatch):
    # Stepping the real clock would disturb the whole machine; the offset is what is watched.
    rec = Recorder()
    offsets = iter([1000.0, 1000.0, 1000.001, 1037.5, 1037.5])
    monkeypatch.setattr(scheduler.ClockWatch, "offset", staticmethod(lambda: next(offsets)))
    watch = scheduler.ClockWatch(rec.events, threshold_s=2.0, period_s=0.001)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    jumps = [b for b in rec.bodies() if b["type"] == "clock_jump"]
    assert [j["jump_s"] for j in jumps] == [37.499]


async def test_a_reload_asked_while_the_store_opens_is_refused_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGHUP's handler named `events` before it was bound: a SIGHUP while the store
    # opened raised NameError in the signal callback (found by mypy).
    config = AgentConfig.model_validate(site_config(tmp_path, 1, [fake_device("d1")]))

    async def open_with_a_sighup(_store: StoreWorker) -> None:
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)  # the signal's handler runs meanwhile
        raise StoreLocked("the test ends the start here")

    monkeypatch.setattr(StoreWorker, "open", open_with_a_sighup)
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        with structlog.testing.capture_logs() as logged, pytest.raises(StoreLocked):
            await service.serve(tmp_path / "site.yaml", config)
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    assert errors == []
    assert "reload ignored: the agent is still starting" in [e["event"] for e in logged]


async def test_a_stop_asked_while_the_store_opens_stops_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The main loop cleared the stop request before the first runtime started: a SIGTERM
    # while the store opened was lost, and the agent ran on.
    config = AgentConfig.model_validate(site_config(tmp_path, 1, [fake_device("d1")]))
    real_open = StoreWorker.open

    async def open_with_a_sigterm(store: StoreWorker) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.1)  # the signal's handler runs meanwhile
        await real_open(store)

    monkeypatch.setattr(StoreWorker, "open", open_with_a_sigterm)
    loop = asyncio.get_running_loop()
    try:
        code = await asyncio.wait_for(service.serve(tmp_path / "site.yaml", config), 15)
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    assert code == 0
