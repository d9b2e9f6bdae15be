"""Cross-checks: rules that span several keys, run once the models have validated.

Each finding names the key path of the offending item; the loader turns it into file:line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from control_loops.config import LoopBase
from drivers.bacnet.config import BacnetDevice, BacnetPoint
from drivers.fake import FakeDevice
from drivers.modbus.config import BIT_TABLES, ModbusDevice, ModbusPoint
from edge_agent.alarms.rules import rule_problems
from edge_agent.config.base import DeviceBase
from edge_agent.config.errors import Level, Loc
from edge_agent.config.models import AgentConfig, Device
from edge_agent.energy.config import energy_problems
from edge_agent.i18n import N_, _

T = TypeVar("T")

# Kinds whose commands are numbers and must be checked against limits before a write.
_BOUNDED_KINDS = ("analog", "multistate")


@dataclass(frozen=True)
class Finding:
    path: Loc
    message: str
    first: Loc | None = None  # the earlier item a duplicate collides with
    level: Level = "error"


def cross_check(config: AgentConfig) -> list[Finding]:
    findings = [
        *_duplicates(config.devices, lambda d: d.id, ("devices",), ("id",), N_("device id")),
        *_duplicates(config.links, lambda lk: lk.id, ("links",), ("id",), N_("link id")),
        *_duplicates(
            config.uplink.endpoints,
            lambda e: f"{e.host.lower()}:{e.port}",  # host names are case-insensitive
            ("uplink", "endpoints"),
            (),
            N_("endpoint"),
        ),
        *_reconnect(config),
        *_credentials(config),
        *_duplicates(config.alarms, lambda r: r.id, ("alarms",), ("id",), N_("alarm rule id")),
        *_alarms(config),
        *_duplicates(config.loops, lambda lp: lp.id, ("loops",), ("id",), N_("loop id")),
        *_duplicates(
            config.protection, lambda p: p.id, ("protection",), ("id",), N_("protection id")
        ),
        *_loops(config),
        *_same_device_twice(config),
        *_never_polled(config),
        *_comm_loss(config),
        *_hj212(config),
        *_energy(config),
    ]
    known_links = list(dict.fromkeys(link.id for link in config.links))
    for index, device in enumerate(config.devices):
        path = ("devices", index)
        findings += _duplicates(
            device.points, lambda p: p.id, (*path, "points"), ("id",), "point id"
        )
        findings += _device(device, path, known_links)
        findings += _poll_interval(device, path)
    return findings


def _duplicates(
    items: Sequence[T], key: Callable[[T], str], at: Loc, leaf: Loc, what: str
) -> Iterator[Finding]:
    """One finding per item whose key an earlier item already has."""
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        k = key(item)
        if k in first:
            message = _("duplicate {what} {value!r}").format(what=_(what), value=k)
            yield Finding((*at, index, *leaf), message, (*at, first[k], *leaf))
        else:
            first[k] = index


def _device(device: DeviceBase, path: Loc, known_links: list[str]) -> Iterator[Finding]:
    if device.link is not None and device.link not in known_links:
        defined = ", ".join(known_links) if known_links else "none are defined under links:"
        message = _("unknown link {link!r} (links: {defined})")
        yield Finding((*path, "link"), message.format(link=device.link, defined=defined))
    for index, point in enumerate(device.points):
        if point.writable and point.kind in _BOUNDED_KINDS and point.limits is None:
            message = _(
                "a writable {kind} point needs limits (min and max) to check commands"
            ).format(kind=point.kind)
            yield Finding((*path, "points", index, "writable"), message)
    if isinstance(device, FakeDevice):
        yield from _signals(device, path)
    if isinstance(device, ModbusDevice):
        yield from _registers(device, path)
    if isinstance(device, BacnetDevice):
        yield from _properties(device, path)


def _timeout(device: DeviceBase, path: Loc) -> Iterator[Finding]:
    if device.timeout < device.poll_interval:
        return
    # Point at the value the technician wrote; a default is not on any line.
    given = device.model_fields_set
    key = "timeout" if "timeout" in given or "poll_interval" not in given else "poll_interval"
    timeout = _seconds(device.timeout, "timeout" in given)
    interval = _seconds(device.poll_interval, "poll_interval" in given)
    yield Finding(
        (*path, key),
        _("timeout ({timeout}) must be shorter than poll_interval ({interval})").format(
            timeout=timeout, interval=interval
        ),
    )


def _poll_interval(device: Device, path: Loc) -> Iterator[Finding]:
    """Below its driver's floor, a poll_interval is refused (a `1ms` typo for `1m` would
    poll 720 times a second); a timeout over half of it is a warning."""
    what, floor, why = device.poll_floor()
    interval = device.poll_interval
    if interval < floor:
        limit = _seconds(floor, True)
        ms = interval * 1000
        if 1 <= ms < 60 and abs(ms - round(ms)) < 1e-6:  # `5ms` where `5s` or `5m` was meant
            limit += _("; did you mean {n}s or {n}m?").format(n=round(ms))
        message = _("poll_interval {interval} is shorter than {what} allows ({limit}): {why}")
        message = message.format(
            interval=_seconds(interval, True), what=_(what), limit=limit, why=_(why)
        )
        yield Finding((*path, "poll_interval"), message)
        return  # the timeout checks would only repeat it
    yield from _timeout(device, path)
    if interval / 2 < device.timeout < interval:  # at or over the interval: an error
        given = device.model_fields_set
        key = "timeout" if "timeout" in given or "poll_interval" not in given else "poll_interval"
        message = _(
            "timeout ({timeout}) is more than half of poll_interval ({interval}): an "
            "unanswered request (and its retries) takes up most of the interval, so polls "
            "start late or are skipped"
        ).format(
            timeout=_seconds(device.timeout, "timeout" in given),
            interval=_seconds(interval, "poll_interval" in given),
        )
        yield Finding((*path, key), message, level="warning")


_TABLE_WORDS = {
    "coil": ("coil", "coils"),
    "discrete": ("discrete input", "discrete inputs"),
    "holding": ("holding register", "holding registers"),
    "input": ("input register", "input registers"),
}


def _span(point: ModbusPoint) -> str:
    """'input registers 0-1', 'holding register 7', 'coil 3'."""
    spec = point.modbus
    one, many = _TABLE_WORDS[spec.table]
    if spec.count == 1 or spec.table in BIT_TABLES:
        return f"{one} {spec.address}"
    return f"{many} {spec.address}-{spec.address + spec.count - 1}"


def _registers(device: ModbusDevice, path: Loc) -> Iterator[Finding]:
    """Points of one table whose registers overlap (docs/configuration.md, Warnings).

    A value read twice from the same registers may be meant (a raw and a scaled view): a
    warning. Two multi-register values that overlap partially cannot both be right (an
    address off by one: a float32 takes two registers): an error. One register of a larger
    value read on its own is rarely meant: a warning. `type: bit` points share their
    register with anything but the same bit. A second reading of the same registers is
    compared with the first only, so that one slip is reported once."""

    def at(index: int) -> Loc:
        return (*path, "points", index, "modbus", "address")

    tables: dict[str, list[tuple[int, ModbusPoint]]] = {}
    for index, point in enumerate(device.points):
        tables.setdefault(point.modbus.table, []).append((index, point))
    for items in tables.values():
        items.sort(key=lambda item: item[1].modbus.address)  # stable: file order within one
        firsts: dict[tuple[int, int, int | None], tuple[int, ModbusPoint]] = {}
        reaching: list[tuple[int, ModbusPoint]] = []  # earlier starts whose span is still open
        for index, point in items:
            spec = point.modbus
            key = (spec.address, spec.count, spec.bit)  # bit: None but for `type: bit`
            if key in firsts:
                first_index, first = firsts[key]
                finding = _overlap(first, point)
                if finding is not None:
                    yield Finding(at(index), finding[0], at(first_index), finding[1])
                continue
            firsts[key] = (index, point)
            if spec.type == "bit":
                continue  # shares its register with the word and the other bits
            reaching = [
                (i, p) for i, p in reaching if p.modbus.address + p.modbus.count > spec.address
            ]
            for other_index, other in reaching:
                (i, a), (j, b) = sorted([(other_index, other), (index, point)], key=lambda x: x[0])
                finding = _overlap(a, b)
                if finding is not None:
                    yield Finding(at(j), finding[0], at(i), finding[1])
            reaching.append((index, point))


def _overlap(first: ModbusPoint, second: ModbusPoint) -> tuple[str, Level] | None:
    """What to say of `second` (later in the file), whose registers overlap `first`'s."""
    a, b = first.modbus, second.modbus
    if a.type == "bit" or b.type == "bit":  # the bits of a status word, or the word itself
        if a.type == b.type == "bit" and a.address == b.address and a.bit == b.bit:
            message = _("reads the same bit ({bit} of {span}) as {other!r}")
            return message.format(bit=b.bit, span=_span(second), other=first.id), "warning"
        return None
    same_way = (a.type, a.word_order, a.byte_order, first.scale, first.offset) == (
        b.type,
        b.word_order,
        b.byte_order,
        second.scale,
        second.offset,
    )
    if a.address == b.address and a.count == b.count:
        if same_way:
            message = _(
                "reads {span} as {other!r} does, the same way (a copied point whose address "
                "was not changed?)"
            )
        else:
            message = _(
                "reads {span} as {other!r} does (fine for a second view of one value, e.g. raw "
                "and scaled; otherwise check the address)"
            )
        return message.format(span=_span(second), other=first.id), "warning"
    if a.count > 1 and b.count > 1:
        message = _(
            "{type} at {span} overlaps {other!r} ({other_type} at {other_span}): two values "
            "cannot share registers; check the address ({type} takes {n} registers)"
        )
        return message.format(
            type=b.type,
            span=_span(second),
            other=first.id,
            other_type=a.type,
            other_span=_span(first),
            n=b.count,
        ), "error"
    message = _(
        "{span} is part of {other!r} ({other_type} at {other_span}): one register of a larger "
        "value is rarely meant on its own; check the address"
    )
    return message.format(
        span=_span(second), other=first.id, other_type=a.type, other_span=_span(first)
    ), "warning"


def _properties(device: BacnetDevice, path: Loc) -> Iterator[Finding]:
    """Two points of one BACnet device reading one property: a warning, as in Modbus."""
    first: dict[tuple[str, int, str], int] = {}
    for index, point in enumerate(device.points):
        ref = point.bacnet
        key = (ref.object, ref.instance, ref.property)
        if key not in first:
            first[key] = index
            continue
        other: BacnetPoint = device.points[first[key]]
        same_way = (other.scale, other.offset) == (point.scale, point.offset)
        if same_way:
            text = _(
                "reads {ref} as {other!r} does, the same way (a copied point whose instance "
                "was not changed?)"
            )
        else:
            text = _(
                "reads {ref} as {other!r} does (fine for a second view of one value, e.g. raw "
                "and scaled; otherwise check the instance)"
            )
        message = text.format(ref=f"{ref.object} {ref.instance} {ref.property}", other=other.id)
        leaf = ("points", index, "bacnet", "instance")
        yield Finding(
            (*path, *leaf), message, (*path, "points", first[key], "bacnet", "instance"), "warning"
        )


def _endpoint(device: Device) -> tuple[str, str] | None:
    """(what, text) naming the physical device a device polls, if two can be compared."""
    if isinstance(device, ModbusDevice):
        c = device.connection
        if c.transport == "rtu":
            return "connection", f"rtu {c.port} unit {c.unit}"
        return "connection", f"{c.transport} {c.host.lower()}:{c.port} unit {c.unit}"
    if isinstance(device, BacnetDevice):
        host, _sep, port = device.connection.address.partition(":")
        return "connection", f"bacnet {host}:{port or 47808}"
    return None


def _same_device_twice(config: AgentConfig) -> Iterator[Finding]:
    """Two devices polling one physical device: a copied device whose unit id or address was
    not changed reads the wrong equipment under the right name. A warning: one device polled
    at two rates (fast and slow points) is done this way. Disabled devices are not polled."""
    seen: dict[str, int] = {}
    for index, device in enumerate(config.devices):
        found = _endpoint(device) if device.enabled else None
        if found is None:
            continue
        key, text = found
        if text not in seen:
            seen[text] = index
            continue
        other = config.devices[seen[text]].id
        message = _(
            "polls the same device as {other!r} ({endpoint}): a copied device whose unit or "
            "address was not changed? (fine if one device is polled at two rates)"
        ).format(other=other, endpoint=text)
        yield Finding(("devices", index, key), message, ("devices", seen[text], key), "warning")


def _never_polled(config: AgentConfig) -> Iterator[Finding]:
    """An alarm rule, loop or protection on a device with `enabled: false` sees no value."""
    disabled = {d.id for d in config.devices if not d.enabled}
    if not disabled:
        return
    message = _("{device} is not polled (enabled: false): {what} never sees a value of {ref}")
    for index, rule in enumerate(config.alarms):
        if not rule.enabled:
            continue
        refs: list[tuple[Loc, str]] = [(("point",), rule.point)]
        if rule.when is not None:
            refs.append((("when", "point"), rule.when.point))
        for where, ref in refs:
            device = ref.partition(".")[0]
            if device in disabled:
                text = message.format(device=device, what=_("this alarm rule"), ref=ref)
                yield Finding(("alarms", index, *where), text, level="warning")
    groups = (("loops", config.loops, _("this loop")), ("protection", config.protection, None))
    for key, items, what in groups:
        for index, item in enumerate(items):
            if isinstance(item, LoopBase) and not item.enabled:
                continue
            for where, ref, _written in item.refs():
                device = ref.partition(".")[0]
                if device in disabled:
                    text = message.format(device=device, what=what or _("this protection"), ref=ref)
                    yield Finding((key, index, *where), text, level="warning")


def _comm_loss(config: AgentConfig) -> Iterator[Finding]:
    """A comm_loss rule that a single late poll, or every gap between polls, sets off."""
    intervals = {d.id: d.poll_interval for d in config.devices}
    for index, rule in enumerate(config.alarms):
        if rule.type != "comm_loss" or not rule.enabled:
            continue
        interval = intervals.get(rule.device)
        if interval is None or rule.duration >= 2 * interval:
            continue
        if rule.duration <= interval:
            text = _(
                "duration ({duration}) is not longer than the poll interval of {device} "
                "({interval}): the alarm is raised between every two polls"
            )
        else:
            text = _(
                "duration ({duration}) is shorter than two poll intervals of {device} "
                "({interval} each): one late poll raises the alarm"
            )
        message = text.format(
            duration=_seconds(rule.duration, "duration" in rule.model_fields_set),
            device=rule.device,
            interval=_seconds(interval, True),
        )
        yield Finding(("alarms", index, "duration"), message, level="warning")


def _signals(device: FakeDevice, path: Loc) -> Iterator[Finding]:
    for index, point in enumerate(device.points):
        signal = point.signal
        if signal.min > signal.max:
            message = _("min ({min}) is greater than max ({max})").format(
                min=f"{signal.min:g}", max=f"{signal.max:g}"
            )
            yield Finding((*path, "points", index, "signal", "min"), message)


def _reconnect(config: AgentConfig) -> Iterator[Finding]:
    backoff = config.uplink.reconnect
    if backoff.initial > backoff.max:
        initial, longest = _seconds(backoff.initial, True), _seconds(backoff.max, True)
        message = _("initial ({initial}) is longer than max ({max})").format(
            initial=initial, max=longest
        )
        yield Finding(("uplink", "reconnect", "initial"), message)


def _credentials(config: AgentConfig) -> Iterator[Finding]:
    # The uplink only sends a password along with a user name: it would be dropped silently.
    if config.uplink.password_file is not None and config.uplink.username is None:
        message = _("password_file needs a username (without one, no password is sent)")
        yield Finding(("uplink", "password_file"), message)


def _alarms(config: AgentConfig) -> Iterator[Finding]:
    # Every rule must watch a configured point (or device), of a kind its type can judge.
    kinds = {f"{d.id}.{p.id}": p.kind for d in config.devices for p in d.points}
    for index, where, message in rule_problems(config.alarms, kinds):
        yield Finding(("alarms", index, *where), message)


def _loops(config: AgentConfig) -> Iterator[Finding]:
    # Loops and protection read configured points and write writable ones; a point has
    # one automatic writer, and run commands are binary.
    points = {f"{d.id}.{p.id}": p for d in config.devices for p in d.points}
    writers: dict[str, list[tuple[tuple[str | int, ...], str]]] = {}  # ref -> (path, loop)
    loops = {loop.id: loop for loop in config.loops}
    for index, loop in enumerate(config.loops):
        for n, leader in enumerate(loop.yields_to):
            if leader not in loops or leader == loop.id:
                if leader == loop.id:
                    message = _("a loop cannot yield to itself")
                else:
                    message = _("a loop cannot yield to an unknown loop {loop!r}")
                    message = message.format(loop=leader)
                yield Finding(("loops", index, "yields_to", n), message)
    groups = (("loops", config.loops), ("protection", config.protection))
    for key, items in groups:
        for index, item in enumerate(items):
            for where, ref, written in item.refs():
                path = (key, index, *where)
                point = points.get(ref)
                if point is None:
                    yield Finding(path, _unknown_point(ref, points))
                    continue
                if not written:
                    continue
                if not point.writable:
                    message = _("{point} is not writable (writable: false)").format(point=ref)
                    yield Finding(path, message)
                binary = key == "protection" or "chillers" in where
                if binary and point.kind != "binary":
                    message = _("a run command must be a binary point; {point} is {kind}").format(
                        point=ref, kind=point.kind
                    )
                    yield Finding(path, message)
                if isinstance(item, LoopBase):  # the loops, not protection
                    # One automatic writer per point, unless one loop is the other's
                    # fallback (`yields_to`): then only one of them writes at a time.
                    for other_path, other in writers.get(ref, []):
                        if other not in item.yields_to and item.id not in loops[other].yields_to:
                            message = _(
                                "{point} is already written by loop {other!r} (share it only "
                                "with yields_to: [{other}])"
                            ).format(point=ref, other=other)
                            yield Finding(path, message, other_path)
                    writers.setdefault(ref, []).append((path, item.id))


def _hj212(config: AgentConfig) -> Iterator[Finding]:
    # What the data logger reports must be polled: a pollutant's value and status, the
    # equipment's run state; two platforms must not share an endpoint and MN.
    if config.hj212 is None:
        return
    points = {f"{d.id}.{p.id}" for d in config.devices for p in d.points}
    groups = (("pollutants", config.hj212.pollutants), ("run_status", config.hj212.run_status))
    for key, items in groups:
        for index, item in enumerate(items):
            for field in ("point", "status"):
                ref = getattr(item, field, None)
                if ref is not None and ref not in points:
                    yield Finding(("hj212", key, index, field), _unknown_point(ref, points))
    yield from _duplicates(
        config.hj212.platforms,
        lambda p: f"{p.host.lower()}:{p.port}/{p.mn}",
        ("hj212", "platforms"),
        (),
        N_("platform endpoint and MN"),
    )


def _energy(config: AgentConfig) -> Iterator[Finding]:
    # A meter counts a polled point in the meter's unit; the model's own rules (ids,
    # formulas, the tree) come from the energy package.
    if config.energy is None:
        return
    units = {f"{d.id}.{p.id}": p.unit for d in config.devices for p in d.points}
    for index, meter in enumerate(config.energy.meters):
        at = ("energy", "meters", index)
        unit = units.get(meter.point)
        if unit is None:
            yield Finding((*at, "point"), _unknown_point(meter.point, units))
        elif unit and unit != meter.unit:
            message = _("{point} is in {unit}, the meter in {meter_unit}").format(
                point=meter.point, unit=unit, meter_unit=meter.unit
            )
            yield Finding((*at, "unit"), message)
    for where, message, first in energy_problems(config.energy):
        yield Finding(("energy", *where), message, None if first is None else ("energy", *first))


def _unknown_point(ref: str, points: Iterable[str]) -> str:
    device, _dot, point = ref.partition(".")
    names = [r.partition(".")[2] for r in points if r.startswith(f"{device}.")]
    if not names:
        return _("unknown device {device!r} in {ref!r}").format(device=device, ref=ref)
    close = difflib.get_close_matches(point, names, n=1)
    if close:
        message = _("device {device!r} has no point {point!r} (did you mean {close!r}?)")
        return message.format(device=device, point=point, close=close[0])
    return _("device {device!r} has no point {point!r}").format(device=device, point=point)


def _seconds(value: float, given: bool) -> str:
    text = f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"
    return text if given else _("{value}, the default").format(value=text)
