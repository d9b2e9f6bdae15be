"""The shipped hospital rules, fed by the simulated plant room (simulators.plant.PlantRoom
in-process, its tags read as the agent's devices would report them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.alarms.engine import AlarmEngine
from edge_agent.config.loader import load_config
from edge_agent.config.models import AgentConfig
from edge_agent.points import Reading
from simulators.clock import SimClock
from simulators.config import ElectricalConfig, PlantConfig
from simulators.plant import PlantRoom
from simulators.sensors import SensorFault
from simulators.site import load_sim_config
from tests.edge_agent.alarms.rig import IDENTITY, T0, Rig, S

REPO = Path(__file__).resolve().parents[3]
STEP_S = 10  # one poll of every device per step


@pytest.fixture(scope="module")
def site() -> AgentConfig:
    return load_config(REPO / "configs" / "hospital-site.yaml")


def plant_config(**update: object) -> PlantConfig:
    sim, _ = load_sim_config(REPO / "configs" / "sim" / "hospital.yaml")
    return sim.plant.model_copy(update=update)


class Site:
    """The plant, polled like the agent polls it: each device's points as Readings."""

    def __init__(self, site: AgentConfig, rig: Rig, plant: PlantConfig) -> None:
        self.plant = PlantRoom(plant, seed=42, clock=SimClock(start=datetime(2026, 7, 15, 8)))
        self.engine = AlarmEngine(site.alarms, rig.records.append, rig.path, IDENTITY, now_ms=T0)
        self.devices = [(d.id, [p.id for p in d.points]) for d in site.devices]
        self.now = T0

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP_S)):
            self.plant.step(STEP_S)
            self.now += STEP_S * S
            for device, points in self.devices:
                readings = [
                    Reading(point, self.plant.read(f"{device}.{point}"), self.now)
                    for point in points
                ]
                self.engine.observe(device, readings, self.now)
            self.engine.tick(self.now)

    def raised(self) -> list[str]:
        return sorted(a["rule"] for a in self.engine.active())


def test_shipped_rules_load_and_cover_every_device(site: AgentConfig) -> None:
    rules = {r.id: r for r in site.alarms}
    assert len(rules) == len(site.alarms)  # unique ids
    comm = {r.point for r in site.alarms if r.type == "comm_loss"}
    assert comm == {d.id for d in site.devices}
    for expected in (
        "chw-supply-warm", "chiller-1-fault", "chiller-3-fault", "chw-pump-1-trip",
        "cw-pump-3-trip", "transformer-1-hot", "low-power-factor", "sewage-ph-low",
        "sewage-ph-high", "sewage-cod-high", "sewage-chlorine-low", "sewage-chlorine-high",
    ):  # fmt: skip
        assert expected in rules
    # GB 18466-2005 Table 2, pre-treatment standard.
    assert (rules["sewage-ph-low"].limit, rules["sewage-ph-high"].limit) == (6.0, 9.0)
    assert rules["sewage-cod-high"].limit == 250
    assert (rules["sewage-chlorine-low"].limit, rules["sewage-chlorine-high"].limit) == (2.0, 8.0)


def test_the_demo_site_has_alarms_too() -> None:
    assert len(load_config(REPO / "configs" / "demo-site.yaml").alarms) >= 2


def test_a_normal_day_raises_nothing(site: AgentConfig, rig: Rig) -> None:
    plant = Site(site, rig, plant_config())
    plant.run(24 * 3600)
    assert plant.raised() == [] and rig.records == []


def test_sewage_ph_fault_raises_the_gb18466_alarm(site: AgentConfig, rig: Rig) -> None:
    plant = Site(site, rig, plant_config())
    plant.run(600)
    plant.plant.inject("sewage.ph", SensorFault.offset(2.6))  # about 9.9: alkaline dosing fault
    plant.run(9 * 60)
    assert plant.raised() == []  # the 10-minute on_delay is not up yet
    plant.run(2 * 60)
    assert plant.raised() == ["sewage-ph-high"]
    [alarm] = plant.engine.active()
    assert alarm["severity"] == "major" and alarm["value"] > 9.0
    assert "GB 18466-2005" in alarm["message"]
    plant.plant.inject("sewage.ph", None)  # repaired: cleared after the off_delay
    plant.run(6 * 60)
    assert [(a["rule"], a["state"]) for a in plant.engine.active()] == [
        ("sewage-ph-high", "cleared")
    ]


def test_high_load_overheats_the_transformer(site: AgentConfig, rig: Rig) -> None:
    heavy = ElectricalConfig(other_load_base_kw=2200, other_load_peak_kw=2400)
    plant = Site(site, rig, plant_config(electrical=heavy))
    plant.run(3600)
    raised = plant.raised()
    assert "transformer-1-hot" in raised
    assert set(raised) <= {"transformer-1-hot", "transformer-1-trip-temp"}
    first = rig.messages()[0]
    assert first["rule"] == "transformer-1-hot" and first["value"] > 130


def test_a_pump_that_stops_while_commanded_on_is_a_trip(site: AgentConfig, rig: Rig) -> None:
    plant = Site(site, rig, plant_config())
    plant.run(60)
    plant.plant.inject("chw-pump-2.run_status", SensorFault.stuck(False))  # drive tripped
    plant.run(30)  # first seen stopped 10 s after the trip; on_delay is 30 s
    assert plant.raised() == []
    plant.run(10)
    assert plant.raised() == ["chw-pump-2-trip"]
    assert plant.engine.active()[0]["message"].startswith("Chilled-water pump 2 tripped")
