"""The agent as a systemd service: sd_notify, the watchdog, the unit file, install-service."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent import install, sd_notify, watchdog
from edge_agent.cli import main
from edge_agent.service import supervise
from tests.harness import REPO, AgentProcess, fake_device, site_config

UNIT = REPO / "systemd" / "edge-agent.service"
VENV_AGENT = Path(sys.prefix) / "bin" / "edge-agent"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


# -- sd_notify ------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(sock.recv(4096).decode())
    return messages


def test_notify_sends_datagrams_to_the_socket(notify_socket: socket.socket) -> None:
    assert sd_notify.notify("READY=1\nSTATUS=polling 3 devices")
    assert sd_notify.notify("WATCHDOG=1")
    assert received(notify_socket) == ["READY=1\nSTATUS=polling 3 devices", "WATCHDOG=1"]


@pytest.mark.timeout(10)
def test_notify_never_blocks_on_a_full_queue(notify_socket: socket.socket) -> None:
    started = time.monotonic()
    results = [sd_notify.notify("WATCHDOG=1") for _ in range(5000)]  # nobody reads
    assert results[0] is True and results[-1] is False  # dropped, not blocked
    assert time.monotonic() - started < 5


def test_notify_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edge-agent-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.notify("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_notify_without_systemd_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sd_notify.notify("READY=1") is False  # never raises into the agent


# -- watchdog -------------------------------------------------------------------------------


def test_interval_is_half_of_watchdog_usec() -> None:
    pid = str(os.getpid())
    assert watchdog.interval_from_env({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog.interval_from_env({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": pid}) == 0.1
    assert watchdog.interval_from_env({}) is None
    assert watchdog.interval_from_env({"WATCHDOG_USEC": "0"}) is None
    assert watchdog.interval_from_env({"WATCHDOG_USEC": "soon"}) is None
    # Set for another process (we are its child): not ours to feed.
    assert watchdog.interval_from_env({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}) is None


async def test_no_watchdog_usec_means_the_task_does_nothing(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(watchdog.run(lambda: None), 1.0)  # returns at once
    assert received(notify_socket) == []


async def test_pings_only_while_healthy(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    health: dict[str, str | None] = {"reason": None}
    task = asyncio.create_task(watchdog.run(lambda: health["reason"]))
    try:
        await asyncio.sleep(0.2)
        healthy = received(notify_socket)
        assert 5 <= healthy.count("WATCHDOG=1") <= 12

        health["reason"] = "store failing for 60 s: disk I/O error"
        await asyncio.sleep(0.05)
        received(notify_socket)  # at most one ping raced the change
        await asyncio.sleep(0.2)
        assert received(notify_socket) == []  # no pings, and the status said why only once

        health["reason"] = None
        await asyncio.sleep(0.1)
        resumed = received(notify_socket)
        assert resumed.count("WATCHDOG=1") >= 3
        assert "STATUS=running" in resumed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stalled_main_loop_stops_the_pings(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pings come from the event loop itself: a main loop blocked by anything (a
    runaway computation, a blocking call) stops them, and systemd restarts the agent."""
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    task = asyncio.create_task(watchdog.run(lambda: None))
    try:
        await asyncio.sleep(0.1)
        assert "WATCHDOG=1" in received(notify_socket)
        time.sleep(0.3)  # the loop is stuck: 15 ping intervals pass
        assert received(notify_socket) == []
        await asyncio.sleep(0.1)
        assert "WATCHDOG=1" in received(notify_socket)  # it pings again once unblocked
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_unhealthy_sets_status_once(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = asyncio.create_task(watchdog.run(lambda: "uplink task ended", interval=0.02))
    await asyncio.sleep(0.15)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert received(notify_socket) == ["STATUS=unhealthy: uplink task ended"]


async def test_a_raising_health_check_counts_as_unhealthy(
    notify_socket: socket.socket,
) -> None:
    def broken() -> str | None:
        raise KeyError("error")

    task = asyncio.create_task(watchdog.run(broken, interval=0.02))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    messages = received(notify_socket)
    assert "WATCHDOG=1" not in messages
    assert messages[0].startswith("STATUS=unhealthy: health check failed: KeyError")


class NoEvents:
    def emit(self, *_args: object, **_fields: object) -> None:
        pass


async def test_runtime_health_store_uplink_and_crash_loop() -> None:
    stats: dict[str, object] = {"error": None}
    now = [100.0]
    forever = asyncio.Event()

    async def uplink_ok() -> None:
        await forever.wait()

    task = asyncio.create_task(supervise("uplink", uplink_ok, NoEvents()))  # type: ignore[arg-type]
    check = watchdog.runtime_health(lambda: stats, task, store_grace_s=30, clock=lambda: now[0])
    await asyncio.sleep(0.01)
    assert check() is None  # disconnected or not, a running uplink task is healthy

    stats["error"] = "database or disk is full"
    assert check() is None  # within the grace: the writer retries
    now[0] += 31
    assert check() == "store failing for 31 s: database or disk is full"
    stats["error"] = None
    assert check() is None

    forever.set()  # run() returned: the task has ended
    await asyncio.sleep(0.01)
    assert check() == "uplink task ended"

    async def uplink_crashes() -> None:
        raise RuntimeError("bug")

    looping = asyncio.create_task(supervise("uplink", uplink_crashes, NoEvents()))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.01)
        check = watchdog.runtime_health(lambda: stats, looping)
        assert check() == "uplink task crashed (restarting with backoff)"
    finally:
        looping.cancel()
        await asyncio.gather(looping, return_exceptions=True)


def test_the_real_agent_pings_while_the_broker_is_down(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: READY, then pings although the uplink cannot connect (no broker)."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    agent = AgentProcess(
        tmp_path / "agent", site_config(tmp_path / "agent", port, [fake_device("d1")])
    )
    agent.start()
    try:
        agent.wait_ready()
        time.sleep(1.0)
        messages = received(notify_socket)
        assert any(m.startswith("READY=1") for m in messages), agent.log()
        assert messages.count("WATCHDOG=1") >= 3, (messages, agent.log())
        assert agent.status()["uplink"]["state"] != "connected"
    finally:
        assert agent.stop() == 0
    assert "STOPPING=1" in received(notify_socket)


def test_a_reload_keeps_the_watchdog_fed_and_follows_the_protocol(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP swaps the runtime; the process stays healthy throughout, so pings go on and
    nothing claims otherwise (a swap that starved the watchdog would get us killed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    workdir = tmp_path / "agent"
    slow = fake_device("d1", connection={"close_latency": 1.2})  # the swap takes > 1 s
    agent = AgentProcess(workdir, site_config(workdir, port, [slow]))
    agent.start()
    try:
        agent.wait_ready()
        received(notify_socket)
        agent.write_config(site_config(workdir, port, [slow, fake_device("d2")]))
        timeline = _listen(notify_socket, seconds=0.6)  # pings before the signal too
        agent.signal(signal.SIGHUP)
        timeline += _listen(notify_socket, seconds=3.0)
        assert list(agent.status()["devices"]) == ["d1", "d2"], agent.log()
    finally:
        assert agent.stop() == 0
    messages = [m for _, m in timeline]
    reloading = next(i for i, m in enumerate(messages) if m.startswith("RELOADING=1"))
    assert "MONOTONIC_USEC=" in messages[reloading]
    assert any(m.startswith("READY=1") for m in messages[reloading:])
    pings = [t for t, m in timeline if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 8 and max(gaps) < 0.6, gaps  # one every 0.2 s, swap included
    assert "withholding watchdog pings" not in agent.log()


def _listen(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Every notification with its arrival time, for `seconds`."""
    timeline = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        timeline += [(time.monotonic(), m) for m in received(sock)]
        time.sleep(0.01)
    return timeline


# -- the unit file --------------------------------------------------------------------------


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart at this venv's edge-agent (verify checks that it exists)."""
    assert VENV_AGENT.exists()
    unit = tmp_path / "units" / "edge-agent.service"
    unit.parent.mkdir()
    unit.write_text(install.render_unit(UNIT.read_text(), VENV_AGENT, Path("/etc/x/site.yaml")))
    return unit


def test_unit_has_the_service_contract() -> None:
    text = UNIT.read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["Restart"] == "on-failure"
    assert settings["User"] == settings["Group"] == "edge-agent"
    assert settings["MemoryDenyWriteExecute"] == "no"  # numba's JIT needs W+X memory
    assert settings["Environment"] == "EDGE_AGENT_NUMBA_CACHE=%C/edge-agent/numba"
    watchdog_s = int(settings["WatchdogSec"].removesuffix("s"))
    assert 10 <= watchdog_s <= 120
    # Stopping may take the uplink flush (flush_timeout + 15 s grace) and driver closes.
    assert int(settings["TimeoutStopSec"]) >= 5 + 15 + 5
    # The one writable place under /etc is the site file's own directory (config_apply).
    config = Path(settings["ExecStart"].split("--config ")[1])
    assert config == install.DEFAULT_CONFIG
    assert settings["ReadWritePaths"] == str(config.parent) != "/etc/edge-agent"


@needs_analyze
def test_systemd_analyze_verify_is_clean(runnable_unit: Path) -> None:
    result = subprocess.run(
        [ANALYZE, "verify", str(runnable_unit)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@needs_analyze
def test_exposure_is_at_most_2(runnable_unit: Path) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


# -- install-service ------------------------------------------------------------------------

FAKE_TOOL = """#!/bin/sh
# Records its arguments, then does the little the installer checks for afterwards.
echo "$(basename "$0") $*" >> "$FAKE_LOG"
[ -n "$FAKE_FAIL" ] && [ "$(basename "$0")" = "$FAKE_FAIL" ] && {{ echo "boom" >&2; exit 9; }}
case "$(basename "$0") $*" in
  "groupadd "*) echo "edge-agent:x:998:" >> "{root}/etc/group" ;;
  "useradd "*) echo "edge-agent:x:998:998::/var/lib/edge-agent:/usr/sbin/nologin" \\
      >> "{root}/etc/passwd" ;;
  "usermod "*) sed -i 's/^dialout:x:20:$/dialout:x:20:edge-agent/' "{root}/etc/group" ;;
  "systemctl "*enable*) mkdir -p "{wants}" && ln -sf ../edge-agent.service "{wants}/" ;;
esac
"""


@pytest.fixture
def fake_system(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "run/systemd/system").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = FAKE_TOOL.format(root=root, wants=root / install.WANTS_DIR)
    for tool in ("groupadd", "useradd", "usermod", "systemctl"):
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    return {"root": root, "bin": bin_dir, "log": tmp_path / "calls.log"}


def run_installer(
    fake: dict[str, Path], *args: str, fail: str = "", lang: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{fake['bin']}:{os.environ['PATH']}",
        "FAKE_LOG": str(fake["log"]),
        "FAKE_FAIL": fail,
        **({"LANG": lang, "LC_ALL": "", "EDGE_AGENT_LANG": ""} if lang else {}),
    }
    return subprocess.run(
        [str(VENV_AGENT), "install-service", "--root", str(fake["root"]), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def calls(fake: dict[str, Path]) -> list[str]:
    return fake["log"].read_text().splitlines() if fake["log"].exists() else []


def test_install_service_dry_run_changes_nothing(fake_system: dict[str, Path]) -> None:
    result = run_installer(fake_system, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert calls(fake_system) == []
    assert not (fake_system["root"] / install.UNIT_DIR / install.UNIT_NAME).exists()
    out = result.stdout
    assert "would    group edge-agent: groupadd --root" in out
    assert "--system --gid edge-agent --home-dir /var/lib/edge-agent" in out
    assert "--shell /usr/sbin/nologin" in out
    assert "usermod --root" in out and "--append --groups dialout edge-agent" in out
    assert "would    /etc/edge-agent/site owned by edge-agent, mode 750" in out
    assert not (fake_system["root"] / "etc/edge-agent").exists()
    assert "would    edge-agent.service enabled at boot: systemctl --root" in out


def test_install_service_dry_run_in_chinese_and_english(fake_system: dict[str, Path]) -> None:
    """The step lines in the site's language, their texts starting in one column (cells:
    a Chinese word is two a character); the commands as they are."""
    from rich.cells import cell_len

    def step_lines(out: str, states: tuple[str, ...]) -> list[str]:
        lines = [line for line in out.splitlines() if line.startswith(states)]
        assert len(lines) == 7, out
        for line in lines:
            state = next(s for s in states if line.startswith(s))
            rest = line[len(state) :]
            assert cell_len(state) + len(rest) - len(rest.lstrip(" ")) == install.STEP_COLUMN
        return lines

    zh = run_installer(fake_system, "--dry-run", lang="zh_CN.UTF-8")
    assert zh.returncode == 0, zh.stderr
    lines = step_lines(zh.stdout, ("将执行", "已就绪"))
    assert (
        lines[0]
        == f"将执行   用户组 edge-agent：groupadd --root {fake_system['root']} --system edge-agent"
    )
    assert "将执行   /etc/edge-agent/site 属主为 edge-agent，权限 750：写入文件" in zh.stdout
    assert "将执行   edge-agent.service 设为开机启动：systemctl --root" in zh.stdout
    assert "提示：/etc/edge-agent/site/site.yaml 尚不存在；在它存在之前服务不会启动" in zh.stdout
    assert calls(fake_system) == []

    en = run_installer(fake_system, "--dry-run", lang="en_US.UTF-8")
    assert en.returncode == 0, en.stderr
    step_lines(en.stdout, ("would", "ok"))
    assert "would    group edge-agent: groupadd --root" in en.stdout

    relative = run_installer(fake_system, "--dry-run", "--config", "site.yaml", lang="zh_CN.UTF-8")
    assert relative.returncode == install.EXIT_FAILED
    assert relative.stderr == "错误：--config 必须是绝对路径（服务在 / 下运行）：site.yaml\n"


def test_install_service_reads_the_site_locale_of_its_config(fake_system: dict[str, Path]) -> None:
    """Where the technician's environment has no choice (sudo's C locale), the site's."""
    site = fake_system["root"] / "etc/edge-agent/site/site.yaml"
    site.parent.mkdir(parents=True)
    site.write_text("site:\n  id: s\n  locale: zh_CN\n")
    done = run_installer(fake_system, "--dry-run", lang="C.UTF-8")
    assert done.returncode == 0, done.stderr
    assert "将执行   系统用户 edge-agent：useradd --root" in done.stdout


def test_install_service_for_real_then_again(fake_system: dict[str, Path]) -> None:
    root = fake_system["root"]
    result = run_installer(fake_system, "--config", "/etc/edge-agent/plant/site.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    r = str(root)
    assert calls(fake_system) == [
        f"groupadd --root {r} --system edge-agent",
        f"useradd --root {r} --system --gid edge-agent --home-dir /var/lib/edge-agent "
        "--no-create-home --shell /usr/sbin/nologin --comment edge-agent plant-room gateway "
        "edge-agent",
        f"usermod --root {r} --append --groups dialout edge-agent",
        f"systemctl --root {r} enable edge-agent.service",
    ]
    unit = root / install.UNIT_DIR / install.UNIT_NAME
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    exec_start = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [f"ExecStart={VENV_AGENT} run --config /etc/edge-agent/plant/site.yaml"]
    assert "ReadWritePaths=/etc/edge-agent/plant\n" in unit.read_text()
    assert "note: /etc/edge-agent/plant/site.yaml does not exist yet" in result.stdout
    assert "doing    unit" in result.stdout
    # The config's directory belongs to the service user (uid/gid from the fake passwd).
    config_dir = (root / "etc/edge-agent/plant").stat()
    assert (config_dir.st_uid, config_dir.st_gid) == (998, 998)
    assert stat.S_IMODE(config_dir.st_mode) == 0o750

    again = run_installer(fake_system, "--config", "/etc/edge-agent/plant/site.yaml")
    assert again.returncode == 0, again.stderr
    assert len(calls(fake_system)) == 4  # every step was already done
    assert again.stdout.count("ok       ") == 7


@pytest.mark.skipif(
    "dialout" not in install._entries(Path("/etc/group")),
    reason="this machine has no dialout group",
)
def test_install_plan_at_the_real_root() -> None:
    """At "/" the tools get no --root, and a changed unit is followed by daemon-reload
    (only the plan is built here: nothing runs)."""
    steps = install.plan(Path("/"), VENV_AGENT, install.DEFAULT_CONFIG, UNIT.read_text())
    commands = {s.command[0] + " " + s.command[1] for s in steps if s.command}
    assert commands == {
        "groupadd --system",
        "useradd --system",
        "usermod --append",
        "systemctl daemon-reload",
        "systemctl enable",
    }


def test_install_service_errors_are_one_line(fake_system: dict[str, Path], tmp_path: Path) -> None:
    failed = run_installer(fake_system, fail="useradd")
    assert failed.returncode == install.EXIT_FAILED
    assert failed.stderr.strip().splitlines() == [
        f"error: 'useradd --root {fake_system['root']} --system --gid edge-agent --home-dir "
        "/var/lib/edge-agent --no-create-home --shell /usr/sbin/nologin --comment "
        "'edge-agent plant-room gateway' edge-agent' failed (exit 9): boom"
    ]

    shutil.rmtree(fake_system["root"] / "run/systemd")
    no_systemd = run_installer(fake_system)
    assert no_systemd.returncode == install.EXIT_NO_SYSTEMD
    assert no_systemd.stderr.startswith("error: systemd is not running here")
    assert "Traceback" not in no_systemd.stderr

    relative = run_installer(fake_system, "--dry-run", "--config", "site.yaml")
    assert relative.returncode == install.EXIT_FAILED
    assert relative.stderr.startswith("error: --config must be an absolute path")

    # The agent writes its config's directory: never the one holding the secrets.
    shared = run_installer(fake_system, "--dry-run", "--config", "/etc/edge-agent/site.yaml")
    assert shared.returncode == install.EXIT_FAILED
    assert shared.stderr.strip() == (
        "error: --config needs a directory of its own, which the agent may write "
        "(config_apply): /etc/edge-agent is shared; use e.g. /etc/edge-agent/site/site.yaml"
    )

    no_prefix = run_installer(fake_system, "--dry-run", "--prefix", str(tmp_path / "nothing"))
    assert no_prefix.returncode == install.EXIT_FAILED
    assert no_prefix.stderr.strip() == (
        f"error: no edge-agent executable in {tmp_path / 'nothing'}/bin "
        f"or {tmp_path / 'nothing'}/.venv/bin"
    )


def test_install_service_needs_root_at_slash() -> None:
    lines: list[str] = []
    with pytest.raises(install.InstallError) as exc:
        install.install_service(
            prefix=Path(sys.prefix),
            config=install.DEFAULT_CONFIG,
            dry_run=False,
            euid=1000,
            echo=lines.append,
        )
    assert exc.value.code == install.EXIT_NOT_ROOT
    assert str(exc.value) == "must run as root (try: sudo edge-agent install-service)"
    assert lines == []


def test_install_service_prefix_may_be_a_checkout(tmp_path: Path) -> None:
    agent = tmp_path / "opt" / ".venv" / "bin" / "edge-agent"
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    assert install.executable_in(tmp_path / "opt") == agent


def test_install_service_is_a_cli_command() -> None:
    result = CliRunner().invoke(main, ["install-service", "--help"])
    assert result.exit_code == 0
    assert "--dry-run" in result.output and "--root" not in result.output  # hidden, for tests


# -- where the hardened unit can see an installation -----------------------------------------


@pytest.mark.parametrize(
    ("path", "setting"),
    [
        ("/home/li/edge-agent/.venv/bin/edge-agent", "ProtectHome=yes"),
        ("/root/.pyenv/versions/3.11.7/bin/python3.11", "ProtectHome=yes"),
        ("/tmp/checkout/.venv/bin/edge-agent", "PrivateTmp=yes"),
        ("/var/tmp/site.yaml", "PrivateTmp=yes"),
        ("/opt/edge-agent/.venv/bin/edge-agent", None),
        ("/etc/edge-agent/site/site.yaml", None),
    ],
)
def test_what_the_service_cannot_see(path: str, setting: str | None) -> None:
    why = install.hidden_from_the_service(Path(path))
    assert (why is None) if setting is None else (setting in (why or ""))


def test_a_link_out_of_sight_is_seen_through(tmp_path: Path) -> None:
    # /opt/edge-agent -> a checkout in /tmp: the service would follow the link into nothing.
    assert "PrivateTmp=yes" in (install.hidden_from_the_service(tmp_path / "x") or "")


def test_the_interpreter_of_a_venv_script_is_checked(tmp_path: Path) -> None:
    script = tmp_path / "edge-agent"
    script.write_text("#!/root/.pyenv/versions/3.11.7/bin/python3.11\nimport sys\n")
    assert install.interpreter_of(script) == Path("/root/.pyenv/versions/3.11.7/bin/python3.11")
    (tmp_path / "plain").write_text("no shebang\n")
    assert install.interpreter_of(tmp_path / "plain") is None


def test_an_installation_the_service_cannot_see_is_refused(tmp_path: Path) -> None:
    """At the real root, a checkout in /tmp (PrivateTmp) or a home (ProtectHome): the unit
    would start a program it cannot see. Refused before anything is done, and said why."""
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "edge-agent").write_text("#!/usr/bin/python3\n")
    (prefix / "bin" / "edge-agent").chmod(0o755)
    lines: list[str] = []
    with pytest.raises(install.InstallError) as refused:
        install.install_service(prefix=prefix, config=install.DEFAULT_CONFIG, dry_run=False,
                                root=Path("/"), echo=lines.append, euid=0)  # fmt: skip
    assert refused.value.code == install.EXIT_HIDDEN
    assert "PrivateTmp=yes" in str(refused.value) and "/opt/edge-agent" in str(refused.value)
    assert lines == []  # nothing was done
    # A dry run says the same, as a note, and shows the rest of the plan.
    install.install_service(prefix=prefix, config=install.DEFAULT_CONFIG, dry_run=True,
                            root=Path("/"), echo=lines.append, euid=0)  # fmt: skip
    assert any("PrivateTmp=yes" in line and line.startswith("note:") for line in lines)
