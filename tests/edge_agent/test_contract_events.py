"""Every event type the agent can publish is in docs/mqtt-api.md's event table, and every
row of the table is an event the agent publishes: collected from the code itself, so that a
new event cannot ship undocumented."""

from __future__ import annotations

import ast
import re

from tests.harness import REPO

PACKAGES = ("edge_agent", "control_loops", "drivers")
# Messages that are not events (their own topics and tables in the doc), and the CLI's
# own command bodies.
OTHER_MESSAGES = {"telemetry", "status", "alarm", "command_result", "alarm_ack", "energy"}


def published_events() -> dict[str, str]:
    """Event type -> a file that makes it: `emit("type", ...)` and
    `envelope.message("type", ...)` calls (the store's own events), and message dicts
    `{"v": 1, "type": "...", ...}` built by hand."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                name = _emitted(node) or _message_type(node)
                if name is not None and name not in OTHER_MESSAGES:
                    found.setdefault(name, str(path.relative_to(REPO)))
    return found


def _emitted(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0]
    via_envelope = (
        called == "message" and isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name) and func.value.id == "envelope"
    )  # fmt: skip
    if (called in ("emit", "_emit") or via_envelope) and isinstance(first, ast.Constant):
        return first.value if isinstance(first.value, str) else None
    return None


def _message_type(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Dict):
        return None
    pairs = zip(node.keys, node.values, strict=True)
    keys = {k.value: v for k, v in pairs if isinstance(k, ast.Constant)}
    kind = keys.get("type")
    if "v" in keys and isinstance(kind, ast.Constant) and isinstance(kind.value, str):
        return kind.value
    return None


def documented_events() -> set[str]:
    text = (REPO / "docs" / "mqtt-api.md").read_text()
    section = text.split("\n## Events\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.M)) - {"type"}


def test_every_event_the_agent_publishes_is_documented():
    published = published_events()
    assert len(published) > 15  # the scan finds them (it would pass on nothing)
    undocumented = {name: path for name, path in published.items()
                    if name not in documented_events()}  # fmt: skip
    assert not undocumented, f"add these to the event table of docs/mqtt-api.md: {undocumented}"


def test_every_documented_event_is_published():
    stale = documented_events() - set(published_events())
    assert not stale, f"the event table lists events nothing publishes: {stale}"
