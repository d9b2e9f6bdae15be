"""`edge-agent config schema` (issue 12, item 12): the JSON Schema an editor checks site files
with as they are typed. It is generated from the loader's models; these tests hold it to the
loader: what the loader accepts, it accepts (the shipped configs and every file they include,
the demo's file, an effective configuration), and a wrong key or type the loader refuses, it
flags at the same place. Files are read as the YAML language server reads them when told
`!include` is a scalar tag: the tag's value is the file name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config, load_config_text
from edge_agent.config.schema import PARTS, schema
from tests.harness import REPO, run_cli

CONFIGS = REPO / "configs"
SITES = ["demo-site.yaml", "example-site.yaml", "hospital-site.yaml"]
# What each included file of configs/ holds. Every YAML file there is a site, one of these,
# or not site configuration at all (so a new file cannot go unchecked).
INCLUDED = {
    "devices/*.yaml": "devices",
    "points/*.yaml": "points-fake",
    "maps/*.modbus.yaml": "points-modbus",
    "maps/*.bacnet.yaml": "points-bacnet",
    "maps/*.dlt645.yaml": "points-dlt645",
    "alarms/*.yaml": "alarms",
    "control/hospital.yaml": "loops",
    "control/protection.yaml": "protection",
    "hj212/*.yaml": "hj212",
    "energy/*.yaml": "energy",
}
NOT_CONFIGURATION = {
    "sim/hospital.yaml": "the simulator's plant",
    "control/plant/schedule.yaml": "an optimizer's `plant:` (free-form in the schema)",
    "control/plant/points.yaml": "an optimizer's `points:` (roles, free-form in the schema)",
}


class EditorLoader(yaml.SafeLoader):
    """YAML as the language server sees it with `yaml.customTags: ["!include scalar"]`."""


EditorLoader.add_constructor("!include", lambda loader, node: loader.construct_scalar(node))


def read(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=EditorLoader)


def no_infinity(constant: str) -> float:
    raise AssertionError(f"{constant} is not JSON")


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft7Validator]:
    """Each part's schema as the command prints it: strict JSON, a valid draft-07 schema."""
    printed = {}
    for part in PARTS:
        result = run_cli("config", "schema", part)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        printed[part] = json.loads(result.stdout, parse_constant=no_infinity)
        jsonschema.Draft7Validator.check_schema(printed[part])
        assert printed[part] == schema(part)
    return {part: jsonschema.Draft7Validator(s) for part, s in printed.items()}


def problems(validator: jsonschema.Draft7Validator, data: Any) -> list[str]:
    return [f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(data)]


def test_the_default_part_is_the_site_file_and_a_wrong_part_is_a_usage_error() -> None:
    result = run_cli("config", "schema")
    assert result.returncode == 0 and json.loads(result.stdout) == schema("site")
    assert json.loads(result.stdout)["title"] == "edge-agent site configuration"
    result = run_cli("config", "schema", "point")
    assert result.returncode == 2 and result.stdout == ""
    assert "Error: Invalid value for '[PART]': 'point' is not one of 'site'," in result.stderr


@pytest.mark.parametrize("site", SITES)
def test_the_shipped_sites_validate_against_the_schema(validators: dict, site: str) -> None:
    load_config(CONFIGS / site)  # the loader accepts them: so must the schema
    assert problems(validators["site"], read(CONFIGS / site)) == []


def test_every_file_the_shipped_sites_include_validates_as_its_part(validators: dict) -> None:
    checked: dict[str, str] = {}
    for pattern, part in INCLUDED.items():
        for path in sorted(CONFIGS.glob(pattern)):
            checked[str(path.relative_to(CONFIGS))] = part
            assert problems(validators[part], read(path)) == [], path
    every = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml")}
    assert every == {*SITES, *checked, *NOT_CONFIGURATION}
    # Each part is used by some shipped file, and each map by the hospital site.
    assert set(checked.values()) == set(PARTS) - {"site"}
    hospital = (CONFIGS / "hospital-site.yaml").read_text()
    assert all(f"!include {name}" in hospital for name in checked if name.startswith("maps/"))


def test_the_demos_file_and_an_effective_configuration_validate(
    validators: dict, tmp_path: Path
) -> None:
    from edge_agent.demo import DEFAULT_CONFIG, _demo_config

    demo = _demo_config(DEFAULT_CONFIG, tmp_path, 1883, 9212)
    assert problems(validators["site"], read(demo)) == []
    # What `config show` prints: includes resolved, every default filled in (raw seconds,
    # bytes, `.inf` bounds of fake signals).
    effective = load_config(CONFIGS / "demo-site.yaml").model_dump(mode="json")
    assert problems(validators["site"], effective) == []
    effective = load_config(CONFIGS / "hospital-site.yaml").model_dump(mode="json")
    assert problems(validators["site"], effective) == []


SITE = """\
site: {id: st-marys}
gateway: {id: plant-b2}
uplink: {endpoints: [{host: broker-1}], keepalive: 30s}
store: {disk_budget: 2GiB}
devices:
  - id: chiller-1
    driver: modbus
    poll_interval: 5s
    connection: {transport: tcp, host: 10.0.4.21}
    points:
      - {id: kw, scale: 0.1, modbus: {table: input, address: 0, type: float32}}
      - {id: status, modbus: {address: 40001}}
  - id: ahu-1
    driver: fake
    points: [{id: sat, signal: {mode: walk, value: 14}}]
  - id: bms
    driver: bacnet
    connection: {local_address: 10.0.0.2/24, device_instance: 1, address: 10.0.0.3}
    points: [{id: load, bacnet: {object: analog-value, instance: 1}}]
alarms:
  - {id: chws-high, type: high, point: chiller-1.kw, limit: 9, on_delay: 1m}
"""

MISTAKES = [
    # (what is wrong, the edit, where the loader reports it)
    ("misspelt key", ("poll_interval: 5s", "pol_interval: 5s"), "devices[0].pol_interval"),
    ("text for a number", ("scale: 0.1", "scale: x"), "devices[0].points[0].scale"),
    ("unknown driver", ("driver: fake", "driver: profinet"), "devices[1].driver"),
    ("not a duration", ("poll_interval: 5s", "poll_interval: 5 ks"), "devices[0].poll_interval"),
    ("zero duration", ("keepalive: 30s", "keepalive: 0"), "uplink.keepalive"),
    ("not a size", ("disk_budget: 2GiB", "disk_budget: 2 parsecs"), "store.disk_budget"),
    ("unknown table", ("table: input", "table: inputs"), "devices[0].points[0].modbus.table"),
    ("unknown type", ("type: float32", "type: float"), "devices[0].points[0].modbus.type"),
    (
        "key of another driver",
        ("{id: sat, signal:", "{id: sat, modbus: {address: 0}, signal:"),
        "devices[1].points[0].modbus",
    ),
    (
        "transport's key missing",
        ("{transport: tcp, host: 10.0.4.21}", "{transport: tcp}"),
        "devices[0].connection.host",
    ),
    (
        "bacnet key missing",
        ("object: analog-value, instance: 1", "object: analog-value"),
        "devices[2].points[0].bacnet.instance",
    ),
    ("signal mode", ("mode: walk", "mode: wander"), "devices[1].points[0].signal.mode"),
    ("alarm type", ("type: high", "type: hihg"), "alarms[0].type"),
    ("list for a mapping", ("gateway: {id: plant-b2}", "gateway: [plant-b2]"), "gateway"),
    ("bad id", ("id: ahu-1", "id: ahu 1"), "devices[1].id"),
]


def schema_paths(validator: jsonschema.Draft7Validator, data: Any) -> set[str]:
    """Where the schema finds something wrong, as the loader writes paths: the deepest
    place of each error (through anyOf and if/then), with the key for an unknown or a
    missing key."""
    found: set[str] = set()

    def visit(error: jsonschema.ValidationError) -> None:
        if error.context:
            for sub in error.context:
                visit(sub)
            return
        at = list(error.absolute_path)
        if error.validator == "additionalProperties":
            keys = set(error.instance) - set(error.schema.get("properties", {}))
            found.update(loader_path([*at, key]) for key in keys)
        elif error.validator == "required":
            keys = [key for key in error.validator_value if key not in error.instance]
            found.update(loader_path([*at, key]) for key in keys)
        else:
            found.add(loader_path(at))

    for error in validator.iter_errors(data):
        visit(error)
    return found


def loader_path(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def test_the_base_site_is_valid_for_both(validators: dict) -> None:
    load_config_text(SITE, name="site.yaml")
    assert schema_paths(validators["site"], yaml.safe_load(SITE)) == set()


@pytest.mark.parametrize(("what", "edit", "path"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_wrong_key_or_type_is_flagged_by_the_schema_where_the_loader_reports_it(
    validators: dict, what: str, edit: tuple[str, str], path: str
) -> None:
    text = SITE.replace(*edit)
    assert text != SITE
    with pytest.raises(ConfigError) as refused:
        load_config_text(text, name="site.yaml")
    assert [issue.path for issue in refused.value.issues] == [path], str(refused.value)
    assert_flagged_at(schema_paths(validators["site"], yaml.safe_load(text)), path)


def assert_flagged_at(flagged: set[str], path: str) -> None:
    """Flagged at `path`, and nowhere else but at what holds it (a device is a device or an
    !include, so when the device is wrong the list item is flagged too)."""
    assert path in flagged, flagged
    others = {p for p in flagged if p != path}
    assert all(p == "" or path.startswith((p + ".", p + "[")) for p in others), flagged


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (("host: 10.0.4.21}", "host: 10.0.4.21, port: '502'}"), "devices[0].connection.port"),
        (("driver: fake", "driver: fake\n    enabled: 1"), "devices[1].enabled"),
        (("driver: fake", "driver: fake\n    enabled: 'yes'"), "devices[1].enabled"),
    ],
)
def test_the_schema_is_stricter_only_about_values_the_loader_converts(
    validators: dict, edit: tuple[str, str], path: str
) -> None:
    """The documented difference: the loader converts `"502"` and `1` for true, the schema
    wants them written as what they are."""
    text = SITE.replace(*edit)
    load_config_text(text, name="site.yaml")
    assert_flagged_at(schema_paths(validators["site"], yaml.safe_load(text)), path)


def test_an_included_file_is_checked_as_its_part_where_the_loader_reports_it(
    validators: dict, tmp_path: Path
) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "meter.yaml").write_text(
        "- {id: kw, modbus: {table: input, address: 0, type: float32}}\n"
        "- {id: kwh, scael: 0.1, modbus: {table: input, address: 2, type: uint32}}\n"
    )
    site = tmp_path / "site.yaml"
    site.write_text(
        SITE.replace(
            "      - {id: kw, scale: 0.1, modbus: {table: input, address: 0, type: float32}}\n"
            "      - {id: status, modbus: {address: 40001}}\n",
            "      !include maps/meter.yaml\n",
        ).replace("points:\n      !include", "points: !include")
    )
    assert problems(validators["site"], read(site)) == []  # the !include line itself
    with pytest.raises(ConfigError) as refused:
        load_config(site)
    [issue] = refused.value.issues
    assert (issue.file, issue.line, issue.path) == (
        str(tmp_path / "maps" / "meter.yaml"),
        2,
        "devices[0].points[1].scael",
    )
    flagged = schema_paths(validators["points-modbus"], read(tmp_path / "maps" / "meter.yaml"))
    assert_flagged_at(flagged, "[1].scael")
    # One point alone in a file is a point too (an included mapping becomes one item).
    one = yaml.safe_load("{id: kw, modbus: {table: input, address: 0}}")
    assert schema_paths(validators["points-modbus"], one) == set()


def test_the_documented_parts_are_the_commands() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    section = doc.split("## Editor completion: `config schema`")[1].split("\n## ")[0]
    table = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| `")]
    assert [cell.split("`")[1] for cell in table] == list(PARTS)
    loop = next(line for line in section.splitlines() if line.startswith("for part in"))
    assert loop.split(" in ")[1].split(";")[0].split() == list(PARTS)[1:]
    help_text = run_cli("config", "schema", "--help").stdout
    assert all(f"\n    {part} " in help_text for part in PARTS), help_text
