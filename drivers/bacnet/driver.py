"""The BACnet/IP driver: ReadPropertyMultiple with fallback, commanded writes, COV.

Requests do not take `link.exchange()`: a BACnet/IP link is one UDP socket shared by every
device on the local address, requests to different devices (and several to one device)
may be in flight at once, told apart by invoke id. A link-wide lock would serialise all
devices for nothing. Per-device load is bounded instead by a semaphore of
`max_concurrent` requests in flight; the `Link` still groups devices by local address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from bacpypes3.apdu import AbortPDU, AbortReason, ErrorPDU, RejectPDU, RejectReason
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Null

from drivers.bacnet import values
from drivers.bacnet.config import LIFE_SAFETY_PRIORITIES, BacnetDevice, BacnetPoint
from drivers.bacnet.cov import CovSubscriptions
from drivers.bacnet.stack import STACKS, ClientApplication, StackRegistry
from drivers.base import KEEPS, DeviceUnavailable, Driver, DriverError, Keeps, Link
from edge_agent import logs
from edge_agent.points import Reading, Value, wall_ms

log = logs.get("bacnet")
T = TypeVar("T")

# Answers meaning "this request was too big for the device": retry in smaller pieces.
_TOO_BIG_ABORTS = frozenset(
    {
        AbortReason.segmentationNotSupported,
        AbortReason.bufferOverflow,
        AbortReason.apduTooLong,
        AbortReason.windowSizeOutOfRange,
        AbortReason.outOfResources,
    }
)
_NO_RPM_REJECTS = frozenset({RejectReason.unrecognizedService})


@dataclass(frozen=True, slots=True)
class Failed:
    """A point that could not be read, and why."""

    reason: str


TIMEOUT = Failed("timeout")
Outcome = Any  # a decoded BACnet value, or Failed


class _TooBig(Exception):
    """The RPM request or its answer did not fit: split it."""

    def __init__(self, rpm_unsupported: bool) -> None:
        super().__init__()
        self.rpm_unsupported = rpm_unsupported


def ref(point: BacnetPoint) -> tuple[str, str]:
    """("analog-input,1", "present-value"): how bacpypes3 prints what it decodes."""
    b = point.bacnet
    return f"{b.object},{b.instance}", b.property


def error_reason(exc: BaseException) -> str:
    """A short reason for a BACnet error, reject or abort ("unknown-object")."""
    if isinstance(exc, ErrorPDU):
        return str(exc.errorCode)
    if isinstance(exc, RejectPDU | AbortPDU):
        return f"{type(exc).__name__[:-3].lower()}: {exc.apduAbortRejectReason}"
    return type(exc).__name__


class BacnetDriver(Driver[BacnetDevice, BacnetPoint]):
    name = "bacnet"
    priorities = True
    stacks: ClassVar[StackRegistry] = STACKS

    def __init__(self, device: BacnetDevice, link: Link) -> None:
        super().__init__(device, link)
        conn = device.connection
        self._peer = Address(conn.address)
        self._semaphore = asyncio.Semaphore(conn.max_concurrent)
        # Properties per ReadPropertyMultiple; 0: the device only takes ReadProperty.
        self.batch = conn.rpm_max_properties
        self._app: ClientApplication | None = None
        self._cov: CovSubscriptions | None = None

    @classmethod
    def link_key(cls, device: BacnetDevice) -> str:
        return f"bacnet:{device.connection.bind}"

    # ---- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        conn = self.device.connection
        if self._app is not None:
            return
        try:
            self._app = self.stacks.acquire(conn.bind, conn.device_instance)
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot use local address {conn.bind}: {exc}") from exc
        if conn.cov:
            self._cov = CovSubscriptions(
                self._app,
                self._peer,
                self.device,
                process_id=lambda: self.stacks.process_id(conn.bind),
                call=self._call,
            )
            self._cov.start()

    async def close(self) -> None:
        cov, self._cov = self._cov, None
        try:
            if cov is not None:
                await cov.stop()
        finally:  # even when the caller's own time limit cancels us
            if self._app is not None:
                self._app = None
                self.stacks.release(self.device.connection.bind)

    def _application(self) -> ClientApplication:
        if self._app is None:
            raise DeviceUnavailable("not open")
        return self._app

    async def _ensure_open(self) -> None:
        """A failed open (local port taken) is retried by the next poll, not fatal."""
        if self._app is None:
            await self.open()

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One request: at most `max_concurrent` in flight, bounded by the device timeout."""
        async with self._semaphore, asyncio.timeout(self.device.timeout):
            return await request()

    # ---- reading ------------------------------------------------------------------------

    async def read(self, points: Sequence[BacnetPoint]) -> list[Reading]:
        await self._ensure_open()
        cached = self._cov.readings(points) if self._cov else {}
        polled = [p for p in points if p.id not in cached]
        outcomes = await self._read_outcomes(polled) if polled else {}
        ts = wall_ms()  # one source timestamp for everything this read asked for
        return [cached.get(p.id) or _reading(p, outcomes[ref(p)], ts) for p in points]

    async def _read_outcomes(self, points: Sequence[BacnetPoint]) -> dict[tuple[str, str], Outcome]:
        refs = list(dict.fromkeys(ref(p) for p in points))
        outcomes = await self._read_refs(refs)
        if all(o is TIMEOUT for o in outcomes.values()):
            raise DeviceUnavailable("timeout")
        return outcomes

    async def _read_refs(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
        if self.batch <= 1:
            return await self._read_each(refs)
        chunks = [refs[i : i + self.batch] for i in range(0, len(refs), self.batch)]
        results = await asyncio.gather(*(self._read_chunk(c) for c in chunks))
        return {k: v for result in results for k, v in result.items()}

    async def _read_chunk(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
        if self.batch <= 1 or len(refs) == 1:
            return await self._read_each(refs)
        try:
            return await self._read_multiple(refs)
        except _TooBig as exc:
            smaller = 0 if exc.rpm_unsupported else max(1, len(refs) // 2)
            if smaller < self.batch:
                self.batch = smaller
                log.info(
                    "bacnet: smaller requests for this device",
                    device=self.device.id,
                    rpm_properties=smaller or "ReadProperty only",
                )
            return await self._read_refs(refs)

    async def _read_multiple(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
        specs: dict[str, list[str]] = {}
        for objid, prop in refs:
            specs.setdefault(objid, []).append(prop)
        flat: list[Any] = []  # bacpypes3 wants [objid, [props], objid, [props], ...]
        for objid, props in specs.items():
            flat += [objid, props]
        app = self._application()
        try:
            answer = await self._call(lambda: app.read_property_multiple(self._peer, flat))
        except TimeoutError:
            return dict.fromkeys(refs, TIMEOUT)
        except AbortPDU as exc:
            if exc.apduAbortRejectReason in _TOO_BIG_ABORTS:
                raise _TooBig(rpm_unsupported=False) from None
            failed = TIMEOUT if _is_no_response(exc) else Failed(error_reason(exc))
            return dict.fromkeys(refs, failed)
        except RejectPDU as exc:
            raise _TooBig(exc.apduAbortRejectReason in _NO_RPM_REJECTS) from None
        except ErrorPDU:
            # The whole request failed (every object unknown, say): ask point by point to
            # tell which ones are at fault.
            return await self._read_each(refs)
        outcomes: dict[tuple[str, str], Outcome] = dict.fromkeys(refs, Failed("no value"))
        for objid, prop, _index, value in answer or ():
            key = (str(objid), str(prop))
            if key in outcomes:
                outcomes[key] = _decoded(value)
        return outcomes

    async def _read_each(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
        results = await asyncio.gather(*(self._read_one(objid, prop) for objid, prop in refs))
        return dict(zip(refs, results, strict=True))

    async def _read_one(self, objid: str, prop: str) -> Outcome:
        app = self._application()
        try:
            value = await self._call(lambda: app.read_property(self._peer, objid, prop))
        except TimeoutError:
            return TIMEOUT
        except (ErrorPDU, RejectPDU, AbortPDU) as exc:
            return TIMEOUT if _is_no_response(exc) else Failed(error_reason(exc))
        return _decoded(value)

    # ---- writing ------------------------------------------------------------------------

    async def write(self, point: BacnetPoint, value: Value, priority: int | None = None) -> Reading:
        encoded = values.encode(point, value)
        return await self._command(point, encoded, self._priority(point, priority))

    async def release(self, point: BacnetPoint, priority: int | None = None) -> Reading:
        """Relinquish: write Null at the priority, so a lower priority (or the device's
        relinquish default) takes over."""
        return await self._command(point, Null(()), self._priority(point, priority))

    async def released_value(
        self, point: BacnetPoint, priority: int | None = None
    ) -> Value | Keeps:
        """The device's priority array without our slot: the highest other commanded
        priority, else the relinquish default. An object without a priority array keeps
        its present value."""
        chosen = self._priority(point, priority)
        await self._ensure_open()
        objid, _ = ref(point)
        array_ref, default_ref = (objid, "priority-array"), (objid, "relinquish-default")
        outcomes = await self._read_refs([array_ref, default_ref])
        array, default = outcomes[array_ref], outcomes[default_ref]
        if array is TIMEOUT:
            raise DeviceUnavailable("timeout")
        if isinstance(array, Failed):
            return KEEPS
        try:
            for slot, item in enumerate(array, 1):
                value = values.commanded(point, item) if slot != chosen else None
                if value is not None:
                    return value
            if isinstance(default, Failed):
                raise DriverError(f"{point.id}: relinquish-default unreadable: {default.reason}")
            return values.present(point, default)
        except (ValueError, TypeError) as exc:
            raise DriverError(f"{point.id}: priority array not understood: {exc}") from None

    def _priority(self, point: BacnetPoint, priority: int | None) -> int:
        if not point.writable:
            raise DriverError(f"point {point.id} is not writable")
        chosen = point.bacnet.priority if priority is None else priority
        if not 1 <= chosen <= 16:
            raise DriverError(f"priority {chosen} is not 1..16")
        if chosen in LIFE_SAFETY_PRIORITIES and not point.bacnet.allow_life_safety_priority:
            raise DriverError(f"priority {chosen} is reserved for life safety ({point.id})")
        return chosen

    async def _command(self, point: BacnetPoint, encoded: Any, priority: int) -> Reading:
        await self._ensure_open()
        app = self._application()
        objid, prop = ref(point)
        try:
            await self._call(
                lambda: app.write_property(self._peer, objid, prop, encoded, priority=priority)
            )
        except TimeoutError:
            raise DeviceUnavailable("timeout") from None
        except (ErrorPDU, RejectPDU, AbortPDU) as exc:
            if _is_no_response(exc):
                raise DeviceUnavailable("timeout") from None
            raise DriverError(f"write to {point.id} refused: {error_reason(exc)}") from None
        # Read back past any COV cache: the answer must come from the device now.
        outcome = (await self._read_outcomes([point]))[ref(point)]
        return _reading(point, outcome, wall_ms())


def _is_no_response(exc: BaseException) -> bool:
    return isinstance(exc, AbortPDU) and exc.apduAbortRejectReason == AbortReason.noResponse


def _decoded(value: Any) -> Outcome:
    """bacpypes3 hands back errors as values in some places (RPM access errors, unknown
    property types): make them `Failed`."""
    if value is None:
        return Failed("decode error")
    if hasattr(value, "errorCode") and hasattr(value, "errorClass"):
        return Failed(str(value.errorCode))
    if isinstance(value, str) and value.startswith("-no "):
        return Failed("unknown-property")
    return value


def _reading(point: BacnetPoint, outcome: Outcome, ts: int) -> Reading:
    if isinstance(outcome, Failed):
        return Reading.bad(point.id, outcome.reason, ts)
    try:
        return Reading(point.id, values.present(point, outcome), ts)
    except (ValueError, TypeError) as exc:
        return Reading.bad(point.id, f"decode error: {exc}", ts)
