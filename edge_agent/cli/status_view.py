"""Rich rendering of the agent's status for technicians. Texts that come from devices,
brokers or rules are escaped: "[mg/L]" or "[/]" in a message is text, not markup."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table


def age(ts_ms: int | None) -> str:
    if not ts_ms:
        return "-"
    seconds = max(0.0, time.time() - ts_ms / 1000)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _commands_state(state: str | None) -> str:
    """Whether platform commands can reach the agent (the broker granted the subscription)."""
    if state in (None, "off"):
        return ""
    return f"  commands [{'green' if state == 'subscribed' else 'red'}]{state}[/]"


def render_status(status: dict[str, Any]) -> Group:
    up = status["uplink"]
    store = status["store"]
    head = Table.grid(padding=(0, 2))
    head.add_row("[bold]site / gateway[/]", f"{status['site']} / {status['gateway']}")
    head.add_row(
        "[bold]agent[/]",
        f"v{status['version']}  pid {status['pid']}  up {status['uptime_s']:.0f} s  "
        f"config {status['config_hash']}",
    )
    state_style = "green" if up["state"] == "connected" else "red"
    head.add_row(
        "[bold]uplink[/]",
        f"[{state_style}]{up['state']}[/] {up['endpoint'] or ''}  "
        f"published {up['published']}  in flight {up['in_flight']}  connects {up['connects']}"
        + _commands_state(up.get("commands")),
    )
    commands_refused = up.get("commands") == "refused"
    if up.get("last_error") and (up["state"] != "connected" or commands_refused):
        head.add_row("", f"[red]{escape(str(up['last_error']))}[/]")
    head.add_row(
        "[bold]backlog[/]",
        f"{store['backlog_rows']} messages, {store['backlog_points']} points, "
        f"oldest {age(store['oldest_ts'])}",
    )
    head.add_row(
        "[bold]store[/]",
        f"{_bytes(store['used_bytes'])} of {_bytes(store['budget_bytes'])}  "
        f"evicted {store['evicted_points']} points",
    )
    if store.get("error"):
        head.add_row("", f"[red]store error: {escape(str(store['error']))}[/]")
    if store.get("too_small"):
        head.add_row("", f"[red]{escape(str(store['too_small']))}[/]")
    if store.get("dropped_points"):
        head.add_row("", f"[red]{store['dropped_points']} points never stored "
                         "(the disk was full; announced as data_dropped)[/]")  # fmt: skip
    if up.get("ack_error"):
        head.add_row("", f"[red]acknowledgements not recorded ({up.get('unrecorded_acks', 0)} "
                         f"waiting): {escape(str(up['ack_error']))}[/]")  # fmt: skip
    alarms = status.get("alarms")
    if alarms is not None:
        worst = next((s for s in ("critical", "major", "minor", "warning") if alarms.get(s)), None)
        style = {"critical": "bold red", "major": "red", "minor": "yellow"}.get(worst or "", "")
        text = f"{alarms['active']} active, {alarms['unacknowledged']} unacknowledged"
        head.add_row("[bold]alarms[/]", f"[{style}]{text}[/]" if style else text)
        for alarm in alarms.get("list", []):
            if alarm["state"] == "cleared":
                continue
            severity = alarm["severity"]
            colour = {"critical": "bold red", "major": "red", "minor": "yellow"}.get(severity, "")
            message = escape(alarm["message"])
            head.add_row("", f"[{colour}]{severity}[/] {message}" if colour
                         else f"{severity} {message}")  # fmt: skip
    commands = status.get("commands")
    if commands is not None:
        head.add_row(
            "[bold]commands[/]",
            f"{commands['done']} done, {commands['rejected']} rejected, "
            f"{commands['failed']} failed",
        )
        for hold in commands["holds"]:
            if hold["source"] in ("manual", "platform"):
                ending = f", ending: {escape(hold['ending'])}" if hold.get("ending") else ""
                head.add_row("", f"[cyan]{hold['point']} held by {hold['source']}[/] "
                                 f"= {escape(repr(hold['value']))}{ending}")  # fmt: skip
    for loop in status.get("loops") or ():
        mode = loop.get("mode", "?")
        style = {"auto": "green", "safe": "red", "overridden": "cyan"}.get(mode, "dim")
        head.add_row("[bold]loop[/]" if loop is status["loops"][0] else "",
                     f"{loop['id']} [{style}]{mode}[/]")  # fmt: skip

    devices = Table(title="devices", title_justify="left", padding=(0, 1))
    # The device name is what the technician looks for: never cut it. Errors are listed
    # under the table, where a long reason has the whole width.
    devices.add_column("device", no_wrap=True)
    for column in ("driver", "state", "points", "bad", "last read", "rtt", "errors"):
        devices.add_column(column, no_wrap=True)
    for name, d in sorted(status["devices"].items()):
        devices.add_row(
            name,
            d["driver"],
            "[green]up[/]" if d["up"] else "[red]down[/]",
            str(d["points"]),
            str(d["bad_points"]),
            age(d["last_good_ts"]),
            f"{d['rtt_ms']:.1f} ms",
            f"{100 * d['error_rate']:.1f} %",
        )
    problems = [
        _problem(name, d)
        for name, d in sorted(status["devices"].items())
        if not d["up"] or d["bad_points"]
    ]
    return Group(head, devices, *problems)


def _problem(name: str, device: dict[str, Any]) -> str:
    what = "down" if not device["up"] else f"{device['bad_points']} bad points"
    reason = device["last_error"] if not device["up"] else None
    return f"[red]{name}[/]: {what}" + (f" — {escape(str(reason))}" if reason else "")
