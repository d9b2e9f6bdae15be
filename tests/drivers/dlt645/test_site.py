"""The simulated plant's DL/T 645 sub-meters (configs/sim/hospital.yaml's second RS-485
bus) read through the driver with the agent's own maps, on a private pty."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml

from edge_agent.config.loader import load_config
from edge_agent.points import Quality
from simulators.site import PlantSite, SimConfig
from tests.harness import REPO

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")


async def test_hospital_sub_meters_through_the_driver(tmp_path: Path, make_driver) -> None:
    shipped = yaml.safe_load((REPO / "configs/sim/hospital.yaml").read_text())
    (bus,) = shipped["dlt645"]
    bus["pty"] = str(tmp_path / "rs485-2")
    site = PlantSite(
        SimConfig.model_validate({"dlt645": [bus], "speed": 1e-6}), REPO / "configs/sim"
    )
    agent = load_config(REPO / "configs/hospital-site.yaml")
    meters = [d for d in agent.devices if d.driver == "dlt645"]
    assert {d.id for d in meters} == {"meter-lighting", "meter-kitchen"}
    ready = asyncio.Event()
    task = asyncio.create_task(site.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        site.plant.step(600.0)  # ten simulated minutes: counters above zero
        for meter in meters:
            conn = meter.connection.model_copy(update={"port": bus["pty"]})
            driver = await make_driver(meter.model_copy(update={"connection": conn}))
            readings = await driver.read(meter.points)
            assert all(r.quality is Quality.GOOD for r in readings), readings
            for reading, point in zip(readings, meter.points, strict=True):
                fmt = point.dlt645.data_format
                truth = site.plant.read(f"{meter.id}.{point.id}")
                assert reading.value == pytest.approx(truth, abs=10**-fmt.decimals / 2 + 1e-9)
            energy = next(r for r in readings if r.point == "energy_kwh")
            assert energy.value > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
