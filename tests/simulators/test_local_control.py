from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulators.config import PIGains, PlantConfig, TowerConfig, WeatherConfig
from simulators.equipment import TowerCell
from simulators.local_control import FAN_RESTART_BAND_PCT, CondenserLoop, PIController
from simulators.plant import PlantRoom
from tests.simulators.helpers import make_plant, run

HOSPITAL = Path(__file__).parents[2] / "configs" / "sim" / "hospital.yaml"
# A steady wet bulb, so that only the setpoints move the condenser water.
WET_BULB = 26.0
STEADY = WeatherConfig(
    dry_bulb_min=31.0, dry_bulb_max=31.0, wet_bulb_min=WET_BULB, wet_bulb_max=WET_BULB,
    noise_k=0.0,
)  # fmt: skip
CHW_PUMPS = ("chw-pump-1", "chw-pump-2")


def _plant(**control: bool) -> PlantRoom:
    """4 MW steady load on a steady day, the given local loops on, settled for 20 minutes."""
    plant = make_plant(constant_kw=4000.0, weather=STEADY)
    for tag, on in control.items():
        plant.write(f"plant.{tag}", on)
    run(plant, 1200.0)
    return plant


def _settling_time(plant: PlantRoom, tag: str, target: float, band: float, seconds: float) -> float:
    """Run for `seconds`; the last time `tag` was outside target ± band (0: never)."""
    last_outside, elapsed = 0.0, 0.0
    while elapsed < seconds:
        plant.step(10.0)
        elapsed += 10.0
        if abs(plant.read(tag) - target) > band:
            last_outside = elapsed
    return last_outside


# --- differential pressure -----------------------------------------------------------------


def test_dp_setpoint_step_settles_and_pump_power_follows() -> None:
    plant = _plant(dp_control=True)
    assert plant.read("plant.dp") == pytest.approx(80.0, abs=1.0)
    power = {80.0: plant.read("plant.pump_power_kw")}
    for setpoint in (50.0, 120.0):
        plant.write("plant.dp_setpoint", setpoint)
        assert _settling_time(plant, "plant.dp", setpoint, 2.0, 900.0) < 300.0
        power[setpoint] = plant.read("plant.pump_power_kw")
    assert power[50.0] < power[80.0] < power[120.0]
    # The drives' output is the loop's; the command keeps what was last written.
    assert plant.read("chw-pump-1.speed_cmd") == 80.0
    assert plant.read("chw-pump-1.speed") == pytest.approx(plant.read("chw-pump-2.speed"))
    assert plant.read("chw-pump-1.speed") != pytest.approx(80.0, abs=1.0)


def test_with_dp_control_off_the_speed_command_rules() -> None:
    plant = _plant(dp_control=True)
    plant.write("plant.dp_control", False)
    for pump in CHW_PUMPS:
        plant.write(f"{pump}.speed_cmd", 95.0)
    run(plant, 600.0)
    assert plant.read("chw-pump-1.speed") == 95.0
    assert plant.read("plant.dp") > 150.0  # nobody holds the 80 kPa setpoint any more


def test_dp_control_keeps_the_run_commands() -> None:
    plant = _plant(dp_control=True)
    shared = plant.read("chw-pump-1.speed")
    plant.write("chw-pump-2.enable", False)  # one pump now carries the flow alone
    assert _settling_time(plant, "plant.dp", 80.0, 2.0, 900.0) < 300.0
    assert plant.read("chw-pump-2.run_status") is False
    assert plant.read("chw-pump-1.speed") > shared
    plant.write("chw-pump-2.enable", True)  # joins at the loop's speed
    assert _settling_time(plant, "plant.dp", 80.0, 2.0, 900.0) < 300.0
    assert plant.read("chw-pump-2.speed") == pytest.approx(plant.read("chw-pump-1.speed"))
    assert plant.read("chw-pump-1.speed") == pytest.approx(shared, abs=0.5)


# --- condenser water -------------------------------------------------------------------------


def test_raising_the_condenser_setpoint_trades_fan_power_for_chiller_power() -> None:
    results = {}
    for setpoint in (29.0, 32.0):
        plant = _plant(cw_control=True, dp_control=True)
        plant.write("plant.cws_setpoint", setpoint)
        assert _settling_time(plant, "plant.cws_temp", setpoint, 0.2, 1800.0) < 900.0
        results[setpoint] = plant.read("plant.tower_power_kw"), plant.read("plant.chiller_power_kw")
        assert plant.read("tower-1.fan_speed_cmd") == 70.0  # untouched by the loop
    (fans_low, chillers_low), (fans_high, chillers_high) = results[29.0], results[32.0]
    assert fans_high < 0.5 * fans_low
    assert chillers_high > chillers_low


def test_with_cw_control_off_the_fan_command_rules() -> None:
    plant = _plant(cw_control=True)
    plant.write("plant.cw_control", False)
    plant.write("tower-1.fan_speed_cmd", 45.0)
    run(plant, 120.0)
    assert plant.read("tower-1.fan_speed") == 45.0
    assert plant.read("tower-2.fan_speed") == 70.0


def test_a_cell_commanded_off_stays_off_under_cw_control() -> None:
    plant = _plant(cw_control=True)
    plant.write("tower-3.fan_speed_cmd", 0.0)
    plant.write("plant.cws_setpoint", 29.0)
    run(plant, 600.0)
    assert plant.read("tower-3.fan_run") is False
    assert plant.read("tower-1.fan_speed") > 20.0


def test_fans_stop_below_their_minimum_and_restart_above_a_band() -> None:
    cells = [TowerCell(TowerConfig(id=f"t{n}")) for n in (1, 2)]
    loop = CondenserLoop(PIGains(kp=1.0, ti_s=1e9), cells)  # proportional only: output = error
    speeds = []
    for output in (30.0, 21.0, 19.0, 22.0, 24.0, 20.0 + FAN_RESTART_BAND_PCT, 21.0):
        loop.pi.integral = 0.0
        loop.step(True, output, 1.0)
        speeds.append(cells[0].target_speed())
    assert speeds == pytest.approx([30.0, 21.0, 0.0, 0.0, 0.0, 25.0, 21.0])
    assert cells[1].target_speed() == pytest.approx(21.0)


# --- both loops ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loop", "setpoint", "unreachable", "reachable", "measured", "band", "drive"),
    [
        ("dp_control", "plant.dp_setpoint", 300.0, 80.0, "plant.dp", 2.0, "chw-pump-1.speed"),
        (
            "cw_control",
            "plant.cws_setpoint",
            15.0,
            30.0,
            "plant.cws_temp",
            0.2,
            "tower-1.fan_speed",
        ),
    ],
)
def test_loop_recovers_promptly_after_an_unreachable_setpoint(
    loop: str,
    setpoint: str,
    unreachable: float,
    reachable: float,
    measured: str,
    band: float,
    drive: str,
) -> None:
    plant = _plant(**{loop: True})
    plant.write(setpoint, unreachable)  # DP above what full speed gives; CW below wet bulb
    run(plant, 1800.0)
    assert plant.read(drive) == 100.0
    plant.write(setpoint, reachable)
    run(plant, 30.0)
    assert plant.read(drive) < 100.0  # off the limit at once: nothing wound up
    assert _settling_time(plant, measured, reachable, band, 1200.0) < 420.0


def test_pi_integral_is_clamped_and_tracking_is_bumpless() -> None:
    pi = PIController(PIGains(kp=2.0, ti_s=10.0))
    for _ in range(1000):
        assert pi.update(5.0, 1.0, 0.0, 100.0) <= 100.0
    assert pi.integral == 100.0
    assert pi.update(-1.0, 1.0, 0.0, 100.0) == pytest.approx(100.0 - 2.0 - 0.2)
    pi.track(40.0, 3.0)
    assert pi.update(3.0, 0.0, 0.0, 100.0) == 40.0


def test_taking_over_is_bumpless_and_deterministic() -> None:
    plants = [_plant(), _plant()]
    for plant in plants:
        before = plant.read("chw-pump-1.speed")
        plant.write("plant.dp_control", True)
        plant.write("plant.cw_control", True)
        plant.step(1.0)  # one second of integral action; a proportional kick would be ~4 %
        assert plant.read("chw-pump-1.speed") == pytest.approx(before, abs=1.0)
        run(plant, 600.0)
    assert plants[0].snapshot() == plants[1].snapshot()


def test_tags_and_defaults() -> None:
    plant = make_plant()
    for tag in ("plant.dp_control", "plant.cw_control"):
        assert plant.tags[tag].kind == "binary" and plant.tags[tag].writable
        assert plant.read(tag) is False  # model default: today's behaviour, commands rule
        with pytest.raises(ValueError):
            plant.write(tag, 2)
    shipped = PlantConfig.model_validate(yaml.safe_load(HOSPITAL.read_text())["plant"])
    assert shipped.dp_control and shipped.cw_control
    assert PlantRoom(shipped).read("plant.dp_control") is True
