"""`edge-agent points | read | write | release`: the technician's view of and hand on points.

Writes are manual overrides (source `manual`): they beat the platform and the control
loops, and expire (default one hour) unless made `--permanent`. They go through the same
command path as the platform's (limits, rate, equipment protection, audit log).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import click

from edge_agent import exit_codes
from edge_agent.cli.common import (
    NegativeNumbers,
    ask_agent,
    config_option,
    fail,
    socket_option,
    socket_path,
    usage,
)
from edge_agent.config.base import parse_duration

DEFAULT_OVERRIDE = "1h"
COMMAND_TIMEOUT_S = 30.0  # a write waits for the device and its read-back
EXIT_REJECTED = exit_codes.REJECTED
EXIT_FAILED = exit_codes.FAILED


def _command(socket: Path | None, config_path: Path | None, body: dict[str, Any]) -> list[dict]:
    command = {"v": 1, "id": f"cli-{uuid.uuid4().hex[:16]}", **body}
    answer = ask_agent(
        socket_path(socket, config_path), "command", timeout=COMMAND_TIMEOUT_S, command=command
    )
    return answer.get("stages", [])


def _report(stages: list[dict], as_json: bool, describe) -> None:
    """Print the outcome; exit 4 when rejected, 5 when it failed at the device."""
    final = stages[-1] if stages else {"stage": "failed", "message": "no answer"}
    if as_json:
        click.echo(json.dumps(stages, indent=2))
    elif final["stage"] == "done":
        click.echo(describe(final.get("result") or {}))
    if final["stage"] == "rejected":
        if not as_json:
            click.echo(f"rejected ({final.get('reason')}): {final.get('message')}", err=True)
        raise SystemExit(EXIT_REJECTED)
    if final["stage"] == "failed":
        if not as_json:
            click.echo(f"failed ({final.get('reason')}): {final.get('message')}", err=True)
        raise SystemExit(EXIT_FAILED)


def parse_value(text: str) -> bool | int | float | str:
    """What the technician typed: true/false/on/off, an integer, a number, else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "on"):
        return True
    if lowered in ("false", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _held_until(hold: dict) -> str:
    if hold.get("ending"):
        return "ending when protection allows"
    return _until(hold.get("until_ms"))


def _until(ms: int | None) -> str:
    if ms is None:
        return "until released"
    return "until " + time.strftime("%H:%M:%S", time.localtime(ms / 1000))


@click.command(cls=NegativeNumbers)
@click.argument("point")
@click.argument("value")
@click.option("--priority", type=click.IntRange(1, 16), help="BACnet priority (BACnet points).")
@click.option(
    "--for",
    "duration",
    default=None,
    metavar="DURATION",
    help=f"How long the override lasts (e.g. 30m, 2h; default {DEFAULT_OVERRIDE}).",
)
@click.option("--permanent", is_flag=True, help="Hold until 'edge-agent release'.")
@click.option("--dry-run", is_flag=True, help="Check the write without doing it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def write(
    point: str,
    value: str,
    priority: int | None,
    duration: str | None,
    permanent: bool,
    dry_run: bool,
    as_json: bool,
    socket: Path | None,
    config_path: Path | None,
) -> None:
    """Override POINT with VALUE (a manual override, source 'manual')."""
    if permanent and duration:
        usage("--for and --permanent exclude each other")
    body: dict[str, Any] = {"type": "write", "point": point, "value": parse_value(value)}
    if not permanent:
        try:
            body["duration"] = parse_duration(duration or DEFAULT_OVERRIDE)
        except ValueError as exc:
            usage(f"--for: {exc}")
    if priority is not None:
        body["priority"] = priority
    if dry_run:
        body["dry_run"] = True

    def describe(result: dict) -> str:
        if result.get("dry_run"):
            return f"{point} = {result.get('value')!r} would be accepted (dry run, nothing written)"
        return (
            f"{point} = {result.get('readback')!r} (read back), overridden by you "
            f"{_until(result.get('until'))}"
        )

    _report(_command(socket, config_path, body), as_json, describe)


@click.command()
@click.argument("point")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def release(point: str, as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    """End your manual override of POINT."""

    def describe(result: dict) -> str:
        if result.get("pending"):
            return (
                f"{point}: your override stays in force until equipment protection allows "
                f"the change, then ends by itself ({result.get('protection')})"
            )
        if result.get("effective") == "unchanged":
            return f"{point} released (a higher source was in force; nothing changed)"
        effective = result.get("effective")
        now = "the device's own control" if effective == "device" else f"the {effective} value"
        readback = f" (reads {result['readback']!r})" if "readback" in result else ""
        return f"{point} released; now follows {now}{readback}"

    _report(_command(socket, config_path, {"type": "release", "point": point}), as_json, describe)


@click.command()
@click.argument("point")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def read(point: str, as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    """Read POINT from its device now."""

    def describe(result: dict) -> str:
        quality = result.get("quality")
        note = "" if quality == "good" else f"  [{quality}: {result.get('quality_reason', '')}]"
        return f"{point} = {result.get('value')!r}{note}"

    _report(_command(socket, config_path, {"type": "read", "point": point}), as_json, describe)


@click.command()
@click.option("--device", "-d", default=None, help="Only this device's points.")
@click.option("--watch", "-w", is_flag=True, help="Refresh every second until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def points(device: str | None, watch: bool, as_json: bool, socket: Path | None,
           config_path: Path | None) -> None:  # fmt: skip
    """Latest value, quality and age of every point."""
    path = socket_path(socket, config_path)

    def ask() -> dict:
        return ask_agent(path, "points", device=device) if device else ask_agent(path, "points")

    if as_json:
        answer = ask()
        click.echo(json.dumps(answer["points"], indent=2))
        return
    from rich.console import Console
    from rich.live import Live

    def table():
        answer = ask()
        if device and not answer["points"]:
            fail(f"no points for device {device!r} (see 'edge-agent status' for device ids)")
        return _points_table(answer["points"], answer.get("holds", {}))

    if not watch:
        Console().print(table())
        return
    try:
        with Live(table(), refresh_per_second=2, screen=False) as live:
            while True:
                time.sleep(1.0)
                live.update(table())
    except KeyboardInterrupt:
        pass


def _points_table(values: dict[str, dict], holds: dict[str, dict]):
    from rich.markup import escape
    from rich.table import Table

    from edge_agent.cli.status_view import age

    table = Table(padding=(0, 1))
    for column in ("point", "value", "quality", "read", "held by"):
        table.add_column(column, no_wrap=column != "value")
    styles = {"good": "", "bad": "red", "stale": "yellow", "overridden": "cyan"}
    for ref, p in sorted(values.items()):
        quality = p["quality"]
        # Device strings and error reasons are text: a "[" in them is not markup.
        shown = escape(quality if not p.get("reason") else f"{quality}: {p['reason']}")
        hold = holds.get(ref)
        table.add_row(
            ref,
            "-" if p["value"] is None else escape(repr(p["value"])),
            f"[{styles.get(quality, '')}]{shown}[/]" if styles.get(quality) else shown,
            age(p["ts"]),
            "" if hold is None else f"{hold['source']} {_held_until(hold)}",
        )
    return table
