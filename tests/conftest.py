from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber
from tests.harness import AgentProcess


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(tmp_path / "broker").start()
    yield broker
    broker.stop()


@pytest.fixture
def platform(broker: LocalBroker) -> Iterator[PlatformSubscriber]:
    subscriber = PlatformSubscriber(broker.port, topic="t/#").start()
    yield subscriber
    subscriber.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Agents started by a test; any still running at the end are killed."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.process and agent.process.poll() is None:
            agent.kill()
