"""The README's first command: simulator, broker and agent together, then a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from rich.cells import cell_len

from tests.harness import REPO


def _demo(*args: str, lang: str) -> subprocess.CompletedProcess:
    """The demo piped (its screen printed every few seconds) to an 80-column reader."""
    env = {**os.environ, "LANG": lang, "COLUMNS": "80", "LC_ALL": "", "EDGE_AGENT_LANG": ""}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "demo", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120, env=env,
    )  # fmt: skip


def _fits_80(out: str) -> None:
    lines = out.splitlines()
    assert not [line for line in lines if cell_len(line) > 80], out[-3000:]
    assert not [line for line in lines if line != line.rstrip()], out[-3000:]


def test_the_demo_runs_the_plant_and_stops_cleanly():
    result = _demo("--duration", "12", "--speed", "60", lang="en_US.UTF-8")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    _fits_80(out)
    assert re.search(r"chilled-water plant\s+[\d,]+ kW for [\d,]+ RT = 0\.\d+ kW/RT", out), out[
        -3000:
    ]
    assert "connected" in out and "down" not in out
    final = re.search(r"agent exited with 0; the platform received (\d+) messages", out)
    assert final and int(final.group(1)) > 20


def test_the_demo_in_chinese():
    """The energy manager's line, the status, the platform's table and the start and stop
    messages in Chinese; 80 cells wide; the MQTT contract's fields (point ids) as they are."""
    result = _demo("--duration", "12", "--speed", "60", lang="zh_CN.UTF-8")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert out.startswith("正在启动模拟机房（")
    assert "本地 MQTT 服务器 127.0.0.1:" in out
    assert re.search(
        r"冷冻水系统\s+耗电 [\d,]+ kW，供冷 [\d,]+ RT，能效 0\.\d+ kW/RT（供水 \d+\.\d+ degC）", out
    ), out[-3000:]
    assert "上行         已连接" in out and "离线" not in out
    assert "平台收到的数据（每台设备的最新消息）" in out and "cooling_load_kw=" in out
    assert re.search(r"已收到 \d+ 条消息，\d+ 个点位值", out)
    final = re.search(r"代理已退出（退出码 0）；平台共收到 (\d+) 条消息", out)
    assert final and int(final.group(1)) > 20
    assert "chilled-water" not in out and "messages" not in out
    _fits_80(out)


def test_closing_the_terminal_stops_everything(tmp_path):
    out_path = tmp_path / "demo.out"
    with open(out_path, "w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "demo", "--speed", "60"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while "chilled-water plant" not in out_path.read_text():
        assert demo.poll() is None and time.monotonic() < deadline, out_path.read_text()
        time.sleep(0.2)
    os.killpg(demo.pid, signal.SIGHUP)  # what a terminal does to its process group on close
    assert demo.wait(60) == 0
    text = out_path.read_text()
    assert "agent exited with 0" in text
    workdir = re.search(r"Files: (\S+)", text.replace("\n", " ")).group(1)
    left = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"


def test_a_taken_port_stops_the_demo_with_one_clear_line():
    """Another program (a second demo, a real gateway) holds a port of the simulated plant:
    the demo says which, at once, instead of a traceback or a plant with a device missing."""
    import socket

    import yaml

    sim = yaml.safe_load((REPO / "configs" / "sim" / "hospital.yaml").read_text())
    server = next(s for s in sim["modbus"] if s["transport"] == "tcp")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", server["port"]))
        holder.listen()
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "edge_agent", "demo", "--duration", "5"],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert time.monotonic() - started < 20
    assert "Traceback" not in out
    assert f"the simulator exited with 3: modbus server {server['id']}" in out, out
    assert f"127.0.0.1:{server['port']}" in out
