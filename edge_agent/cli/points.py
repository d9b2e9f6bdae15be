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
from edge_agent.i18n import _

DEFAULT_OVERRIDE = "1h"
COMMAND_TIMEOUT_S = 30.0  # a write waits for the device and its read-back
EXIT_REJECTED = exit_codes.REJECTED
EXIT_FAILED = exit_codes.FAILED


def _command(path: Path, body: dict[str, Any]) -> list[dict]:
    command = {"v": 1, "id": f"cli-{uuid.uuid4().hex[:16]}", **body}
    answer = ask_agent(path, "command", timeout=COMMAND_TIMEOUT_S, command=command)
    return answer.get("stages", [])


def _shown(path: Path, point: str, value: object) -> str:
    """`value` of `point` with its unit, at its resolution (from the agent's config)."""
    from edge_agent.cli.status_view import NO_META, agent_meta, with_unit

    return with_unit(value, agent_meta(path).get(point, NO_META))


def _report(stages: list[dict], as_json: bool, describe) -> None:
    """Print the outcome; exit 4 when rejected, 5 when it failed at the device."""
    final = stages[-1] if stages else {"stage": "failed", "message": "no answer"}
    if as_json:
        click.echo(json.dumps(stages, indent=2))
    elif final["stage"] == "done":
        click.echo(describe(final.get("result") or {}))
    if final["stage"] == "rejected":
        if not as_json:
            click.echo(
                _("rejected ({reason}): {message}").format(
                    reason=final.get("reason"), message=final.get("message")
                ),
                err=True,
            )
        raise SystemExit(EXIT_REJECTED)
    if final["stage"] == "failed":
        if not as_json:
            click.echo(
                _("failed ({reason}): {message}").format(
                    reason=final.get("reason"), message=final.get("message")
                ),
                err=True,
            )
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
        return _("ending when protection allows")
    return _until(hold.get("until_ms"))


def _until(ms: int | None) -> str:
    if ms is None:
        return _("until released")
    return _("until {time}").format(time=time.strftime("%H:%M:%S", time.localtime(ms / 1000)))


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
    from edge_agent.config.base import parse_duration

    if permanent and duration:
        usage(_("--for and --permanent exclude each other"))
    body: dict[str, Any] = {"type": "write", "point": point, "value": parse_value(value)}
    if not permanent:
        try:
            body["duration"] = parse_duration(duration or DEFAULT_OVERRIDE)
        except ValueError as exc:
            usage(_("--for: {problem}").format(problem=exc))
    if priority is not None:
        body["priority"] = priority
    if dry_run:
        body["dry_run"] = True

    path = socket_path(socket, config_path)

    def describe(result: dict) -> str:
        if result.get("dry_run"):
            return _("{point} = {value} would be accepted (dry run, nothing written)").format(
                point=point, value=_shown(path, point, result.get("value"))
            )
        return _("{point} = {value} (read back), overridden by you {until}").format(
            point=point,
            value=_shown(path, point, result.get("readback")),
            until=_until(result.get("until")),
        )

    _report(_command(path, body), as_json, describe)


@click.command()
@click.argument("point")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def release(point: str, as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    """End your manual override of POINT."""
    path = socket_path(socket, config_path)

    def describe(result: dict) -> str:
        if result.get("pending"):
            return _(
                "{point}: your override stays in force until equipment protection allows "
                "the change, then ends by itself ({protection})"
            ).format(point=point, protection=result.get("protection"))
        if result.get("effective") == "unchanged":
            return _("{point} released (a higher source was in force; nothing changed)").format(
                point=point
            )
        effective = result.get("effective")
        if effective == "device":
            now = _("{point} released; now follows the device's own control")
        else:
            now = _("{point} released; now follows the {source} value")
        text = now.format(point=point, source=_(str(effective)))
        if "readback" in result:
            text += _(" (reads {value})").format(value=_shown(path, point, result["readback"]))
        return text

    _report(_command(path, {"type": "release", "point": point}), as_json, describe)


@click.command()
@click.argument("point")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def read(point: str, as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    """Read POINT from its device now (with its unit, at its resolution)."""
    path = socket_path(socket, config_path)

    def describe(result: dict) -> str:
        quality = result.get("quality")
        shown = f"{point} = {_shown(path, point, result.get('value'))}"
        if quality == "good":
            return shown
        return f"{shown}  [{_(str(quality))}: {result.get('quality_reason', '')}]"

    _report(_command(path, {"type": "read", "point": point}), as_json, describe)


@click.command()
@click.option("--device", "-d", default=None, help="Only this device's points.")
@click.option("--watch", "-w", is_flag=True, help="Refresh every second until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def points(device: str | None, watch: bool, as_json: bool, socket: Path | None,
           config_path: Path | None) -> None:  # fmt: skip
    """Latest value, unit, quality and age of every point.

    On a terminal, a table that fits its width; piped, one tab-separated line per point
    (a heading line first), or JSON with --json."""
    path = socket_path(socket, config_path)

    def ask() -> dict:
        answer = ask_agent(path, "points", device=device) if device else ask_agent(path, "points")
        if device and not answer["points"]:
            fail(
                _("no points for device {device!r} (see 'edge-agent status' for device ids)")
                .format(device=device)
            )  # fmt: skip
        return answer

    if as_json:
        click.echo(json.dumps(ask()["points"], indent=2))
        return
    from edge_agent.cli.status_view import Fitted, Sized, agent_meta, console, echo_lines, piped

    meta = agent_meta(path)
    if piped():
        while True:
            answer = ask()
            echo_lines(_points_lines(answer["points"], answer.get("holds", {}), meta))
            if not watch:
                return
            try:
                time.sleep(1.0)
            except KeyboardInterrupt:
                return
    out = console()

    def table() -> Fitted:
        answer = ask()
        values, holds = answer["points"], answer.get("holds", {})
        return Fitted(Sized(lambda width: _points_table(values, holds, meta, width)))

    if not watch:
        out.print(table())
        return
    from rich.live import Live

    try:
        with Live(table(), console=out, refresh_per_second=2, screen=False) as live:
            while True:
                time.sleep(1.0)
                live.update(table())
    except KeyboardInterrupt:
        pass


def _point_rows(
    values: dict[str, dict], holds: dict[str, dict], meta: dict
) -> list[tuple[str, str, str, str, str, str, str]]:
    """(ref, value, unit, quality, quality style, read, held by) of every point, by ref."""
    from edge_agent.cli.status_view import NO_META, age, format_value

    rows = []
    for ref, p in sorted(values.items()):
        point = meta.get(ref, NO_META)
        quality = p["quality"]
        shown = _(quality) if not p.get("reason") else f"{_(quality)}: {p['reason']}"
        hold = holds.get(ref)
        rows.append((
            ref,
            format_value(p["value"], point),
            point.unit if p["value"] is not None else "",
            shown,
            QUALITY_STYLE.get(quality, ""),
            age(p["ts"]),
            "" if hold is None else f"{_(hold['source'])} {_held_until(hold)}",
        ))  # fmt: skip
    return rows


QUALITY_STYLE = {"bad": "red", "stale": "yellow", "overridden": "cyan"}


def _headings() -> tuple[str, ...]:
    return (_("point"), _("value"), _("unit"), _("quality"), _("read"), _("held by"))


def _points_lines(values: dict[str, dict], holds: dict[str, dict], meta: dict) -> list[str]:
    """For a pipe: a heading line, then one tab-separated line per point."""
    from edge_agent.cli.status_view import tsv_line

    rows = _point_rows(values, holds, meta)
    return [tsv_line(_headings())] + [tsv_line(r[:4] + r[5:]) for r in rows]


def _points_table(
    values: dict[str, dict],
    holds: dict[str, dict],
    meta: dict | None = None,
    width: int | None = None,
):
    """The table for `width` cells (None: as wide as it needs). Value, unit and age never
    shrink: they are what the technician came for. What gives way, where it costs the
    fewest lines: the hold and the quality's reason wrap, the point's name breaks after
    its device."""
    from rich.markup import escape

    from edge_agent.cli.status_view import (
        fit_widths,
        ref_lines,
        split_ref,
        table,
        text_width,
        word_floor,
        wrapped_lines,
    )

    rows = _point_rows(values, holds, meta or {})
    headings = _headings()
    columns = [
        [h, *(row[i] for row in rows)] for h, i in zip(headings, (0, 1, 2, 3, 5, 6), strict=True)
    ]
    natural = [max(text_width(cell) for cell in cells) for cells in columns]
    widths = (
        natural
        if width is None
        else fit_widths(
            columns,
            {5: wrapped_lines, 3: wrapped_lines, 0: ref_lines},
            {0: 12, 3: word_floor(columns[3], 8, 16), 5: word_floor(columns[5], 8, 16)},
            width,
        )
    )
    shown = table()
    point, value, unit, quality, read, held = headings
    shown.add_column(point, overflow="fold", max_width=widths[0])
    shown.add_column(value, no_wrap=True, justify="right")
    shown.add_column(unit, no_wrap=True)
    shown.add_column(quality, overflow="fold", max_width=widths[3])
    shown.add_column(read, no_wrap=True)
    shown.add_column(held, overflow="fold", max_width=widths[5])
    # Device strings and error reasons are text: a "[" in them is not markup.
    for ref, text, units, state, style, age, hold in rows:
        shown.add_row(
            escape(split_ref(ref, widths[0])),
            escape(text),
            escape(units),
            f"[{style}]{escape(state)}[/]" if style else escape(state),
            age,
            escape(hold),
        )
    return shown
