"""Modbus discovery against real pymodbus servers (TCP on loopback, RTU over a socat pty
pair) whose register maps have holes: the ranges found must be exactly the mapped ones."""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.discovery import (
    ScanError,
    SerialTarget,
    Span,
    TcpTarget,
    UnitScan,
    parse_numbers,
    parse_span,
    parse_tables,
    scan,
)
from simulators.modbus_server import DictTagSource, ModbusSimServer
from tests.drivers.modbus.conftest import pt

# Holes everywhere: holding 0-9, 20-21, 50-52, 199; input 5-7; coils 0-2 and 10; no
# discrete inputs at all.
MAP: list[dict[str, Any]] = [
    *(pt(f"h{a}", "holding", a) for a in range(10)),
    pt("f20", "holding", 20, "float32"),
    pt("s50", "holding", 50, "string", mb={"length": 3}, kind="string"),
    pt("h199", "holding", 199),
    pt("i5", "input", 5),
    pt("i6", "input", 6, "float32"),
    *(pt(f"c{a}", "coil", a, kind="binary") for a in (0, 1, 2, 10)),
]
VALUES: dict[str, Any] = {p["id"]: 1 for p in MAP} | {"s50": "abc", "f20": 2.5, "i6": 1.5}
for _c in (0, 1, 2, 10):
    VALUES[f"c{_c}"] = True
EXPECTED = {
    "holding": [Span(0, 9), Span(20, 21), Span(50, 52), Span(199, 199)],
    "input": [Span(5, 7)],
    "coil": [Span(0, 2), Span(10, 10)],
    "discrete": [],
}
WHOLE = Span(0, 199)


class CountingServer(ModbusSimServer):
    """The simulator, counting the read requests each unit id receives (and when)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: collections.Counter[int] = collections.Counter()
        self.times: list[float] = []
        inner = self._context.async_getValues

        async def counted(device_id: int, func_code: int, address: int, count: int = 1) -> Any:
            self.requests[device_id] += 1
            self.times.append(time.monotonic())
            return await inner(device_id, func_code, address, count)

        self._context.async_getValues = counted  # type: ignore[method-assign]


def tables(unit: UnitScan) -> dict[str, list[Span]]:
    return {t.table: t.readable for t in unit.tables}


@pytest.fixture
async def tcp() -> AsyncIterator[CountingServer]:
    async with CountingServer({1: MAP, 3: MAP}, DictTagSource(VALUES), strict=True) as server:
        yield server


async def test_finds_present_units_and_exactly_the_mapped_ranges(tcp: CountingServer) -> None:
    seen = []
    result = await scan(
        TcpTarget("127.0.0.1", tcp.port), [1, 2, 3], span=WHOLE, progress=seen.append
    )
    assert [(u.unit, u.present) for u in result.units] == [(1, True), (2, False), (3, True)]
    for unit in result.present:
        assert tables(unit) == EXPECTED
        assert unit.complete
        assert all(not t.unscanned and not t.unsupported for t in unit.tables)
        assert unit.requests == tcp.requests[unit.unit]  # every request counted, no more
    absent = result.units[1]
    assert absent.answer == "exception 11"  # the gateway: "target device did not respond"
    assert absent.requests == tcp.requests[2] == 1
    # 200 addresses x 4 tables with 185 + 200 + 196 + 200 holes; about one request per hole
    assert tcp.requests[1] < 900
    last = seen[-1]
    assert (last.unit, last.units_total, last.addresses_done) == (3, 3, 4 * WHOLE.count)


async def test_max_requests_is_never_exceeded(tcp: CountingServer) -> None:
    result = await scan(TcpTarget("127.0.0.1", tcp.port), [1], span=WHOLE, max_requests=40)
    (unit,) = result.units
    assert unit.present and not unit.complete
    assert unit.requests == tcp.requests[1] == 40
    holding = unit.tables[0]
    assert holding.note == "request budget spent"
    assert holding.unscanned and holding.unscanned[0].end == WHOLE.end
    # what was found before the budget ran out is right, and the rest says "not scanned"
    assert holding.readable[0] == Span(0, 9)
    assert all(t.unscanned == [WHOLE] for t in unit.tables[1:])


async def test_a_table_the_unit_refuses_is_reported_unsupported(tcp: CountingServer) -> None:
    tcp.set_faults(1, {"reject_functions": [2]})  # FC2: read discrete inputs
    result = await scan(
        TcpTarget("127.0.0.1", tcp.port), [1], tables=["discrete", "coil"], span=WHOLE
    )
    (unit,) = result.units
    assert unit.present and unit.answer == "exception 1"  # refusal still proves a device
    discrete, coil = unit.tables
    assert discrete.unsupported and discrete.readable == []
    assert coil.readable == EXPECTED["coil"]


async def test_a_device_that_reads_zeros_in_gaps_is_one_readable_range() -> None:
    async with CountingServer({5: MAP}, DictTagSource(VALUES), strict=False) as server:
        result = await scan(
            TcpTarget("127.0.0.1", server.port), [5], tables=["holding"], span=Span(0, 999)
        )
    (unit,) = result.units
    assert tables(unit) == {"holding": [Span(0, 999)]}
    assert unit.requests == server.requests[5] == 8  # ceil(1000 / 125)


async def test_unreachable_host_is_a_clear_error() -> None:
    with socket.socket() as sock:  # bound, not listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(ScanError, match=r"127.0.0.1:\d+: connection refused"):
            await scan(TcpTarget("127.0.0.1", port), [1])
    with pytest.raises(ScanError, match="unknown host"):
        await scan(TcpTarget("no-such-host.invalid", 502), [1])


def test_parsers() -> None:
    assert parse_numbers("1-3,7, 5", 1, 247, "--units") == [1, 2, 3, 5, 7]
    assert parse_span("0-999") == Span(0, 999)
    assert parse_span("42") == Span(42, 42)
    assert parse_tables("holding,coils,di,input,holding") == [
        "holding",
        "coil",
        "discrete",
        "input",
    ]
    for bad, message in [
        ("1-x", "expected N or N-M"),
        ("5-1", "5 is greater than 1"),
        ("0-300", "must lie within 1-247"),
        ("", "expected N or N-M"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_numbers(bad, 1, 247, "--units")
    with pytest.raises(ValueError, match="must lie within 0-65535"):
        parse_span("0-70000")
    with pytest.raises(ValueError, match="unknown table 'registers'"):
        parse_tables("holding,registers")


# -- RTU over a virtual serial pair -------------------------------------------------------

needs_serial = pytest.mark.skipif(
    shutil.which("socat") is None or importlib.util.find_spec("serial") is None,
    reason="needs socat and pyserial",
)


@pytest.fixture
async def rtu(pty_pair: tuple[str, str]) -> AsyncIterator[tuple[CountingServer, str]]:
    server_end, client_end = pty_pair
    server = CountingServer(
        {1: MAP, 2: MAP}, DictTagSource(VALUES), transport="rtu", serial_port=server_end,
        strict=True,
    )  # fmt: skip
    await server.start()
    yield server, client_end
    await server.stop()


@needs_serial
async def test_rtu_bus_units_ranges_and_gap(rtu: tuple[CountingServer, str]) -> None:
    server, port = rtu
    gap = 0.01
    result = await scan(
        SerialTarget(port, 19200),
        [1, 2, 3],
        tables=["holding", "input"],
        span=Span(0, 60),
        timeout=0.2,
        gap=gap,
    )
    assert [(u.unit, u.present) for u in result.units] == [(1, True), (2, True), (3, False)]
    for unit in result.present:
        assert tables(unit) == {
            "holding": [Span(0, 9), Span(20, 21), Span(50, 52)],
            "input": [Span(5, 7)],
        }
    assert result.units[2].answer == "timeout"  # a real bus stays silent for unknown units
    # one request on the wire at a time, and a quiet line between them
    spacing = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert min(spacing) >= gap * 0.9, min(spacing)
    assert sum(server.requests.values()) == sum(u.requests for u in result.units)


@needs_serial
async def test_serial_port_errors_are_one_clear_line(
    pty_pair: tuple[str, str], tmp_path: Path
) -> None:
    import serial

    with pytest.raises(ScanError, match=r"cannot open serial port .*nothing: no such device"):
        await scan(SerialTarget(str(tmp_path / "nothing")), [1])
    _, client_end = pty_pair
    holder = serial.Serial(client_end, exclusive=True)  # as a running agent holds its bus
    try:
        with pytest.raises(ScanError, match="port busy"):
            await scan(SerialTarget(client_end), [1])
    finally:
        holder.close()


async def test_cancelling_a_scan_does_not_hang(tcp: CountingServer) -> None:
    task = asyncio.create_task(scan(TcpTarget("127.0.0.1", tcp.port), [1, 3], span=WHOLE))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
