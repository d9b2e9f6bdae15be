"""How fast the technician's CLI answers: `edge-agent status` and `edge-agent points`
through the real entry point against a running agent with 20 devices and 400 points.

Baseline in the same run: the bare interpreter start (`python -c pass`), which no command
can beat; `*_over_python` is the rest (imports, the socket round trip, rendering).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, emit, plant_config, start_agent
from edge_agent.broker_tools import LocalBroker

RUNS = 15
EDGE_AGENT = [sys.executable, "-m", "edge_agent"]


def _time(args: list[str]) -> float:
    """Median wall time of a command (and it must succeed)."""
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = subprocess.run(args, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise RuntimeError(f"{args}: {result.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = LocalBroker(workdir / "broker").start()
        agent = start_agent(workdir, plant_config(workdir, broker.port, 20, 20, 1.0))
        try:
            time.sleep(2)  # every device polled
            socket = ["--socket", str(workdir / "agent.sock")]
            python_s = _time([sys.executable, "-c", "pass"])
            status_s = _time([*EDGE_AGENT, "status", *socket])
            status_json_s = _time([*EDGE_AGENT, "status", "--json", *socket])
            points_s = _time([*EDGE_AGENT, "points", *socket])
            imported = subprocess.run(
                [sys.executable, "-c", "import sys; from edge_agent.cli import main\n"
                 "try:\n    main(['status', '--json', *sys.argv[1:]])\nexcept SystemExit:\n"
                 "    pass\nprint(sorted(m for m in ('numba', 'numpy', 'pydantic') "
                 "if m in sys.modules), file=sys.stderr)", *socket],
                capture_output=True, text=True, cwd=REPO,
            ).stderr.strip().splitlines()[-1]  # fmt: skip
        finally:
            agent.terminate()
            agent.wait(30)
            broker.stop()
    emit(
        {
            "benchmark": "cli",
            "status_s": round(status_s, 3),
            "status_json_s": round(status_json_s, 3),
            "points_s": round(points_s, 3),
            "python_start_s": round(python_s, 3),
            "status_over_python_s": round(status_s - python_s, 3),
            "heavy_modules_on_status_path": imported,
        }
    )


if __name__ == "__main__":
    main()
