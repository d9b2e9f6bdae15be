"""Field tools of the technician CLI: `edge-agent discover bacnet|modbus` and `edge-agent logs`.

Every error is one line (`error: ...`) and an exit code, never a traceback. Progress goes
to stderr, results to stdout (`--json` for scripts). Heavy imports (pymodbus, bacpypes3,
rich) happen inside the commands, so that the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, NoReturn

import click

from edge_agent.cli.common import (
    EXIT_NOT_RUNNING,
    OneLineErrors,
    config_option,
    fail,
    no_permission,
    not_answering,
    refused,
    socket_option,
    socket_path,
    usage,
)
from edge_agent.cli.when import when_callback
from edge_agent.i18n import N_, _

EXIT_INTERRUPTED = 130
NOT_SCANNED = N_("not scanned")
# Why a scan of a table stopped, in drivers.modbus.discovery's words: shown translated.
SCAN_NOTES = (N_("request budget spent"),)
FOLLOW_PERIOD_S = 0.5
JOURNAL_UNIT = "edge-agent"


# -- discover -------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def discover() -> None:
    """Find field devices: BACnet (Who-Is) and Modbus (unit ids and register ranges)."""


@discover.command("bacnet", cls=OneLineErrors)
@click.option(
    "--address",
    help="Local address to bind, with its prefix (it gives the broadcast address), "
    "e.g. 192.168.10.5/24.",
)
@click.option("--interface", help="Network interface to use instead of --address, e.g. eth1.")
@click.option("--port", type=click.IntRange(1, 65535), default=47808, show_default=True)
@click.option("--low", type=click.IntRange(0, 4194303), default=None, help="Lowest instance.")
@click.option("--high", type=click.IntRange(0, 4194303), default=None, help="Highest instance.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=3.0,
    show_default=True,
    help="Seconds to collect I-Am answers.",
)
@click.option("--no-names", is_flag=True, help="Do not read each device's object name.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def discover_bacnet(
    address: str | None,
    interface: str | None,
    port: int,
    low: int | None,
    high: int | None,
    timeout: float,
    no_names: bool,
    as_json: bool,
) -> None:
    """Broadcast a Who-Is and list the BACnet devices that answer."""
    if (address is None) == (interface is None):
        usage(_("give either --address ADDRESS/PREFIX or --interface NAME"))
    if (low is None) != (high is None):
        usage(_("give both --low and --high, or neither"))
    if low is not None and high is not None and low > high:
        usage(_("--low {low} is greater than --high {high}").format(low=low, high=high))
    local = _interface_address(interface) if interface else _check_address(address or "")

    from drivers.bacnet.discovery import discover as who_is

    status = _stderr_console()
    asking = _("Who-Is from {address} for {seconds} s ...").format(
        address=local, seconds=f"{timeout:g}"
    )
    try:
        with status.status(asking, spinner="dots"):
            found = asyncio.run(who_is(local, timeout, low, high, port=port, names=not no_names))
    except KeyboardInterrupt:
        fail(_("interrupted"), EXIT_INTERRUPTED)
    except OSError as exc:
        text = _("cannot use {address} port {port}: {problem}")
        fail(
            text.format(
                address=local.partition("/")[0], port=port, problem=_bind_problem(exc, port)
            )
        )
    except Exception as exc:  # bacpypes3 has many ways to refuse an address
        fail(_("BACnet discovery failed: {error}").format(error=f"{type(exc).__name__}: {exc}"))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"instance": d.instance, "address": d.address, "vendor": d.vendor}
                    | {"name": d.name}
                    for d in found
                ],
                indent=2,
            )
        )
        return
    if not found:
        click.echo(
            _("No BACnet device answered within {seconds} s.").format(seconds=f"{timeout:g}")
        )
        return
    from rich.markup import escape

    from edge_agent.cli.status_view import show
    from edge_agent.cli.status_view import table as cli_table

    table = cli_table(_("BACnet devices ({n})").format(n=len(found)))
    table.add_column(_("Instance"), justify="right")
    table.add_column(_("Address"))
    table.add_column(_("Vendor"), justify="right")
    table.add_column(_("Name"))
    for d in found:
        table.add_row(str(d.instance), d.address, str(d.vendor), escape(d.name or ""))
    show(table)


def _check_address(address: str) -> str:
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        text = _("--address {address!r} is not an IPv4 address with a prefix (e.g. 10.0.0.5/24)")
        usage(text.format(address=address))
    if iface.version != 4 or "/" not in address:
        text = _("--address {address!r}: give an IPv4 address with its prefix, e.g. 10.0.0.5/24")
        usage(text.format(address=address))
    return address


def _interface_address(name: str) -> str:
    """The first IPv4 address/prefix of interface `name` (iproute2's JSON output)."""
    if shutil.which("ip") is None:
        fail(_("cannot look up --interface without the 'ip' command: give --address instead"))
    done = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", name],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    if done.returncode != 0:
        fail(_("no network interface {name!r}").format(name=name))
    for link in json.loads(done.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return f"{info['local']}/{info['prefixlen']}"
    fail(_("interface {name!r} has no IPv4 address").format(name=name))


def _bind_problem(exc: OSError, port: int) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        text = _("port busy (is the agent running? it owns UDP {port}; stop it or use --port)")
        return text.format(port=port)
    if exc.errno == errno.EADDRNOTAVAIL:
        return _("this machine has no such address (see 'ip -4 addr')")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _("permission denied")
    return exc.strerror or str(exc)


# -- discover modbus ----------------------------------------------------------------------


@discover.command("modbus", cls=OneLineErrors)
@click.option("--host", help="Modbus TCP device or gateway.")
@click.option("--port", type=click.IntRange(1, 65535), default=502, show_default=True)
@click.option("--serial", "serial_port", help="Serial port of an RTU bus, e.g. /dev/ttyUSB0.")
@click.option("--baudrate", type=click.IntRange(300, 1_000_000), default=9600, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"], case_sensitive=False), default="N")
@click.option("--stopbits", type=click.Choice(["1", "2"]), default="1")
@click.option("--bytesize", type=click.Choice(["7", "8"]), default="8")
@click.option("--units", default="1-10", show_default=True, help="Unit ids, e.g. 1-10 or 1,5,7-9.")
@click.option(
    "--tables",
    default="holding,input,coils,discrete",
    show_default=True,
    help="Tables to scan, in this order.",
)
@click.option(
    "--range",
    "span_text",
    default="0-999",
    show_default=True,
    help="Protocol addresses (0-based) to scan in every table.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Most requests sent to one unit.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.01, 30),
    default=0.5,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.option(
    "--gap",
    type=click.FloatRange(0, 5),
    default=None,
    help="Seconds of quiet between requests (default: 0.01 on serial, 0 on TCP).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def discover_modbus(
    host: str | None,
    port: int,
    serial_port: str | None,
    baudrate: int,
    parity: Literal["N", "E", "O"],  # click's Choice hands back a choice as listed
    stopbits: str,
    bytesize: str,
    units: str,
    tables: str,
    span_text: str,
    max_requests: int,
    timeout: float,
    gap: float | None,
    as_json: bool,
) -> None:
    """Find the unit ids that answer and the register ranges each one can read."""
    from drivers.modbus import discovery as md

    if (host is None) == (serial_port is None):
        usage(_("give either --host HOST (Modbus TCP) or --serial PORT (Modbus RTU)"))
    target: md.Target
    if serial_port is not None:
        target = md.SerialTarget(
            serial_port,
            baudrate,
            parity,
            int(stopbits),
            int(bytesize),
        )
        unit_range = (1, 247)  # 0 is broadcast: nobody answers it
    else:
        target = md.TcpTarget(host or "", port)
        unit_range = (0, 255)
    try:
        unit_ids = md.parse_numbers(units, *unit_range, what="--units")
        table_list = md.parse_tables(tables)
        span = md.parse_span(span_text, what="--range")
    except ValueError as exc:  # a value of the wrong form: --range '10-5'
        usage(str(exc))
    # pymodbus logs connection trouble on its own; we say it once, in one line.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)
    console = _stderr_console()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    all_units = bars.add_task(_("unit ids"), total=len(unit_ids), info="")
    one_unit = bars.add_task("", total=span.count * len(table_list), info="")  # named as it goes

    def progress(p: md.ScanProgress) -> None:
        bars.update(all_units, completed=p.units_done)
        bars.update(
            one_unit,
            description=_("unit {unit} {table}").format(unit=p.unit, table=p.table or ""),
            completed=p.addresses_done,
            info=_("{requests}/{most} requests").format(requests=p.requests, most=max_requests),
        )

    started = time.monotonic()
    try:
        with bars:
            result = asyncio.run(
                md.scan(
                    target,
                    unit_ids,
                    tables=table_list,
                    span=span,
                    max_requests=max_requests,
                    timeout=timeout,
                    gap=gap,
                    progress=progress,
                )
            )
    except KeyboardInterrupt:
        fail(_("interrupted"), EXIT_INTERRUPTED)
    except md.ScanError as exc:
        fail(str(exc))
    elapsed = time.monotonic() - started
    if as_json:
        click.echo(json.dumps(_scan_json(result, elapsed), indent=2))
        return
    _print_scan(result, elapsed)


def _scan_json(result: Any, elapsed: float) -> dict[str, Any]:
    return {
        "target": result.target,
        "seconds": round(elapsed, 3),
        "units": [
            {
                "unit": u.unit,
                "present": u.present,
                "answer": u.answer,
                "requests": u.requests,
                "complete": u.complete,
                "tables": {
                    t.table: {
                        "readable": [[s.start, s.end] for s in t.readable],
                        "unscanned": [[s.start, s.end] for s in t.unscanned],
                        "unsupported": t.unsupported,
                        "note": t.note,
                    }
                    for t in u.tables
                },
            }
            for u in result.units
        ],
    }


def _print_scan(result: Any, elapsed: float) -> None:
    from edge_agent.cli.status_view import Fitted
    from edge_agent.cli.status_view import console as cli_console
    from edge_agent.cli.status_view import table as cli_table

    console = cli_console()
    present = result.present
    absent = [u.unit for u in result.units if not u.present]
    if present:
        table = cli_table(_("Modbus units on {target}").format(target=result.target))
        table.add_column(_("Unit"), justify="right")
        table.add_column(_("Table"))
        table.add_column(_("Readable addresses"))
        table.add_column(_("Count"), justify="right")
        table.add_column(_("Notes"), overflow="fold")
        for u in present:
            for i, t in enumerate(u.tables):
                notes = []
                if t.unsupported:
                    notes.append(_("not supported (illegal function)"))
                if t.unscanned:
                    notes.append(
                        _("{why}: {addresses} not scanned").format(
                            why=_(t.note or NOT_SCANNED),
                            addresses=", ".join(str(s) for s in t.unscanned),
                        )
                    )
                table.add_row(
                    str(u.unit) if i == 0 else "",
                    t.table,
                    ", ".join(str(s) for s in t.readable) or "-",
                    str(t.registers),
                    "; ".join(notes),
                    end_section=i == len(u.tables) - 1,
                )
        console.print(Fitted(table))
    else:
        console.print(_("No unit answered on {target}.").format(target=result.target))
    if absent:
        console.print(_("No answer from unit(s) {units}.").format(units=_compact(absent)))
    requests = sum(u.requests for u in result.units)
    text = _("{requests} requests in {seconds} s.")
    console.print(text.format(requests=requests, seconds=f"{elapsed:.1f}"))


def _compact(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    parts: list[tuple[int, int]] = []
    for n in numbers:
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def _stderr_console() -> Any:
    from edge_agent.cli.status_view import console

    return console(stderr=True)


# -- logs ---------------------------------------------------------------------------------


@click.command(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
@click.option(
    "-n", "lines", type=click.IntRange(1, 2000), default=100, show_default=True, help="Records."
)
@click.option("--level", help="Only records at this level or above (debug ... critical).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records (Ctrl-C stops).")
@click.option(
    "--since",
    "since_ms",
    default=None,
    metavar="WHEN",
    callback=when_callback,
    help="Only records from then on: 10m, 2h30m, today, yesterday, 08:00, 2026-11-24 08:00, "
    "@EPOCH (with it, -n defaults to every record kept).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@click.pass_context
def logs(
    ctx: click.Context,
    socket: Path | None,
    config_path: Path | None,
    lines: int,
    level: str | None,
    follow: bool,
    since_ms: int | None,
    as_json: bool,
) -> None:
    """The running agent's recent log records (or the journal's, when it is not running)."""
    from edge_agent.local_api import request
    from edge_agent.logs import level_number

    if level is not None:
        try:
            level_number(level)
        except ValueError as exc:
            usage(_("--level: {problem}").format(problem=exc))
        level = level.lower()
    # With --since, every record from then on (journalctl's way), unless -n says how many.
    counted = ctx.get_parameter_source("lines") is not click.core.ParameterSource.DEFAULT
    if since_ms is not None and not counted:
        lines = 2000
    path = socket_path(socket, config_path)
    try:
        answer = request(path, "logs", n=2000 if since_ms is not None else lines, level=level)
    except (FileNotFoundError, ConnectionRefusedError):
        _journal(path, lines, level, follow, as_json, since_ms, counted)
    except PermissionError:
        no_permission(path)
    except OSError as exc:
        not_answering(path, exc)
    _check(answer)
    for record in _recent(answer["records"], since_ms)[-lines:]:
        _echo_record(record, as_json)
    after = answer["last"]
    if not follow:
        return
    try:
        while True:
            time.sleep(FOLLOW_PERIOD_S)
            try:
                answer = request(path, "logs", n=2000, level=level, after=after)
            except OSError:
                fail(
                    _("the agent stopped (no answer on {path})").format(path=path), EXIT_NOT_RUNNING
                )
            _check(answer)
            for record in _recent(answer["records"], since_ms):
                _echo_record(record, as_json)
            after = answer["last"]
    except KeyboardInterrupt:
        return


def _recent(records: list[dict[str, Any]], since_ms: int | None) -> list[dict[str, Any]]:
    """The records logged at or after `since_ms` (all without it; a record whose time
    cannot be read is kept: better shown than lost)."""
    if since_ms is None:
        return records
    return [r for r in records if (_record_ms(r) or since_ms) >= since_ms]


def _record_ms(record: dict[str, Any]) -> int | None:
    from datetime import datetime

    try:
        return round(datetime.fromisoformat(str(record.get("timestamp"))).timestamp() * 1000)
    except ValueError:
        return None


def _check(answer: dict[str, Any]) -> None:
    if answer.get("error") == "bad_request" and "logs" not in answer.get("known", ["logs"]):
        fail(_("the running agent does not serve its logs (an older version?); use journalctl"))
    if not answer.get("ok"):
        refused("logs", answer)


_LEVEL_COLOURS = {"debug": "blue", "warning": "yellow", "error": "red", "critical": "red"}
_SHOWN = ("timestamp", "level", "event", "seq")


def _echo_record(record: dict[str, Any], as_json: bool) -> None:
    click.echo(_format(record, as_json))


def _format(record: dict[str, Any], as_json: bool) -> str:
    """One record as one line: JSON, or "timestamp level event key=value ..."."""
    if as_json:
        return json.dumps(record, default=str)
    level = str(record.get("level", ""))
    extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in _SHOWN)
    return (
        f"{record.get('timestamp', '')} "
        + click.style(f"{level:<8}", fg=_LEVEL_COLOURS.get(level))  # dropped when piped
        + f" {record.get('event', '')}"
        + (f"  {extra}" if extra else "")
    )


def _journal(
    path: Path,
    lines: int,
    level: str | None,
    follow: bool,
    as_json: bool,
    since_ms: int | None = None,
    counted: bool = True,
) -> NoReturn:
    """The agent is not running: its earlier records are in the systemd journal."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        text = _(
            "the agent is not running (no socket at {path}); when it runs as a service its "
            "log goes to the systemd journal (journalctl -u {unit}), otherwise to the stderr "
            "of whoever started it"
        )
        fail(text.format(path=path, unit=JOURNAL_UNIT), EXIT_NOT_RUNNING)
    text = _(
        "the agent is not running (no socket at {path}); from the journal (journalctl -u {unit}):"
    )
    click.echo(text.format(path=path, unit=JOURNAL_UNIT), err=True)
    # With a level filter, ask for more lines: the filter drops some. With --since and no
    # -n, every line from then on.
    every = since_ms is not None and not counted
    wanted = 2000 if level else lines
    command = [journalctl, "-u", JOURNAL_UNIT, *([] if every else ["-n", str(wanted)])]
    command += ["--no-pager", "-o", "cat"]
    if since_ms is not None:
        command.append(f"--since=@{since_ms / 1000:.3f}")  # journalctl's epoch form
    if follow:
        command.append("-f")
    least = _level_of(level) if level else 0
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, errors="replace")
    except OSError as exc:
        fail(
            _("cannot run journalctl: {problem}").format(problem=exc.strerror or exc),
            EXIT_NOT_RUNNING,
        )
    kept: collections.deque[str] = collections.deque(maxlen=None if every else lines)
    interrupted = False
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            shown = _journal_line(line, least, as_json)
            if shown is None:
                continue
            if follow:
                click.echo(shown)
            else:
                kept.append(shown)
    except KeyboardInterrupt:  # Ctrl-C ends --follow; journalctl got it too
        interrupted = True
        proc.terminate()
    code = proc.wait()
    for shown in kept:
        click.echo(shown)
    if not kept and not follow and code == 0:
        click.echo(
            _("(the journal holds no records of {unit})").format(unit=JOURNAL_UNIT), err=True
        )
    sys.exit(0 if interrupted else code)


def _journal_line(line: str, least: int, as_json: bool) -> str | None:
    """A journal line as we print it, or None if the level filter drops it. The agent
    writes JSON lines; others (a crash's traceback) are kept as they are."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return line
    if least and _level_of(str(record.get("level", "info"))) < least:
        return None
    return _format(record, as_json)


def _level_of(level: str) -> int:
    from edge_agent.logs import level_number

    try:
        return level_number(level)
    except ValueError:
        return logging.INFO
