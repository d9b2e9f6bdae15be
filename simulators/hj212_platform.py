"""python -m simulators.hj212_platform --port 9212 --logger MN=PW [--logger ...] [--log FILE]

The simulated environmental platform (simulators/hj212/) as its own process, for the demo:
one line on stdout per minute, hour or day record received, the loggers coming and going
and the listening address on stderr. Exit codes: 0 stopped by SIGTERM/SIGINT, 1 the log
cannot be opened, 2 bad command line (click), 3 cannot listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import click

from edge_agent.hj212.codes import Cn
from simulators.errors import EXIT_CONFIG, EXIT_START, reason
from simulators.hj212 import Exchange, HJ212Platform
from simulators.hj212.display import record_line
from simulators.hj212.records import Received

__all__ = ["Exchange", "HJ212Platform", "main"]

_SHOWN = {Cn.MINUTE_DATA, Cn.HOUR_DATA, Cn.DAY_DATA}
_LOGGER = re.compile(r"([0-9A-Za-z]{1,24})=([0-9A-Za-z]{6})")


def _loggers(ctx: click.Context, param: click.Parameter, given: tuple[str, ...]) -> dict[str, str]:
    loggers: dict[str, str] = {}
    for text in given:
        match = _LOGGER.fullmatch(text)
        if match is None:
            raise click.BadParameter(
                f"{text!r}: expected MN=PW (MN 1-24 letters or digits, PW 6 of them)"
            )
        mn, password = match.groups()
        if mn in loggers:
            raise click.BadParameter(f"MN {mn} given twice")
        loggers[mn] = password
    return loggers


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=9212, show_default=True)
@click.option(
    "--logger",
    "loggers",
    multiple=True,
    required=True,
    callback=_loggers,
    metavar="MN=PW",
    help="A data logger the platform knows (repeat for several).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Append every received frame to this file as JSON lines.",
)
@click.option("--st", default="32", show_default=True, help="System code of the loggers' data.")
def main(host: str, port: int, loggers: dict[str, str], log_path: Path | None, st: str) -> None:
    """Run the simulated environmental platform until SIGTERM or Ctrl-C."""
    with_mn = len(loggers) > 1

    def show(record: Received) -> None:
        if record.cn in _SHOWN:
            click.echo(record_line(record, with_mn=with_mn))

    def link(mn: str, peer: str, up: bool) -> None:
        state = "connected from" if up else "gone from"
        click.echo(f"bureau: logger {mn} {state} {peer}", err=True)

    try:
        platform = HJ212Platform(
            host, port, loggers, data_st=(st,), log_path=log_path, on_record=show, on_link=link
        )
    except OSError as exc:
        click.echo(f"error: cannot open the log {log_path}: {reason(exc)}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        asyncio.run(_serve(platform))
    except OSError as exc:
        # asyncio words a failed bind its own way; the operating system's reason reads better.
        plain = OSError(exc.errno, os.strerror(exc.errno)) if exc.errno else exc
        click.echo(
            f"error: hj212 platform cannot listen on {host}:{port}: {reason(plain)}", err=True
        )
        sys.exit(EXIT_START)


async def _serve(platform: HJ212Platform) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "a coroutine run by asyncio.run is a task"
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    async with platform:
        click.echo(f"bureau: listening on {platform.host}:{platform.port}", err=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # until a signal cancels it


if __name__ == "__main__":
    main()
