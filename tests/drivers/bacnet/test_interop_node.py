"""Cross-check with an independent BACnet implementation: node-bacnet (pure JavaScript,
no bacpypes underneath) against the same simulated device our driver talks to. What our
driver reads, what it writes into the priority array and what it reads of another
client's writes must agree with what a third-party stack sees."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

import pytest

from tests.drivers.bacnet.conftest import device_config
from tests.drivers.bacnet.sim import SimProcess, free_udp_port
from tests.harness import REPO

INTEROP = REPO / "tests" / "interop"
# (BACnet object type number, instance) of the conftest OBJECTS, and our point ids.
OBJECTS = {
    "chws_temp": (0, 1), "valve": (1, 2), "chws_sp": (2, 10), "flow_ok": (3, 1),
    "run_cmd": (4, 1), "enable": (5, 3), "stage": (13, 1), "fan_mode": (14, 2),
    "season": (19, 3),
}  # fmt: skip
PRIORITY_ARRAY = 87
REAL, ENUMERATED, NULL = 4, 9, 0


@pytest.fixture(scope="module")
def node_bacnet() -> Callable[[str, list[dict]], list]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the interop tests (./dev installs them)"
    if not (INTEROP / "node_modules" / "node-bacnet").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP, check=True, timeout=300,
        )  # fmt: skip

    def run(address: str, ops: list[dict]) -> list:
        result = subprocess.run(
            [node, str(INTEROP / "bacnet_client.js"), address, str(free_udp_port()),
             json.dumps(ops)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return run


def _point(device, point_id: str):
    return next(p for p in device.points if p.id == point_id)


async def test_both_stacks_read_the_same_values(
    sim: SimProcess, open_driver: Callable, node_bacnet: Callable
) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    ours = {r.point: r.value for r in await driver.read(device.points)}
    (theirs,) = node_bacnet(sim.address, [{"op": "rpm", "objects": list(OBJECTS.values())}])
    for (point_id, _), values in zip(OBJECTS.items(), theirs, strict=True):
        (value,) = values
        expected = ours[point_id]
        if isinstance(expected, bool):
            assert value == {"type": ENUMERATED, "value": int(expected)}, point_id
        else:
            assert value["value"] == pytest.approx(expected), point_id


async def test_our_priority_writes_are_where_another_stack_expects_them(
    sim: SimProcess, open_driver: Callable, node_bacnet: Callable
) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    sp = (2, 10)
    read_array = {"op": "read", "type": sp[0], "instance": sp[1], "property": PRIORITY_ARRAY}
    read_value = {"op": "read", "type": sp[0], "instance": sp[1]}

    await driver.write(_point(device, "chws_sp"), 9.5)  # the point's priority: 8
    array, value = node_bacnet(sim.address, [read_array, read_value])
    assert len(array) == 16
    assert array[7] == {"type": REAL, "value": 9.5}
    assert all(slot["type"] == NULL for i, slot in enumerate(array) if i != 7)
    assert value == [{"type": REAL, "value": 9.5}]

    await driver.release(_point(device, "chws_sp"))
    array, value = node_bacnet(sim.address, [read_array, read_value])
    assert all(slot["type"] == NULL for slot in array)
    assert value == [{"type": REAL, "value": 7.0}]  # the relinquish default


async def test_we_read_what_another_stack_writes_and_relinquishes(
    sim: SimProcess, open_driver: Callable, node_bacnet: Callable
) -> None:
    device = device_config(sim.address)
    driver = await open_driver(device)
    enable = _point(device, "enable")
    bv = {"type": 5, "instance": 3}
    assert (await driver.read([enable]))[0].value is True

    node_bacnet(sim.address, [{"op": "write", **bv, "tag": ENUMERATED, "value": 0, "priority": 9}])
    assert (await driver.read([enable]))[0].value is False
    node_bacnet(sim.address, [{"op": "write", **bv, "tag": NULL, "priority": 9}])
    assert (await driver.read([enable]))[0].value is True
