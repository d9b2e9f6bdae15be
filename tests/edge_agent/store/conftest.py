"""Fixtures shared by the store tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.store import outbox as outbox_module
from edge_agent.store.outbox import Lane, Outbox
from tests.filesystems import small_tmpfs

BIG = 10**12  # a disk budget that never binds
DAY = 86_400.0


def evicted_events(box: Outbox) -> list[dict]:
    """Seal what is pending and lease every data_evicted event, as the uplink would."""
    box.announce(force=True)
    messages = [{**json.loads(r.payload), "seq": r.seq} for r in box.lease(Lane.PRIORITY, 100_000)]
    return [m for m in messages if m["type"] == "data_evicted"]


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


@pytest.fixture
def small_filesystem(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """A real 16 MiB filesystem (tmpfs), to run out of space for real."""
    with small_tmpfs(tmp_path / "small", "16m") as mount:
        # Scaled down to 16 MiB (the WAL alone may reach 4 MiB between checkpoints).
        monkeypatch.setattr(outbox_module, "FS_HEADROOM_BYTES", 2**20)
        monkeypatch.setattr(outbox_module, "EVICT_CHUNK_BYTES", 2**18)
        yield mount
