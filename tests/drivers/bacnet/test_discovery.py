"""Who-Is / I-Am by broadcast between two network namespaces joined by a veth pair
(broadcast does not work between two stacks on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.drivers.bacnet.conftest import OBJECTS
from tests.drivers.bacnet.sim import REPO, SimProcess

CLIENT_IP, DEVICE_IP = "198.51.100.1/24", "198.51.100.2/24"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = f"{os.getpid() % 100000}"
    client, device = f"eabn-c{tag}", f"eabn-d{tag}"
    try:
        _ip("netns", "add", client)
        _ip("netns", "add", device)
        _ip("link", "add", f"eabc{tag}", "type", "veth", "peer", "name", f"eabd{tag}")
        for ns, end, address in ((client, "c", CLIENT_IP), (device, "d", DEVICE_IP)):
            _ip("link", "set", f"eab{end}{tag}", "netns", ns)
            _ip("-n", ns, "addr", "add", address, "dev", f"eab{end}{tag}")
            _ip("-n", ns, "link", "set", f"eab{end}{tag}", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except (OSError, subprocess.CalledProcessError) as exc:
        for ns in (client, device):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        pytest.skip(f"cannot create network namespaces here: {exc}")
    yield client, device
    for ns in (client, device):  # deleting a namespace deletes its veth end (and the pair)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def discover_in(ns: str, **kwargs: Any) -> list[dict[str, Any]]:
    code = (
        "import asyncio, dataclasses, json, sys\n"
        "from drivers.bacnet.discovery import discover\n"
        "found = asyncio.run(discover(**json.loads(sys.argv[1])))\n"
        "print(json.dumps([dataclasses.asdict(d) for d in found]))\n"
    )
    args = json.dumps({"local_address": CLIENT_IP, "timeout": 1.0, **kwargs})
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, args],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_who_is_finds_the_device(
    netns: tuple[str, str], start_sim: Callable[..., SimProcess]
) -> None:
    client, device = netns
    start_sim(OBJECTS, instance=5005, address=DEVICE_IP, prefix=("ip", "netns", "exec", device))
    found = discover_in(client)
    assert found == [
        {"instance": 5005, "address": "198.51.100.2", "vendor": 999, "name": "sim-5005"}
    ]
    assert discover_in(client, low=5005, high=5005, names=False)[0]["name"] is None
    assert discover_in(client, low=1, high=100) == []
