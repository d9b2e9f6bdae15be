"""`edge-agent alarms | loops`: what the plant is complaining about and what controls it.

On a terminal, laid out for its width (80 columns in the plant room); piped, one
tab-separated line per alarm or loop after a heading line; `--json` for scripts."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import click

from edge_agent import exit_codes
from edge_agent.cli.common import ask_agent, config_option, fail, socket_option, socket_path
from edge_agent.i18n import _

SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "cyan"}
MODE_STYLE = {"auto": "green", "safe": "red", "overridden": "cyan"}


def _clock(ms: int | None) -> str:
    return "-" if not ms else time.strftime("%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _stamp(ms: int | None) -> str:
    """For a pipe: the whole local time."""
    return "" if not ms else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


# -- alarms ----------------------------------------------------------------------------------


@click.command()
@click.option(
    "--ack",
    "ack_id",
    default=None,
    metavar="ID",
    help="Acknowledge this alarm (occurrence id or rule id).",
)
@click.option("--note", default=None, help="A note kept with the acknowledgement.")
@click.option(
    "--history",
    is_flag=True,
    help="The alarms that ended (cleared and acknowledged, or superseded), newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def alarms(ack_id: str | None, note: str | None, history: bool, as_json: bool,
           socket: Path | None, config_path: Path | None) -> None:  # fmt: skip
    """List the alarms (unacknowledged first), or acknowledge one with --ack.

    Piped: one tab-separated line per alarm, after a heading line."""
    path = socket_path(socket, config_path)
    if ack_id is not None:
        if history:
            fail(_("--ack and --history exclude each other"))
        command = {"v": 1, "id": f"cli-{uuid.uuid4().hex[:16]}", "type": "alarm_ack",
                   "alarm": ack_id, **({"note": note} if note else {})}  # fmt: skip
        stages = ask_agent(path, "command", timeout=10.0, command=command)["stages"]
        final = stages[-1]
        if as_json:
            click.echo(json.dumps(final, indent=2))
        if final["stage"] != "done":
            fail(
                _("not acknowledged ({reason}): {message}").format(
                    reason=final.get("reason"), message=final.get("message")
                ),
                exit_codes.OF_STAGE.get(final["stage"], exit_codes.FAILED),
            )
        if not as_json:
            click.echo(
                _("acknowledged {id}: {message}").format(
                    id=final["result"]["id"], message=final["result"]["message"]
                )
            )
        return
    if history:
        _alarm_history(path, as_json)
        return
    listed = ask_agent(path, "alarms")["alarms"]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    from edge_agent.cli.status_view import echo_lines, piped, tsv_line

    if piped():
        headings = (_("severity"), _("state"), _("acknowledged"), _("raised"), _("id"),
                    _("point"), _("message"))  # fmt: skip
        echo_lines([tsv_line(headings)] + [
            tsv_line((
                _(alarm["severity"]), _(alarm["state"]),
                _("yes") if alarm.get("acked") else _("no"), _stamp(alarm.get("raised_ts")),
                alarm["id"], alarm["point"], alarm["message"],
            ))
            for alarm in listed
        ])  # fmt: skip
        return
    if not listed:
        click.echo(_("no alarms"))
        return
    _print_alarms(listed, _listed_facts)


def _listed_facts(alarm: dict[str, Any]) -> list[str]:
    from rich.markup import escape

    state = escape(_(alarm["state"]))
    if not alarm.get("acked"):
        state += f" [bold]{_('(unacknowledged)')}[/]"
    return [state, _("raised {time}").format(time=_clock(alarm.get("raised_ts")))]


def _print_alarms(listed: list[dict[str, Any]], facts) -> None:
    """Two lines or more per alarm, the severity in the margin: its facts (phrases that
    wrap between them), then its message and point."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from edge_agent.cli.status_view import Phrases, show

    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for alarm in listed:
        style = SEVERITY_STYLE.get(alarm["severity"], "")
        severity = escape(_(alarm["severity"]))
        what = f"{escape(alarm['message'])}  [dim]({escape(alarm['point'])})[/]"
        grid.add_row(
            f"[{style}]{severity}[/]" if style else severity,
            Group(Phrases(*facts(alarm), f"[dim]{escape(alarm['id'])}[/]"), what),
        )
    show(grid)


def _alarm_history(path: Path, as_json: bool) -> None:
    """The alarms that left the list: the agent's `alarms` request with `history`, which
    answers `history`, newest first (each as listed, with `closed` and `closed_ts`)."""
    answer = ask_agent(path, "alarms", history=True)
    ended = answer.get("history")
    if not isinstance(ended, list):
        fail(
            _(
                "the running agent keeps no history of ended alarms (an older version); "
                "its log has them: edge-agent logs -n 2000 | grep alarm"
            )
        )
    if as_json:
        click.echo(json.dumps(ended, indent=2))
        return
    from edge_agent.cli.status_view import echo_lines, piped, tsv_line

    if piped():
        headings = (_("severity"), _("raised"), _("cleared"), _("acknowledged"), _("by"),
                    _("note"), _("ended"), _("id"), _("point"), _("message"))  # fmt: skip
        echo_lines([tsv_line(headings)] + [
            tsv_line((
                _(alarm["severity"]), _stamp(alarm.get("raised_ts")),
                _stamp(alarm.get("cleared_ts")), _stamp(alarm.get("ack_ts")),
                alarm.get("ack_by") or "", alarm.get("ack_note") or "",
                _(str(alarm.get("closed") or "")), alarm["id"], alarm["point"], alarm["message"],
            ))
            for alarm in ended
        ])  # fmt: skip
        return
    if not ended:
        click.echo(_("no ended alarms"))
        return
    _print_alarms(ended, _ended_facts)


def _ended_facts(alarm: dict[str, Any]) -> list[str]:
    from rich.markup import escape

    facts = [_("raised {time}").format(time=_clock(alarm.get("raised_ts")))]
    if alarm.get("cleared_ts"):
        facts.append(_("cleared {time}").format(time=_clock(alarm["cleared_ts"])))
    if alarm.get("acked"):
        facts.append(
            escape(
                _("acknowledged by {by} {time}").format(
                    by=alarm.get("ack_by") or "?", time=_clock(alarm.get("ack_ts"))
                )
            )
        )
    if alarm.get("ack_note"):
        facts.append(escape(_("note: {note}").format(note=alarm["ack_note"])))
    if alarm.get("closed") not in (None, "cleared", "acknowledged"):
        facts.append(escape(_(str(alarm["closed"]))))
    return facts


# -- loops -----------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def loops(as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    """Control loops: mode, outputs, last result and who changed them.

    Piped: one tab-separated line per loop, after a heading line."""
    path = socket_path(socket, config_path)
    listed = ask_agent(path, "loops")["loops"]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    from edge_agent.cli.status_view import Sized, agent_meta, echo_lines, piped, show, tsv_line

    rows = _loop_rows(listed, agent_meta(path) if listed else {})
    if piped():
        echo_lines([
            tsv_line(_loop_headings()),
            *(tsv_line((i, kind, mode, "; ".join(out), result, by))
              for i, kind, mode, out, result, by in rows),
        ])  # fmt: skip
        return
    if not listed:
        click.echo(_("no control loops configured"))
        return
    show(Sized(lambda width: _loops_table(rows, width)))


def _loop_headings() -> tuple[str, ...]:
    return (_("loop"), _("type"), _("mode"), _("outputs"), _("last result"),
            _("changed by"))  # fmt: skip


def _loop_rows(
    listed: list[dict[str, Any]], meta: dict
) -> list[tuple[str, str, str, list[str], str, str]]:
    """(id, type, mode, ["ref = value unit", ...], last result, changed) of every loop."""
    from edge_agent.cli.status_view import NO_META, with_unit

    rows = []
    for loop in listed:
        mode = loop.get("mode", "?")
        why = loop.get("safe_reason") if mode in ("safe", "waiting") else None
        # What it last wrote, else what it would write (standing by, overridden).
        outputs = loop.get("written") or loop.get("outputs") or {}
        shown = [
            f"{ref} = {with_unit(value, meta.get(ref, NO_META))}" for ref, value in outputs.items()
        ]
        changed = loop.get("changed")
        settings = ", ".join(f"{k}={v}" for k, v in (loop.get("set") or {}).items())
        who = "" if not changed else f"{changed['by']} {_clock(changed['ts'])}"
        rows.append((
            loop["id"],
            loop.get("type", ""),
            mode,
            shown,
            "; ".join(filter(None, (why, loop.get("result")))),
            f"{who}; {settings}" if who and settings else who,
        ))  # fmt: skip
    return rows


def _output_lines(text: str, width: int) -> int:
    """Lines an output ("ref = value unit") takes: the value goes under a long name."""
    from edge_agent.cli.status_view import ref_lines, text_width

    total = 0
    for line in text.split("\n"):
        ref, _eq, value = line.partition(" = ")
        total += 1 if text_width(line) <= width else ref_lines(ref, width) + (1 if value else 0)
    return total


def _output_cell(outputs: list[str], width: int) -> str:
    from edge_agent.cli.status_view import split_ref, text_width

    lines = []
    for output in outputs:
        if text_width(output) <= width:
            lines.append(output)
            continue
        ref, _eq, value = output.partition(" = ")
        lines.append(split_ref(ref, width))
        lines.append(f"= {value}")
    return "\n".join(lines) or "-"


def _loops_table(rows: list, width: int | None = None):
    """Loop (its type under it), mode, outputs, last result, changed. The outputs' values
    are never cut: a long point name goes on its own line above its value."""
    from rich.markup import escape

    from edge_agent.cli.status_view import (
        LineCount,
        fit_widths,
        table,
        text_width,
        word_floor,
        wrapped_lines,
    )

    loop, _type, mode, outputs, result, changed = _loop_headings()
    anyone = any(r[5] for r in rows)  # no loop changed by a command: no column for it
    columns = [
        [loop, *(f"{r[0]}\n{r[1]}" for r in rows)],
        [mode, *(_(r[2]) for r in rows)],
        [outputs, *("\n".join(r[3]) or "-" for r in rows)],
        [result, *(r[4] for r in rows)],
    ]
    wraps: dict[int, LineCount] = {3: wrapped_lines, 2: _output_lines}
    # An output's value is never cut, nor a point's name below 24 cells.
    floors = {
        2: max(
            [8]
            + [text_width("= " + o.partition(" = ")[2]) for r in rows for o in r[3]]
            + [min(24, text_width(o.partition(" = ")[0])) for r in rows for o in r[3]]
        ),
        3: word_floor(columns[3], 12, 24),
    }
    if anyone:
        columns.append([changed, *(r[5] for r in rows)])
        wraps = {4: wrapped_lines, **wraps}
        floors[4] = word_floor(columns[4], 10, 24)
    natural = [max(text_width(c) for c in cells) for cells in columns]
    widths = natural if width is None else fit_widths(columns, wraps, floors, width)
    shown = table()
    shown.add_column(loop, no_wrap=True)
    shown.add_column(mode, no_wrap=True)
    shown.add_column(outputs, overflow="fold", max_width=widths[2])
    shown.add_column(result, overflow="fold", max_width=widths[3])
    if anyone:
        shown.add_column(changed, overflow="fold", max_width=widths[4])
    for loop_id, loop_type, loop_mode, loop_outputs, last, who in rows:
        style = MODE_STYLE.get(loop_mode, "dim")
        cells = [
            f"{escape(loop_id)}\n[dim]{escape(loop_type)}[/]",
            f"[{style}]{escape(_(loop_mode))}[/]",
            escape(_output_cell(loop_outputs, widths[2])),
            escape(last),
        ]
        shown.add_row(*cells, *([escape(who)] if anyone else []))
    return shown
