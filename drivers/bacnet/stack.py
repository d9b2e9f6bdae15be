"""bacpypes3 applications: how one is built, and one shared per local address and port.

Only one application can own a UDP port, so every BACnet device of an agent that uses the
same local address and port shares one application (refcounted, closed with the last).

bacpypes3 closes its sockets a loop iteration after `Application.close()` returns, and
binds them in a task that may not have run yet: an application closed and a new one asked
for on the same port right away (a device restarted on a reload) found the port taken by
the old one ("Address already in use"), and one closed before it was bound kept the port
for ever once the bind came. The registry remembers what it is closing, closes a pending
bind once it lands, and lets a new application take over a port only its own closing one
still holds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bacpypes3.app import Application
from bacpypes3.appservice import ApplicationServiceAccessPoint
from bacpypes3.comm import bind
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.netservice import NetworkServiceAccessPoint, NetworkServiceElement
from bacpypes3.pdu import Address

VENDOR_ID = 999  # bacpypes3's own; we register nothing vendor-specific

# A COV notification: (source address, subscriber process id, object id, [PropertyValue]).
CovHandler = Callable[[Address, int, Any, Sequence[Any]], None]


App = TypeVar("App", bound=Application)


def build_application(
    app_class: type[App],
    bind_address: str,
    instance: int,
    name: str,
    objects: Sequence[Any] = (),
    asap_class: type[ApplicationServiceAccessPoint] = ApplicationServiceAccessPoint,
    **device_properties: Any,
) -> App:
    """A device object, a network port bound to `bind_address` ("a.b.c.d/nn:port") and
    `objects`, wired like `Application.from_object_list` but with our own service access
    point class (the simulator injects faults there)."""
    device = DeviceObject(
        objectIdentifier=("device", instance),
        objectName=name,
        vendorIdentifier=VENDOR_ID,
        **device_properties,
    )
    port = NetworkPortObject(
        bind_address, objectIdentifier=("network-port", 1), objectName="NetworkPort-1"
    )
    app = app_class()
    app.asap = asap_class(device, app.device_info_cache)
    app.nsap = NetworkServiceAccessPoint()
    app.nse = NetworkServiceElement()
    bind(app.nse, app.nsap)
    bind(app, app.asap, app.nsap)
    for obj in (device, port, *objects):
        app.add_object(obj)
    return app


def _servers(app: Application) -> list[Any]:
    """The application's UDP servers (bacpypes3's IPv4DatagramServer, one per link layer)."""
    servers = (getattr(ll, "server", None) for ll in app.link_layers.values())
    return [s for s in servers if s is not None]


async def until_bound(app: Application, timeout: float = 5.0) -> None:
    """Wait until the application's sockets are bound: bacpypes3 binds in a background
    task, and a server must not be announced before it can receive."""
    async with asyncio.timeout(timeout):
        for server in _servers(app):
            ready = getattr(server, "_local_transport_ready", None)
            if ready is not None:
                await ready.wait()


def close_application(app: Application) -> None:
    """Close the sockets bound, and those still being bound as soon as they are."""
    app.close()
    for server in _servers(app):
        for task in getattr(server, "_transport_tasks", ()):
            if not task.done():  # its own callback stores the transport, then this closes it
                task.add_done_callback(lambda _task, server=server: server.close())


def holds_port(app: Application) -> bool:
    """Whether a socket of the application is still open, or still to be bound."""
    for server in _servers(app):
        if any(not task.done() for task in getattr(server, "_transport_tasks", ())):
            return True
        for name in ("local_transport", "broadcast_transport"):
            transport = getattr(server, name, None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None and sock.fileno() != -1:
                return True
    return False


class ClientApplication(Application):
    """The agent's side: hands COV notifications to whoever subscribed (by process id)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cov_handlers: dict[int, CovHandler] = {}

    async def do_UnconfirmedCOVNotificationRequest(self, apdu: Any) -> None:
        self._dispatch_cov(apdu)

    async def do_ConfirmedCOVNotificationRequest(self, apdu: Any) -> None:
        from bacpypes3.apdu import SimpleAckPDU

        self._dispatch_cov(apdu)
        await self.response(SimpleAckPDU(context=apdu))

    def _dispatch_cov(self, apdu: Any) -> None:
        handler = self.cov_handlers.get(apdu.subscriberProcessIdentifier)
        if handler is not None:
            handler(
                apdu.pduSource,
                apdu.subscriberProcessIdentifier,
                apdu.monitoredObjectIdentifier,
                list(apdu.listOfValues),
            )


def check_free(bind_address: str) -> None:
    """Raise OSError if another socket owns the port. bacpypes3 binds with SO_REUSEPORT and
    retries in the background forever, so a taken port would otherwise look like silent
    devices (or, against another SO_REUSEPORT owner, share our replies with it)."""
    host, _, port = bind_address.partition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host.partition("/")[0], int(port)))


@dataclass
class _Shared:
    app: ClientApplication
    instance: int
    users: int = 0
    next_process_id: int = 1


@dataclass
class StackRegistry:
    """Applications by local bind address; acquire/release are refcounted."""

    _apps: dict[str, _Shared] = field(default_factory=dict)
    # Applications released last, by bind address, until their sockets are closed.
    _closing: dict[str, ClientApplication] = field(default_factory=dict)

    def acquire(self, bind_address: str, instance: int) -> ClientApplication:
        shared = self._apps.get(bind_address)
        if shared is None:
            closing = self._closing.pop(bind_address, None)
            try:
                check_free(bind_address)
            except OSError:
                # Our own application, closed a moment ago, still holds it: its socket goes
                # before the new one binds (both bind with SO_REUSEPORT in any case).
                if closing is None or not holds_port(closing):
                    raise
            app = build_application(
                ClientApplication,
                bind_address,
                instance,
                f"edge-agent-{instance}",
                # The driver bounds every request with the device timeout and retries on the
                # next poll; the stack's own retries would only hold invoke ids longer.
                numberOfApduRetries=0,
                apduTimeout=60_000,
            )
            shared = self._apps[bind_address] = _Shared(app, instance)
        elif shared.instance != instance:
            raise ValueError(
                f"{bind_address} is already used with device_instance {shared.instance}, "
                f"not {instance}: devices sharing a local address share one device object"
            )
        shared.users += 1
        return shared.app

    def process_id(self, bind_address: str) -> int:
        """A COV subscriber process id unique within the application."""
        shared = self._apps[bind_address]
        shared.next_process_id += 1
        return shared.next_process_id

    def release(self, bind_address: str) -> None:
        shared = self._apps.get(bind_address)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del self._apps[bind_address]
            close_application(shared.app)
            self._closing[bind_address] = shared.app

    def __contains__(self, bind_address: str) -> bool:
        return bind_address in self._apps


# One UDP port can be owned by one application per process, so the registry is
# process-wide by nature; drivers take it from a class attribute (tests may swap it).
STACKS = StackRegistry()
