"""Guards against the mistakes integrators make in site configs (issue 12, items 8-12), as a
technician meets them: the real `edge-agent` entry point on real files, exit codes and the
file:line of every error and warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import fake_device, run_cli, site_config

HEAD = """\
site: {id: st-marys}
gateway: {id: plant-b2}
uplink: {endpoints: [{host: broker-1}]}
devices:
"""  # devices start at line 5

MODBUS_TCP = "{transport: tcp, host: 10.0.4.21}"
MODBUS_RTU = "{transport: rtu, port: /dev/ttyUSB0}"
MODBUS_RTU_TCP = "{transport: rtu-over-tcp, host: 10.0.4.30, port: 4001}"
BACNET = "{local_address: 10.0.0.2/24, device_instance: 1, address: 10.0.0.3}"
POINTS = {
    "modbus": "[{id: t, modbus: {address: 30001}}]",
    "bacnet": "[{id: t, bacnet: {object: analog-input, instance: 1}}]",
    "fake": "[{id: t}]",
}


def device(driver: str, interval: str, connection: str | None = None, **keys: str) -> str:
    """One device of five lines or more (poll_interval on its third line)."""
    lines = [f"  - id: dev-1\n    driver: {driver}\n    poll_interval: {interval}\n"]
    lines += [f"    {key}: {value}\n" for key, value in keys.items()]
    if connection:
        lines.append(f"    connection: {connection}\n")
    lines.append(f"    points: {POINTS[driver]}\n")
    return "".join(lines)


def validate(tmp_path: Path, text: str, *options: str) -> tuple[int, str, str, str]:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    result = run_cli("config", "validate", *options, str(path))
    return result.returncode, result.stdout, result.stderr, str(path)


# --- item 8: a floor under poll_interval, per driver ----------------------------------


@pytest.mark.parametrize(
    ("driver", "connection", "floor", "half", "what"),
    [
        ("modbus", MODBUS_TCP, "100ms", "50ms", "Modbus TCP"),
        ("modbus", MODBUS_RTU, "200ms", "100ms", "Modbus RTU"),
        ("modbus", MODBUS_RTU_TCP, "200ms", "100ms", "Modbus RTU over TCP"),
        ("bacnet", BACNET, "1s", "500ms", "BACnet"),
        ("fake", None, "10ms", "5ms", "the fake driver"),
    ],
)
def test_a_poll_interval_below_the_drivers_floor_is_refused_with_the_reason(
    tmp_path: Path, driver: str, connection: str | None, floor: str, half: str, what: str
) -> None:
    code, out, err, site = validate(tmp_path, HEAD + device(driver, "1ms", connection))
    assert (code, out) == (1, ""), err
    expected = (
        f"{site}:7 devices[0].poll_interval: poll_interval 1ms is shorter than {what} "
        f"allows ({floor}; did you mean 1s or 1m?): "
    )
    # One line, with its reason; not also "timeout (2s) must be shorter than ...".
    assert err.startswith(expected) and len(err.splitlines()) == 1, err
    assert len(err) > len(expected) + 40  # the reason follows

    code, out, err, _ = validate(tmp_path, HEAD + device(driver, floor, connection, timeout=half))
    assert (code, err) == (0, "") and out.startswith(f"OK {site}: 1 devices"), err


def test_the_fakes_floor_admits_what_the_tests_poll(tmp_path: Path) -> None:
    devices = [fake_device("fast", interval=0.02), fake_device("usual")]
    import yaml

    text = yaml.safe_dump(site_config(tmp_path, 1883, devices))
    code, out, err, _ = validate(tmp_path, text)
    assert (code, err) == (0, "") and out.startswith("OK ")


def test_a_long_hint_is_not_offered_for_a_deliberate_fast_poll(tmp_path: Path) -> None:
    code, _, err, site = validate(tmp_path, HEAD + device("bacnet", "500ms", BACNET))
    assert code == 1
    assert err.startswith(
        f"{site}:7 devices[0].poll_interval: poll_interval 500ms is shorter than BACnet "
        "allows (1s): BACnet controllers"
    ), err


# --- item 9: warnings, printed with file:line; exit 0 unless --strict ------------------


def test_a_timeout_over_half_the_poll_interval_is_a_warning(tmp_path: Path) -> None:
    text = HEAD + device("fake", "3s", timeout="2s")
    code, out, err, site = validate(tmp_path, text)
    assert code == 0, err
    assert out.startswith(f"OK {site}: 1 devices, 1 points, config hash ")
    assert out.rstrip().endswith("(1 warning(s))")
    assert err.splitlines() == [
        f"{site}:8 devices[0].timeout: warning: timeout (2s) is more than half of "
        "poll_interval (3s): an unanswered request (and its retries) takes up most of the "
        "interval, so polls start late or are skipped"
    ]
    code, out, err, _ = validate(tmp_path, text, "--strict")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == f"{site}: 1 warning(s), failing with --strict"
    # Exactly half is fine (what tests/harness.py's fake devices do).
    code, out, err, _ = validate(tmp_path, HEAD + device("fake", "4s", timeout="2s"))
    assert (code, err) == (0, "")


def test_validate_takes_several_files_and_fails_if_one_does(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(HEAD + device("fake", "5s"))
    bad.write_text(HEAD + device("fake", "5ms"))
    result = run_cli("config", "validate", str(good), str(bad))
    assert result.returncode == 1
    assert result.stdout.startswith(f"OK {good}: ") and str(bad) not in result.stdout
    assert result.stderr.startswith(f"{bad}:7 devices[0].poll_interval: ")
