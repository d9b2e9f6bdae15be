"""The registry of local BACnet applications: a port given up is free again at once for a
new application of ours (a device restarted on a reload), and never kept by a bind that
landed after its application was closed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from drivers.bacnet.stack import StackRegistry, check_free, until_bound
from tests.drivers.bacnet.sim import free_udp_port


def _bind() -> str:
    return f"127.0.0.1/8:{free_udp_port()}"


async def _free(bind: str, timeout: float = 2.0) -> None:
    """Once nothing holds the port any more (TimeoutError if something keeps it)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                check_free(bind)
                return
            except OSError:
                await asyncio.sleep(0.01)


async def test_a_port_released_is_taken_again_at_once() -> None:
    stacks = StackRegistry()
    bind = _bind()
    old = stacks.acquire(bind, 1)
    await until_bound(old)
    stacks.release(bind)
    with pytest.raises(OSError):  # bacpypes3 closes the socket a loop iteration later
        check_free(bind)
    new = stacks.acquire(bind, 1)  # was: OSError "Address already in use"
    assert new is not old
    await until_bound(new)
    stacks.release(bind)
    await _free(bind)


async def test_an_application_released_before_it_bound_does_not_keep_the_port() -> None:
    stacks = StackRegistry()
    bind = _bind()
    app = stacks.acquire(bind, 1)
    stacks.release(bind)  # its bind is still a pending task
    await asyncio.sleep(0.2)  # the bind lands meanwhile
    await _free(bind)  # was: bound once the task ran, and never closed
    assert stacks.acquire(bind, 1) is not app
    stacks.release(bind)
    await _free(bind)


async def test_a_port_held_by_someone_else_is_still_refused() -> None:
    stacks = StackRegistry()
    bind = _bind()
    host, port = "127.0.0.1", int(bind.rpartition(":")[2])
    app = stacks.acquire(bind, 1)
    await until_bound(app)
    stacks.release(bind)
    await _free(bind)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((host, port))
        with pytest.raises(OSError):
            stacks.acquire(bind, 1)
