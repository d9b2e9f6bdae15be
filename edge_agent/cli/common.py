"""What every `edge-agent` command shares: one-line errors, the socket and config options,
asking the running agent, and the group that imports subcommands only when used."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from edge_agent.i18n import _

DEFAULT_SOCKET = Path("/run/edge-agent/agent.sock")
EXIT_USAGE = 2  # click's own code for a bad option or argument
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


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(_("error: {message}").format(message=message), err=True)
    sys.exit(code)


class OneLineErrors(click.Command):
    """Usage errors (a bad number, a missing option, a time that is none) as one line,
    like every other error, with click's exit code 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            fail(
                _("{problem} (see '{command} -h')").format(
                    problem=exc.format_message(), command=ctx.command_path
                ),
                exc.exit_code,
            )


class LazyGroup(click.Group):
    """Subcommands imported only when used: `edge-agent status` must not pay for numpy,
    pydantic or the history reader (a technician's status answers within 0.3 s)."""

    # click.Group's own arguments, passed on as they come (click types its **attrs Any).
    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
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
            fail(
                f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
                "EDGE_AGENT_DEBUG=1 shows where)"
            )


socket_option = click.option(
    "--socket",
    type=click.Path(path_type=Path),
    default=None,
    help="The agent's local socket "
    "(default: from --config, $EDGE_AGENT_SOCKET or /run/edge-agent/agent.sock).",
)


def socket_path(socket: Path | None, config_path: Path | None) -> Path:
    if socket is not None:
        return socket
    if config_path is not None:
        from edge_agent.config.errors import ConfigError
        from edge_agent.config.loader import load_config

        try:
            return load_config(config_path).local.socket
        except ConfigError as exc:
            fail(
                f"{config_path}: invalid configuration ({len(exc.issues)} problems); "
                f"run 'edge-agent config validate {config_path}'"
            )
    return Path(os.environ.get("EDGE_AGENT_SOCKET", DEFAULT_SOCKET))


def ask_agent(path: Path, cmd: str, timeout: float = 2.0, **args: object) -> dict:
    """`cmd` with `args` to the agent; `timeout` in seconds (local_api.request's default)."""
    from edge_agent.local_api import request

    try:
        answer = request(path, cmd, timeout, **args)
    except FileNotFoundError:
        fail(f"the agent is not running (no socket at {path})", EXIT_NOT_RUNNING)
    except PermissionError:
        fail(f"no permission to talk to the agent at {path} (are you in the agent's group?)")
    except OSError as exc:
        fail(f"the agent is not answering on {path}: {exc.strerror or exc}", EXIT_NOT_RUNNING)
    except ValueError:  # not JSON: something else listens there, or a cut-off answer
        fail(f"the answer on {path} is not the agent's (not JSON)")
    if not isinstance(answer, dict):
        fail(f"the answer on {path} is not the agent's (not an object)")
    if not answer.get("ok"):
        fail(f"the agent refused '{cmd}': {answer.get('message') or answer.get('error')}")
    return answer
