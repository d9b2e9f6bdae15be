"""What every `edge-agent` command shares: one-line errors, the socket and config options,
asking the running agent, and the group that imports subcommands only when used."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from edge_agent import SITE_CONFIG, exit_codes, i18n
from edge_agent.i18n import _

DEFAULT_SOCKET = Path("/run/edge-agent/agent.sock")
EXIT_USAGE = exit_codes.USAGE
EXIT_NOT_RUNNING = exit_codes.NOT_RUNNING


# click's own texts ("Missing argument", "No such option", "Usage:"): its modules call
# gettext's `_` and `ngettext` by module global at run time, so ours answer instead and
# the catalog holds click's texts too (edge_agent.i18n_catalog.LIBRARY_TEXTS).
CLICK_MODULES = ("core", "decorators", "exceptions", "formatting", "parser", "termui", "types")


def _plural(singular: str, plural: str, n: int) -> str:
    return _(singular if n == 1 else plural)


def click_in_our_language() -> None:
    for name in CLICK_MODULES:
        module = importlib.import_module(f"click.{name}")
        if hasattr(module, "_"):
            module._ = _  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = _plural  # type: ignore[attr-defined]


def config_option(*, required: bool, help: str) -> Callable:
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(path_type=Path),
        required=required,  # no default=None: click 8.5 takes an explicit None as given
        callback=_site_language,
        help=help,
    )


def _site_language(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """The texts of the command in `site.locale` of the configuration given (else the
    installed one), where the technician's environment has no choice of its own."""
    i18n.use_site_locale(site_locale_of(value if value is not None else Path(SITE_CONFIG)))
    return value


def site_locale_of(path: Path) -> str | None:
    """`site.locale` of a configuration file, read leniently (a file with a mistake
    elsewhere, or none at all, still answers); None when it has none."""
    from edge_agent.config.sections import top_level_section

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    site = top_level_section(text, "site")
    locale = site.get("locale") if isinstance(site, dict) else None
    return locale if isinstance(locale, str) else None


def fail(message: str, code: int = exit_codes.ERROR) -> NoReturn:
    click.echo(_("error: {message}").format(message=message), err=True)
    sys.exit(code)


def usage(message: str) -> NoReturn:
    """A mistake in how the command was typed (options that exclude each other, a value
    of the wrong form): exit 2, as click's own usage errors."""
    fail(message, exit_codes.USAGE)


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
            text = _("unexpected {error} (a bug: please report it; EDGE_AGENT_DEBUG=1 shows where)")
            fail(text.format(error=f"{type(exc).__name__}: {exc}"))


_NEGATIVE = re.compile(r"-(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class NegativeNumbers(OneLineErrors):
    """A command whose arguments may be negative numbers without `--`: `write plant.x -5`
    (click would take -5 for an option). A number after an option that takes a value
    stays that option's; a mistyped option (--bogus) is still an error, not a value."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            return super().parse_args(ctx, args)
        takes_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag
            for name in param.opts
        }
        options: list[str] = []
        numbers: list[str] = []
        for i, arg in enumerate(args):
            after_option = i > 0 and args[i - 1] in takes_value
            (numbers if _NEGATIVE.fullmatch(arg) and not after_option else options).append(arg)
        return super().parse_args(ctx, [*options, "--", *numbers] if numbers else options)


socket_option = click.option(
    "--socket",
    type=click.Path(path_type=Path),
    default=None,
    help="The agent's local socket "
    "(default: from --config, $EDGE_AGENT_SOCKET or /run/edge-agent/agent.sock).",
)


def socket_path(socket: Path | None, config_path: Path | None) -> Path:
    """--socket, else the configuration's `local.socket` (read even from a file with a
    mistake elsewhere: a bad edit must not lock the technician out of `status`), else
    $EDGE_AGENT_SOCKET, else the default."""
    if socket is not None:
        return socket
    fallback = Path(os.environ.get("EDGE_AGENT_SOCKET", DEFAULT_SOCKET))
    if config_path is None:
        return fallback
    from edge_agent.config.loader import read_local_socket

    found = read_local_socket(config_path)
    if found.socket is not None:
        if found.problem is not None:
            note = _("note: {problem}; the socket is taken from its local: section")
            click.echo(note.format(problem=found.problem), err=True)
        return found.socket
    note = _("note: cannot read local.socket ({problem}); trying {socket}")
    click.echo(note.format(problem=found.problem, socket=fallback), err=True)
    return fallback


def ask_agent(path: Path, cmd: str, timeout: float = 2.0, **args: object) -> dict:
    """`cmd` with `args` to the agent; `timeout` in seconds (local_api.request's default)."""
    from edge_agent.local_api import request

    try:
        answer = request(path, cmd, timeout, **args)
    except FileNotFoundError:
        not_running(path)
    except PermissionError:
        no_permission(path)
    except OSError as exc:
        not_answering(path, exc)
    except ValueError:  # not JSON: something else listens there, or a cut-off answer
        fail(_("the answer on {path} is not the agent's (not JSON)").format(path=path))
    if not isinstance(answer, dict):
        fail(_("the answer on {path} is not the agent's (not an object)").format(path=path))
    if not answer.get("ok"):
        refused(cmd, answer, exit_codes.REJECTED)
    return answer


def not_running(path: Path) -> NoReturn:
    fail(_("the agent is not running (no socket at {path})").format(path=path), EXIT_NOT_RUNNING)


def no_permission(path: Path) -> NoReturn:
    text = _("no permission to talk to the agent at {path} (are you in the agent's group?)")
    fail(text.format(path=path))


def not_answering(path: Path, exc: OSError) -> NoReturn:
    text = _("the agent is not answering on {path}: {problem}")
    fail(text.format(path=path, problem=exc.strerror or exc), EXIT_NOT_RUNNING)


def refused(cmd: str, answer: dict, code: int = exit_codes.ERROR) -> NoReturn:
    """The agent answered `cmd` with an error (its own text: `message`, else `error`)."""
    text = _("the agent refused '{command}': {problem}")
    fail(text.format(command=cmd, problem=answer.get("message") or answer.get("error")), code)
