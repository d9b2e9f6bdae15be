"""Who asks, and what a lower layer may ask of the command path.

Control loops and interlocks (control_loops/) command equipment through the same router
as the platform and the technician, but they never import it: they are handed a
`CommandPath` at construction, which `commands.router.CommandRouter` implements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.commands.holds import Hold
from edge_agent.commands.messages import Command, Source

Reply = Callable[[dict[str, Any]], None]  # gets each stage of a command's outcome
Execution = Callable[[], Awaitable[dict[str, Any]]]  # carries out a validated command


@dataclass(frozen=True, slots=True)
class Context:
    source: Source
    by: str | None  # a unix user, "platform", a loop id


class Handler(Protocol):
    """Validates a command (raising `Rejected`) and returns what executes it."""

    def __call__(self, command: Any, context: Context, /) -> Execution: ...


class CommandPath(Protocol):
    """Execute a command in a context; read the holds; the kind of a target."""

    async def execute(
        self, command: Command, context: Context, reply: Reply | None = None
    ) -> dict[str, Any]:
        """Run one command to its final stage, which is returned (and sent to `reply`)."""
        ...

    def hold_of(self, ref: str, source: Source) -> Hold | None:
        """`source`'s hold on the point `ref` (in force or not)."""
        ...

    def held_above(self, ref: str, source: Source) -> Hold | None:
        """The hold that keeps `source` from writing `ref`: a higher source's."""
        ...

    def all_holds(self) -> list[Hold]: ...

    def kind_of(self, ref: str) -> str | None:
        """The kind of a writable target (analog, binary, ...); None: no such point."""
        ...
