"""`edge-agent discover modbus|bacnet` and `edge-agent logs` through the real entry point
(.venv/bin/edge-agent as a subprocess), against real servers over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from edge_agent import logs
from edge_agent.local_api import LocalServer
from edge_agent.local_logs import logs_handler
from simulators.modbus_server import DictTagSource
from tests.drivers.bacnet.conftest import OBJECTS
from tests.drivers.bacnet.sim import SimProcess, free_udp_port
from tests.drivers.bacnet.test_discovery import CLIENT_IP, DEVICE_IP, netns  # noqa: F401
from tests.drivers.modbus.test_discovery import MAP, VALUES, CountingServer, needs_serial

REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "edge-agent")


async def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run the CLI without blocking the event loop (the servers run in it)."""
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def one_error_line(done: Any) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- discover modbus ------------------------------------------------------------------------


@pytest.fixture
async def tcp() -> AsyncIterator[CountingServer]:
    async with CountingServer({1: MAP, 3: MAP}, DictTagSource(VALUES), strict=True) as server:
        yield server


async def test_discover_modbus_json(tcp: CountingServer) -> None:
    done = await cli(
        "discover", "modbus", "--host", "127.0.0.1", "--port", str(tcp.port),
        "--units", "1-3", "--range", "0-199", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["target"] == f"tcp://127.0.0.1:{tcp.port}"
    units = {u["unit"]: u for u in found["units"]}
    assert [units[u]["present"] for u in (1, 2, 3)] == [True, False, True]
    for unit in (1, 3):
        assert units[unit]["complete"]
        assert {t: v["readable"] for t, v in units[unit]["tables"].items()} == {
            "holding": [[0, 9], [20, 21], [50, 52], [199, 199]],
            "input": [[5, 7]],
            "coil": [[0, 2], [10, 10]],
            "discrete": [],
        }
        assert units[unit]["requests"] == tcp.requests[unit]


async def test_discover_modbus_table_and_budget(tcp: CountingServer) -> None:
    done = await cli(
        "discover", "modbus", "--host", "127.0.0.1", "--port", str(tcp.port),
        "--units", "1,2", "--tables", "holding", "--range", "0-199", "--max-requests", "30",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert tcp.requests[1] == 30 and tcp.requests[2] == 1
    assert "0-9, 20-21" in done.stdout
    assert "request budget spent" in done.stdout
    assert "No answer from unit(s) 2." in done.stdout


async def test_discover_modbus_errors_are_one_line() -> None:
    with socket.socket() as sock:  # bound, not listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        done = await cli("discover", "modbus", "--host", "127.0.0.1", "--port", str(port))
    assert one_error_line(done) == (
        f"error: cannot connect to tcp://127.0.0.1:{port}: "
        "connection refused (nothing listens on that port)"
    )
    assert done.returncode == 1
    bad = [
        (["--range", "10-5"], "error: --range '10-5': 10 is greater than 5"),
        (["--units", "1-x"], "error: --units '1-x': expected N or N-M (e.g. 0-9)"),
        (["--tables", "holding,regs"], "unknown table 'regs'"),
        (["--timeout", "fast"], "Invalid value for '--timeout'"),
        ([], "give either --host HOST (Modbus TCP) or --serial PORT (Modbus RTU)"),
    ]
    for args, message in bad:
        target = [] if not args else ["--host", "127.0.0.1"]
        done = await cli("discover", "modbus", *target, *args)
        assert message in one_error_line(done), (args, done.stderr)


@needs_serial
async def test_discover_modbus_over_rtu(pty_pair: tuple[str, str]) -> None:
    server_end, client_end = pty_pair
    server = CountingServer(
        {4: MAP}, DictTagSource(VALUES), transport="rtu", serial_port=server_end, strict=True
    )
    await server.start()
    try:
        done = await cli(
            "discover", "modbus", "--serial", client_end, "--baudrate", "19200",
            "--units", "3-4", "--tables", "input,holding", "--range", "0-30",
            "--timeout", "0.2", "--json",
        )  # fmt: skip
    finally:
        await server.stop()
    assert done.returncode == 0, done.stderr
    three, four = json.loads(done.stdout)["units"]
    assert (three["present"], three["answer"]) == (False, "timeout")
    assert four["tables"]["input"]["readable"] == [[5, 7]]
    assert four["tables"]["holding"]["readable"] == [[0, 9], [20, 21]]


@needs_serial
async def test_serial_port_busy_and_permission_denied(pty_pair: tuple[str, str]) -> None:
    import serial

    _, client_end = pty_pair
    holder = serial.Serial(client_end, exclusive=True)  # as the running agent holds its bus
    try:
        done = await cli("discover", "modbus", "--serial", client_end)
    finally:
        holder.close()
    assert one_error_line(done) == (
        f"error: cannot open serial port {client_end}: "
        "port busy (is the agent or another tool using it?)"
    )
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("permission denied needs root (to drop to nobody) and setpriv")
    # nobody must reach the venv (a checkout under mktemp -d, mode 0700, is out of reach).
    closed = [d for d in Path(CLI).parents if not os.stat(d).st_mode & stat.S_IXOTH]
    if closed:
        pytest.skip(f"user nobody cannot reach {CLI} ({closed[0]} is closed to others)")
    device = os.path.realpath(client_end)  # /dev/pts/N: root's, mode 0620
    proc = await asyncio.create_subprocess_exec(
        setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
        CLI, "discover", "modbus", "--serial", device,
        cwd="/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    done = subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())
    assert one_error_line(done) == (
        f"error: cannot open serial port {device}: "
        "permission denied (is your user in the dialout group?)"
    )


# -- discover bacnet ------------------------------------------------------------------------


def test_discover_bacnet_in_network_namespaces(
    netns: tuple[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    client, device = netns
    sim = SimProcess(
        tmp_path / "map.json",
        OBJECTS,
        instance=5005,
        address=DEVICE_IP,
        prefix=("ip", "netns", "exec", device),
    ).start()
    try:
        run = ["ip", "netns", "exec", client, CLI, "discover", "bacnet", "--address", CLIENT_IP]
        found = subprocess.run(
            [*run, "--timeout", "1", "--json"], capture_output=True, text=True, timeout=30
        )
        table = subprocess.run(
            [*run, "--timeout", "1", "--low", "5000", "--high", "5010"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        outside = subprocess.run(
            [*run, "--timeout", "1", "--low", "1", "--high", "10"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        chinese = subprocess.run(
            [*run, "--timeout", "1"], capture_output=True, text=True, timeout=30, env=ZH
        )
    finally:
        sim.stop()
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == [
        {"instance": 5005, "address": "198.51.100.2", "vendor": 999, "name": "sim-5005"}
    ]
    assert table.returncode == 0, table.stderr
    assert "5005" in table.stdout and "198.51.100.2" in table.stdout
    assert "sim-5005" in table.stdout
    assert outside.returncode == 0 and "No BACnet device answered" in outside.stdout
    assert chinese.returncode == 0, chinese.stderr
    lines = fits_80(chinese.stdout)
    assert lines[0] == "BACnet 设备（1 台）"
    assert lines[1].split() == ["实例号", "地址", "厂商", "名称"]
    assert lines[3].split() == ["5005", "198.51.100.2", "999", "sim-5005"]
    assert column_of(lines[3], "198.51") == column_of(lines[1], "地址")


async def test_discover_bacnet_errors_are_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:  # as a running agent
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = await cli("discover", "bacnet", "--address", "127.0.0.1/8", "--port", str(port))
    assert "port busy (is the agent running?" in one_error_line(done)
    for args, message in [
        (["--address", "127.0.0.1"], "give an IPv4 address with its prefix"),
        (["--address", "nonsense/24"], "is not an IPv4 address"),
        (["--address", "203.0.113.7/24"], "this machine has no such address"),
        (["--interface", "no-such-if0"], "no network interface 'no-such-if0'"),
        (["--address", "127.0.0.1/8", "--low", "5"], "give both --low and --high"),
        ([], "give either --address"),
    ]:
        done = await cli("discover", "bacnet", *args, "--port", str(free_udp_port()))
        assert message in one_error_line(done), (args, done.stderr)


async def test_discover_bacnet_nobody_answers_on_loopback() -> None:
    # Broadcast does not reach other stacks on loopback (see PITFALLS): an empty result,
    # said plainly, exit 0.
    done = await cli(
        "discover", "bacnet", "--interface", "lo", "--port", str(free_udp_port()),
        "--timeout", "0.3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "No BACnet device answered within 0.3 s." in done.stdout


# -- logs -----------------------------------------------------------------------------------


@pytest.fixture
def agent_logging() -> Iterator[logs.RecentLogs]:
    """This process logs as the agent does (JSON, ring buffer); restored afterwards."""
    saved = structlog.get_config()
    logs.configure("debug", json=True)
    yield logs.BUFFER
    logs.restore_stdlib()
    structlog.configure(**saved)


@pytest.fixture
async def agent(tmp_path: Path, agent_logging: logs.RecentLogs) -> AsyncIterator[Path]:
    path = tmp_path / "agent.sock"
    server = LocalServer(path, {"logs": logs_handler})
    task = asyncio.create_task(server.run())
    for _ in range(200):
        if path.exists():
            break
        await asyncio.sleep(0.01)
    yield path
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_logs_from_the_running_agent(agent: Path) -> None:
    log = logs.get("test")
    log.info("poll done", device="chiller-1", requests=3)
    log.warning("device down", device="ahu-2", reason="timeout")
    log.debug("detail")
    log.error("store full", free_mb=0)
    done = await cli("logs", "--socket", str(agent), "-n", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert "warning" in lines[0] and "device down" in lines[0] and "device=ahu-2" in lines[0]
    assert "debug" in lines[1] and "detail" in lines[1]
    assert "error" in lines[2] and "store full" in lines[2] and "free_mb=0" in lines[2]
    assert "\x1b[" not in done.stdout  # no colour codes into a pipe

    done = await cli("logs", "--socket", str(agent), "--level", "WARNING", "--json")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["level"], r["event"]) for r in records][-2:] == [
        ("warning", "device down"),
        ("error", "store full"),
    ]
    assert all(r["level"] in ("warning", "error", "critical") for r in records)

    done = await cli("logs", "--socket", str(agent), "--level", "loud")
    assert "unknown level 'loud'" in one_error_line(done)


async def test_logs_since(agent: Path) -> None:
    log = logs.get("test")
    for i in range(150):
        log.info("since test", n=i)
    # With --since and no -n: every record from then on (more than -n's default of 100).
    done = await cli("logs", "--socket", str(agent), "--since", "10m")
    assert done.returncode == 0, done.stderr
    assert sum("since test" in line for line in done.stdout.splitlines()) == 150
    done = await cli("logs", "--socket", str(agent), "--since", "1h30m", "-n", "2")
    assert [line.split("n=")[-1] for line in done.stdout.splitlines()] == ["148", "149"]
    done = await cli("logs", "--socket", str(agent), "--since", "tomorrow")
    assert done.returncode == 0 and done.stdout == ""
    done = await cli("logs", "--socket", str(agent), "--since", "90")
    assert done.returncode == 2
    assert "'--since': '90': a bare number is ambiguous" in one_error_line(done)


async def test_logs_from_an_agent_without_the_logs_request(tmp_path: Path) -> None:
    async def status(request: dict[str, Any]) -> dict[str, Any]:
        return {"uplink": "up"}

    path = tmp_path / "old.sock"
    task = asyncio.create_task(LocalServer(path, {"status": status}).run())
    try:
        for _ in range(200):
            if path.exists():
                break
            await asyncio.sleep(0.01)
        done = await cli("logs", "--socket", str(path))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "does not serve its logs" in one_error_line(done)


async def test_logs_follow(agent: Path) -> None:
    log = logs.get("test")
    log.info("before")
    proc = await asyncio.create_subprocess_exec(
        CLI, "logs", "--socket", str(agent), "-n", "1", "--follow",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert b"before" in first
        log.warning("while following", n=1)
        log.info("and after", n=2)
        second = await asyncio.wait_for(proc.stdout.readline(), 10)
        third = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert b"while following" in second and b"and after" in third
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


def _env_with_path(path: str) -> dict[str, str]:
    return {**os.environ, "PATH": path}


async def test_logs_without_an_agent_and_without_journalctl(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    done = await cli("logs", "--socket", str(sock), env=_env_with_path(str(tmp_path)))
    assert done.returncode == 3
    line = one_error_line(done)
    assert f"the agent is not running (no socket at {sock})" in line
    assert "journalctl -u edge-agent" in line


async def test_logs_without_an_agent_reads_the_journal(tmp_path: Path) -> None:
    # journald does not run in the test container, so a stand-in journalctl prints what the
    # journal of an agent holds (its JSON lines and a crash's traceback) and its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv"
    journal = [
        json.dumps({"event": "started", "level": "info", "timestamp": "T1"}),
        json.dumps({"event": "uplink down", "level": "warning", "timestamp": "T2"}),
        "Traceback (most recent call last): boom",
        json.dumps({"event": "stopping", "level": "info", "timestamp": "T3"}),
    ]
    stand_in = bin_dir / "journalctl"
    stand_in.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(argv_file)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"print({chr(10).join(journal)!r})\n"
    )
    stand_in.chmod(0o755)
    env = _env_with_path(f"{bin_dir}:/usr/bin:/bin")
    sock = tmp_path / "agent.sock"

    done = await cli("logs", "--socket", str(sock), "-n", "50", env=env)
    assert done.returncode == 0, done.stderr
    assert argv_file.read_text() == "-u edge-agent -n 50 --no-pager -o cat"
    assert "the agent is not running" in done.stderr
    shown = done.stdout.splitlines()
    assert len(shown) == 4 and "uplink down" in shown[1] and "boom" in shown[2]

    done = await cli("logs", "--socket", str(sock), "-n", "50", "--level", "warning", env=env)
    assert done.returncode == 0, done.stderr
    assert argv_file.read_text() == "-u edge-agent -n 2000 --no-pager -o cat"
    shown = done.stdout.splitlines()
    assert len(shown) == 2 and "uplink down" in shown[0] and "boom" in shown[1]

    done = await cli("logs", "--socket", str(sock), "--since", "@1764892800", env=env)
    assert done.returncode == 0, done.stderr
    assert argv_file.read_text() == "-u edge-agent --no-pager -o cat --since=@1764892800.000"

    sock.touch()  # a socket file left behind by a dead agent: also "not running"
    done = await cli("logs", "--socket", str(sock), "-n", "1", env=env)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1


# -- the ring buffer and the handler --------------------------------------------------------


def test_ring_buffer_keeps_the_last_records() -> None:
    buf = logs.RecentLogs(size=5)
    for i in range(8):
        buf.keep(None, "info", {"event": f"e{i}", "level": "warning" if i % 2 else "info"})
    assert [r["event"] for r in buf.recent(100)] == ["e3", "e4", "e5", "e6", "e7"]
    assert [r["event"] for r in buf.recent(2)] == ["e6", "e7"]
    assert [r["event"] for r in buf.recent(100, "warning")] == ["e3", "e5", "e7"]
    assert [r["event"] for r in buf.recent(100, after=6)] == ["e6", "e7"]
    assert buf.last_seq == 8
    with pytest.raises(ValueError, match="unknown level"):
        buf.recent(1, "loud")


def test_ring_buffer_copies_what_the_renderer_may_change() -> None:
    buf = logs.RecentLogs()
    event = {"event": "x", "level": "info", "timestamp": "t"}
    assert buf.keep(None, "info", event) is event
    event.pop("timestamp")  # what structlog's ConsoleRenderer does
    (kept,) = buf.recent(1)
    assert kept["timestamp"] == "t"
    kept["event"] = "changed by a caller"
    assert buf.recent(1)[0]["event"] == "x"


async def test_logs_handler_answers_bad_requests(agent_logging: logs.RecentLogs) -> None:
    logs.get("t").warning("one")
    answer = await logs_handler({"cmd": "logs", "n": 1})
    assert [r["event"] for r in answer["records"]] == ["one"]
    assert answer["last"] == answer["records"][0]["seq"]
    for bad in ({"n": -1}, {"n": "ten"}, {"level": "loud"}, {"after": "x"}, {"level": 3}):
        answer = await logs_handler({"cmd": "logs", **bad})
        assert answer["ok"] is False and answer["error"] == "bad_request", bad


# -- in Chinese and in English --------------------------------------------------------------

ZH = {**os.environ, "LANG": "zh_CN.UTF-8", "NO_COLOR": "1", "COLUMNS": "80"}
EN = {**os.environ, "LANG": "en_US.UTF-8", "NO_COLOR": "1", "COLUMNS": "80"}


def fits_80(text: str) -> list[str]:
    """The lines as an 80-column console shows them, measured in cells (Chinese: 2)."""
    from rich.cells import cell_len

    lines = text.splitlines()
    assert lines
    assert not [line for line in lines if cell_len(line) > 80], text
    return lines


def column_of(line: str, token: str) -> int:
    from rich.cells import cell_len

    return cell_len(line[: line.index(token)])


async def test_discover_modbus_in_chinese_and_english(tcp: CountingServer) -> None:
    """The table's headings, notes and summary in the site's language; the columns line up
    by cells (a Chinese heading is two cells a character); the machine words (tables,
    ranges) as they are in the config."""
    args = ["discover", "modbus", "--host", "127.0.0.1", "--port", str(tcp.port), "--units",
            "1,2", "--tables", "holding,input", "--range", "0-199",
            "--max-requests", "30"]  # fmt: skip
    zh = await cli(*args, env=ZH)
    assert zh.returncode == 0, zh.stderr
    lines = fits_80(zh.stdout)
    assert lines[0] == f"tcp://127.0.0.1:{tcp.port} 上的 Modbus 单元"
    heading = next(line for line in lines if "单元号" in line)
    assert heading.split() == ["单元号", "数据区", "可读地址", "数量", "备注"]
    row = next(line for line in lines if "0-9, 20-21" in line)
    assert row.split()[:2] == ["1", "holding"]
    assert column_of(row, "0-9") == column_of(heading, "可读地址")
    assert "请求次数已用完：" in zh.stdout and "未扫描" in zh.stdout
    assert "单元 2 无应答。" in zh.stdout
    assert "秒内共 31 次请求。" in zh.stdout
    assert "request" not in zh.stdout and "answer" not in zh.stdout

    en = await cli(*args, env=EN)
    assert en.returncode == 0, en.stderr
    lines = fits_80(en.stdout)
    assert lines[0] == f"Modbus units on tcp://127.0.0.1:{tcp.port}"
    heading = next(line for line in lines if "Unit" in line)
    assert heading.split() == ["Unit", "Table", "Readable", "addresses", "Count", "Notes"]
    assert "request budget spent: " in en.stdout and "No answer from unit(s) 2." in en.stdout
    assert "31 requests in " in en.stdout


def test_the_scan_notes_shown_translated_are_the_drivers_own() -> None:
    """field.SCAN_NOTES are the texts drivers.modbus.discovery sets as a table's note (a
    driver cannot translate: the CLI does, and only texts it knows)."""
    import re

    from edge_agent.cli import field

    source = (REPO / "drivers" / "modbus" / "discovery.py").read_text()
    assert set(re.findall(r'scan\.note = "([^"{]+)"', source)) == set(field.SCAN_NOTES)


async def test_usage_errors_of_the_field_tools_exit_2_in_both_languages() -> None:
    port = str(free_udp_port())
    cases = [
        (["discover", "modbus"], "give either --host HOST (Modbus TCP) or --serial PORT",
         "请给出 --host 主机（Modbus TCP）或 --serial 串口（Modbus RTU），二选一"),
        (["discover", "modbus", "--host", "127.0.0.1", "--range", "10-5"],
         "--range '10-5': 10 is greater than 5", "--range '10-5'：10 大于 5"),
        (["discover", "bacnet", "--address", "127.0.0.1/8", "--low", "5", "--port", port],
         "give both --low and --high, or neither", "--low 和 --high 要么都给出，要么都不给"),
        (["discover", "bacnet", "--address", "127.0.0.1/8", "--low", "9", "--high", "5"],
         "--low 9 is greater than --high 5", "--low 9 大于 --high 5"),
        (["discover", "bacnet", "--address", "127.0.0.1", "--port", port],
         "give an IPv4 address with its prefix", "请给出带前缀的 IPv4 地址"),
        (["discover", "bacnet", "--interface", "lo", "--address", "127.0.0.1/8"],
         "give either --address ADDRESS/PREFIX or --interface NAME",
         "请给出 --address 地址/前缀 或 --interface 网卡名，二选一"),
        (["logs", "--socket", "/nonexistent/agent.sock", "--level", "loud"],
         "--level: unknown level 'loud'", "--level：未知的级别 'loud'"),
    ]  # fmt: skip
    for args, english, chinese in cases:
        en = await cli(*args, env=EN)
        assert en.returncode == 2, (args, en.stderr)
        assert english in one_error_line(en), (args, en.stderr)
        zh = await cli(*args, env=ZH)
        assert zh.returncode == 2, (args, zh.stderr)
        assert zh.stderr.startswith("错误：") and chinese in zh.stderr, (args, zh.stderr)
        assert len(zh.stderr.splitlines()) == 1 and "Traceback" not in zh.stderr
    # Not usage: an interface that is none exits 1, said in the site's language.
    zh = await cli("discover", "bacnet", "--interface", "no-such-if0", env=ZH)
    assert (zh.returncode, zh.stderr.strip()) == (1, "错误：没有网卡 'no-such-if0'")


async def test_discover_bacnet_nobody_answers_in_chinese() -> None:
    done = await cli(
        "discover", "bacnet", "--interface", "lo", "--port", str(free_udp_port()),
        "--timeout", "0.3", env=ZH,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0.3 秒内没有 BACnet 设备应答。\n"


async def test_logs_without_an_agent_in_chinese(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    done = await cli("logs", "--socket", str(sock), env={**ZH, "PATH": str(tmp_path)})
    assert done.returncode == 3
    assert done.stderr.startswith(f"错误：代理未运行（{sock} 处没有套接字）；作为服务运行时")
    assert "journalctl -u edge-agent" in done.stderr and len(done.stderr.splitlines()) == 1
