"""The JSON Schemas in docs/schema/ are what the models generate, and valid schemas."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edge_agent.commands import messages, schema
from tests.harness import REPO


@pytest.mark.parametrize("name", sorted(schema.FILES))
def test_the_published_schema_is_the_generated_one(name):
    published = (REPO / "docs" / "schema" / name).read_text()
    assert published == schema.render(name), (
        f"docs/schema/{name} is stale: run python -m edge_agent.commands.schema"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(published))


def test_a_reply_without_its_result_or_reason_does_not_fit():
    replies = jsonschema.Draft202012Validator(schema.reply_schema())
    base = {"v": 1, "type": "command_result", "site": "s", "gateway": "g", "id": "c-1",
            "ts": 1, "seq": 1, "historical": False}  # fmt: skip
    assert replies.is_valid({**base, "command": "write", "stage": "accepted"})
    assert not replies.is_valid({**base, "command": "write", "stage": "done"})  # no result
    assert not replies.is_valid({**base, "command": "write", "stage": "rejected"})  # no reason
    done = {**base, "command": "release", "stage": "done",
            "result": {"point": "a.b", "released": "platform", "effective": "device"}}  # fmt: skip
    assert replies.is_valid(done)
    assert not replies.is_valid({**done, "result": {"point": "a.b"}})


def test_the_command_types_are_the_models_tags():
    # CommandType is written out for the type checker; the models' tags are the truth.
    tags = tuple(t.model_fields["type"].annotation.__args__[0] for t in messages.Command.__args__)
    assert tags == messages.TYPES
