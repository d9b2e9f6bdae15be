"""Fuzzing the command decoder: whatever arrives, a typed command or a reasoned refusal."""

from __future__ import annotations

import json
import math
import re

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.commands import messages as m
from tests.harness import REPO

USABLE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
FUZZ = settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = [
    {"type": "write", "point": "ch-1.chws_sp", "value": 7.5, "duration": "30m"},
    {"type": "write", "point": "ch-1.run", "value": True, "priority": 8, "until": 1},
    {"type": "release", "point": "ch-1.chws_sp"},
    {"type": "read", "point": "ch-1.chws_sp"},
    {"type": "loop", "loop": "chw-reset", "action": "set", "parameter": "setpoint", "value": 7},
    {"type": "alarm_ack", "alarm": "chw-warm", "note": "on it"},
    {"type": "config_apply", "config": "site: {id: x}\n", "base_hash": "abc"},
    {"type": "backfill", "since": 0, "until": 10, "devices": ["ch-1"]},
    {"type": "status"},
    {"type": "rebirth"},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
keys = st.sampled_from(
    ["v", "id", "type", "point", "value", "priority", "duration", "until", "expires", "ts",
     "loop", "action", "parameter", "alarm", "config", "since", "devices", "dry_run", "x"]
)  # fmt: skip


@st.composite
def mutated_commands(draw) -> dict:
    """A valid command with a few fields removed, replaced by junk, or added."""
    command = {
        "v": 1,
        "id": draw(st.text(min_size=0, max_size=140)),
        **draw(st.sampled_from(VALID)),
    }
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "junk", "add"]))
        key = draw(keys)
        if action == "drop":
            command.pop(key, None)
        else:
            command[key] = draw(json_values)
    return command


SCHEMA = jsonschema.Draft202012Validator(
    json.loads((REPO / "docs" / "schema" / "command.schema.json").read_text())
)


def _check(payload: bytes, data: object) -> None:
    try:
        command = m.decode(payload)
    except m.Rejected as exc:
        assert isinstance(exc.reason, m.Reason) and exc.message
        sent = data.get("id") if isinstance(data, dict) else None
        usable = isinstance(sent, str) and USABLE_ID.fullmatch(sent) is not None
        # An unusable id is echoed in a `malformed` reply when it can be: a string of at
        # most 1024 characters, or a number. Otherwise nobody can be answered.
        echoable = not usable and (
            (isinstance(sent, str) and len(sent) <= 1024)
            or (isinstance(sent, int | float) and not isinstance(sent, bool)
                and math.isfinite(sent))
        )  # fmt: skip
        if usable or echoable:
            assert exc.command_id == sent and type(exc.command_id) is type(sent)
        else:
            assert exc.command_id is None
        if echoable:
            assert exc.reason is m.Reason.MALFORMED
        if exc.command_type is not None:
            assert isinstance(data, dict) and exc.command_type == data["type"] in m.TYPES
        _agrees_with_the_schema(data, decoded=False)
        return
    assert USABLE_ID.fullmatch(command.id) and command.type in m.TYPES
    _agrees_with_the_schema(data, decoded=True)


def _agrees_with_the_schema(data: object, *, decoded: bool) -> None:
    """The published JSON Schema accepts exactly what the gateway accepts. Two kinds of
    input are left out: non-standard JSON (NaN, Infinity), and strings ending in a newline,
    where Python's `re` (used by the validator) lets `$` match before the newline but
    JSON Schema's ECMA-262 patterns do not."""
    if not _standard(data):
        return
    assert SCHEMA.is_valid(data) == decoded, (data, [e.message for e in SCHEMA.iter_errors(data)])


def _standard(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not value.endswith("\n")
    if isinstance(value, list):
        return all(_standard(v) for v in value)
    if isinstance(value, dict):
        return all(_standard(k) and _standard(v) for k, v in value.items())
    return True


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(payload: bytes) -> None:
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    _check(payload, data)


@FUZZ
@given(json_values)
def test_random_json(data: object) -> None:
    _check(json.dumps(data).encode(), data)


@settings(max_examples=6000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_commands())
def test_mutated_commands(data: dict) -> None:
    _check(json.dumps(data).encode(), data)


def test_every_valid_example_decodes() -> None:
    for body in VALID:
        command = m.decode(json.dumps({"v": 1, "id": "c-1", **body}))
        assert command.type == body["type"]


def test_deeply_nested_json_is_refused_not_crashed() -> None:
    payload = b"[" * 100_000 + b"]" * 100_000
    try:
        m.decode(payload)
    except m.Rejected as exc:
        assert exc.reason is m.Reason.MALFORMED
