"""The agent's own commands: run it (what systemd starts), its status, the demo, and
installing it as a service."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from edge_agent import SITE_CONFIG
from edge_agent.cli.common import (
    OneLineErrors,
    ask_agent,
    config_option,
    fail,
    socket_option,
    socket_path,
    usage,
)
from edge_agent.i18n import _


@click.command(cls=OneLineErrors)
@config_option(required=True, help="Site configuration (YAML).")
@click.option(
    "--log-json/--log-console",
    default=None,
    help="Log format (default: JSON unless on a terminal).",
)
def run(config_path: Path, log_json: bool | None) -> None:
    """Run the agent in the foreground (what systemd starts)."""
    from edge_agent import config_apply, i18n, logs
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config
    from edge_agent.service import serve
    from edge_agent.store.outbox import StoreError
    from edge_agent.store.worker import StoreLocked

    try:
        config_apply.lock(config_path)  # held until exit
        # A config_apply the last run did not confirm is undone before the file is read.
        interrupted = config_apply.recover(config_path)
    except config_apply.ConfigInUse as exc:
        fail(str(exc))
    except OSError as exc:
        text = _("cannot restore {file} after an unfinished config_apply: {problem}")
        fail(text.format(file=config_path, problem=exc))
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        sys.exit(1)
    i18n.use_site_locale(config.site.locale)
    logs.configure(config.log_level, json=log_json)
    try:
        code = asyncio.run(serve(config_path, config, interrupted))
    except (StoreLocked, StoreError, PermissionError) as exc:
        fail(str(exc))
    except Exception as exc:  # the trace goes to the journal, not the screen
        logs.get("agent").exception("agent failed")
        text = _("the agent stopped on an unexpected error: {error}")
        fail(text.format(error=f"{type(exc).__name__}: {exc}"))
    sys.exit(code)


@click.command(cls=OneLineErrors)
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(socket: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Uplink, backlog and device health of the running agent."""
    answer = ask_agent(socket_path(socket, config_path), "status")
    answer.pop("ok", None)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    from edge_agent.cli.status_view import console, render_status

    console().print(render_status(answer))


@click.command(cls=OneLineErrors)
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
    "--speed",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Simulated time per real time.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: Ctrl-C).",
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

    if no_sim and sim_path is not None:
        usage(_("--sim and --no-sim exclude each other"))
    sys.exit(run_demo(config_path, duration, None if no_sim else sim_path or DEFAULT_SIM, speed))


@click.command("install-service", cls=OneLineErrors)
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
    from edge_agent import i18n
    from edge_agent.cli.common import site_locale_of
    from edge_agent.install import main as install_main

    i18n.use_site_locale(site_locale_of(root / str(config_path).lstrip("/")))

    sys.exit(install_main(prefix, config_path, dry_run, root))
