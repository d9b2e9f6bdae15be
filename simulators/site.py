"""A whole simulated plant room: the physics behind Modbus and BACnet devices.

Each simulated device serves a vendor map from `configs/maps/` — the same file the
agent's configuration includes for that device — and maps every point to the plant tag
`{tags}.{point id}`. One map file per device type thus describes both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import Field, TypeAdapter

from drivers.bacnet.config import BacnetPoint
from drivers.dlt645.config import Dlt645Point, SerialConnection
from drivers.modbus.config import ModbusPoint
from edge_agent.config.base import Id, Model
from simulators.analyzers import parse_states
from simulators.bacnet_server import BacnetSimDevice, SimObject, SimRef
from simulators.clock import SimClock
from simulators.config import PlantConfig
from simulators.dlt645_server import Dlt645SimServer, MeterPoint, SimMeter
from simulators.errors import ServerStartError, reason
from simulators.modbus_server import MapPoint, ModbusSimServer
from simulators.plant import PlantRoom
from simulators.sensors import SensorFault

CONTROL_POLL_S = 0.5
M = TypeVar("M")


class SimUnit(Model):
    unit: Annotated[int, Field(ge=1, le=247)]
    map: Path  # relative to the simulator config file
    tags: str  # plant tag prefix, e.g. "chiller-1"


class ModbusSim(Model):
    id: Id
    transport: Literal["tcp", "rtu-over-tcp", "rtu"]
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # tcp, rtu-over-tcp
    pty: Path | None = None  # rtu: the agent opens this end of a socat pty pair
    units: list[SimUnit] = Field(min_length=1)


class BacnetSim(Model):
    id: Id
    instance: Annotated[int, Field(ge=0, le=4194302)]
    address: str  # "127.0.0.1:47810"
    map: Path
    tags: str


class Dlt645SimMeter(Model):
    address: str  # 12 digits, as on the meter's name plate
    map: Path  # a configs/maps/*.dlt645.yaml, relative to the simulator config file
    tags: str

    @property
    def checked_address(self) -> str:
        """The address as the driver's config checks it (12 digits)."""
        return SerialConnection.model_validate({"port": "-", "address": self.address}).address


class Dlt645Sim(Model):
    """An RS-485 bus of DL/T 645 meters on a pty pair (the agent opens `pty`)."""

    id: Id
    pty: Path
    meters: list[Dlt645SimMeter] = Field(min_length=1)


class SimConfig(Model):
    seed: int = 0
    # Faults, in the same form as the control file (see `PlantSite.apply_faults`), at start.
    faults: dict[str, Any] = Field(default_factory=dict)
    control_file: Path | None = None  # JSON faults re-read when it changes
    speed: Annotated[float, Field(gt=0)] = 1.0  # simulated seconds per real second
    plant: PlantConfig = PlantConfig()
    modbus: tuple[ModbusSim, ...] = ()
    bacnet: tuple[BacnetSim, ...] = ()
    dlt645: tuple[Dlt645Sim, ...] = ()


def load_sim_config(path: Path) -> tuple[SimConfig, Path]:
    """The config and the directory its relative map paths start from."""
    return SimConfig.model_validate(yaml.safe_load(path.read_text())), path.parent


# BACnet engineering units for the units used in the maps.
_BACNET_UNITS = {
    "degC": "degrees-celsius",
    "kW": "kilowatts",
    "kWh": "kilowatt-hours",
    "L/s": "liters-per-second",
    "%": "percent",
    "h": "hours",
}


_MODBUS_MAP = TypeAdapter(list[ModbusPoint])
_BACNET_MAP = TypeAdapter(list[BacnetPoint])
_DLT645_MAP = TypeAdapter(list[Dlt645Point])


def _map(path: Path, points: TypeAdapter[list[M]]) -> list[M]:
    return points.validate_python(yaml.safe_load(path.read_text()))


def modbus_units(sim: ModbusSim, base: Path) -> dict[int, list[MapPoint]]:
    return {
        u.unit: [
            MapPoint(**p.model_dump(), tag=f"{u.tags}.{p.id}")
            for p in _map(base / u.map, _MODBUS_MAP)
        ]
        for u in sim.units
    }


def dlt645_meters(sim: Dlt645Sim, base: Path) -> list[SimMeter]:
    return [
        SimMeter(
            m.checked_address,
            [
                MeterPoint(**p.model_dump(), tag=f"{m.tags}.{p.id}")
                for p in _map(base / m.map, _DLT645_MAP)
            ],
        )
        for m in sim.meters
    ]


def bacnet_objects(sim: BacnetSim, base: Path) -> list[SimObject]:
    return [
        SimObject(
            name=p.id,
            bacnet=SimRef(object=p.bacnet.object, instance=p.bacnet.instance),
            tag=f"{sim.tags}.{p.id}",
            units=_BACNET_UNITS.get(p.unit, "no-units"),
            writable=p.writable,
        )
        for p in _map(base / sim.map, _BACNET_MAP)
    ]


class PtyPair:
    """A virtual RS-485 line: socat joins two ptys; the agent opens one end, the server
    the other. A pty does not enforce baud rate or inter-frame timing."""

    def __init__(self, agent_end: Path, name: str = "", what: str = "modbus server") -> None:
        self.agent_end = agent_end
        self.sim_end = agent_end.with_name(agent_end.name + ".sim")
        self.name = name or agent_end.name  # the server's id, for messages
        self.what = what
        self._process: subprocess.Popen | None = None

    async def start(self) -> None:
        """ServerStartError if socat is missing, fails, or another simulator owns the ends
        (a second socat would silently take them over)."""
        try:
            await self._start()
        except Exception as exc:
            self.stop()
            raise ServerStartError(
                f"{self.what} {self.name} (rtu) cannot create pty pair {self.agent_end}: "
                f"{reason(exc)}"
            ) from exc

    async def _start(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed (apt-get install socat)")
        for end in (self.agent_end, self.sim_end):
            if end.exists():  # follows the link: a live pty (a dangling link is replaced)
                raise RuntimeError(
                    f"{end} already exists: another simulator uses it (delete it if not)"
                )
        self.agent_end.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.sim_end}", f"pty,raw,echo=0,link={self.agent_end}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=functools.partial(_die_with, os.getpid()),
        )
        for _ in range(100):
            if self._process.poll() is not None:
                assert self._process.stderr is not None
                said = self._process.stderr.read().decode(errors="replace").strip()
                last = said.splitlines()[-1] if said else "no message"
                raise RuntimeError(f"socat exited with {self._process.returncode}: {last}")
            if self.sim_end.exists() and self.agent_end.exists():
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("socat did not create the ptys within 2 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _die_with(parent: int) -> None:
    """In the socat child (Linux): SIGTERM when the simulator dies, even by SIGKILL, so a
    killed simulator leaves no socat holding its pty links."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before prctl
            os._exit(1)


_PR_SET_PDEATHSIG = 1


class PlantSite:
    """The physics and every device server of one simulator config."""

    def __init__(self, config: SimConfig, base: Path) -> None:
        self.config = config
        self.plant = PlantRoom(config.plant, seed=config.seed, clock=SimClock(speed=config.speed))
        self.modbus: dict[str, ModbusSimServer] = {}
        self.bacnet: dict[str, BacnetSimDevice] = {}
        self.dlt645: dict[str, Dlt645SimServer] = {}
        self.ptys: list[PtyPair] = []
        for sim in config.modbus:
            serial = None
            if sim.transport == "rtu":
                if sim.pty is None:
                    raise ValueError(f"modbus {sim.id}: transport rtu needs pty")
                pair = PtyPair(sim.pty, sim.id)
                self.ptys.append(pair)
                serial = str(pair.sim_end)
            self.modbus[sim.id] = ModbusSimServer(
                modbus_units(sim, base),
                self.plant,
                sim.transport,
                sim.host,
                sim.port,
                serial,
                name=sim.id,
            )
        for bus in config.dlt645:
            pair = PtyPair(bus.pty, bus.id, "dlt645 bus")
            self.ptys.append(pair)
            self.dlt645[bus.id] = Dlt645SimServer(
                dlt645_meters(bus, base), self.plant, str(pair.sim_end), name=bus.id
            )
        for device in config.bacnet:
            self.bacnet[device.id] = BacnetSimDevice(
                device.instance,
                device.address,
                bacnet_objects(device, base),
                self.plant,
                name=device.id,
            )
        try:  # the config's faults are checked now: a bad one is a config error
            self.apply_faults(config.faults)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"faults: {type(exc).__name__} {exc}") from exc

    def apply_faults(self, spec: dict[str, Any]) -> None:
        """Replace all faults with `spec`:

        {"modbus": {"chillers": {"2": {"offline": true}}},       # per server and unit id
         "bacnet": {"chiller-3": {"offline": true, "delay": 0.5}},
         "dlt645": {"rs485-2": {"000000000201": {"offline": true}}},  # per bus and address
         "sensors": {"chiller-1.chws_temp": {"stuck": 9.5}},     # stuck|drift|noise|offset
         "load": {"kw": 3600},                                    # building load, fixed
         "sewage": {"cod": "calibration", "all": "maintenance"}}  # the monitor's instruments

        `sewage` sets an instrument (or `all`; a named one overrides it) to maintenance,
        calibration, fault, stopped or manual (simulators/analyzers.py); the others measure.
        Unknown names raise KeyError or ValueError; nothing is half-applied for a server.
        A bad `load` or `sewage` is refused whole, before anything changes.
        """
        load_kw = _load_override(spec.get("load"))
        sewage = self.plant.sewage
        states = parse_states(spec.get("sewage"), tuple(sewage.analyzers.by_name()))
        self.plant.load.override_kw = load_kw
        sewage.set_states(states)
        for server in self.modbus.values():
            server.clear_faults()
        for bus in self.dlt645.values():
            bus.clear_faults()
        for device in self.bacnet.values():
            device.offline, device.delay = False, 0.0
        for tag, info in self.plant.tags.items():
            if not info.writable:
                self.plant.inject(tag, None)
        for server_id, units in spec.get("modbus", {}).items():
            for unit, settings in units.items():
                self.modbus[server_id].set_faults(int(unit), settings)
        for bus_id, meters in spec.get("dlt645", {}).items():
            for address, settings in meters.items():
                self.dlt645[bus_id].set_faults(str(address), settings)
        for device_id, settings in spec.get("bacnet", {}).items():
            device = self.bacnet[device_id]
            device.offline = bool(settings.get("offline", False))
            device.delay = float(settings.get("delay", 0.0))
        for tag, fault in spec.get("sensors", {}).items():
            ((kind, value),) = fault.items()
            self.plant.inject(tag, getattr(SensorFault, kind)(value))

    async def _watch_control(self, path: Path) -> None:
        seen: float | None = None
        while True:
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != seen:
                seen = mtime
                try:
                    self.apply_faults(json.loads(path.read_text() or "{}") if mtime else {})
                    print(f"faults applied from {path}", flush=True)
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    print(f"faults in {path} not applied: {exc}", flush=True)
            await asyncio.sleep(CONTROL_POLL_S)

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until cancelled. ServerStartError if a device server (or a pty pair) cannot
        start; those already started are stopped first, and `ready` is never set."""
        async with contextlib.AsyncExitStack() as stack:
            for pair in self.ptys:
                await pair.start()
                stack.callback(pair.stop)
            for modbus in self.modbus.values():
                await stack.enter_async_context(modbus)
            for bacnet in self.bacnet.values():
                await stack.enter_async_context(bacnet)
            for meters in self.dlt645.values():
                await stack.enter_async_context(meters)
            self.apply_faults(self.config.faults)
            tasks = [asyncio.create_task(self.plant.run(), name="physics")]
            if self.config.control_file is not None:
                tasks.append(asyncio.create_task(self._watch_control(self.config.control_file)))
            if ready is not None:
                ready.set()
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()


def _load_override(spec: Any) -> float | None:
    """{"kw": 3600} -> 3600.0; absent -> None (the load model again)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"kw"}:
        raise ValueError(f'load must be {{"kw": <number>}}, got {spec!r}')
    kw = spec["kw"]
    if isinstance(kw, bool) or not isinstance(kw, int | float) or not 0 <= kw < 1e6:
        raise ValueError(f"load kw must be a number from 0 to 1e6, got {kw!r}")
    return float(kw)
