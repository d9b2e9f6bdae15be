from __future__ import annotations

import pytest

from simulators.sensors import SensorFault
from tests.simulators.helpers import make_plant, run

TAG = "plant.chws_temp"


def test_stuck_sensor_changes_only_its_reported_value() -> None:
    faulty, healthy = make_plant(seed=4), make_plant(seed=4)
    faulty.inject(TAG, SensorFault.stuck(5.0))
    faulty.inject("chiller-1.run_status", SensorFault.stuck(False))
    for plant in (faulty, healthy):
        plant.write("plant.chws_setpoint", 9.0)
        run(plant, 1800.0)
    assert faulty.read(TAG) == 5.0
    assert faulty.read("chiller-1.run_status") is False
    assert faulty.read_true(TAG) == healthy.read(TAG) > 8.0
    a, b = faulty.snapshot(), healthy.snapshot()
    differing = {tag for tag in a if a[tag] != b[tag]}
    assert differing == {TAG, "chiller-1.run_status"}


def test_stuck_defaults_to_the_value_at_injection() -> None:
    plant = make_plant()
    value = plant.read(TAG)
    plant.inject(TAG, SensorFault.stuck())
    plant.write("plant.chws_setpoint", 10.0)
    run(plant, 1800.0)
    assert plant.read(TAG) == value != plant.read_true(TAG)


def test_drift_grows_with_time_since_injection() -> None:
    plant = make_plant(seed=1)
    run(plant, 600.0)
    plant.inject(TAG, SensorFault.drift(2.0))
    run(plant, 1800.0)
    assert plant.read(TAG) - plant.read_true(TAG) == pytest.approx(1.0)


def test_noise_and_offset_are_deterministic_and_clearable() -> None:
    readings = []
    for _ in range(2):
        plant = make_plant(seed=9)
        plant.inject("weather.dry_bulb", SensorFault.noise(0.5))
        plant.inject(TAG, SensorFault.offset(-0.8))
        errors = []
        for _ in range(50):
            plant.step(1.0)
            errors.append(plant.read("weather.dry_bulb") - plant.read_true("weather.dry_bulb"))
        assert plant.read(TAG) - plant.read_true(TAG) == pytest.approx(-0.8)
        readings.append(errors)
        plant.inject(TAG, None)
        assert plant.read(TAG) == plant.read_true(TAG)
    assert readings[0] == readings[1]
    assert 0.2 < max(abs(e) for e in readings[0]) < 3.0


def test_faults_only_on_sensors() -> None:
    plant = make_plant()
    with pytest.raises(ValueError):
        plant.inject("plant.chws_setpoint", SensorFault.stuck(7.0))
    with pytest.raises(ValueError):
        plant.inject("chiller-1.run_status", SensorFault.drift(1.0))
    with pytest.raises(ValueError):
        SensorFault("bogus")  # type: ignore[arg-type]
