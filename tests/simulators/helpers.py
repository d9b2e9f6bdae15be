from __future__ import annotations

from datetime import datetime

from simulators.clock import SimClock
from simulators.config import LoadConfig, PlantConfig, WeatherConfig
from simulators.plant import PlantRoom

START = datetime(2026, 7, 15, 0, 0)


def make_plant(
    *,
    seed: int = 0,
    hour: float = 0.0,
    constant_kw: float | None = None,
    weather: WeatherConfig | None = None,
) -> PlantRoom:
    """A plant starting at `hour` on a fixed date; optionally a fixed load, quiet weather."""
    update: dict[str, object] = {}
    if constant_kw is not None:
        update["load"] = LoadConfig(constant_kw=constant_kw)
    if weather is not None:
        update["weather"] = weather
    config = PlantConfig.model_validate(update)
    clock = SimClock(start=START)
    plant = PlantRoom(config, seed=seed, clock=clock)
    if hour:
        plant.step(hour * 3600.0)
    return plant


def run(plant: PlantRoom, seconds: float, dt: float = 10.0) -> None:
    for _ in range(round(seconds / dt)):
        plant.step(dt)
