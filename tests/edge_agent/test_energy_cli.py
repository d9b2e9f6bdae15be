"""`edge-agent energy` on a store whose history the test writes: the day's energy by meter,
virtual meter and category, a gap as missing (never zero), a rollover counted across."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from edge_agent.points import Batch, Reading, wall_ms
from edge_agent.store.outbox import Outbox, Record, TrafficClass
from tests.harness import run_cli

ENERGY = {
    "site": {"floor_area_m2": 1000, "beds": 10},
    "meters": [
        {"id": "main", "point": "m.main_kwh", "medium": "electricity", "unit": "kWh",
         "rollover": 10000},
        {"id": "plant", "point": "m.plant_kwh", "medium": "electricity", "unit": "kWh",
         "category": "air_conditioning", "sub_item": "plant"},
    ],
    "virtual": [{"id": "rest", "formula": "main - plant"}],
    "tree": [{"parent": "main", "children": ["plant"], "max_loss_pct": 80}],
}  # fmt: skip


def site(tmp_path: Path) -> Path:
    config = {
        "site": {"id": "s"}, "gateway": {"id": "g"},
        "uplink": {"endpoints": [{"host": "127.0.0.1", "port": 1883}]},
        "store": {"path": str(tmp_path / "outbox.db")},
        "devices": [{"id": "m", "driver": "fake", "poll_interval": "60s", "points": [
            {"id": "main_kwh", "unit": "kWh", "signal": {"value": 0}},
            {"id": "plant_kwh", "unit": "kWh", "signal": {"value": 0}},
        ]}],
        "energy": ENERGY,
    }  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_days_energy_by_meter_and_category(tmp_path: Path) -> None:
    now = wall_ms()
    local = datetime.fromtimestamp((now + 8 * 3_600_000) / 1000, UTC)
    midnight = (
        now
        - (local.hour * 3600 + local.minute * 60 + local.second) * 1000
        - local.microsecond // 1000
    )
    start = midnight - 600_000  # readings from ten minutes before local midnight
    polls = []
    main, plant = 9990.0, 100.0  # main rolls over at 10,000 within the day
    for ts in range(start, now, 60_000):
        main = (main + 1.0) % 10000  # 1 kWh a minute
        plant += 0.25
        polls.append(
            Record(
                TrafficClass.TELEMETRY,
                "m",
                ts,
                batch=Batch(
                    "m",
                    ts,
                    (Reading("main_kwh", round(main, 3), ts), Reading("plant_kwh", plant, ts)),
                ),
            )
        )
    box = Outbox(tmp_path / "outbox.db", 10**9, 30 * 86_400.0)
    box.append(polls)
    box.close()
    result = run_cli("energy", "--config", str(site(tmp_path)), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    lines = {line["id"]: line for line in report["meters"]}
    minutes = (now - midnight) / 60_000
    assert abs(lines["main"]["total"] - minutes) < 1.5  # the rollover counted across
    assert abs(lines["plant"]["total"] - minutes / 4) < 0.5
    assert abs(lines["rest"]["total"] - minutes * 0.75) < 1.5
    (category,) = report["categories"]
    assert category["id"] == "air_conditioning" and category["total"] == lines["plant"]["total"]
    assert report["indicators"]["kwh_per_bed"] == lines["main"]["total"] / 10
    assert all(not b["exceeded"] for b in report["balances"]["main"])
    piped = run_cli("energy", "--config", str(site(tmp_path)), "--png", str(tmp_path / "d.png"))
    assert piped.stdout.splitlines()[0].split("\t")[0] == "meter"
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_gap_is_missing_not_zero(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", 10**9, 30 * 86_400.0)
    box.close()  # an empty store: nothing read today
    report = json.loads(run_cli("energy", "--config", str(site(tmp_path)), "--json").stdout)
    assert all(line["total"] is None and line["quality"] == "missing" for line in report["meters"])


def test_no_energy_section_is_a_clear_error(tmp_path: Path) -> None:
    path = site(tmp_path)
    config = yaml.safe_load(path.read_text())
    del config["energy"]
    path.write_text(yaml.safe_dump(config))
    result = run_cli("energy", "--config", str(path))
    assert result.returncode == 1 and "energy" in result.stderr and "Traceback" not in result.stderr
