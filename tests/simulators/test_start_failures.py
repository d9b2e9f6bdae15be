"""`python -m simulators` when a device server cannot start: it exits 3 within seconds with
one line on stderr naming the device, protocol, address and port, no traceback, and stops
what had started (no socat left behind). Real sockets, real subprocesses."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import REPO

SIM_CONFIG = REPO / "configs" / "sim" / "hospital.yaml"
EXIT_START = 3  # docs/simulator.md
NOT_HERE = "192.0.2.1"  # TEST-NET-1: never an address of this machine

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")


def _config(tmp_path: Path, modbus: dict | None = None, bacnet: dict | None = None) -> Path:
    """The shipped simulator config on ephemeral ports and a private pty; `modbus` /
    `bacnet` map a server or device id to the keys to change."""
    sim = yaml.safe_load(SIM_CONFIG.read_text())
    for server in sim["modbus"]:
        for unit in server["units"]:
            unit["map"] = str((SIM_CONFIG.parent / unit["map"]).resolve())
        if server["transport"] == "rtu":
            server["pty"] = str(tmp_path / server["id"])
        else:
            server["port"] = 0
        server.update((modbus or {}).get(server["id"], {}))
    for device in sim["bacnet"]:
        device["map"] = str((SIM_CONFIG.parent / device["map"]).resolve())
        device["address"] = "127.0.0.1:0"
        device.update((bacnet or {}).get(device["id"], {}))
    for bus in sim.get("dlt645", ()):
        for meter in bus["meters"]:
            meter["map"] = str((SIM_CONFIG.parent / meter["map"]).resolve())
        bus["pty"] = str(tmp_path / bus["id"])
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(sim))
    return path


def _simulate(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulators", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _fails(config: Path, env: dict[str, str] | None = None) -> str:
    """Run the simulator; it must exit 3 within 10 s with one stderr line, which is returned."""
    process = _simulate(config, env)
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"the simulator kept running: {stderr}")
    lines = stderr.strip().splitlines()
    assert process.returncode == EXIT_START, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _socats(tmp_path: Path) -> list[str]:
    """socat processes serving a pty under tmp_path (an orphan would be one)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"socat") and str(tmp_path).encode() in b" ".join(argv):
            found.append(pid)
    return found


def _assert_cleaned_up(tmp_path: Path) -> None:
    assert not _socats(tmp_path)
    assert not (tmp_path / "rs485-1").exists() and not (tmp_path / "rs485-1.sim").exists()


@pytest.fixture(autouse=True)
def _no_orphans(tmp_path: Path) -> Iterator[None]:
    """A failing test must not leave a socat behind (the bug these tests are about)."""
    yield
    for pid in _socats(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    """A port held by another program: a real listening TCP socket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.mark.parametrize(
    ("server", "transport"), [("chillers", "tcp"), ("sewage-serial-server", "rtu-over-tcp")]
)
def test_a_taken_modbus_port_exits_3_naming_the_server_and_port(
    tmp_path, tcp_listener, server, transport
):
    port = tcp_listener.getsockname()[1]
    line = _fails(_config(tmp_path, modbus={server: {"port": port}}))
    assert f"modbus server {server} ({transport})" in line
    assert f"127.0.0.1:{port}" in line and "Address already in use" in line
    _assert_cleaned_up(tmp_path)  # the pty pair had started before the server failed


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_taken_bacnet_port_exits_3_naming_the_device_and_address(tmp_path, reuse_port):
    """SO_REUSEPORT is how another bacpypes3 simulator holds it: bacpypes3 alone would share
    the port with it silently."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        if reuse_port:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        line = _fails(_config(tmp_path, bacnet={"bms": {"address": address}}))
    assert f"bacnet device bms (instance 3100) cannot bind udp {address}" in line
    assert "Address already in use" in line
    _assert_cleaned_up(tmp_path)  # every Modbus server and the pty pair had started


def test_a_bacnet_address_not_of_this_machine_exits_3(tmp_path):
    address = f"{NOT_HERE}:47808"
    line = _fails(_config(tmp_path, bacnet={"chiller-3": {"address": address}}))
    assert f"bacnet device chiller-3 (instance 3003) cannot bind udp {address}" in line
    assert "Cannot assign requested address" in line
    _assert_cleaned_up(tmp_path)


def test_a_malformed_bacnet_address_exits_3(tmp_path):
    line = _fails(_config(tmp_path, bacnet={"bms": {"address": "127.0.0.1:port"}}))
    assert "bacnet device bms (instance 3100) cannot bind udp 127.0.0.1:port: bad port" in line


@pytest.mark.parametrize(
    ("host", "why"),
    [(NOT_HERE, "Cannot assign requested address"), ("no-such-host.invalid", "unknown host")],
)
def test_a_bad_modbus_bind_address_exits_3(tmp_path, host, why):
    line = _fails(_config(tmp_path, modbus={"plant-plc": {"host": host, "port": 15022}}))
    assert f"modbus server plant-plc (tcp) cannot listen on {host}:15022: {why}" in line
    _assert_cleaned_up(tmp_path)


def test_without_socat_the_rtu_server_exits_3(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no socat on it
    line = _fails(_config(tmp_path), env)
    assert f"modbus server rs485-1 (rtu) cannot create pty pair {tmp_path / 'rs485-1'}" in line
    assert "socat is not installed" in line


def test_a_pty_path_that_cannot_be_created_exits_3(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    pty = blocker / "rs485-1"  # its parent is a file
    line = _fails(_config(tmp_path, modbus={"rs485-1": {"pty": str(pty)}}))
    assert f"modbus server rs485-1 (rtu) cannot create pty pair {pty}" in line


def test_a_second_simulator_on_the_same_config_exits_3_and_leaves_the_first_alone(tmp_path):
    """Two socats on one link path: the second would silently take the pty over."""
    config = _config(tmp_path)
    first = _simulate(config)
    try:
        assert "simulator ready" in first.stderr.readline()
        pty = tmp_path / "rs485-1"
        target = os.readlink(pty)
        line = _fails(config)
        assert f"modbus server rs485-1 (rtu) cannot create pty pair {pty}" in line
        assert "already exists" in line
        assert first.poll() is None and os.readlink(pty) == target
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
    _assert_cleaned_up(tmp_path)


def test_a_good_config_starts_and_stops_cleanly_on_sigterm(tmp_path):
    process = _simulate(_config(tmp_path))
    started = time.monotonic()
    try:
        line = process.stderr.readline()
        assert line.startswith("simulator ready: modbus chillers tcp:"), line
        assert time.monotonic() - started < 10
        assert (tmp_path / "rs485-1").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=10)
    assert process.returncode == 0 and "Traceback" not in rest, rest
    _assert_cleaned_up(tmp_path)


def test_a_killed_simulator_leaves_no_socat(tmp_path):
    process = _simulate(_config(tmp_path))
    try:
        assert "simulator ready" in process.stderr.readline()
        assert _socats(tmp_path)
    finally:
        process.kill()
        process.communicate(timeout=10)
    deadline = time.monotonic() + 5
    while _socats(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _socats(tmp_path)
