"""The exit codes of every `edge-agent` command, one table (docs/field-tools.md, "Exit codes").

A script tells from the code alone what happened: the typing (2), the agent (3), the
agent's answer (4) or the device (5). Codes are never reused with another meaning.
"""

from __future__ import annotations

OK = 0
ERROR = 1  # anything else: a bad file, an unreadable store, a network error of a field tool
USAGE = 2  # click's: an unknown option, a missing argument, options that exclude each other
NOT_RUNNING = 3  # no agent at the socket, or it does not answer
REJECTED = 4  # the agent refused the command (limits, protection, a hold, unknown point)
FAILED = 5  # the agent accepted it, but the device did not take it (timeout, exception)
NOT_ROOT = 6  # install-service: run as root
NO_SYSTEMD = 7  # install-service: systemd is not running here
HIDDEN = 8  # install-service: the hardened unit could not see the installation or config
INTERRUPTED = 130  # Ctrl-C, as the shell reports a SIGINT

# The reply stages of the command contract and the code each ends a CLI command with.
OF_STAGE = {"done": OK, "rejected": REJECTED, "failed": FAILED}
