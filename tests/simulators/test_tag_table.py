"""The plant's whole tag table against a snapshot taken from the code before the table
became data (`simulators/tags.yaml`): every tag in order, every TagInfo field, a read of
every tag on a freshly built plant and after a step, every writable tag written (a float
or bool, then an int) with what that changed, and the error every kind of bad write gives.

Values are compared exactly (type and repr), so any change in what a tag reads, writes
or says fails here. The snapshot is regenerated only for an intended change of the table:

    python -m tests.simulators.test_tag_table --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators.clock import SimClock
from simulators.config import PlantConfig
from simulators.plant import PlantRoom
from tests.simulators.helpers import START

SNAPSHOT = Path(__file__).with_name("data") / "tag_table.json"
HOSPITAL = Path(__file__).resolve().parents[2] / "configs" / "sim" / "hospital.yaml"
STEP_S = 60.0  # after a write: long enough for the physics to show what the write did


def _plants() -> dict[str, tuple[PlantConfig, int]]:
    hospital = yaml.safe_load(HOSPITAL.read_text())
    return {
        "default": (PlantConfig(), 0),
        "hospital": (PlantConfig.model_validate(hospital["plant"]), hospital["seed"]),
    }


def _value(value: Any) -> str:
    """Type and exact repr: 1, 1.0 and True differ."""
    return f"{type(value).__name__} {value!r}"


def _reads(plant: PlantRoom) -> dict[str, str]:
    return {tag: _value(plant.read(tag)) for tag in plant.tags}


def _changed(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    return {tag: value for tag, value in after.items() if before[tag] != value}


def _error(plant: PlantRoom, tag: str, value: Any) -> str:
    before = _reads(plant)
    try:
        plant.write(tag, value)
    except Exception as exc:  # the type and the message are what is compared
        assert _reads(plant) == before, f"{tag}: a refused write changed the plant"
        return f"{value!r} -> {type(exc).__name__}: {exc}"
    return f"{value!r} -> accepted"


def _good_values(info: Any, current: Any) -> list[Any]:
    """A float (or bool) to write, then an int: each different from the current value."""
    if info.kind == "binary":
        return [not current, int(not current)]
    span = info.max - info.min
    return [info.min + 0.37 * span, int(info.min + 0.71 * span)]


def _bad_values(info: Any) -> list[Any]:
    if not info.writable:
        return [1]
    if info.kind == "binary":
        return [2, "on", None]
    return [info.max + 1, info.min - 1, float("nan"), True, "7"]


def capture(config: PlantConfig, seed: int) -> dict[str, Any]:
    def fresh() -> PlantRoom:
        return PlantRoom(config, seed=seed, clock=SimClock(start=START))

    plant = fresh()
    tags = [
        {
            "tag": name,
            "unit": info.unit,
            "writable": info.writable,
            "min": repr(info.min),
            "max": repr(info.max),
            "description": info.description,
            "kind": info.kind,
        }
        for name, info in plant.tags.items()
    ]
    reads = _reads(plant)
    stepped_plant = fresh()
    stepped_plant.step(STEP_S)
    stepped = _reads(stepped_plant)

    writes: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, list[str]] = {}
    for name, info in plant.tags.items():
        errors[name] = [_error(fresh(), name, value) for value in _bad_values(info)]
        if not info.writable:
            continue
        value, as_int = _good_values(info, plant.read(name))
        target = fresh()
        target.write(name, value)
        after_write = _reads(target)
        target.step(STEP_S)
        after_step = _reads(target)
        target = fresh()  # an int is cast like the value above: only the write is kept
        target.write(name, as_int)
        writes[name] = [
            {
                "value": _value(value),
                "after_write": _changed(reads, after_write),
                "after_step": _changed(stepped, after_step),
            },
            {"value": _value(as_int), "after_write": _changed(reads, _reads(target))},
        ]
    return {"tags": tags, "reads": reads, "stepped": stepped, "writes": writes, "errors": errors}


def capture_all() -> dict[str, Any]:
    return {name: capture(config, seed) for name, (config, seed) in _plants().items()}


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=["default", "hospital"])
def pair(request: pytest.FixtureRequest, snapshot: dict[str, Any]) -> tuple[dict, dict]:
    config, seed = _plants()[request.param]
    return snapshot[request.param], json.loads(json.dumps(capture(config, seed)))


def test_tags_in_order_with_their_info(pair: tuple[dict, dict]) -> None:
    expected, actual = pair
    assert [t["tag"] for t in actual["tags"]] == [t["tag"] for t in expected["tags"]]
    assert actual["tags"] == expected["tags"]


@pytest.mark.parametrize("part", ["reads", "stepped"])
def test_every_tag_reads_the_same(pair: tuple[dict, dict], part: str) -> None:
    expected, actual = pair
    assert actual[part] == expected[part]


def test_every_writable_tag_writes_the_same(pair: tuple[dict, dict]) -> None:
    expected, actual = pair
    assert actual["writes"].keys() == expected["writes"].keys()
    for tag, cases in expected["writes"].items():
        assert actual["writes"][tag] == cases, tag


def test_every_bad_write_fails_the_same(pair: tuple[dict, dict]) -> None:
    expected, actual = pair
    assert actual["errors"] == expected["errors"]


def test_snapshot_covers_the_table(snapshot: dict[str, Any]) -> None:
    """The snapshot is not trivially small: every kind of tag and write is in it."""
    for part in snapshot.values():
        assert len(part["tags"]) > 150
        kinds = {info["kind"] for info in part["tags"]}
        assert kinds == {"analog", "binary", "multistate"}
        assert len(part["writes"]) >= 20
        assert all(case["after_write"] for cases in part["writes"].values() for case in cases)


def _dump(value: Any, indent: str = "") -> str:
    """JSON with one line per tag: a list or dict of plain values stays on one line."""
    flat = json.dumps(value, ensure_ascii=False)
    children = value.values() if isinstance(value, dict) else value
    if not isinstance(value, dict | list) or not any(isinstance(c, dict | list) for c in children):
        return flat
    inner = indent + " "
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    items = [inner + _dump(v, inner) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + indent + "]"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(_dump(capture_all()) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
