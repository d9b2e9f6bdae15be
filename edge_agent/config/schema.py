"""A JSON Schema of the site configuration, for editors (`edge-agent config schema`).

Generated from the same pydantic models the loader validates with, then made to fit how
the files are written and what editors understand (the YAML language server supports JSON
Schema draft-07):

- durations are numbers of seconds or text such as `5s`, `500ms`, `2m` (and their defaults
  are shown that way), sizes numbers of bytes or text such as `2GiB`;
- wherever a mapping or a list is expected, `!include FILE.yaml` may stand instead: the
  language server, told `!include` is a scalar tag, sees the file name there;
- a device is checked as the model its `driver:` names (an alarm rule or loop by its
  `type:`, a Modbus connection by its `transport:`), with `if`/`then`, so that a mistake
  is reported against the right model and completion offers its keys;
- a Modbus address may leave out `table` (a Modicon reference gives it) and `type`.

`schema(part)` gives the top-level file (`site`) or a file that is included: a device or a
list of them (`devices`), a point list of one driver (`points-modbus`, ...), `alarms`,
`loops`, `protection`, `hj212`, `energy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from control_loops.config import EquipmentProtection, LoopConfig
from drivers.bacnet.config import BacnetPoint
from drivers.dlt645.config import Dlt645Point
from drivers.fake import FakePoint
from drivers.modbus.config import ModbusPoint
from edge_agent.alarms.rules import AlarmRule
from edge_agent.config.base import parse_duration
from edge_agent.config.changes import duration_text, size_text
from edge_agent.config.models import AgentConfig, Device
from edge_agent.energy.config import Energy
from edge_agent.hj212.config import Hj212

DRAFT = "http://json-schema.org/draft-07/schema#"
# One number with an optional unit, or several terms with units (1h30m); the loader also
# wants the units largest first, each once, which a pattern says poorly: it has the last word.
DURATION_PATTERN = (
    r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d)?|([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d)\s*)+)\s*$"
)
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?\s*$"
INCLUDE = {
    "type": "string",
    "pattern": r"\.ya?ml$",
    "description": "!include FILE: the value is read from FILE, relative to this file and "
    "within the configuration's folder",
}
_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}

PARTS: dict[str, tuple[Any, bool, str]] = {
    # name: (type, an included file may hold one item or a list of them, title)
    "site": (AgentConfig, False, "edge-agent site configuration"),
    "devices": (Device, True, "edge-agent devices (an included file)"),
    "points-modbus": (ModbusPoint, True, "edge-agent Modbus points (an included map)"),
    "points-bacnet": (BacnetPoint, True, "edge-agent BACnet points (an included map)"),
    "points-dlt645": (Dlt645Point, True, "edge-agent DL/T 645 points (an included map)"),
    "points-fake": (FakePoint, True, "edge-agent fake driver points (an included file)"),
    "alarms": (AlarmRule, True, "edge-agent alarm rules (an included file)"),
    "loops": (LoopConfig, True, "edge-agent control loops (an included file)"),
    "protection": (EquipmentProtection, True, "edge-agent equipment protection (an included file)"),
    "hj212": (Hj212, False, "edge-agent HJ 212 data logger (an included file)"),
    "energy": (Energy, False, "edge-agent energy model (an included file)"),
}


class _Generator(GenerateJsonSchema):
    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        function: Callable[..., Any] = schema["function"]["function"]
        if function is parse_duration:
            return {
                "x-duration": True,
                "anyOf": [{"type": "number"}, {"type": "string", "pattern": DURATION_PATTERN}],
                "description": "a duration: seconds, or 500ms, 5s, 2m, 1h30m, 7d",
            }
        return super().function_before_schema(schema)


def schema(part: str = "site") -> dict[str, Any]:
    tp, one_or_many, title = PARTS[part]
    generated = TypeAdapter(tp).json_schema(
        ref_template="#/definitions/{model}", schema_generator=_Generator
    )
    definitions = generated.pop("$defs", {})
    root: dict[str, Any] = generated
    if one_or_many:
        root = {"anyOf": [generated, {"type": "array", "items": generated}]}
    result = {"$schema": DRAFT, **root, "title": title, "definitions": definitions}
    result = _fit(result)
    definitions = result["definitions"]
    definitions["Include"] = INCLUDE
    if "ModbusAddress" in definitions:
        # `table` comes from a Modicon reference, `type` from the table (bool on bit tables)
        definitions["ModbusAddress"]["required"] = ["address"]
    if "Store" in definitions:
        budget = definitions["Store"]["properties"]["disk_budget"]
        budget["anyOf"][0]["pattern"] = SIZE_PATTERN  # pydantic's accepts any word as unit
        budget["default"] = size_text(budget["default"])
    if part == "site":
        result["description"] = (
            "The site configuration of an edge-agent gateway (docs/configuration.md). "
            "`edge-agent config validate` has the last word: cross-checks such as unique ids "
            "and register overlaps are not in the schema."
        )
    return result


def _fit(node: Any) -> Any:
    """The generated schema rewritten for editors (see the module's docstring)."""
    if isinstance(node, list):
        return [_fit(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _fit(value) for key, value in node.items()}
    default = node.get("default")
    if isinstance(default, float) and not math.isfinite(default):
        # JSON has no infinity (YAML writes it `.inf`): no limit is said in words instead.
        del node["default"]
        node.setdefault("description", "default: none (`-.inf`/`.inf`: no limit)")
    if node.pop("x-duration", False):
        number: dict[str, Any] = {"type": "number"}
        for bound, keyword in _BOUNDS.items():
            if bound in node:
                number[keyword] = node.pop(bound)
        node["anyOf"][0] = number
        if isinstance(node.get("default"), int | float):
            node["default"] = duration_text(float(node["default"]))
    if "discriminator" in node and "oneOf" in node:
        node = _by_tag(node)
    if "properties" in node:
        node["properties"] = {k: _includable(v) for k, v in node["properties"].items()}
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        node["items"] = _includable(node["items"])
    return node


def _by_tag(node: dict[str, Any]) -> dict[str, Any]:
    """oneOf + an OpenAPI discriminator -> if/then per tag, which draft-07 editors apply:
    the model the tag names is the one checked, and completed."""
    key = node["discriminator"]["propertyName"]
    mapping = node["discriminator"]["mapping"]
    refs = {tag: ref.replace("#/$defs/", "#/definitions/") for tag, ref in mapping.items()}
    rest = {k: v for k, v in node.items() if k not in ("discriminator", "oneOf")}
    return {
        **rest,
        "type": "object",
        "required": [key],
        "properties": {key: {"enum": list(refs)}},
        "allOf": [
            {"if": {"properties": {key: {"const": tag}}, "required": [key]}, "then": {"$ref": ref}}
            for tag, ref in refs.items()
        ],
    }


def _includable(node: Any) -> Any:
    """A mapping or a list, or `!include FILE` in its place."""
    if not isinstance(node, dict) or not _composite(node):
        return node
    outer = {k: node[k] for k in ("title", "description", "default") if k in node}
    inner = {k: v for k, v in node.items() if k not in outer}
    if isinstance(outer.get("default"), dict):
        # A section's default in raw seconds and bytes says less than its keys' own defaults.
        del outer["default"]
    return {**outer, "anyOf": [inner, {"$ref": "#/definitions/Include"}]}


def _composite(node: dict[str, Any]) -> bool:
    if node.get("type") in ("object", "array") or "$ref" in node or "allOf" in node:
        return True
    return any(
        _composite(m)
        for m in node.get("anyOf", [])
        if isinstance(m, dict) and m.get("type") != "null"
    )
