"""config_apply as a transaction over the site file, and the journal that lets it survive
a crash (docs/mqtt-api.md, docs/configuration.md).

The transaction: the pushed text is validated; the journal records the command and the
previous text; the file is replaced atomically; the runtime goes over to it as a SIGHUP
does (edge_agent/reload.py: only the devices whose configuration changed restart); it
answers `done` once it polls and reaches the broker within `commands.apply_confirm`, or
puts the previous file and configuration back and answers `failed` (`config_failed`,
`rolled_back`).

The journal: a config_apply replaces the site file, then the agent applies it and
confirms (or rolls back). If the process dies in between (the new config crashes it, a
power cut, a stop), systemd would start it again on the new, unconfirmed file. So before
the file is replaced, `.<name>.applying` beside it records the command id and the previous
text; it goes once the apply is confirmed or rolled back. An agent that starts and finds
it restores the previous file before loading anything and answers the command `failed`.
Only the agent that holds `.<name>.lock` (for its lifetime) may do so: a second
`edge-agent run` on the same file must not undo the first one's apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge_agent import logs
from edge_agent.commands import messages
from edge_agent.commands.context import Context, Execution
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config_text
from edge_agent.config.models import AgentConfig
from edge_agent.events import EventSink

log = logs.get("config")


class ConfigInUse(Exception):
    """Another agent runs on this configuration file."""


@dataclasses.dataclass(frozen=True, slots=True)
class InterruptedApply:
    """A config_apply that the previous run of the agent did not finish."""

    command_id: str
    new_hash: str


def journal_path(config: Path) -> Path:
    return config.with_name(f".{config.name}.applying")


def lock(config: Path) -> int | None:
    """Hold the file's lock until the process exits (the descriptor is kept open). None if
    its directory is read-only to us: then config_apply cannot write there either."""
    try:
        fd = os.open(config.with_name(f".{config.name}.lock"), os.O_RDWR | os.O_CREAT, 0o640)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigInUse(f"another agent is running on {config}") from None
    return fd


def write_atomically(path: Path, text: str) -> None:
    """Replace a file so that a power cut leaves the old or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    _sync_directory(path.parent)


def begin(config: Path, command_id: str, previous_text: str, new_hash: str) -> None:
    """Record the apply; call before the new file replaces `config`."""
    entry = {"command_id": command_id, "new_hash": new_hash, "previous": previous_text}
    write_atomically(journal_path(config), json.dumps(entry))


def end(config: Path) -> None:
    """The apply is confirmed or rolled back: nothing left to recover."""
    journal = journal_path(config)
    if journal.exists():
        journal.unlink()
        _sync_directory(config.parent)


def recover(config: Path) -> InterruptedApply | None:
    """At start-up, before the config is loaded: undo an apply the last run left unfinished."""
    journal = journal_path(config)
    try:
        entry = json.loads(journal.read_text(encoding="utf-8"))
        interrupted = InterruptedApply(str(entry["command_id"]), str(entry["new_hash"]))
        previous = entry["previous"]
        if not isinstance(previous, str):
            raise TypeError("previous is not text")
    except FileNotFoundError:
        return None
    except OSError as exc:  # not a file, unreadable: nothing can be restored from it
        log.error("config_apply journal unreadable; starting on the file as it is",
                  path=str(journal), error=str(exc))  # fmt: skip
        return None
    except (ValueError, KeyError, TypeError) as exc:
        # Written atomically, so this is not a torn write: someone edited it. The site file
        # is left as it is; the journal is set aside for a person to look at.
        aside = journal.with_name(journal.name + ".unreadable")
        os.replace(journal, aside)
        log.error("config_apply journal unreadable; set aside", path=str(aside), error=str(exc))
        return None
    write_atomically(config, previous)
    end(config)
    log.warning(
        "the last config_apply did not finish; previous configuration restored",
        command_id=interrupted.command_id,
        abandoned_hash=interrupted.new_hash,
    )
    return interrupted


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- the transaction --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PendingApply:
    """A config_apply under way: confirmed (or rolled back) by the runtime it starts."""

    command_id: str
    config: AgentConfig  # what the runtime runs next
    previous_text: str  # the file as it was, to restore
    previous: AgentConfig
    rollback: str | None = None  # why the new config was abandoned


class Completes(Protocol):
    """The command path's way to give a deferred command its final stage."""

    async def complete(
        self,
        command_id: str,
        type_: str,
        stage: str,
        reason: messages.Reason | None = None,
        message: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None: ...


def prepare(
    command: messages.ConfigApply,
    running: AgentConfig,
    path: Path | None,
    request_apply: Callable[[PendingApply], None] | None,
    busy: bool,
) -> Execution:
    """The `config_apply` handler's checks (raising `Rejected`), and the execution that
    writes the file and hands the new config to the service (`request_apply`); the answer
    then comes from the runtime once it runs the new one (`confirm`)."""
    if path is None or request_apply is None:
        raise messages.Rejected(
            messages.Reason.UNAVAILABLE, "this agent was not started from a config file"
        )
    running_hash = running.config_hash
    if command.base_hash is not None and command.base_hash != running_hash:
        raise messages.Rejected(
            messages.Reason.CONFIG_CONFLICT,
            f"base_hash {command.base_hash} is not the running configuration ({running_hash})",
        )
    if busy:
        raise messages.Rejected(messages.Reason.BUSY, "another config_apply is under way")
    try:
        new = load_config_text(command.config, f"config_apply {command.id}", path.parent)
    except ConfigError as exc:
        problems = "; ".join(str(issue) for issue in exc.issues[:5])
        more = f" (and {len(exc.issues) - 5} more)" if len(exc.issues) > 5 else ""
        raise messages.Rejected(messages.Reason.CONFIG_INVALID, problems + more) from None

    async def apply() -> dict[str, Any]:
        if new.config_hash == running_hash:
            return {"config_hash": running_hash, "changed": False}
        previous_text = await asyncio.to_thread(path.read_text)
        try:
            await asyncio.to_thread(begin, path, command.id, previous_text, new.config_hash)
            await asyncio.to_thread(write_atomically, path, command.config)
        except OSError as exc:  # disk full, read-only: the old file stands
            with contextlib.suppress(OSError):
                await asyncio.to_thread(end, path)
            raise messages.Failed(
                messages.Reason.CONFIG_FAILED,
                f"cannot write the configuration: {exc.strerror or exc}: {exc.filename}",
            ) from None
        log.info("configuration written; applying", config_hash=new.config_hash)
        request_apply(PendingApply(command.id, new, previous_text, running))
        raise messages.Deferred

    return apply


def handler(
    running: AgentConfig,
    path: Path | None,
    request_apply: Callable[[PendingApply], None] | None,
    busy: Callable[[], bool],
) -> Callable[[messages.ConfigApply, Context], Execution]:
    """`prepare` as the router's handler of `config_apply`."""
    return lambda command, _context: prepare(command, running, path, request_apply, busy())


class Applying(Protocol):
    """The runtime a config_apply ends in (edge_agent.service.Runtime); read only."""

    @property
    def config(self) -> AgentConfig: ...
    @property
    def config_path(self) -> Path | None: ...
    @property
    def router(self) -> Completes | None: ...  # None until the runtime has started
    @property
    def events(self) -> EventSink: ...

    async def wait_up(self, timeout: float) -> str | None:
        """None once it runs and reaches the broker within `timeout`, else what is missing."""
        ...


async def confirm(
    pending: PendingApply,
    runtime: Applying,
    request_apply: Callable[[PendingApply], None],
    timeout: float,
) -> None:
    """In the runtime the apply started: `done` once it is up; otherwise restore the old
    file and config (answered in `rolled_back` once the previous config runs again)."""
    why = await runtime.wait_up(timeout)
    if runtime.router is None:
        return  # the journal stays: the next start rolls back
    if pending.rollback is not None:
        await rolled_back(runtime, pending.command_id, pending.rollback)
        return
    assert runtime.config_path is not None
    if why is None:
        await asyncio.to_thread(end, runtime.config_path)
        await runtime.router.complete(pending.command_id, "config_apply", "done", result={
            "config_hash": runtime.config.config_hash,
            "previous_hash": pending.previous.config_hash,
        })  # fmt: skip
        return
    reason = f"the new configuration did not come up within {timeout:g} s: {why}"
    log.error("config_apply failed; rolling back", reason=reason)
    await asyncio.to_thread(write_atomically, runtime.config_path, pending.previous_text)
    request_apply(dataclasses.replace(pending, config=pending.previous, rollback=reason))


async def rolled_back(runtime: Applying, command_id: str, reason: str) -> None:
    """The previous config runs again: close the journal and answer the command."""
    if runtime.config_path is not None:
        await asyncio.to_thread(end, runtime.config_path)
    runtime.events.emit("config_rolled_back", level="error", command_id=command_id,
                        reason=reason)  # fmt: skip
    if runtime.router is None:
        return
    await runtime.router.complete(
        command_id,
        "config_apply",
        "failed",
        messages.Reason.CONFIG_FAILED,
        reason,
        {"config_hash": runtime.config.config_hash, "rolled_back": True},
    )


async def report_interrupted(
    runtime: Applying, interrupted: InterruptedApply, timeout: float
) -> None:
    """Answer a config_apply that the last run left unfinished (rolled back at start)."""
    await runtime.wait_up(timeout)
    await rolled_back(
        runtime,
        interrupted.command_id,
        f"the agent stopped before the new configuration ({interrupted.new_hash}) was "
        "confirmed; the previous configuration was restored",
    )
