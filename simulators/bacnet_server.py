"""A simulated BACnet/IP device whose objects are backed by a tag source.

Input objects (and non-writable values) read their present-value from the source when they
are read and every `refresh_s` (which also drives COV notifications). Writable objects are
commandable: a priority array decides the effective value, which is written to the source;
a source that refuses it (KeyError / PermissionError / ValueError) turns the write into a
BACnet error and leaves the priority array as it was.

Run it as its own process (two bacpypes3 applications in one process interfere):

    python -m simulators.bacnet_server --address 127.0.0.1:47810 --instance 3001 --map m.json

`m.json` is a list of objects like `{"name": "chws_temp", "bacnet": {"object":
"analog-input", "instance": 1}, "tag": "chws_temp", "value": 6.5, "units":
"degrees-celsius"}`. The process prints `{"ready": true}` once it answers. With `--control`
it takes JSON lines on stdin (`{"offline": true}`, `{"delay": 0.5}`,
`{"set": {"tag": 1.0}}`, `{}`) and
answers each with one JSON line holding the tag values; it exits when stdin closes (so a
test's simulator never outlives the test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.appservice import ApplicationServiceAccessPoint
from bacpypes3.errors import ExecutionError, ObjectError, PropertyError, UnrecognizedService
from bacpypes3.local.analog import (
    AnalogInputObject,
    AnalogOutputObject,
    AnalogValueObject,
    AnalogValueObjectCmd,
)
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject, BinaryValueObject
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.multistate import (
    MultiStateInputObject,
    MultiStateOutputObject,
    MultiStateValueObject,
)
from pydantic import Field, TypeAdapter

from drivers.bacnet.config import COMMANDABLE, Instance, ObjectTypeName
from drivers.bacnet.stack import build_application, until_bound
from edge_agent.config.base import Model
from simulators.errors import EXIT_START, ServerStartError, reason

TagValue = float | int | bool | str


class TagSource(Protocol):
    def read(self, tag: str) -> TagValue: ...

    def write(self, tag: str, value: float | int | bool) -> None:
        """KeyError: no such tag; PermissionError: read-only; ValueError: refused value."""


class DictTagSource:
    """Tags in a dict; `read_only` tags refuse writes, unknown tags raise KeyError."""

    def __init__(self, values: dict[str, TagValue], read_only: Collection[str] = ()) -> None:
        self.values = dict(values)
        self.read_only = frozenset(read_only)

    def read(self, tag: str) -> TagValue:
        return self.values[tag]

    def write(self, tag: str, value: float | int | bool) -> None:
        if tag not in self.values:
            raise KeyError(tag)
        if tag in self.read_only:
            raise PermissionError(tag)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{tag}: {value} is not finite")
        self.values[tag] = value


class SimRef(Model):
    object: ObjectTypeName
    instance: Instance


class SimObject(Model):
    """One object of the simulated device (the same `bacnet:` block as a driver point)."""

    name: Annotated[str, Field(min_length=1)]
    bacnet: SimRef
    tag: str = ""  # default: the name
    value: TagValue = 0  # initial tag value (process mode, dict source)
    units: str = "no-units"  # a BACnet engineering-units name, e.g. degrees-celsius
    writable: bool = False  # values become commandable; outputs always are
    states: Annotated[int, Field(ge=1)] = 3  # multi-state objects
    read_only_tag: bool = False  # process mode: the dict source refuses writes to the tag

    @property
    def tag_name(self) -> str:
        return self.tag or self.name

    @property
    def commandable(self) -> bool:
        return self.bacnet.object in COMMANDABLE or self.writable


SIM_OBJECTS = TypeAdapter(list[SimObject])


class BacnetSimDevice:
    """One simulated device. `offline` (stop answering) and `delay` (seconds before every
    answer) can be changed while it runs."""

    def __init__(
        self,
        instance: int,
        address: str,
        objects: Sequence[SimObject],
        source: TagSource,
        *,
        name: str = "",
        rpm: bool = True,
        segmentation: bool = True,
        cov: bool = True,
        refresh_s: float = 1.0,
    ) -> None:
        self.instance = instance
        self.address = address
        self.objects = list(objects)
        self.source = source
        self.name = name or f"sim-{instance}"
        self.rpm, self.segmentation, self.cov = rpm, segmentation, cov
        self.refresh_s = refresh_s
        self.offline = False
        self.delay = 0.0
        self._app: Any = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve. ServerStartError if it cannot: bacpypes3 itself retries a taken
        port in the background forever, or shares it with another SO_REUSEPORT owner."""
        where = f"bacnet device {self.name} (instance {self.instance})"
        try:
            _probe_udp(self.address)
        except (OSError, ValueError) as exc:
            raise ServerStartError(
                f"{where} cannot bind udp {self.address}: {reason(exc)}"
            ) from exc
        try:
            await self._start()
        # bacpypes3's errors derive from BaseException in places (ErrorRejectAbortNack).
        except (Exception, ErrorRejectAbortNack) as exc:
            await self.stop()
            if isinstance(exc, TimeoutError):
                why = "not bound within the timeout (another program took the port?)"
            else:
                why = f"{type(exc).__name__}: {reason(exc)}"
            raise ServerStartError(f"{where} on udp {self.address} cannot start: {why}") from exc

    async def _start(self) -> None:
        objects = [_make_object(o, self.source) for o in self.objects]
        self._app = build_application(
            _SimApplication,
            _bacnet_address(self.address),
            self.instance,
            self.name,
            objects,
            asap_class=_SimASAP,
            segmentationSupported="segmented-both" if self.segmentation else "no-segmentation",
        )
        self._app.sim = self
        self._app.asap.sim = self
        await until_bound(self._app)
        self._refresher = asyncio.create_task(self._refresh_loop(), name="bacnet-sim-refresh")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._app is not None:
            self._app.close()
            for link_layer in self._app.link_layers.values():
                # An endpoint still retrying its bind would otherwise take the port later.
                for task in getattr(getattr(link_layer, "server", None), "_transport_tasks", ()):
                    task.cancel()
            self._app = None

    async def __aenter__(self) -> BacnetSimDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def refresh(self) -> None:
        """Pull every source-backed present-value now (COV notifications follow changes)."""
        if self._app is None:
            return
        for obj in self._app.objectIdentifier.values():
            if isinstance(obj, _Polled):
                with contextlib.suppress(ExecutionError):
                    obj._refresh()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            self.refresh()


# ---- the bacpypes3 side ------------------------------------------------------------------


class _SimASAP(ApplicationServiceAccessPoint):
    """Every incoming APDU passes here: the place to go silent or slow."""

    sim: BacnetSimDevice

    async def confirmation(self, pdu: Any) -> None:
        if self.sim.offline:
            return
        if self.sim.delay:
            await asyncio.sleep(self.sim.delay)
            if self.sim.offline:
                return
        await super().confirmation(pdu)


class _SimApplication(Application):
    sim: BacnetSimDevice

    async def do_ReadPropertyMultipleRequest(self, apdu: Any) -> None:
        if not self.sim.rpm:
            raise UnrecognizedService("ReadPropertyMultiple is disabled")
        await super().do_ReadPropertyMultipleRequest(apdu)

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:
        if not self.sim.cov:
            raise UnrecognizedService("SubscribeCOV is disabled")
        await super().do_SubscribeCOVRequest(apdu)


def _source_error(exc: Exception) -> ExecutionError:
    if isinstance(exc, KeyError):
        return ObjectError("unknown-object")
    if isinstance(exc, PermissionError):
        return PropertyError("write-access-denied")
    return PropertyError("value-out-of-range")


def _is_present_value(obj: Any, attr: int | str) -> bool:
    if isinstance(attr, int):
        attr = obj._property_identifier_class(attr).attr
    return attr == "presentValue"


def _to_bacnet(kind: str, value: TagValue) -> Any:
    if kind == "binary":
        return "active" if value else "inactive"
    if kind == "multi":
        return int(value)
    return float(value)


def _to_python(kind: str, value: Any) -> float | int | bool:
    if kind == "binary":
        return int(value) == 1  # BinaryPV.active
    if kind == "multi":
        return int(value)
    return float(value)


if TYPE_CHECKING:
    # The mixins below are mixed into bacpypes3 objects (`_objects_for`) and use what those
    # provide (presentValue, priorityArray, read_property...); bacpypes3 has no types.
    from bacpypes3.object import Object as _BacnetObject
else:
    _BacnetObject = object


class _Tagged(_BacnetObject):
    """Attributes start with "_": bacpypes3 objects treat other names as properties."""

    _source: TagSource
    _tag: str
    _kind: str  # analog / binary / multi


class _Polled(_Tagged):
    """Present-value follows the source."""

    def _refresh(self) -> None:
        try:
            value = self._source.read(self._tag)
        except (KeyError, PermissionError, ValueError) as exc:
            raise _source_error(exc) from None
        self.presentValue = _to_bacnet(self._kind, value)

    async def read_property(self, attr: int | str, index: int | None = None) -> Any:
        if _is_present_value(self, attr):
            self._refresh()
        return await super().read_property(attr, index)

    async def write_property(
        self, attr: int | str, value: Any, index: int | None = None, priority: int | None = None
    ) -> None:
        if _is_present_value(self, attr):  # the field sets it, not the network
            raise PropertyError("write-access-denied")
        await super().write_property(attr, value, index, priority)


class _Commanded(_Tagged):
    """Present-value is commanded through the priority array; the source follows it."""

    async def write_property(
        self, attr: int | str, value: Any, index: int | None = None, priority: int | None = None
    ) -> None:
        before = list(self.priorityArray)
        await super().write_property(attr, value, index, priority)
        if not _is_present_value(self, attr):
            return
        try:
            self._source.write(self._tag, _to_python(self._kind, self.presentValue))
        except (KeyError, PermissionError, ValueError) as exc:
            for i, item in enumerate(before):
                self.priorityArray[i] = item
            raise _source_error(exc) from None


class _MultiStateValueCmd(Commandable, MultiStateValueObject):
    """bacpypes3 has no commandable multi-state value; the standard allows one."""


class _BinaryValueCmd(Commandable, BinaryValueObject):
    """bacpypes3's BinaryValueObjectCmd lacks the local-object base (no status flags)."""


# (polled class, commanded class, kind) per object type
_CLASSES: dict[str, tuple[type, type, str]] = {}


def _register(name: str, polled: type, commanded: type, kind: str) -> None:
    _CLASSES[name] = (
        type(f"SimPolled{polled.__name__}", (_Polled, polled), {}),
        type(f"SimCommanded{commanded.__name__}", (_Commanded, commanded), {}),
        kind,
    )


_register("analog-input", AnalogInputObject, AnalogValueObjectCmd, "analog")
_register("analog-value", AnalogValueObject, AnalogValueObjectCmd, "analog")
_register("analog-output", AnalogOutputObject, AnalogOutputObject, "analog")
_register("binary-input", BinaryInputObject, _BinaryValueCmd, "binary")
_register("binary-value", BinaryValueObject, _BinaryValueCmd, "binary")
_register("binary-output", BinaryOutputObject, BinaryOutputObject, "binary")
_register("multi-state-input", MultiStateInputObject, _MultiStateValueCmd, "multi")
_register("multi-state-value", MultiStateValueObject, _MultiStateValueCmd, "multi")
_register("multi-state-output", MultiStateOutputObject, MultiStateOutputObject, "multi")


def _make_object(spec: SimObject, source: TagSource) -> Any:
    polled, commanded, kind = _CLASSES[spec.bacnet.object]
    cls = commanded if spec.commandable else polled
    props: dict[str, Any] = {
        "objectIdentifier": (spec.bacnet.object, spec.bacnet.instance),
        "objectName": spec.name,
        "presentValue": _to_bacnet(kind, source.read(spec.tag_name)),
        "eventState": "normal",
        "outOfService": False,
    }
    if kind == "analog":
        props["units"] = spec.units
        props["covIncrement"] = 0.0  # report every change
    elif kind == "multi":
        props["numberOfStates"] = spec.states
    if spec.commandable:
        props["relinquishDefault"] = props["presentValue"]
    obj = cls(**props)
    obj._source, obj._tag, obj._kind = source, spec.tag_name, kind
    return obj


def _probe_udp(address: str) -> None:
    """Bind the device's UDP port without SO_REUSEPORT, as `drivers.bacnet.stack.check_free`
    does: OSError if any socket holds it (bacpypes3's own SO_REUSEPORT bind would share it
    with another simulator) or the address is not this machine's; ValueError if malformed."""
    host, _, port = _bacnet_address(address).rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad port {port!r} (expected a.b.c.d[/nn][:port], port 0-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host.partition("/")[0], int(port)))


def _bacnet_address(address: str) -> str:
    """ "127.0.0.1:47810" -> "127.0.0.1/32:47810"; "198.51.100.2/24" stays (port 47808)."""
    host, _, port = address.partition(":")
    return f"{host}:{port or 47808}"


# ---- process mode -----------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


START_TIMEOUT_S = 10.0


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SimProcess:
    """The simulator as a child process, driven over its stdin control protocol (tests,
    benchmarks: two bacpypes3 applications in one process interfere)."""

    def __init__(
        self,
        map_path: Path,
        objects: list[dict[str, Any]],
        *,
        instance: int = 4001,
        address: str | None = None,
        flags: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),  # e.g. ("ip", "netns", "exec", "ns1")
    ) -> None:
        self.address = address or f"127.0.0.1:{free_udp_port()}"
        self.instance = instance
        map_path.write_text(json.dumps(objects))
        self._argv = [
            *prefix,
            sys.executable,
            "-m",
            "simulators.bacnet_server",
            "--address",
            self.address,
            "--instance",
            str(instance),
            "--map",
            str(map_path),
            "--control",
            "--refresh",
            "0.2",
            *flags,
        ]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> SimProcess:
        self.process = subprocess.Popen(
            self._argv,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._line(START_TIMEOUT_S)
        if not ready.get("ready"):
            raise RuntimeError(f"simulator did not start: {ready}")
        return self

    def command(self, **command: Any) -> dict[str, Any]:
        assert self.process and self.process.stdin
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._line(5.0)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process and self.process.stdout
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError("simulator gave no answer")
        return json.loads(line)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin:
            self.process.stdin.close()  # the simulator exits at the end of its stdin
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None


def _control(sim: BacnetSimDevice, source: DictTagSource, command: dict[str, Any]) -> str:
    if "offline" in command:
        sim.offline = bool(command["offline"])
    if "delay" in command:
        sim.delay = float(command["delay"])
    for tag, value in command.get("set", {}).items():
        source.values[tag] = value
    if command.get("set"):
        sim.refresh()
    return json.dumps({"ok": True, "tags": source.values})


async def serve(args: argparse.Namespace) -> None:
    objects = SIM_OBJECTS.validate_json(Path(args.map).read_text())
    source = DictTagSource(
        {o.tag_name: o.value for o in objects},
        read_only=[o.tag_name for o in objects if o.read_only_tag],
    )
    sim = BacnetSimDevice(
        args.instance,
        args.address,
        objects,
        source,
        rpm=not args.no_rpm,
        segmentation=not args.no_segmentation,
        cov=not args.no_cov,
        refresh_s=args.refresh,
    )
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:  # a thread: stdin may be a pipe the loop cannot watch
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line)
        loop.call_soon_threadsafe(commands.put_nowait, None)

    async with sim:
        print(json.dumps({"ready": True, "address": args.address}), flush=True)
        if not args.control:
            await asyncio.Event().wait()  # until interrupted
        threading.Thread(target=read_stdin, daemon=True).start()
        while (line := await commands.get()) is not None:
            if line.strip():
                print(_control(sim, source, json.loads(line)), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="127.0.0.1:47810 or 198.51.100.2/24")
    parser.add_argument("--instance", type=int, required=True)
    parser.add_argument("--map", required=True, help="JSON list of objects")
    parser.add_argument("--no-rpm", action="store_true", help="reject ReadPropertyMultiple")
    parser.add_argument("--no-segmentation", action="store_true")
    parser.add_argument("--no-cov", action="store_true", help="reject SubscribeCOV")
    parser.add_argument(
        "--control", action="store_true", help="JSON commands on stdin; exit at its end"
    )
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between refreshes")
    args = parser.parse_args(argv)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_START)


if __name__ == "__main__":
    main()
