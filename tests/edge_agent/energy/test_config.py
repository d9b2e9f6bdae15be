"""The `energy:` section (issue 14, item 1): each mistake reported at its file:line, through
the config loader, as `config validate` shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.energy.counters import Register

SITE = """\
site: {id: st-marys}
gateway: {id: plant-b2}
uplink:
  endpoints: [{host: broker-1}]
devices:
  - id: m1
    driver: fake
    points:
      - {id: kwh, unit: kWh}
      - {id: water, unit: m3}
      - {id: kw, unit: kW}
energy: !include energy.yaml
"""
ENERGY = """\
site: {floor_area_m2: 12000, beds: 300}
meters:
  - id: main
    point: m1.kwh
    medium: electricity
    unit: kWh
    ct_ratio: 40
    pt_ratio: 100
    rollover: 99999999.99
  - id: plant
    point: m1.kwh
    medium: electricity
    unit: kWh
    category: air_conditioning
    sub_item: plant
  - id: lights
    point: m1.kwh
    medium: electricity
    unit: kWh
    category: lighting_sockets
  - id: water
    point: m1.water
    medium: water
    unit: m3
virtual:
  - id: rest
    formula: main - plant - lights
tree:
  - parent: main
    children: [plant, lights]
    max_loss_pct: 3
"""


def load(root: Path, energy: str) -> list[tuple[str, int | None, str, str]]:
    """The issues of site.yaml with `energy` as its included energy.yaml (root is the cwd)."""
    (root / "site.yaml").write_text(SITE)
    (root / "energy.yaml").write_text(energy)
    with pytest.raises(ConfigError) as caught:
        load_config("site.yaml")
    return [(i.file, i.line, i.path, i.message) for i in caught.value.issues]


def changed(old: str, new: str) -> str:
    assert ENERGY.count(old) == 1, old
    return ENERGY.replace(old, new)


def test_the_example_section_loads(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    (tmp_path / "energy.yaml").write_text(ENERGY)
    config = load_config(tmp_path / "site.yaml")
    assert config.energy is not None
    main = config.energy.meters[0]
    assert main.register == Register(4000.0, 99999999.99, 300_000)
    assert config.energy.virtual[0].terms == ((1, "main"), (-1, "plant"), (-1, "lights"))
    assert config.energy.tz_offset_ms == 8 * 3_600_000


CASES = {
    "unknown point": (
        ("    point: m1.water\n", "    point: m1.watr\n"),
        [
            (
                "energy.yaml",
                22,
                "energy.meters[3].point",
                "device 'm1' has no point 'watr' (did you mean 'water'?)",
            )
        ],
    ),
    "point in another unit": (
        ("  - id: lights\n    point: m1.kwh\n", "  - id: lights\n    point: m1.kw\n"),
        [("energy.yaml", 19, "energy.meters[2].unit", "m1.kw is in kW, the meter in kWh")],
    ),
    "unit of another medium": (
        ("    unit: m3\n", "    unit: kWh\n"),
        [("energy.yaml", 24, "energy.meters[3].unit", "water is counted in m3, t, not 'kWh'")],
    ),
    "a category of water": (
        ("    unit: m3\n", "    unit: m3\n    category: power\n"),
        [
            (
                "energy.yaml",
                25,
                "energy.meters[3].category",
                "only electricity has sub-metering categories",
            )
        ],
    ),
    "a sub-item of another category": (
        ("    sub_item: plant\n", "    sub_item: lifts\n"),
        [
            (
                "energy.yaml",
                15,
                "energy.meters[1].sub_item",
                "air_conditioning has no sub-item 'lifts' (its sub-items: plant, terminals)",
            )
        ],
    ),
    "unknown meter in a formula": (
        ("    formula: main - plant - lights\n", "    formula: main - plant - light\n"),
        [("energy.yaml", 27, "energy.virtual[0].formula", "unknown meter 'light'")],
    ),
    "a duplicate id": (
        ("  - id: rest\n", "  - id: water\n"),
        [
            (
                "energy.yaml",
                26,
                "energy.virtual[0].id",
                "duplicate meter id 'water' (first at line 21)",
            )
        ],
    ),
    "a meter in two branches": (
        (
            "    max_loss_pct: 3\n",
            "    max_loss_pct: 3\n  - parent: rest\n    children: [lights]\n",
        ),
        [
            (
                "energy.yaml",
                33,
                "energy.tree[1].children[0]",
                "lights is in two branches of the tree (first at line 30)",
            )
        ],
    ),
    "a unit mismatch in a sum": (
        ("    formula: main - plant - lights\n", "    formula: main - plant - water\n"),
        [
            (
                "energy.yaml",
                27,
                "energy.virtual[0].formula",
                "main (electricity kWh) and water (water m3) cannot be added",
            )
        ],
    ),
    "a bad formula": (
        ("    formula: main - plant - lights\n", "    formula: main * 2\n"),
        [
            (
                "energy.yaml",
                27,
                "energy.virtual[0].formula",
                "expected meter ids joined by + and -, such as 'main - plant - lighting'",
            )
        ],
    ),
}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_mistake_is_reported_at_its_line(tmp_path: Path, case: str) -> None:
    (old, new), expected = CASES[case]
    assert load(tmp_path, changed(old, new)) == expected


def test_a_cycle_among_virtual_meters_is_reported_once_at_its_first_member(
    tmp_path: Path,
) -> None:
    tree = "tree:\n  - parent: main\n    children: [plant, lights]\n    max_loss_pct: 3\n"
    energy = (
        changed(tree, "") + "  - id: a\n    formula: b + plant\n  - id: b\n    formula: rest - a\n"
    )
    got = load(tmp_path, energy)
    assert got == [
        (
            "energy.yaml",
            29,
            "energy.virtual[1].formula",
            "virtual meters that add up to themselves: a -> b -> a",
        )
    ]


def test_a_meter_below_itself_in_the_tree_is_reported(tmp_path: Path) -> None:
    energy = ENERGY + "  - parent: plant\n    children: [main]\n"
    got = load(tmp_path, energy)
    assert ("energy.yaml", 29, "energy.tree[0].parent", "main is below itself in the tree") in got
    assert ("energy.yaml", 32, "energy.tree[1].parent", "plant is below itself in the tree") in got
