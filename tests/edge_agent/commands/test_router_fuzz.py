"""The router under random commands: never crashes, answers every usable id exactly once
with a final stage, and drops (with a count) what cannot be answered."""

from __future__ import annotations

import asyncio
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.cache import PointCache
from edge_agent.commands.audit import Audit
from edge_agent.commands.router import CommandRouter
from edge_agent.store.worker import StoreWorker
from tests.edge_agent.commands.test_decoder_fuzz import USABLE_ID, json_values, mutated_commands

DEVICE = FakeDevice.model_validate({
    "id": "ahu", "driver": "fake", "points": [
        {"id": "sp", "writable": True, "limits": {"min": 0, "max": 50}, "min_write_interval": 0},
        {"id": "run", "kind": "binary", "writable": True, "min_write_interval": 0},
        {"id": "t"},
    ],
})  # fmt: skip


def _payloads() -> st.SearchStrategy[bytes]:
    targeted = mutated_commands().map(
        lambda c: {**c, "point": c["point"].replace("ch-1.chws_sp", "ahu.sp")}
        if isinstance(c.get("point"), str) else c
    )  # fmt: skip
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        targeted.map(lambda c: json.dumps(c).encode()),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_payloads(), min_size=1, max_size=8))
def test_router_answers_or_drops_everything(tmp_path_factory, payloads: list[bytes]) -> None:
    asyncio.run(_check(tmp_path_factory.mktemp("router"), payloads))


async def _check(workdir, payloads: list[bytes]) -> None:
    store = StoreWorker(workdir / "outbox.db", 10**9, 86400.0, 0.01)
    await store.open()
    replies: list[dict] = []
    try:
        audit = await store.call(Audit, store.path)
        driver = FakeDriver(DEVICE, Link("ahu"))
        router = CommandRouter([DEVICE], {"ahu": driver}, PointCache(), store, audit, {})
        router._publish = replies.append  # what would go to the outbox, in order
        for payload in payloads:
            await asyncio.wait_for(router.receive(payload), 10)
        await store.call(audit.close)
    finally:
        await store.close()
    finals = [r for r in replies if r["stage"] in ("rejected", "done", "failed")]
    answerable = sum(_answerable(payload) for payload in payloads)
    assert len(finals) == answerable  # one final stage per answerable message (repeats too)
    assert router.counts["dropped"] == len(payloads) - answerable
    assert all(r["stage"] != "failed" or r["reason"] != "internal" for r in finals), finals


def _answerable(payload: bytes) -> bool:
    """It has an id a reply can carry: a usable one, or an unusable one that is echoed (a
    string of at most 1024 characters, or a number)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    sent = data.get("id") if isinstance(data, dict) else None
    if isinstance(sent, str):
        return USABLE_ID.fullmatch(sent) is not None or len(sent) <= 1024
    finite = isinstance(sent, int | float) and math.isfinite(sent)
    return finite and not isinstance(sent, bool)
