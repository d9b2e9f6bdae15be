"""Cross-checks with independent Modbus implementations: mbpoll and a libmodbus server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.points import Quality
from tests.drivers.modbus.conftest import close_to, device, pt

PEERS = Path(__file__).parent / "peers"


async def mbpoll(port: int, *args: str) -> list[str]:
    """Values mbpoll reads (one poll, 0-based addresses), as text."""
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-p", str(port), "-0", "-1", "-o", "2", *args, "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    return [line.split("\t")[-1].strip() for line in out.decode().splitlines() if "]: " in line]


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
@pytest.mark.parametrize(
    ("pid", "args"),
    [
        ("chws_temp", ["-t", "4:float", "-r", "100"]),  # mbpoll's default: word little
        ("flow", ["-t", "4:float", "-B", "-r", "112"]),
        ("delta", ["-t", "4:int", "-r", "120"]),
        ("chws_sp", ["-t", "4", "-r", "110"]),
        ("u16", ["-t", "4", "-r", "320"]),
        ("power_kw", ["-t", "3", "-r", "9"]),
        ("temp_in", ["-t", "3", "-r", "20"]),
        ("running", ["-t", "0", "-r", "0"]),
        ("door", ["-t", "1", "-r", "3"]),
    ],
)
async def test_mbpoll_reads_what_the_driver_reads(server, make_driver, pid, args) -> None:
    dev = device(server.port)
    point = next(p for p in dev.points if p.id == pid)
    (text,) = await mbpoll(server.port, *args)
    # mbpoll shows a register unsigned, then signed in brackets when they differ: "65535 (-1)".
    shown = text.replace("(", "").replace(")", "").split()
    raw = float(shown[-1] if point.modbus.type == "int16" else shown[0])
    (reading,) = await (await make_driver(dev)).read([point])
    assert reading.quality is Quality.GOOD
    expected = raw * point.scale + point.offset
    assert close_to(float(reading.value), expected), (reading, text)


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
async def test_mbpoll_writes_what_the_driver_reads(server, source, make_driver) -> None:
    dev = device(server.port)
    point = next(p for p in dev.points if p.id == "chws_sp")
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-p", str(server.port), "-0", "-1", "-r", "110", "127.0.0.1", "88",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0
    assert source.values["chws_sp"] == pytest.approx(8.8)
    (reading,) = await (await make_driver(dev)).read([point])
    assert reading.value == pytest.approx(8.8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def libmodbus_server(tmp_path: Path) -> AsyncIterator[int]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    binary = tmp_path / "libmodbus_server"
    build = subprocess.run(
        [
            "gcc",
            "-O1",
            "-Wno-overflow",
            "-o",
            str(binary),
            str(PEERS / "libmodbus_server.c"),
            "-I/usr/include/modbus",
            "-lmodbus",
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.skip(
            f"cannot build the libmodbus peer (libmodbus-dev missing?): {build.stderr[:300]}"
        )
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        str(binary), str(port), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 5)).strip() == b"ready"
    yield port
    proc.kill()
    await proc.wait()


LIBMODBUS_MAP = [
    pt("abcd", "holding", 0, "float32"),
    pt("cdab", "holding", 2, "float32", mb={"word_order": "little"}),
    pt("badc", "holding", 4, "float32", mb={"byte_order": "little"}),
    pt("dcba", "holding", 6, "float32", mb={"word_order": "little", "byte_order": "little"}),
    pt("i16", "holding", 10, "int16", writable=True, limits={"min": -9999, "max": 9999}),
    pt("u32", "holding", 12, "uint32"),
    pt("i64", "holding", 14, "int64"),
    pt("text", "holding", 20, "string", mb={"length": 2}, kind="string"),
    pt("flag5", "holding", 30, "bit", mb={"bit": 5}, kind="binary"),
    pt("ir3", "input", 3),
    pt("coil2", "coil", 2, kind="binary", writable=True),
    pt("di7", "discrete", 7, kind="binary"),
]
LIBMODBUS_VALUES = {
    "abcd": 6.5,
    "cdab": -3.25,
    "badc": 12.5,
    "dcba": 100.0,
    "i16": -1234,
    "u32": 4_000_000_000,
    "i64": -1_099_511_627_783,
    "text": "ABCD",
    "flag5": True,
    "ir3": 1234,
    "coil2": True,
    "di7": True,
}


async def test_driver_reads_and_writes_a_libmodbus_server(libmodbus_server, make_driver) -> None:
    dev = device(libmodbus_server, points=LIBMODBUS_MAP, timeout=1.0)
    driver = await make_driver(dev)
    readings = await driver.read(dev.points)
    assert all(r.quality is Quality.GOOD for r in readings), readings
    assert {r.point: r.value for r in readings} == LIBMODBUS_VALUES
    points = {p.id: p for p in dev.points}
    assert (await driver.write(points["i16"], -77)).value == -77
    assert (await driver.write(points["coil2"], False)).value is False
