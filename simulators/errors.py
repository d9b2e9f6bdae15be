"""Why a simulated device server could not start, in one line."""

from __future__ import annotations

import errno
import socket

# `python -m simulators` exit codes (docs/simulator.md).
EXIT_CONFIG = 1  # the config (or a map it names) cannot be read or is invalid
EXIT_START = 3  # a device server could not start (port taken, bad address, no pty)

_HINTS = {
    errno.EADDRINUSE: "another simulator or program holds it",
    errno.EADDRNOTAVAIL: "not an address of this machine",
    errno.EACCES: "ports below 1024 need root",
}


class ServerStartError(Exception):
    """A simulated device server could not start. `str()` is the one line to print: the
    device, its protocol, its address and port (or serial port) and why."""


def reason(exc: BaseException) -> str:
    """An OSError as an operator reads it: "Address already in use (another ... holds it)"."""
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        hint = _HINTS.get(exc.errno or 0)
        text = f"{exc.strerror} ({hint})" if hint else exc.strerror
        return f"{text}: {exc.filename}" if exc.filename else text
    return str(exc) or type(exc).__name__
