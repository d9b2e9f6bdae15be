"""Fixtures shared by the store tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.store.outbox import Outbox

BIG = 10**12  # a disk budget that never binds
DAY = 86_400.0


@pytest.fixture
def open_outbox(tmp_path: Path) -> Iterator[Callable[..., Outbox]]:
    opened: list[Outbox] = []

    def factory(budget: int = BIG, retention: float = DAY, **kwargs: object) -> Outbox:
        box = Outbox(tmp_path / "outbox.db", budget, retention, **kwargs)
        opened.append(box)
        return box

    yield factory
    for box in opened:
        box.close()
