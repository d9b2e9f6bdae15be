"""COV subscriptions of one device: values pushed by the device instead of polled.

One subscription per object that has points; renewed well before its lifetime ends. A
value keeps the time its notification arrived; once a subscription has lapsed (renewal
failed past the lifetime) its values are reported stale until it is renewed. Objects the
device refuses to subscribe are polled, which is logged once per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bacpypes3.apdu import (
    AbortPDU,
    ErrorPDU,
    ErrorRejectAbortNack,
    RejectPDU,
    SubscribeCOVRequest,
)
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import get_vendor_info

from drivers.bacnet import values
from drivers.bacnet.config import BacnetDevice, BacnetPoint
from drivers.bacnet.stack import ClientApplication
from edge_agent import logs
from edge_agent.points import Quality, Reading, wall_ms

log = logs.get("bacnet")
T = TypeVar("T")
Call = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]

RENEW_FRACTION = 0.5  # renew at half the lifetime: one failed renewal still leaves time
RETRY_S = 5.0  # after a failed renewal
UNSUBSCRIBE_S = 1.0  # at most this long at shutdown (the device drops us at expiry anyway)


@dataclass
class _Subscription:
    objid: str
    process_id: int
    expires: float = 0.0  # monotonic; 0: never confirmed
    values: dict[str, tuple[Any, int]] = field(default_factory=dict)  # property -> (value, ts)


class CovSubscriptions:
    def __init__(
        self,
        app: ClientApplication,
        peer: Address,
        device: BacnetDevice,
        process_id: Callable[[], int],
        call: Call,
    ) -> None:
        self._app = app
        self._peer = peer
        self._device = device
        self._lifetime = int(device.connection.cov_lifetime)
        self._confirmed = device.connection.cov_confirmed
        self._call = call
        objids = dict.fromkeys(f"{p.bacnet.object},{p.bacnet.instance}" for p in device.points)
        self._subs = {objid: _Subscription(objid, process_id()) for objid in objids}
        self._refused: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for sub in self._subs.values():
            self._app.cov_handlers[sub.process_id] = self._notified
        self._task = asyncio.create_task(self._run(), name=f"bacnet-cov-{self._device.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in self._subs.values():
            self._app.cov_handlers.pop(sub.process_id, None)
        active = [s for s in self._subs.values() if s.expires > time.monotonic()]
        # Cancel politely, but never let a silent or refusing device hold up shutdown (its
        # errors derive from BaseException: they would escape an `except Exception`).
        with contextlib.suppress(TimeoutError, ErrorRejectAbortNack):
            async with asyncio.timeout(min(self._device.timeout, UNSUBSCRIBE_S)):
                await asyncio.gather(*(self._subscribe(s, cancel=True) for s in active))

    def readings(self, points: Sequence[BacnetPoint]) -> dict[str, Reading]:
        """Readings from notifications, for the points that have one."""
        now = time.monotonic()
        found: dict[str, Reading] = {}
        for point in points:
            sub = self._subs.get(f"{point.bacnet.object},{point.bacnet.instance}")
            if sub is None or sub.objid in self._refused or not sub.expires:
                continue
            value_ts = sub.values.get(point.bacnet.property)
            if value_ts is None:
                continue
            value, ts = value_ts
            try:
                plain = values.present(point, value)
            except (ValueError, TypeError):
                continue  # let the poll report it
            quality = Quality.GOOD if now < sub.expires else Quality.STALE
            found[point.id] = Reading(point.id, plain, ts, quality)
        return found

    async def _run(self) -> None:
        while True:
            results = await asyncio.gather(
                *(self._renew(s) for s in self._subs.values() if s.objid not in self._refused)
            )
            if not any(results):
                return  # nothing subscribed: polling only
            await asyncio.sleep(min(RETRY_S, self._lifetime * RENEW_FRACTION))

    async def _renew(self, sub: _Subscription) -> bool:
        """Renew when due; False when the device refused this object for good."""
        renew_at = sub.expires - self._lifetime * (1 - RENEW_FRACTION)
        if sub.expires and time.monotonic() < renew_at:
            return True
        try:
            await self._subscribe(sub)
        except (TimeoutError, AbortPDU):
            return True  # try again; values go stale when the lifetime passes
        except (ErrorPDU, RejectPDU) as exc:
            if not self._refused:
                log.warning(
                    "bacnet: COV subscription refused, polling instead",
                    device=self._device.id,
                    object=sub.objid,
                    reason=str(exc),
                )
            self._refused.add(sub.objid)
            return False
        sub.expires = time.monotonic() + self._lifetime
        return True

    async def _subscribe(self, sub: _Subscription, cancel: bool = False) -> None:
        request = SubscribeCOVRequest(
            subscriberProcessIdentifier=sub.process_id,
            monitoredObjectIdentifier=ObjectIdentifier(sub.objid),
            destination=self._peer,
        )
        if not cancel:
            request.issueConfirmedNotifications = self._confirmed
            request.lifetime = self._lifetime
        await self._call(lambda: self._app.request(request))

    def _notified(self, source: Address, process_id: int, objid: Any, items: Sequence[Any]) -> None:
        sub = self._subs.get(str(objid))
        if sub is None or sub.process_id != process_id or source != self._peer:
            return
        object_class = get_vendor_info(0).get_object_class(objid[0])
        ts = wall_ms()
        for item in items:
            prop = item.propertyIdentifier
            kind = object_class.get_property_type(prop) if object_class else None
            if kind is None:
                continue
            sub.values[str(prop)] = (item.value.cast_out(kind), ts)
