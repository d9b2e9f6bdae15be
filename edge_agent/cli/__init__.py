"""`edge-agent`: the command line for technicians and for systemd.

Every error is one clear line and an exit code, never a traceback. One module per group
of commands; what they share is in `common`. Subcommands are imported only when used.
"""

from __future__ import annotations

import click

from edge_agent import __version__
from edge_agent.cli.common import LazyGroup, click_in_our_language

click_in_our_language()

_AGENT = ("run", "status", "demo", "install-service")


@click.group(
    cls=LazyGroup,
    lazy={
        **{name: f"edge_agent.cli.agent:{name.replace('-', '_')}" for name in _AGENT},
        "config": "edge_agent.cli.config:config",
        **{
            name: f"edge_agent.cli.points:{name}" for name in ("points", "read", "write", "release")
        },
        "alarms": "edge_agent.cli.plant:alarms",
        "loops": "edge_agent.cli.plant:loops",
        "discover": "edge_agent.cli.field:discover",
        "logs": "edge_agent.cli.field:logs",
        "export": "edge_agent.cli.history:export",
        "trend": "edge_agent.cli.history:trend",
        "audit": "edge_agent.cli.audit:audit",
        "hj212": "edge_agent.cli.hj212:hj212",
        "energy": "edge_agent.cli.energy:energy",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="edge-agent")
def main() -> None:
    """Edge controller runtime for hospital plant rooms."""
