"""`edge-agent`: the command line for technicians and for systemd.

Every error is one clear line and an exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click

from edge_agent import SITE_CONFIG, __version__

DEFAULT_SOCKET = Path("/run/edge-agent/agent.sock")
EXIT_NOT_RUNNING = 3


def config_option(*, required: bool, help: str) -> Callable:
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(path_type=Path),
        required=required,
        default=None,
        help=help,
    )


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class LazyGroup(click.Group):
    """Subcommands imported only when used: `edge-agent status` must not pay for numpy,
    pydantic or the history reader (a technician's status answers within 0.3 s)."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attr = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> object:
        """The last guard: a bug still ends in one line on the technician's screen."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            if os.environ.get("EDGE_AGENT_DEBUG"):
                raise
            _fail(
                f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
                "EDGE_AGENT_DEBUG=1 shows where)"
            )


@click.group(
    cls=LazyGroup,
    lazy={
        "config": "edge_agent.config.cli:config",
        **{
            name: f"edge_agent.cli_points:{name}" for name in ("points", "read", "write", "release")
        },
        "alarms": "edge_agent.cli_plant:alarms",
        "loops": "edge_agent.cli_plant:loops",
        "discover": "edge_agent.cli_field:discover",
        "logs": "edge_agent.cli_field:logs",
        "export": "edge_agent.cli_history:export",
        "trend": "edge_agent.cli_history:trend",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="edge-agent")
def main() -> None:
    """Edge controller runtime for hospital plant rooms."""


@main.command()
@config_option(required=True, help="Site configuration (YAML).")
@click.option(
    "--log-json/--log-console",
    default=None,
    help="Log format (default: JSON unless on a terminal).",
)
def run(config_path: Path, log_json: bool | None) -> None:
    """Run the agent in the foreground (what systemd starts)."""
    from edge_agent import apply_journal, logs
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config
    from edge_agent.service import serve
    from edge_agent.store.outbox import StoreError
    from edge_agent.store_worker import StoreLocked

    try:
        apply_journal.lock(config_path)  # held until exit
        # A config_apply the last run did not confirm is undone before the file is read.
        interrupted = apply_journal.recover(config_path)
    except apply_journal.ConfigInUse as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot restore {config_path} after an unfinished config_apply: {exc}")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        sys.exit(1)
    logs.configure(config.log_level, json=log_json)
    try:
        code = asyncio.run(serve(config_path, config, interrupted))
    except (StoreLocked, StoreError, PermissionError) as exc:
        _fail(str(exc))
    except Exception as exc:  # the trace goes to the journal, not the screen
        logs.get("agent").exception("agent failed")
        _fail(f"the agent stopped on an unexpected error: {type(exc).__name__}: {exc}")
    sys.exit(code)


def _socket_path(socket: Path | None, config_path: Path | None) -> Path:
    if socket is not None:
        return socket
    if config_path is not None:
        from edge_agent.config.errors import ConfigError
        from edge_agent.config.loader import load_config

        try:
            return load_config(config_path).local.socket
        except ConfigError as exc:
            _fail(
                f"{config_path}: invalid configuration ({len(exc.issues)} problems); "
                f"run 'edge-agent config validate {config_path}'"
            )
    return Path(os.environ.get("EDGE_AGENT_SOCKET", DEFAULT_SOCKET))


def ask_agent(path: Path, cmd: str, **args: object) -> dict:
    from edge_agent.local_api import request

    try:
        answer = request(path, cmd, **args)
    except FileNotFoundError:
        _fail(f"the agent is not running (no socket at {path})", EXIT_NOT_RUNNING)
    except PermissionError:
        _fail(f"no permission to talk to the agent at {path} (are you in the agent's group?)")
    except OSError as exc:
        _fail(f"the agent is not answering on {path}: {exc.strerror or exc}", EXIT_NOT_RUNNING)
    except ValueError:  # not JSON: something else listens there, or a cut-off answer
        _fail(f"the answer on {path} is not the agent's (not JSON)")
    if not isinstance(answer, dict):
        _fail(f"the answer on {path} is not the agent's (not an object)")
    if not answer.get("ok"):
        _fail(f"the agent refused '{cmd}': {answer.get('message') or answer.get('error')}")
    return answer


socket_option = click.option(
    "--socket",
    type=click.Path(path_type=Path),
    default=None,
    help="The agent's local socket "
    "(default: from --config, $EDGE_AGENT_SOCKET or /run/edge-agent/agent.sock).",
)


@main.command()
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(socket: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Uplink, backlog and device health of the running agent."""
    answer = ask_agent(_socket_path(socket, config_path), "status")
    answer.pop("ok", None)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    from rich.console import Console

    from edge_agent.status_view import render_status

    Console().print(render_status(answer))


@main.command()
@config_option(
    required=False, help="Agent configuration to demonstrate (default: configs/hospital-site.yaml)."
)
@click.option(
    "--sim",
    "sim_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Simulator configuration (default: configs/sim/hospital.yaml).",
)
@click.option(
    "--no-sim", is_flag=True, help="Start no simulator (e.g. with configs/demo-site.yaml)."
)
@click.option(
    "--speed", type=float, default=1.0, show_default=True, help="Simulated time per real time."
)
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C)."
)
def demo(
    config_path: Path | None,
    sim_path: Path | None,
    no_sim: bool,
    speed: float,
    duration: float | None,
) -> None:
    """Start the simulated plant room, a local broker and the agent, and show live status."""
    from edge_agent.demo import DEFAULT_SIM, run_demo

    sys.exit(run_demo(config_path, duration, None if no_sim else sim_path or DEFAULT_SIM, speed))


@main.command("install-service")
@click.option(
    "--prefix",
    type=click.Path(path_type=Path),
    default=None,
    help="The installation (a venv, or a checkout with .venv) whose edge-agent systemd runs "
    "(default: this one).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path(SITE_CONFIG),
    show_default=True,
    help="Site configuration the service runs with.",
)
@click.option("--dry-run", is_flag=True, help="Print the steps without doing them.")
@click.option("--root", type=click.Path(path_type=Path), default=Path("/"), hidden=True)
def install_service(prefix: Path | None, config_path: Path, dry_run: bool, root: Path) -> None:
    """Create the edge-agent user, install and enable the systemd unit (idempotent)."""
    from edge_agent.install import main as install_main

    sys.exit(install_main(prefix, config_path, dry_run, root))
