"""Who-Is discovery of the BACnet devices on a local network (for the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from bacpypes3.apdu import AbortPDU, ErrorPDU, RejectPDU

from drivers.bacnet.stack import ClientApplication, build_application, check_free
from edge_agent.i18n import _

PROBE_INSTANCE = 4194302  # the highest valid instance: unlikely to clash with a site's
NAME_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    instance: int
    address: str
    vendor: int
    name: str | None = None


async def discover(
    local_address: str,
    timeout: float = 3.0,
    low: int | None = None,
    high: int | None = None,
    *,
    port: int = 47808,
    names: bool = True,
) -> list[DiscoveredDevice]:
    """Broadcast Who-Is from `local_address` ("198.51.100.1/24": the prefix gives the
    broadcast address) and collect the I-Am answers for `timeout` seconds, optionally
    within the instance range `low`..`high`. With `names`, each device's object name is read.

    Raises OSError when the local port is taken (by a running agent, say)."""
    if (low is None) != (high is None):
        raise ValueError(_("give both low and high, or neither"))
    bind = f"{local_address}:{port}"
    check_free(bind)  # sharing a running agent's port would split its traffic with us
    app = build_application(ClientApplication, bind, PROBE_INSTANCE, "edge-agent-discovery")
    try:
        i_ams = await app.who_is(low, high, timeout=timeout)
        found = {
            int(i_am.iAmDeviceIdentifier[1]): (str(i_am.pduSource), int(i_am.vendorID))
            for i_am in i_ams
        }
        labels = (
            await asyncio.gather(
                *(_name(app, address, instance) for instance, (address, _vendor) in found.items())
            )
            if names
            else [None] * len(found)
        )
    finally:
        app.close()
    return sorted(
        (
            DiscoveredDevice(instance, address, vendor, name)
            for (instance, (address, vendor)), name in zip(found.items(), labels, strict=True)
        ),
        key=lambda d: d.instance,
    )


async def _name(app: ClientApplication, address: str, instance: int) -> str | None:
    with contextlib.suppress(TimeoutError, ErrorPDU, RejectPDU, AbortPDU):
        async with asyncio.timeout(NAME_TIMEOUT_S):
            return str(await app.read_property(address, f"device,{instance}", "object-name"))
    return None
