"""The site file's writes, and the journal that makes a config_apply survive a crash.

A config_apply replaces the site file, then the agent restarts its runtime on it and
confirms (or rolls back) within `commands.apply_confirm`. If the process dies in between
(the new config crashes it, a power cut, a stop), systemd would start it again on the new,
unconfirmed file. So before the file is replaced, `.<name>.applying` beside it records the
command id and the previous text; it goes once the apply is confirmed or rolled back. An
agent that starts and finds it restores the previous file before loading anything and
answers the command `failed`. Only the agent that holds `.<name>.lock` (for its lifetime)
may do so: a second `edge-agent run` on the same file must not undo the first one's apply.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from pathlib import Path

from edge_agent import logs

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
