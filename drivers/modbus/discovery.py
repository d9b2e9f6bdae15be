"""Modbus discovery for the technician (`edge-agent discover modbus`): which unit ids
answer on a TCP endpoint or a serial bus, and which register ranges each one can read.

A unit is present if its first request gets data or a Modbus exception (an exception
still proves a device is there); silence, or a gateway's "target did not respond"
(exceptions 10 and 11), means absent.

Ranges are found by reading in blocks and halving a block that answers "illegal data
address" until the failing address is pinned down; after a readable block the block
size doubles again (a gallop), so long readable runs cost a few requests and each
unreadable address costs about one. No scan can do much better: a block read that covers
an unreadable address always fails, so every hole needs a request of its own.

Every unit gets at most `max_requests` requests; what was not scanned is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import Link
from drivers.modbus.client import Transport, new_client
from drivers.modbus.config import BIT_TABLES, MAX_ADDRESS
from edge_agent.i18n import N_, _

Table = Literal["holding", "input", "coil", "discrete"]
TABLES: tuple[Table, ...] = ("holding", "input", "coil", "discrete")
_TABLE_NAMES: dict[str, Table] = {
    "holding": "holding",
    "holdings": "holding",
    "hr": "holding",
    "input": "input",
    "inputs": "input",
    "ir": "input",
    "coil": "coil",
    "coils": "coil",
    "discrete": "discrete",
    "discretes": "discrete",
    "di": "discrete",
}
MAX_REGISTERS = 125  # per read request, by the Modbus specification
MAX_BITS = 2000
# "Not readable here": illegal data address, illegal data value (some devices say 3 for
# a count that runs past their map), server device failure (some say 4 for unmapped).
_NOT_HERE = (2, 3, 4)
_ILLEGAL_FUNCTION = 1
_BUSY = 6
_GATEWAY = (10, 11)  # the gateway answers, the device behind it does not
_BUSY_RETRIES = 3
_SILENT_LIMIT = 3  # consecutive timeouts after which a present unit counts as gone


class ScanError(Exception):
    """The endpoint or port cannot be used at all (one line, for the technician)."""


@dataclass(frozen=True, slots=True)
class Span:
    """Addresses start..end, both included (protocol addresses, 0-based)."""

    start: int
    end: int

    @property
    def count(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


@dataclass(slots=True)
class TableScan:
    table: Table
    readable: list[Span] = field(default_factory=list)  # contiguous, in order
    unscanned: list[Span] = field(default_factory=list)  # budget spent or unit gone
    unsupported: bool = False  # the unit answered "illegal function"
    note: str | None = None  # why the table is incomplete, if it is

    @property
    def registers(self) -> int:
        return sum(s.count for s in self.readable)


@dataclass(slots=True)
class UnitScan:
    unit: int
    present: bool
    answer: str  # what the first request got: "data", "exception 2", "timeout", ...
    tables: list[TableScan] = field(default_factory=list)
    requests: int = 0

    @property
    def complete(self) -> bool:
        return self.present and not any(t.unscanned for t in self.tables)


@dataclass(slots=True)
class ScanResult:
    target: str
    units: list[UnitScan]

    @property
    def present(self) -> list[UnitScan]:
        return [u for u in self.units if u.present]


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Sent to the progress callback after every request."""

    unit: int
    units_done: int  # units finished before this one
    units_total: int
    table: Table | None
    addresses_done: int  # of this unit, over all its tables
    addresses_total: int
    requests: int  # of this unit


ProgressCallback = Callable[[ScanProgress], None]


@dataclass(frozen=True, slots=True)
class TcpTarget:
    host: str
    port: int = 502

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SerialTarget:
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8

    def __str__(self) -> str:
        return f"{self.port} ({self.baudrate} {self.bytesize}{self.parity}{self.stopbits})"


Target = TcpTarget | SerialTarget


# -- what the technician types ------------------------------------------------------------

_SPAN = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_numbers(text: str, low: int, high: int, what: str) -> list[int]:
    """ "1-10", "1,3,5-7" -> sorted distinct numbers within low..high; ValueError if bad."""
    numbers: set[int] = set()
    for part in text.split(","):
        first, last = _parse_span(part, low, high, what, text)
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def parse_span(text: str, low: int = 0, high: int = MAX_ADDRESS, what: str = "range") -> Span:
    """ "0-999" (or "100") -> Span; ValueError if bad."""
    return Span(*_parse_span(text, low, high, what, text))


def _parse_span(part: str, low: int, high: int, what: str, whole: str) -> tuple[int, int]:
    match = _SPAN.match(part)
    if not match:
        message = _("{what} {text!r}: expected N or N-M (e.g. {example})")
        example = f"{low}-{min(high, low + 9)}"
        raise ValueError(message.format(what=what, text=whole, example=example))
    first = int(match[1])
    last = int(match[2]) if match[2] is not None else first
    if first > last:
        message = _("{what} {text!r}: {first} is greater than {last}")
        raise ValueError(message.format(what=what, text=whole, first=first, last=last))
    if first < low or last > high:
        message = _("{what} {text!r}: must lie within {low}-{high}")
        raise ValueError(message.format(what=what, text=whole, low=low, high=high))
    return first, last


def parse_tables(text: str) -> list[Table]:
    """ "holding,input,coils,discrete" -> tables in the given order; ValueError if bad."""
    tables: list[Table] = []
    for name in (n.strip().lower() for n in text.split(",")):
        table = _TABLE_NAMES.get(name)
        if table is None:
            message = _("unknown table {name!r} (use holding, input, coils, discrete)")
            raise ValueError(message.format(name=name))
        if table not in tables:
            tables.append(table)
    return tables


# -- the scan -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    kind: Literal["data", "exception", "timeout", "lost"]
    code: int = 0

    def __str__(self) -> str:
        return f"exception {self.code}" if self.kind == "exception" else self.kind


class _Budget(Exception):
    """This unit's request budget is spent."""


class _Gone(Exception):
    """The unit stopped answering (or the connection dropped) in the middle of a scan."""


class Scanner:
    """Scans one target; use `scan()` (or `async with` + `scan_unit`)."""

    def __init__(
        self,
        target: Target,
        *,
        tables: Sequence[Table] = TABLES,
        span: Span = Span(0, 999),
        max_requests: int = 1000,
        timeout: float = 0.5,
        gap: float | None = None,
        max_registers: int = MAX_REGISTERS,
        max_bits: int = MAX_BITS,
        progress: ProgressCallback | None = None,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        if not tables:
            raise ValueError("give at least one table")
        if not 1 <= max_registers <= MAX_REGISTERS or not 1 <= max_bits <= MAX_BITS:
            raise ValueError(f"block sizes must be 1-{MAX_REGISTERS} registers, 1-{MAX_BITS} bits")
        self.target = target
        self.tables = list(tables)
        self.span = span
        self.max_requests = max_requests
        self.timeout = timeout
        serial = isinstance(target, SerialTarget)
        # RS-485 devices need an idle line between a response and the next request.
        self.link = Link(str(target), gap_s=(0.01 if serial else 0.0) if gap is None else gap)
        self.max_registers = max_registers
        self.max_bits = max_bits
        self.progress = progress
        self._client: Any = None
        # per unit
        self._unit = 0
        self._requests = 0
        self._silent = 0
        self._done = 0
        self._units_done = 0
        self._units_total = 0
        self._table: Table | None = None

    async def __aenter__(self) -> Scanner:
        await check_reachable(self.target, self.timeout)
        self._client = self._new_client()
        if not await self._client.connect():
            await self.__aexit__()
            raise ScanError(_("cannot connect to {target}").format(target=self.target))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()  # synchronous in pymodbus: cannot hang
            self._client = None

    def _new_client(self) -> Any:
        transport: Transport = "rtu" if isinstance(self.target, SerialTarget) else "tcp"
        return new_client(transport, self.target, self.timeout)

    async def scan(self, units: Sequence[int]) -> ScanResult:
        """Opens the target, scans the units one after the other (one request on the wire
        at a time), closes. Raises ScanError if the target cannot be used."""
        async with self:
            self._units_total = len(units)
            found = []
            for done, unit in enumerate(units):
                self._units_done = done
                found.append(await self.scan_unit(unit))
            return ScanResult(str(self.target), found)

    async def scan_unit(self, unit: int) -> UnitScan:
        self._unit, self._requests, self._silent, self._done = unit, 0, 0, 0
        result: UnitScan | None = None
        for table in self.tables:
            self._table = table
            scan = TableScan(table)
            first = await self._scan_table(scan, first_of_unit=result is None)
            if result is None:
                result = UnitScan(unit, self._present(first), str(first))
                if not result.present:
                    break
            result.tables.append(scan)
        assert result is not None  # there is at least one table
        result.requests = self._requests
        return result

    @staticmethod
    def _present(answer: _Answer) -> bool:
        if answer.kind == "data":
            return True
        return answer.kind == "exception" and answer.code not in _GATEWAY

    async def _scan_table(self, scan: TableScan, *, first_of_unit: bool) -> _Answer:
        """Fills `scan`; returns the answer to the table's first request."""
        table = scan.table
        largest = self.max_bits if table in BIT_TABLES else self.max_registers
        pos, end = self.span.start, self.span.end
        size = largest
        first: _Answer | None = None
        try:
            while pos <= end:
                count = min(size, end - pos + 1)
                answer = await self._read(table, pos, count)
                if first is None:
                    first = answer
                    if first_of_unit and not self._present(answer):
                        return answer  # absent: no more requests to this unit
                if answer.kind == "data":
                    _add(scan.readable, Span(pos, pos + count - 1))
                    pos += count
                    self._advance(count)
                    size = min(size * 2, largest)
                elif answer.kind == "exception" and answer.code in _NOT_HERE:
                    if count == 1:
                        pos += 1
                        self._advance(1)
                    size = max(count // 2, 1)
                elif answer.kind == "exception" and answer.code == _ILLEGAL_FUNCTION:
                    scan.unsupported = True
                    self._advance(end - pos + 1)
                    return first
                elif answer.kind == "exception":  # busy after retries, gateway, other
                    scan.unscanned.append(Span(pos, end))
                    scan.note = f"stopped on {answer}"
                    self._advance(end - pos + 1)
                    return first
                else:  # a timeout: some devices stay silent on unmapped addresses
                    if count == 1:
                        pos += 1
                        self._advance(1)
                    size = max(count // 2, 1)
        except _Budget:
            scan.unscanned.append(Span(pos, end))
            scan.note = "request budget spent"
        except _Gone as gone:
            scan.unscanned.append(Span(pos, end))
            scan.note = str(gone)
        return first if first is not None else _Answer("lost")

    def _advance(self, addresses: int) -> None:
        self._done += addresses
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(
                ScanProgress(
                    self._unit,
                    self._units_done,
                    self._units_total,
                    self._table,
                    self._done,
                    self.span.count * max(len(self.tables), 1),
                    self._requests,
                )
            )

    async def _read(self, table: Table, address: int, count: int) -> _Answer:
        """One read (busy answers retried within the budget); raises _Budget, _Gone."""
        for _attempt in range(1 + _BUSY_RETRIES):
            answer = await self._request(table, address, count)
            if answer.kind == "exception" and answer.code == _BUSY:
                await asyncio.sleep(0.1)
                continue
            break
        if answer.kind == "timeout":
            self._silent += 1
            if self._silent >= _SILENT_LIMIT:
                raise _Gone(f"stopped answering ({_SILENT_LIMIT} timeouts in a row)")
        else:
            self._silent = 0
        if answer.kind == "lost":
            raise _Gone("connection lost")
        return answer

    async def _request(self, table: Table, address: int, count: int) -> _Answer:
        if self._requests >= self.max_requests:
            raise _Budget
        client = self._client
        call = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[table]
        async with self.link.exchange():
            if not client.connected and not await client.connect():
                return _Answer("lost")
            self._requests += 1
            try:
                response = await call(address, count=count, device_id=self._unit)
            except ConnectionException:
                _reraise_cancel()
                return _Answer("lost")
            except (ModbusIOException, TimeoutError):
                _reraise_cancel()
                # A late answer would be taken for the next request's: start afresh.
                client.close()
                return _Answer("timeout")
            except ModbusException:
                _reraise_cancel()
                client.close()
                return _Answer("timeout")  # garbled: as good as no answer
            finally:
                self._report()
        # Python 3.11's wait_for (inside pymodbus) returns the answer and drops a cancel
        # that lands as the answer arrives: honour it here, or Ctrl-C would be lost.
        _reraise_cancel()
        if response is None:
            return _Answer("timeout")
        if response.isError():
            return _Answer("exception", int(getattr(response, "exception_code", 0) or 0))
        values = response.bits if table in BIT_TABLES else response.registers
        if len(values) < count:
            return _Answer("exception", 3)  # short answer: treat as not readable here
        return _Answer("data")


def _add(spans: list[Span], span: Span) -> None:
    """Append, merging with the last span when they touch."""
    if spans and spans[-1].end + 1 == span.start:
        spans[-1] = Span(spans[-1].start, span.end)
    else:
        spans.append(span)


def _reraise_cancel() -> None:
    """pymodbus can turn a cancellation into an exception: give the cancel back."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def check_reachable(target: Target, timeout: float) -> None:
    """Open and close the target once, to turn a failure into a clear ScanError (pymodbus'
    connect() only says False)."""
    if isinstance(target, SerialTarget):
        _check_serial(target)
        return
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), max(timeout, 1.0)
        )
    except TimeoutError:
        message = _("cannot connect to {target}: no answer (host down or filtered?)")
        raise ScanError(message.format(target=target)) from None
    except socket.gaierror as exc:
        message = _("cannot connect to {target}: unknown host ({why})")
        raise ScanError(message.format(target=target, why=exc.strerror)) from None
    except OSError as exc:
        message = _("cannot connect to {target}: {why}")
        raise ScanError(message.format(target=target, why=_why(exc))) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _check_serial(target: SerialTarget) -> None:
    import serial  # pyserial: only needed here and by pymodbus' serial transport

    try:
        port = serial.Serial(
            target.port,
            baudrate=target.baudrate,
            parity=target.parity,
            stopbits=target.stopbits,
            bytesize=target.bytesize,
            exclusive=True,  # as pymodbus opens it: fails if the agent holds the port
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            why = _("port busy (is the agent or another tool using it?)")
        else:
            why = _why(exc)
        message = _("cannot open serial port {port}: {why}")
        raise ScanError(message.format(port=target.port, why=why)) from None
    port.close()


def _why(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    known = {
        errno.ECONNREFUSED: N_("connection refused (nothing listens on that port)"),
        errno.EHOSTUNREACH: N_("host unreachable"),
        errno.ENETUNREACH: N_("network unreachable"),
        errno.ETIMEDOUT: N_("timed out"),
        errno.EACCES: N_("permission denied (is your user in the dialout group?)"),
        errno.EPERM: N_("permission denied"),
        errno.ENOENT: N_("no such device"),
        errno.ENODEV: N_("no such device"),
        errno.EADDRNOTAVAIL: N_("address not available"),
    }
    if code in known:
        return _(known[code])
    text = str(getattr(exc, "strerror", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


async def scan(
    target: Target,
    units: Sequence[int],
    *,
    tables: Sequence[Table] = TABLES,
    span: Span = Span(0, 999),
    max_requests: int = 1000,
    timeout: float = 0.5,
    gap: float | None = None,
    progress: ProgressCallback | None = None,
) -> ScanResult:
    """Scan `units` on `target`; see the module docstring. Raises ScanError."""
    scanner = Scanner(
        target,
        tables=tables,
        span=span,
        max_requests=max_requests,
        timeout=timeout,
        gap=gap,
        progress=progress,
    )
    return await scanner.scan(units)
