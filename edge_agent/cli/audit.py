"""`edge-agent audit`: who wrote what, when, from which source, with the outcome and the
read-back: the command audit (`command_audit` in the store file), read directly and
read-only, so it works whether the agent runs or not (like `edge-agent export`).

On a terminal a table that fits its width (80 columns: time, point, value and outcome are
never cut; the rest goes under the row, wrapped); into a pipe one tab-separated line per
command, with a header; `--json` one JSON object per line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge_agent.cli.common import fail
from edge_agent.cli.history import store_options, store_source
from edge_agent.cli.when import when_callback
from edge_agent.cli.words import SOURCES
from edge_agent.i18n import _

if TYPE_CHECKING:
    from edge_agent.commands.audit import AuditEntry

# Tab-separated columns when piped (times in UTC, as `export` writes them).
TSV_COLUMNS = (
    "time", "point", "value", "stage", "reason", "readback", "source", "by", "type",
    "until", "id", "message",
)  # fmt: skip


@click.command(
    help=_("Who wrote what and when: writes and releases with their outcome and read-back.")
)
@click.option(
    "--since",
    "since_ms",
    default=None,
    metavar="WHEN",
    callback=when_callback,
    help=_(
        "Only commands since then: a duration ago (10m, 2h30m, 7d), today, yesterday, a "
        "local time (08:00, 2026-11-24 08:00) or @EPOCH."
    ),
)
@click.option(
    "--point",
    "points",
    multiple=True,
    metavar="DEVICE.POINT",
    help=_("Only this point; a pattern such as 'chiller-1.*' for a device (repeatable)."),
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Choice(SOURCES),
    help=_("Only commands from this source (repeatable)."),
)
@click.option(
    "--all",
    "every",
    is_flag=True,
    help=_("Every command (reads, loops, alarms, config), not only writes and releases."),
)
@click.option(
    "-n",
    "--lines",
    "limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help=_("The newest N commands (0: all)."),
)
@click.option("--json", "as_json", is_flag=True, help=_("One JSON object per line."))
@store_options
def audit(
    since_ms: int | None,
    points: tuple[str, ...],
    sources: tuple[str, ...],
    every: bool,
    limit: int,
    as_json: bool,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Who wrote what and when: writes and releases with their outcome and read-back."""
    for ref in points:
        if "." not in ref:
            raise click.BadParameter(
                _("{ref!r} is not DEVICE.POINT; for every point of a device: {ref}.*").format(
                    ref=ref
                ),
                param_hint="'--point'",
            )
    path, _meta = store_source(config_path, store_path)
    entries = _read(path, since_ms, points, sources, every, limit)
    if not entries:
        click.echo(_nothing(path, since_ms, every), err=True)
        return
    try:
        if as_json:
            for entry in entries:
                click.echo(json.dumps(_json(entry), default=str))
        elif sys.stdout.isatty():
            width = shutil.get_terminal_size((80, 24)).columns
            for line in render(entries, width, colour=True):
                click.echo(line)
        else:
            click.echo("\t".join(TSV_COLUMNS))
            for entry in entries:
                click.echo("\t".join(_tsv(entry)))
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def _read(
    path: Path,
    since_ms: int | None,
    points: tuple[str, ...],
    sources: tuple[str, ...],
    every: bool,
    limit: int,
) -> list[AuditEntry]:
    from edge_agent.commands.audit import POINT_COMMANDS, AuditReader
    from edge_agent.store.history import HistoryError, check_store_file

    try:
        check_store_file(path)
    except HistoryError as exc:
        fail(str(exc))
    try:
        with AuditReader(path) as reader:
            if not reader.is_store:
                fail(
                    _("{path} is an SQLite database but not an edge-agent store").format(path=path)
                )
            return reader.entries(
                since_ms, points, sources, None if every else POINT_COMMANDS, limit or None
            )
    except sqlite3.Error as exc:
        fail(_("cannot read the audit in {path}: {error}").format(path=path, error=exc))


def _nothing(path: Path, since_ms: int | None, every: bool) -> str:
    what = _("no commands") if every else _("no writes or releases")
    if since_ms is None:
        return _("{what} in {path}").format(what=what, path=path)
    return _("{what} since {time} in {path}").format(what=what, time=_local(since_ms), path=path)


# -- what a row shows ---------------------------------------------------------------------------


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _target(entry: AuditEntry) -> str:
    command = entry.command
    for key in ("point", "loop", "alarm"):
        if isinstance(command.get(key), str):
            return str(command[key])
    return "-"


def _value(entry: AuditEntry, words: bool = True) -> str:
    """What was asked: the value written, a loop's action; otherwise the command's own
    word for people (`words`), nothing for scripts (the type column says it)."""
    command = entry.command
    kind = entry.row.type
    if kind == "write":
        return _text(command.get("value"))
    if kind == "loop":
        action = str(command.get("action", ""))
        if command.get("parameter") is not None:
            return f"{action} {command['parameter']}={_text(command.get('value'))}"
        return action
    if not words:
        return ""
    return {"release": _("release"), "alarm_ack": _("ack")}.get(kind, kind)


def _outcome(entry: AuditEntry) -> str:
    row = entry.row
    words = {
        "done": _("done"),
        "rejected": _("rejected"),
        "failed": _("failed"),
        "accepted": _("under way"),
        "received": _("under way"),
    }
    outcome = words.get(row.stage, row.stage)
    if entry.command.get("dry_run"):
        outcome = _("{outcome} (dry run)").format(outcome=outcome)
    return outcome


def _readback(entry: AuditEntry) -> str:
    result = entry.row.result or {}
    if "readback" not in result:
        return ""
    return _text(result["readback"])


def _who(entry: AuditEntry) -> str:
    row = entry.row
    return f"{row.source} ({row.by})" if row.by and row.by != row.source else row.source


def _local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


GAP = "  "


@dataclass(frozen=True, slots=True)
class _Row:
    cells: tuple[str, ...]  # time, point, value, outcome, read-back, who
    why: str  # reason and message of a refusal or failure
    stage: str


POINT_MIN = 24  # cells: below this the point folds too much; columns go under the row
VALUE_MAX = 16  # cells: a longer value (a string point) folds


def render(entries: list[AuditEntry], width: int, colour: bool = False) -> list[str]:
    """The lines for a terminal `width` cells wide. Time, point, value and outcome are in
    every row, whole (point and value fold onto more lines, at '.', '_' or '-' where they
    can); the read-back and who follow while the point keeps POINT_MIN cells, else they
    go, with why a command was refused or failed, on a line under the row, wrapped.
    Widths in terminal cells (Chinese: 2)."""
    from rich.cells import cell_len

    heads = (_("time"), _("point"), _("value"), _("outcome"), _("read-back"), _("who"))
    labels = ("", "", "", "", _("read-back"), _("by"))  # of a cell under the row
    rows = _rows(entries)
    natural = [
        max(cell_len(head), *(cell_len(row.cells[i]) for row in rows))
        for i, head in enumerate(heads)
    ]
    natural[2] = min(natural[2], max(VALUE_MAX, cell_len(heads[2])))
    gap = cell_len(GAP)
    for shown in (6, 5, 4):  # as many columns as leave the point room
        others = [n for i, n in enumerate(natural[:shown]) if i != 1]
        room = width - sum(others) - (shown - 1) * gap
        if room >= min(natural[1], POINT_MIN) or shown == 4:
            break
    widths = natural[:shown]
    widths[1] = max(min(natural[1], room), 8)
    indent = widths[0] + gap
    lines = [_line(heads[:shown], widths, bold=colour)]
    for row in rows:
        style = {"rejected": "yellow", "failed": "red"}.get(row.stage) if colour else None
        lines.append(_line(row.cells[:shown], widths, outcome_style=style))
        below = [
            f"{labels[i]} {row.cells[i]}" for i in range(shown, len(heads)) if row.cells[i]
        ] + ([row.why] if row.why else [])
        for text in _wrap("; ".join(below), max(width - indent, 10)):
            lines.append(" " * indent + text)
    return lines


def _rows(entries: list[AuditEntry]) -> list[_Row]:
    rows, day = [], None
    for entry in entries:
        stamp = datetime.fromtimestamp(entry.row.received_ts / 1000)
        # The date with the first row of each day (an audit spans days), the time always.
        shown = stamp.strftime("%H:%M:%S" if stamp.date() == day else "%m-%d %H:%M:%S")
        day = stamp.date()
        row = entry.row
        why = ": ".join(t for t in (row.reason, row.message) if t) if row.stage != "done" else ""
        cells = (shown, _target(entry), _value(entry), _outcome(entry), _readback(entry))
        rows.append(_Row((*cells, _who(entry)), why, row.stage))
    return rows


def _line(
    cells: Sequence[str],
    widths: Sequence[int],
    bold: bool = False,
    outcome_style: str | None = None,
) -> str:
    """One row, on as many lines as its folded cells need; no space at the end."""
    from rich.cells import set_cell_size

    parts = [_fold(cell, width) for cell, width in zip(cells, widths, strict=True)]
    last = len(widths) - 1
    out = []
    for i in range(max(len(p) for p in parts)):
        texts = []
        for column, (part, width) in enumerate(zip(parts, widths, strict=True)):
            text = set_cell_size(part[i] if i < len(part) else "", width)
            if column == last:
                text = text.rstrip()
            if bold:
                text = click.style(text, bold=True)
            elif outcome_style and column == 3:
                text = click.style(text, fg=outcome_style)
            texts.append(text)
        out.append(GAP.join(texts).rstrip())
    return "\n".join(out)


_BREAK = re.compile(r"[^._\- ]+[._\- ]*|[._\- ]+")


def _fold(text: str, width: int) -> list[str]:
    """`text` on lines of `width` cells, broken after '.', '_', '-' or a space where it
    can, by cells where it must (Chinese has no spaces)."""
    from rich.cells import cell_len, chop_cells

    lines: list[str] = []
    line = ""
    for piece in _BREAK.findall(text):
        if cell_len(line + piece) <= width:
            line += piece
            continue
        if line:
            lines.append(line)
        *whole, line = chop_cells(piece, width) or [""]
        lines.extend(whole)
    return [*lines, line] if line or not lines else lines


def _wrap(text: str, width: int) -> list[str]:
    """Words onto lines of `width` cells; a word longer than that (Chinese has no spaces)
    is cut by cells."""
    from rich.cells import cell_len, chop_cells

    lines: list[str] = []
    line = ""
    for word in text.split():
        pieces = chop_cells(word, width) if cell_len(word) > width else [word]
        for piece in pieces:
            if line and cell_len(line) + 1 + cell_len(piece) <= width:
                line += " " + piece
            else:
                if line:
                    lines.append(line)
                line = piece
    if line:
        lines.append(line)
    return lines


def _tsv(entry: AuditEntry) -> list[str]:
    row, result = entry.row, entry.row.result or {}
    until = result.get("until", entry.command.get("until"))
    fields = [
        _iso(row.received_ts),
        _target(entry),
        _value(entry, words=False),
        row.stage,
        row.reason or "",
        _readback(entry),
        row.source,
        row.by or "",
        row.type,
        _iso(until) if isinstance(until, int) else "",
        row.id,
        row.message or "",
    ]
    return [" ".join(f.split()) if f else "" for f in fields]  # no tab or newline inside


def _json(entry: AuditEntry) -> dict[str, Any]:
    return {"time": _iso(entry.row.received_ts), **entry.as_dict()}
