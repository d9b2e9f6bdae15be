"""JSON Schemas of the command topic, generated from the models that validate commands
(`messages`) and describe replies (`replies`). `python -m edge_agent.commands.schema`
writes them to `docs/schema/`; a test keeps the files equal to what this generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from edge_agent.commands import messages, replies

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://edge-agent.example/schema/v1/"  # an identifier, not a place to fetch from
FILES = {"command.schema.json": "command", "reply.schema.json": "reply"}


def command_schema() -> dict[str, Any]:
    """What the platform may publish on `…/cmd`: one of the command types, no other field."""
    schema = messages.ADAPTER.json_schema(ref_template="#/$defs/{model}")
    return {
        "$schema": DRAFT,
        "$id": BASE + "command.schema.json",
        "title": "edge-agent command (MQTT API v1, docs/mqtt-api.md)",
        "description": "A command published by the platform on {prefix}/{site}/{gateway}/cmd "
        "(QoS 1, never retained). Each field has exactly one JSON type; unknown fields are "
        "refused. The payload is at most 1 MiB.",
        **schema,
    }


def reply_schema() -> dict[str, Any]:
    """What the gateway publishes on `…/ack`, with the `result` of each command type."""
    models: list[type[replies.Open]] = [replies.Reply, *_result_models()]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs = top["$defs"]
    reply = defs.pop("Reply")
    ref = lambda model: {"$ref": f"#/$defs/{model.__name__}"}  # noqa: E731
    rules: list[dict[str, Any]] = [
        {
            "if": {"properties": {"stage": {"enum": ["rejected", "failed"]}}},
            "then": {"required": ["reason", "message"]},
        },
        {
            "if": {"properties": {"stage": {"const": "failed"}}, "required": ["result"]},
            "then": {"properties": {"result": {"anyOf": [ref(m) for m in replies.FAILED_RESULTS]}}},
        },
    ]
    for type_, shapes in replies.DONE_RESULTS.items():
        rules.append(
            {
                "if": {
                    "properties": {"command": {"const": type_}, "stage": {"const": "done"}},
                    "required": ["command", "stage"],
                },
                "then": {
                    "required": ["result"],
                    "properties": {"result": {"anyOf": [ref(m) for m in shapes]}},
                },
            }
        )
    return {
        "$schema": DRAFT,
        "$id": BASE + "reply.schema.json",
        "title": "edge-agent command reply (MQTT API v1, docs/mqtt-api.md)",
        "description": reply.pop("description"),
        **reply,
        "allOf": rules,
        "$defs": defs,
    }


def _result_models() -> list[type[replies.Open]]:
    shapes = [m for group in replies.DONE_RESULTS.values() for m in group]
    return list(dict.fromkeys([*shapes, *replies.FAILED_RESULTS]))


def render(name: str) -> str:
    schema = command_schema() if FILES[name] == "command" else reply_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "docs" / "schema"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (folder / name).write_text(render(name))
        print(folder / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
