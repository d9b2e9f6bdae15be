"""`edge-agent alarms | loops`: what the plant is complaining about and what controls it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import click

from edge_agent import exit_codes
from edge_agent.cli.common import ask_agent, config_option, fail, socket_option, socket_path

SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "cyan"}


def _clock(ms: int | None) -> str:
    return "-" if not ms else time.strftime("%m-%d %H:%M:%S", time.localtime(ms / 1000))


@click.command()
@click.option(
    "--ack",
    "ack_id",
    default=None,
    metavar="ID",
    help="Acknowledge this alarm (occurrence id or rule id).",
)
@click.option("--note", default=None, help="A note kept with the acknowledgement.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def alarms(ack_id: str | None, note: str | None, as_json: bool, socket: Path | None,
           config_path: Path | None) -> None:  # fmt: skip
    """List the alarms (unacknowledged first), or acknowledge one with --ack."""
    path = socket_path(socket, config_path)
    if ack_id is not None:
        command = {"v": 1, "id": f"cli-{uuid.uuid4().hex[:16]}", "type": "alarm_ack",
                   "alarm": ack_id, **({"note": note} if note else {})}  # fmt: skip
        stages = ask_agent(path, "command", timeout=10.0, command=command)["stages"]
        final = stages[-1]
        if as_json:
            click.echo(json.dumps(final, indent=2))
        if final["stage"] != "done":
            fail(
                f"not acknowledged ({final.get('reason')}): {final.get('message')}",
                exit_codes.OF_STAGE.get(final["stage"], exit_codes.FAILED),
            )
        if not as_json:
            click.echo(f"acknowledged {final['result']['id']}: {final['result']['message']}")
        return
    listed = ask_agent(path, "alarms")["alarms"]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo("no alarms")
        return
    from rich.console import Console
    from rich.markup import escape

    # Two lines per alarm: readable on an 80-column console in the plant room.
    console = Console(highlight=False)
    for alarm in listed:
        style = SEVERITY_STYLE.get(alarm["severity"], "")
        unacked = "" if alarm.get("acked") else " [bold](unacknowledged)[/]"
        console.print(
            f"[{style}]{alarm['severity']:<8}[/] {alarm['state']}{unacked}  "
            f"raised {_clock(alarm.get('raised_ts'))}  [dim]{alarm['id']}[/]"
        )
        console.print(f"         {escape(alarm['message'])}  [dim]({alarm['point']})[/]",
                      soft_wrap=True)  # fmt: skip


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
def loops(as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    """Control loops: mode, inputs, output and last result."""
    listed = ask_agent(socket_path(socket, config_path), "loops")["loops"]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo("no control loops configured")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(padding=(0, 1))
    for column in ("loop", "type", "mode", "outputs", "last result", "changed by command"):
        table.add_column(column, no_wrap=column in ("loop", "type", "mode"))
    # Texts from the agent are escaped: a "[" in a reason is not markup.
    styles = {"auto": "green", "safe": "red", "overridden": "cyan"}
    for loop in listed:
        mode = loop.get("mode", "?")
        why = loop.get("safe_reason") if mode in ("safe", "waiting") else None
        # What it last wrote, else what it would write (standing by, overridden).
        outputs = loop.get("written") or loop.get("outputs") or {}
        changed = loop.get("changed")
        settings = ", ".join(f"{k}={v}" for k, v in (loop.get("set") or {}).items())
        table.add_row(
            escape(loop["id"]),
            escape(loop.get("type", "")),
            f"[{styles.get(mode, 'dim')}]{escape(mode)}[/]",
            escape("\n".join(f"{ref} = {value}" for ref, value in outputs.items()) or "-"),
            escape("\n".join(filter(None, (why, loop.get("result"))))),
            escape(
                ""
                if not changed
                else f"{changed['by']} {_clock(changed['ts'])}"
                + (f"\n{settings}" if settings else "")
            ),
        )
    Console().print(table)
