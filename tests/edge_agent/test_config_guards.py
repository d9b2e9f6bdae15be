"""Guards against the mistakes integrators make in site configs (issue 12, items 8-12), as a
technician meets them: the real `edge-agent` entry point on real files, exit codes and the
file:line of every error and warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import REPO, fake_device, run_cli, site_config

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


MODBUS_DEVICE = """\
  - id: chiller-1
    driver: modbus
    connection: {transport: tcp, host: 10.0.4.21}
    points:
"""  # points start at line 9


def modbus_points(*points: str) -> str:
    return HEAD + MODBUS_DEVICE + "".join(f"      - {p}\n" for p in points)


def test_partially_overlapping_multi_register_values_are_an_error(tmp_path: Path) -> None:
    text = modbus_points(
        "{id: kw, modbus: {table: input, address: 0, type: float32}}",
        "{id: kwh, modbus: {table: input, address: 1, type: float32}}",  # off by one
        "{id: pf, modbus: {table: input, address: 3, type: float32}}",  # 3-4: fine
        "{id: sp, modbus: {table: holding, address: 1, type: float32}}",  # another table
    )
    code, out, err, site = validate(tmp_path, text)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{site}:10 devices[0].points[1].modbus.address: float32 at input registers 1-2 "
        "overlaps 'kw' (float32 at input registers 0-1): two values cannot share registers; "
        "check the address (float32 takes 2 registers) (first at line 9)"
    ]


def test_reading_the_same_registers_twice_is_a_warning(tmp_path: Path) -> None:
    text = modbus_points(
        "{id: kw, modbus: {table: input, address: 0, type: float32}}",
        "{id: kw_scaled, scale: 0.001, modbus: {table: input, address: 0, type: float32}}",
        "{id: kw_copy, modbus: {table: input, address: 0, type: float32}}",
        "{id: kw_low, modbus: {table: input, address: 1}}",  # one word of kw
        "{id: status, modbus: {table: holding, address: 10}}",
        "{id: bit1, kind: binary, modbus: {table: holding, address: 10, type: bit, bit: 1}}",
        "{id: bit2, kind: binary, modbus: {table: holding, address: 10, type: bit, bit: 2}}",
        "{id: bit1b, kind: binary, modbus: {table: holding, address: 10, type: bit, bit: 1}}",
        "{id: run, kind: binary, modbus: {table: coil, address: 0}}",
        "{id: run2, kind: binary, modbus: {table: coil, address: 0}}",
    )
    code, out, err, site = validate(tmp_path, text)
    assert code == 0 and out.rstrip().endswith("(5 warning(s))"), err
    assert err.splitlines() == [
        f"{site}:10 devices[0].points[1].modbus.address: warning: reads input registers 0-1 "
        "as 'kw' does (fine for a second view of one value, e.g. raw and scaled; otherwise "
        "check the address) (first at line 9)",
        f"{site}:11 devices[0].points[2].modbus.address: warning: reads input registers 0-1 "
        "as 'kw' does, the same way (a copied point whose address was not changed?) "
        "(first at line 9)",
        f"{site}:12 devices[0].points[3].modbus.address: warning: input register 1 is part of "
        "'kw' (float32 at input registers 0-1): one register of a larger value is rarely "
        "meant on its own; check the address (first at line 9)",
        f"{site}:16 devices[0].points[7].modbus.address: warning: reads the same bit (1 of "
        "holding register 10) as 'bit1' (first at line 14)",
        f"{site}:18 devices[0].points[9].modbus.address: warning: reads coil 0 as 'run' does, "
        "the same way (a copied point whose address was not changed?) (first at line 17)",
    ]
    code, _, err, _ = validate(tmp_path, text, "--strict")
    assert code == 1 and err.endswith("5 warning(s), failing with --strict\n")


def test_overlaps_are_found_in_included_maps_with_their_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "meter.modbus.yaml").write_text(
        "- {id: v, modbus: {address: 30001, type: float32}}\n"
        "- {id: a, modbus: {address: 30002, type: float32}}\n"  # Modicon: input 1
    )
    text = HEAD + MODBUS_DEVICE.replace(
        "    points:\n", "    points: !include maps/meter.modbus.yaml\n"
    )
    code, _, err, _ = validate(tmp_path, text)
    assert code == 1
    assert err.startswith(
        f"{tmp_path}/maps/meter.modbus.yaml:2 devices[0].points[1].modbus.address: float32 at "
        "input registers 1-2 overlaps 'v' (float32 at input registers 0-1)"
    ), err
    assert err.rstrip().endswith("(first at line 1)")


def test_a_bacnet_property_read_twice_is_a_warning(tmp_path: Path) -> None:
    text = HEAD + (
        "  - id: ahu-1\n    driver: bacnet\n"
        f"    connection: {BACNET}\n"
        "    points:\n"
        "      - {id: sat, bacnet: {object: analog-input, instance: 1}}\n"
        "      - {id: rat, bacnet: {object: analog-input, instance: 1}}\n"
    )
    code, _, err, site = validate(tmp_path, text)
    assert code == 0
    assert err == (
        f"{site}:10 devices[0].points[1].bacnet.instance: warning: reads analog-input 1 "
        "present-value as 'sat' does, the same way (a copied point whose instance was not "
        "changed?) (first at line 9)\n"
    )


def test_a_device_copied_without_changing_its_unit_is_a_warning(tmp_path: Path) -> None:
    one = "{transport: tcp, host: plc-a.plant, unit: 2}"
    text = (
        HEAD
        + device("modbus", "5s", one).replace("dev-1", "chiller-1")
        # host names are case-insensitive
        + device("modbus", "5s", one.replace("plc-a", "PLC-A")).replace("dev-1", "chiller-2")
        + device("modbus", "5s", one.replace("unit: 2", "unit: 3")).replace("dev-1", "chiller-3")
        + device("modbus", "5s", one, enabled="false").replace("dev-1", "old-chiller")
    )
    code, _, err, site = validate(tmp_path, text)
    assert code == 0
    assert err == (
        f"{site}:13 devices[1].connection: warning: polls the same device as 'chiller-1' (tcp "
        "plc-a.plant:502 unit 2): a copied device whose unit or address was not changed? (fine "
        "if one device is polled at two rates) (first at line 8)\n"
    )


def test_alarms_on_points_never_polled_and_comm_loss_faster_than_polls(tmp_path: Path) -> None:
    text = (
        HEAD
        + device("fake", "5s").replace("dev-1", "ahu-1")
        + device("fake", "5s", enabled="false").replace("dev-1", "ahu-2")
        + "alarms:\n"
        "  - {id: hot, type: high, point: ahu-2.t, limit: 30}\n"
        "  - {id: spare, type: high, point: ahu-2.t, limit: 30, enabled: false}\n"
        "  - {id: comm-1, type: comm_loss, point: ahu-1, duration: 8s}\n"
        "  - {id: comm-2, type: comm_loss, point: ahu-1, duration: 5s}\n"
        "  - {id: comm-3, type: comm_loss, point: ahu-1, duration: 10s}\n"
    )
    code, _, err, site = validate(tmp_path, text)
    assert code == 0
    assert err.splitlines() == [
        f"{site}:15 alarms[0].point: warning: ahu-2 is not polled (enabled: false): this "
        "alarm rule never sees a value of ahu-2.t",
        f"{site}:17 alarms[2].duration: warning: duration (8s) is shorter than two poll "
        "intervals of ahu-1 (5s each): one late poll raises the alarm",
        f"{site}:18 alarms[3].duration: warning: duration (5s) is not longer than the poll "
        "interval of ahu-1 (5s): the alarm is raised between every two polls",
    ]


def test_the_shipped_configs_validate_without_warnings() -> None:
    files = sorted(str(p) for p in (REPO / "configs").glob("*.yaml"))
    result = run_cli("config", "validate", "--strict", *files)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.count("OK ") == len(files)


def test_a_loop_reading_a_device_never_polled_is_a_warning(tmp_path: Path) -> None:
    text = HEAD + (
        "  - id: ahu-1\n    driver: fake\n    points:\n"
        "      - {id: valve, writable: true, limits: {min: 0, max: 100}}\n"
        "  - id: ahu-2\n    driver: fake\n    enabled: false\n    points: [{id: sat}]\n"
        "loops:\n"
        "  - id: sat-1\n    type: pid\n    measurement: ahu-2.sat\n    setpoint: 13.0\n"
        "    output: ahu-1.valve\n    kp: 8\n"
    )
    code, _, err, site = validate(tmp_path, text)
    assert code == 0, err
    assert err == (
        f"{site}:16 loops[0].measurement: warning: ahu-2 is not polled (enabled: false): this "
        "loop never sees a value of ahu-2.sat\n"
    )


# --- item 10: !include stays inside the configuration's folder -------------------------

# The real entry point, with an audit hook that reports every file opened outside `outside`
# (by its real path: a symbolic link inside the folder does not hide where it leads).
WATCH = """
import os, sys
outside = os.path.realpath(sys.argv[1])
busy = []
def hook(event, args):
    if event == "open" and not busy and isinstance(args[0], (str, bytes, os.PathLike)):
        busy.append(1)
        try:
            real = os.path.realpath(os.fsdecode(args[0]))
            if real == outside or real.startswith(outside + os.sep):
                print("OPENED", real, file=sys.stderr)
        finally:
            busy.pop()
sys.addaudithook(hook)
from edge_agent.cli import main
main(sys.argv[2:])
"""


def run_watched(outside: Path, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", WATCH, str(outside), *args],
        capture_output=True, text=True, cwd=cwd or REPO, timeout=60, env=env,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def site_dir(tmp_path: Path) -> tuple[Path, Path]:
    """(the configuration's folder, a folder beside it with a valid points file)."""
    site, outside = tmp_path / "site", tmp_path / "outside"
    site.mkdir()
    outside.mkdir()
    (outside / "points.yaml").write_text("- {id: secret-point}\n")
    return site, outside


OUTSIDE_MESSAGE = (
    "is outside the configuration's folder {folder!r}: an !include must stay within it "
    "(through '..' and symbolic links too)"
)


@pytest.mark.parametrize("target", ["/etc/hostname", "../outside/points.yaml", "{outside}"])
def test_an_include_outside_the_folder_is_refused_unread(
    site_dir: tuple[Path, Path], target: str
) -> None:
    site, outside = site_dir
    target = target.format(outside=outside / "points.yaml")
    (site / "site.yaml").write_text(
        HEAD + f"  - id: ahu-1\n    driver: fake\n    points: !include {target}\n"
    )
    watched = Path("/etc/hostname") if target == "/etc/hostname" else outside
    code, out, err = run_watched(watched, "config", "validate", str(site / "site.yaml"))
    assert (code, out) == (1, "")
    shown = os.path.normpath(Path(site, target))
    assert err.splitlines() == [
        f"{site}/site.yaml:7 devices[0].points: included file {shown!r} "
        + OUTSIDE_MESSAGE.format(folder=str(site))
    ], err
    assert "OPENED" not in err and "secret" not in err


def test_a_symbolic_link_out_of_the_folder_is_refused_unread(site_dir: tuple[Path, Path]) -> None:
    site, outside = site_dir
    (site / "maps").mkdir()
    (site / "maps" / "ahu.yaml").symlink_to(outside / "points.yaml")
    (site / "maps" / "escape").symlink_to(outside)
    (site / "inside.yaml").write_text("- {id: t}\n")
    (site / "maps" / "alias.yaml").symlink_to(site / "inside.yaml")  # stays inside: fine
    (site / "site.yaml").write_text(
        HEAD
        + "  - {id: ahu-1, driver: fake, points: !include maps/ahu.yaml}\n"
        + "  - {id: ahu-2, driver: fake, points: !include maps/escape/points.yaml}\n"
        + "  - {id: ahu-3, driver: fake, points: !include maps/alias.yaml}\n"
    )
    code, out, err = run_watched(outside, "config", "validate", str(site / "site.yaml"))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{site}/site.yaml:5 devices[0].points: included file '{site}/maps/ahu.yaml' "
        + OUTSIDE_MESSAGE.format(folder=str(site)),
        f"{site}/site.yaml:6 devices[1].points: included file "
        f"'{site}/maps/escape/points.yaml' " + OUTSIDE_MESSAGE.format(folder=str(site)),
    ], err


def test_includes_may_climb_within_the_folder_but_not_out_of_it(
    site_dir: tuple[Path, Path],
) -> None:
    site, outside = site_dir
    (site / "devices").mkdir()
    (site / "points").mkdir()
    (site / "points" / "pump.yaml").write_text("- {id: speed}\n")
    (site / "devices" / "pump.yaml").write_text(
        "id: pump-1\ndriver: fake\npoints: !include ../points/pump.yaml\n"
    )
    (site / "devices" / "fan.yaml").write_text(
        "id: fan-1\ndriver: fake\npoints: !include ../../outside/points.yaml\n"
    )
    (site / "site.yaml").write_text(
        HEAD + "  - !include devices/pump.yaml\n  - !include devices/fan.yaml\n"
    )
    code, out, err = run_watched(outside, "config", "validate", str(site / "site.yaml"))
    assert (code, out) == (1, "")
    # Reported in the file that includes, at its line.
    assert err.splitlines() == [
        f"{site}/devices/fan.yaml:3 devices[1].points: included file "
        f"'{outside}/points.yaml' " + OUTSIDE_MESSAGE.format(folder=str(site))
    ], err
    # An absolute path into the folder is fine; the folder of a relative FILE is its own.
    (site / "site.yaml").write_text(HEAD + f"  - !include {site}/devices/pump.yaml\n")
    code, out, err = run_watched(outside, "config", "validate", "site.yaml", cwd=site)
    assert (code, err) == (0, "") and out.startswith("OK site.yaml: 1 devices")


# --- item 11: config diff names what changed -------------------------------------------

OLD_SITE = """\
site: {id: st-marys}
gateway: {id: plant-b2}
uplink: {endpoints: [{host: broker-1}], keepalive: 30s}
store: {disk_budget: 2GiB}
links: [{id: bus-1}]
devices:
  - id: chiller-1
    driver: modbus
    poll_interval: 5s
    connection: {transport: tcp, host: 10.0.4.21}
    points:
      - {id: kw, modbus: {table: input, address: 0, type: float32}}
      - {id: chws_temp, scale: 0.1, modbus: {table: input, address: 2}}
  - id: ahu-1
    driver: fake
    points: [{id: sat}, {id: rat}]
  - id: ahu-2
    driver: fake
    points: [{id: sat}]
  - id: meter
    driver: fake
    points: [{id: kw}]
alarms:
  - {id: chws-high, type: high, point: chiller-1.chws_temp, limit: 9, on_delay: 1m}
"""

NEW_SITE = """\
site: {id: st-marys}
gateway: {id: plant-b2}
uplink: {endpoints: [{host: broker-1}], keepalive: 1m, tls: {ca: /etc/ca.pem}}
store: {disk_budget: 500MB}
links: [{id: bus-1, gap: 5ms}]
devices:
  - id: chiller-1
    driver: modbus
    poll_interval: 10s
    connection: {transport: tcp, host: 10.0.4.22}
    points:
      - {id: chws_sp, writable: true, limits: {min: 5, max: 12},
         modbus: {table: holding, address: 0}}
      - {id: kw, modbus: {table: input, address: 0, type: float32}}
      - {id: chws_temp, scale: 0.01, modbus: {table: input, address: 2}}
  - id: ahu-2
    driver: fake
    points: [{id: sat}]
  - id: ahu-1
    driver: fake
    link: bus-1
    points: [{id: sat}, {id: rat}]
  - id: meter
    driver: modbus
    connection: {transport: rtu, port: /dev/ttyUSB0}
    points: [{id: kw, modbus: {address: 30001}}]
alarms:
  - {id: chws-high, type: high, point: chiller-1.chws_temp, limit: 9.5, on_delay: 90s}
"""


def test_config_diff_names_each_change_by_device_point_and_key(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD_SITE)
    new.write_text(NEW_SITE)
    result = run_cli("config", "diff", str(new), "--against", str(old))
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "uplink.tls none -> {ca: /etc/ca.pem, cert: null, insecure: false, key: null}",
        "uplink.keepalive 30s -> 1m",
        "store.disk_budget 2GiB -> 500MB",
        "links.bus-1.gap 0s -> 5ms",
        "chiller-1.poll_interval 5s -> 10s",
        "chiller-1.chws_sp added (point)",
        "chiller-1.chws_temp.scale 0.1 -> 0.01",
        "chiller-1.connection.host 10.0.4.21 -> 10.0.4.22",
        "ahu-1.link none -> bus-1",
        "meter replaced (fake device, 1 point(s) -> modbus device, 1 point(s))",
        "devices: order changed",
        "alarms.chws-high.limit 9 -> 9.5",
        "alarms.chws-high.on_delay 1m -> 90s",
        f"13 change(s) from {old} to {new}",
    ]
    # A removed device, and no difference at all.
    fewer = tmp_path / "fewer.yaml"
    fewer.write_text(
        OLD_SITE.replace("  - id: ahu-2\n    driver: fake\n    points: [{id: sat}]\n", "")
    )
    result = run_cli("config", "diff", str(fewer), "--against", str(old))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "ahu-2 removed (fake device, 1 point(s))"
    result = run_cli("config", "diff", str(old), "--against", str(old))
    assert (result.returncode, result.stdout) == (
        0,
        f"no difference: {old} is the configuration of {old}\n",
    )
