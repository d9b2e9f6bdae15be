"""Cross-checks: rules that span several keys, run once the models have validated.

Each finding names the key path of the offending item; the loader turns it into file:line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from control_loops.config import LoopBase
from drivers.fake import FakeDevice
from edge_agent.alarms.rules import rule_problems
from edge_agent.config.base import DeviceBase
from edge_agent.config.errors import Level, Loc
from edge_agent.config.models import AgentConfig, Device
from edge_agent.i18n import _

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
        *_duplicates(config.devices, lambda d: d.id, ("devices",), ("id",), "device id"),
        *_duplicates(config.links, lambda lk: lk.id, ("links",), ("id",), "link id"),
        *_duplicates(
            config.uplink.endpoints,
            lambda e: f"{e.host.lower()}:{e.port}",  # host names are case-insensitive
            ("uplink", "endpoints"),
            (),
            "endpoint",
        ),
        *_reconnect(config),
        *_credentials(config),
        *_duplicates(config.alarms, lambda r: r.id, ("alarms",), ("id",), "alarm rule id"),
        *_alarms(config),
        *_duplicates(config.loops, lambda lp: lp.id, ("loops",), ("id",), "loop id"),
        *_duplicates(config.protection, lambda p: p.id, ("protection",), ("id",), "protection id"),
        *_loops(config),
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
            message = f"duplicate {what} {k!r}"
            yield Finding((*at, index, *leaf), message, (*at, first[k], *leaf))
        else:
            first[k] = index


def _device(device: DeviceBase, path: Loc, known_links: list[str]) -> Iterator[Finding]:
    if device.link is not None and device.link not in known_links:
        defined = ", ".join(known_links) if known_links else "none are defined under links:"
        yield Finding((*path, "link"), f"unknown link {device.link!r} (links: {defined})")
    for index, point in enumerate(device.points):
        if point.writable and point.kind in _BOUNDED_KINDS and point.limits is None:
            message = f"a writable {point.kind} point needs limits (min and max) to check commands"
            yield Finding((*path, "points", index, "writable"), message)
    if isinstance(device, FakeDevice):
        yield from _signals(device, path)


def _timeout(device: DeviceBase, path: Loc) -> Iterator[Finding]:
    if device.timeout < device.poll_interval:
        return
    # Point at the value the technician wrote; a default is not on any line.
    given = device.model_fields_set
    key = "timeout" if "timeout" in given or "poll_interval" not in given else "poll_interval"
    timeout = _seconds(device.timeout, "timeout" in given)
    interval = _seconds(device.poll_interval, "poll_interval" in given)
    yield Finding(
        (*path, key), f"timeout ({timeout}) must be shorter than poll_interval ({interval})"
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
            interval=_seconds(interval, True), what=what, limit=limit, why=_(why)
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


def _signals(device: FakeDevice, path: Loc) -> Iterator[Finding]:
    for index, point in enumerate(device.points):
        signal = point.signal
        if signal.min > signal.max:
            message = f"min ({signal.min:g}) is greater than max ({signal.max:g})"
            yield Finding((*path, "points", index, "signal", "min"), message)


def _reconnect(config: AgentConfig) -> Iterator[Finding]:
    backoff = config.uplink.reconnect
    if backoff.initial > backoff.max:
        initial, longest = _seconds(backoff.initial, True), _seconds(backoff.max, True)
        message = f"initial ({initial}) is longer than max ({longest})"
        yield Finding(("uplink", "reconnect", "initial"), message)


def _credentials(config: AgentConfig) -> Iterator[Finding]:
    # The uplink only sends a password along with a user name: it would be dropped silently.
    if config.uplink.password_file is not None and config.uplink.username is None:
        message = "password_file needs a username (without one, no password is sent)"
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
                what = "itself" if leader == loop.id else f"an unknown loop {leader!r}"
                yield Finding(("loops", index, "yields_to", n), f"a loop cannot yield to {what}")
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
                    yield Finding(path, f"{ref} is not writable (writable: false)")
                binary = key == "protection" or "chillers" in where
                if binary and point.kind != "binary":
                    message = f"a run command must be a binary point; {ref} is {point.kind}"
                    yield Finding(path, message)
                if isinstance(item, LoopBase):  # the loops, not protection
                    # One automatic writer per point, unless one loop is the other's
                    # fallback (`yields_to`): then only one of them writes at a time.
                    for other_path, other in writers.get(ref, []):
                        if other not in item.yields_to and item.id not in loops[other].yields_to:
                            message = (
                                f"{ref} is already written by loop {other!r} (share it only "
                                f"with yields_to: [{other}])"
                            )
                            yield Finding(path, message, other_path)
                    writers.setdefault(ref, []).append((path, item.id))


def _unknown_point(ref: str, points: Iterable[str]) -> str:
    device, _, point = ref.partition(".")
    names = [r.partition(".")[2] for r in points if r.startswith(f"{device}.")]
    if not names:
        return f"unknown device {device!r} in {ref!r}"
    close = difflib.get_close_matches(point, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"device {device!r} has no point {point!r}{hint}"


def _seconds(value: float, given: bool) -> str:
    text = f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"
    return text if given else f"{text}, the default"
