"""`edge-agent config ...`: check and inspect site configuration files.

Technicians run these on site, so a bad file gives one plain line per problem and exit
status 1, never a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import yaml

from edge_agent import i18n
from edge_agent.cli.common import config_option, site_locale_of, socket_option
from edge_agent.config.errors import ConfigError, ordered
from edge_agent.config.loader import Loaded, load_config, load_with_warnings
from edge_agent.config.models import AgentConfig
from edge_agent.config.schema import PARTS
from edge_agent.i18n import _

config = click.Group(
    "config", help="Check and inspect site configuration files (YAML, with !include)."
)


def _load_or_exit(file: str, code: int = 1) -> AgentConfig:
    try:
        return load_config(file)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
    except Exception as exc:  # a bug in the loader must still not print a traceback
        _internal_error(file, exc)
    raise click.exceptions.Exit(code)


def _internal_error(file: str, exc: Exception) -> None:
    text = _("{file}: internal error while loading ({error})")
    click.echo(text.format(file=file, error=f"{type(exc).__name__}: {exc}"), err=True)


@config.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
def validate(files: tuple[str, ...], strict: bool) -> None:
    """Check each FILE (and every file it includes); list all problems found.

    Errors make a file unusable (exit 1). Warnings are legal but suspicious (overlapping
    registers, a timeout that leaves no time to poll): they are printed, and fail the
    check only with --strict."""
    failed = False
    for file in files:
        # Its problems in the language of its site.locale (where the environment has none).
        i18n.use_site_locale(site_locale_of(Path(file)))
        failed |= not _validate_one(file, strict)
    if failed:
        raise click.exceptions.Exit(1)


def _validate_one(file: str, strict: bool) -> bool:
    try:
        loaded = load_with_warnings(file)
    except ConfigError as exc:
        for issue in ordered([*exc.issues, *exc.warnings]):
            click.echo(str(issue), err=True)
        return False
    except Exception as exc:  # a bug in the loader must still not print a traceback
        _internal_error(file, exc)
        return False
    for issue in loaded.warnings:
        click.echo(str(issue), err=True)
    if strict and loaded.warnings:
        n = len(loaded.warnings)
        click.echo(
            _("{file}: {n} warning(s), failing with --strict").format(file=file, n=n), err=True
        )
        return False
    click.echo(_summary(file, loaded))
    return True


def _summary(file: str, loaded: Loaded) -> str:
    cfg = loaded.config
    text = _("OK {file}: {devices} devices, {points} points, config hash {hash}").format(
        file=file,
        devices=len(cfg.devices),
        points=sum(len(device.points) for device in cfg.devices),
        hash=cfg.config_hash,
    )
    if loaded.warnings:
        text += _(" ({n} warning(s))").format(n=len(loaded.warnings))
    return text


@config.command("show")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def show(file: str, as_json: bool) -> None:
    """Print the effective configuration: defaults filled in, includes resolved."""
    cfg = _load_or_exit(file)
    data = cfg.model_dump(mode="json")
    if as_json:
        click.echo(json.dumps(_finite(data), indent=2))
        return
    heading = _("# effective configuration of {file} (config hash {hash})")
    click.echo(heading.format(file=file, hash=cfg.config_hash))
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def _finite(value: object) -> object:
    """Strict JSON has no infinity: write it as the string "inf", which loads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


EXIT_DIFFERENT = 1
EXIT_CANNOT_COMPARE = 2  # as diff(1): an invalid or unreadable file


@config.command("diff")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option(
    "--against",
    type=click.Path(dir_okay=True),
    default=None,
    help="Compare with this file instead of the running agent's configuration.",
)
@socket_option
@config_option(required=False, help="Site configuration, to find the agent's socket.")
@click.option("--unified", is_flag=True, help="A unified diff of the effective YAML instead.")
def diff(
    file: str, against: str | None, socket: Path | None, config_path: Path | None, unified: bool
) -> None:
    """What would change if FILE replaced the running configuration (effective values:
    includes resolved, defaults filled in), one line per change: `chiller-1.poll_interval
    5s -> 10s`. Exit 0: the same, 1: different, 2: a file is invalid, 3: no agent."""
    new = _load_or_exit(file, EXIT_CANNOT_COMPARE).model_dump(mode="json")
    if against is not None:
        old, label = _load_or_exit(against, EXIT_CANNOT_COMPARE).model_dump(mode="json"), against
    else:
        from edge_agent.cli.common import ask_agent, socket_path

        answer = ask_agent(socket_path(socket, config_path), "config")
        old = answer["config"]
        label = _("the running agent ({hash})").format(hash=answer["config_hash"])
    if old == new:
        text = _("no difference: {file} is the configuration of {label}")
        click.echo(text.format(file=file, label=label))
        return
    if unified:
        import difflib

        lines = difflib.unified_diff(
            _yaml(old).splitlines(), _yaml(new).splitlines(), label, file, lineterm=""
        )
        click.echo("\n".join(lines))
        raise click.exceptions.Exit(EXIT_DIFFERENT)
    from edge_agent.config.changes import changes

    found = changes(old, new)
    for line in found:
        click.echo(line)
    text = _("{n} change(s) from {label} to {file}")
    click.echo(text.format(n=len(found), label=label, file=file))
    raise click.exceptions.Exit(EXIT_DIFFERENT)


def _yaml(data: object) -> str:
    return yaml.safe_dump(_finite(data), sort_keys=True, allow_unicode=True)


@config.command("schema")
@click.argument(
    "part", type=click.Choice(list(PARTS)), default="site", required=False, metavar="[PART]"
)
def schema_command(part: str) -> None:
    """Print a JSON Schema (draft-07) of the configuration, for completion and checks as you
    type in an editor (the YAML language server: see docs/configuration.md). `config
    validate` still has the last word: cross-checks are not in the schema.

    PART is what the file holds (default: site):

    \b
      site            the top-level file
      devices         included devices (one, or a list of them)
      points-modbus   included Modbus points (a map in configs/maps/)
      points-bacnet   included BACnet points
      points-dlt645   included DL/T 645 points (a map in configs/maps/)
      points-fake     included points of the fake driver
      alarms          included alarm rules
      loops           included control loops
      protection      included equipment protection
      hj212           the included HJ 212 data logger (docs/hj212.md)
      energy          the included energy model (docs/energy-accounting.md)
    """
    from edge_agent.config.schema import schema

    click.echo(json.dumps(schema(part), indent=2, ensure_ascii=False, allow_nan=False))
