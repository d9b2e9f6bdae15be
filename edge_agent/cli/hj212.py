"""`edge-agent hj212 status | send`: the environmental platforms, as the technician sees them.

On a terminal, one block per platform laid out for 80 columns; piped, one tab-separated
line per platform after a heading line; `--json` for scripts (docs/hj212.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from edge_agent import exit_codes
from edge_agent.cli.common import ask_agent, config_option, fail, socket_option, socket_path
from edge_agent.cli.when import when_callback
from edge_agent.i18n import _

KINDS = ("minute", "hour", "day", "realtime", "run_status")
NO_BACKLOG = {"owed": "-", "oldest_data_time": None}  # the reporter is still starting


@click.group(help=_("The environmental platforms (HJ 212): what they got and what is owed."))
def hj212() -> None:
    pass


@hj212.command(help=_("Each platform: connected or not, the last answer, the backlog."))
@click.option("--json", "as_json", is_flag=True, help=_("Machine-readable output."))
@socket_option
@config_option(required=False, help=_("Site configuration, to find the agent's socket."))
def status(as_json: bool, socket: Path | None, config_path: Path | None) -> None:
    answer = _ask(socket_path(socket, config_path), {})
    platforms = answer["platforms"]
    if as_json:
        click.echo(json.dumps(platforms, indent=2))
        return
    from edge_agent.cli.status_view import echo_lines, piped, tsv_line

    if piped():
        headings = (_("platform"), _("endpoint"), _("connected"), _("last answer"),
                    _("owed"), _("oldest owed"), _("sent"), _("resent"))  # fmt: skip
        echo_lines([tsv_line(headings)] + [tsv_line(_row(p)) for p in platforms])
        return
    from rich.text import Text

    from edge_agent.cli.status_view import Phrases, show

    blocks: list[Any] = []
    for platform in platforms:
        link, backlog = platform["link"] or {}, platform["backlog"] or NO_BACKLOG or NO_BACKLOG
        connected = link.get("connected")
        state = _("connected") if connected else _("disconnected")
        head = Text.assemble(
            (platform["platform"], "bold"), "  ", platform["endpoint"], "  ",
            (state, "green" if connected else "red"),
            "  ", _("since {time}").format(time=_clock(link.get("since_ms"))),
        )  # fmt: skip
        blocks.append(head)
        blocks.append(Phrases(
            _("last answer {time}").format(time=_clock(link.get("last_ack_ms"))),
            _("owed {count}").format(count=backlog["owed"]),
            _("oldest owed {time}").format(time=_data_time(backlog["oldest_data_time"])),
            _("sent {count}, resent {resent}").format(
                count=link.get("sent", 0), resent=link.get("resent", 0)
            ),
        ))  # fmt: skip
        settings = platform.get("settings") or {}
        blocks.append(Phrases(
            _("real-time every {s} s ({state})").format(
                s=int(settings.get("realtime_interval_s", 0)),
                state=_("on") if settings.get("realtime") else _("off"),
            ),
            _("minute data every {n} min").format(n=settings.get("minute_interval")),
            _("OverTime {s} s, ReCount {n}").format(
                s=int(settings.get("over_time", 0)), n=settings.get("re_count")
            ),
        ))  # fmt: skip
        if settings.get("clock_offset_ms"):
            offset = settings["clock_offset_ms"] / 1000
            blocks.append(Text(_("clock offset set by the platform: {s:+.0f} s").format(s=offset)))
        if link.get("last_error") and not connected:
            blocks.append(Text(_("last error: {error}").format(error=link["last_error"]), "red"))
        blocks.append(Text(""))
    from rich.console import Group

    show(Group(*blocks[:-1]))


@hj212.command(help=_("Send the records again from a time on (they keep their QN: copies)."))
@click.option(
    "--since",
    "since_ms",
    required=True,
    metavar="WHEN",
    callback=when_callback,
    help=_(
        "Records whose period starts then or later: a duration ago (10m, 2h30m, 7d), today, "
        "yesterday, a local time (08:00, 2026-11-24 08:00) or @EPOCH."
    ),
)
@click.option("--platform", default=None, metavar="ID", help=_("Only this platform."))
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help=_("Only these kinds of record (repeat the option); default: minute, hour, day."),
)
@socket_option
@config_option(required=False, help=_("Site configuration, to find the agent's socket."))
def send(since_ms: int, platform: str | None, kinds: tuple[str, ...], socket: Path | None,
         config_path: Path | None) -> None:  # fmt: skip
    chosen = list(kinds or ("minute", "hour", "day"))
    send_args = {"since_ms": since_ms, "platform": platform, "kinds": chosen}
    answer = _ask(socket_path(socket, config_path), {"send": send_args})
    queued = answer["queued"]
    if platform is not None and platform not in queued:
        fail(_("no platform {id!r} in the configuration").format(id=platform), exit_codes.USAGE)
    for each, count in queued.items():
        click.echo(_("{platform}: {count} records queued again").format(platform=each, count=count))


def _ask(path: Path, args: dict[str, Any]) -> dict[str, Any]:
    answer = ask_agent(path, "hj212", timeout=10.0, **args)
    if answer.get("error") == "no_hj212":
        fail(_("the agent's configuration has no hj212 section (docs/hj212.md)"))
    return answer


def _row(platform: dict[str, Any]) -> tuple[object, ...]:
    link, backlog = platform["link"] or {}, platform["backlog"] or NO_BACKLOG
    return (
        platform["platform"],
        platform["endpoint"],
        _("yes") if link.get("connected") else _("no"),
        _stamp(link.get("last_ack_ms")),
        backlog["owed"],
        _data_time(backlog["oldest_data_time"]),
        link.get("sent", 0),
        link.get("resent", 0),
    )


def _clock(ms: int | None) -> str:
    return "-" if not ms else time.strftime("%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _stamp(ms: int | None) -> str:
    return "" if not ms else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _data_time(text: str | None) -> str:
    """yyyyMMddHHmmss as 2026-12-06 10:20."""
    if not text:
        return "-"
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]} {text[8:10]}:{text[10:12]}"
