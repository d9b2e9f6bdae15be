"""Control loop kernels: one warm ``pid_step`` over 1,000 loops against the same step in
plain Python (tests/control_loops/reference.py), and the start-up cost of the kernels.

    cd /work/main && .venv/bin/python -m benchmarks.loops

Last line: one JSON object:
- ``us_per_1000_loops``: median wall time of one warm ``kernels.pid_step`` over 1,000 loops
  (target <= 50); ``python_us_per_1000_loops`` the plain-Python reference on the same
  inputs (lists, so it is not slowed by numpy scalars); ``speedup`` their ratio.
- ``cold_start_s`` / ``warm_start_s``: the agent (``edge-agent run``, a fake plant with
  ``AGENT_LOOPS`` PID loops) from process start until every loop has made its first step,
  with an empty numba cache dir (cold), then again with the cache it filled (warm; target
  <= 2). ``kernels_cold_s`` / ``kernels_warm_s``: the same for a bare interpreter that
  only imports ``control_loops`` and runs ``kernels.warm_up()``; ``import_ms`` is importing
  the package (no numba).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from control_loops import kernels
from tests.control_loops import reference

REPO = Path(__file__).resolve().parents[1]
N = 1000
REPEATS = 2000
PY_REPEATS = 20

CHILD = """
import json, time
t0 = time.perf_counter()
import control_loops, control_loops.kernels as k, control_loops.sequences
t1 = time.perf_counter()
w = k.warm_up()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "warm_up_s": w}))
"""


def plant_loops(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A plant's mix: PI valves and fans, some PID, 10 % in manual, both directions."""
    rows = []
    for i in range(N):
        kind = i % 10
        if kind < 6:
            rows.append(kernels.pid_params(rng.uniform(2, 20), rng.uniform(30, 300)))
        elif kind < 9:
            rows.append(
                kernels.pid_params(
                    rng.uniform(1, 5), rng.uniform(60, 600), td=rng.uniform(5, 30), direction=-1
                )
            )
        else:
            rows.append(kernels.pid_params(rng.uniform(1, 5), 120.0, tracking=0.0))
    params = np.vstack(rows)
    setpoint = rng.uniform(5, 30, N)
    measurement = setpoint + rng.normal(0, 1, N)
    auto = rng.random(N) > 0.1
    manual = rng.uniform(0, 100, N)
    return params, setpoint, measurement, auto, manual


def time_kernel(params, setpoint, measurement, auto, manual) -> float:
    state = kernels.pid_state(N, output=50.0)
    out = np.empty(N)
    kernels.pid_step(params, state, setpoint, measurement, auto, manual, 1.0, out)  # warm
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(REPEATS):
            kernels.pid_step(params, state, setpoint, measurement, auto, manual, 1.0, out)
        samples.append((time.perf_counter() - start) / REPEATS * 1e6)
    return float(np.median(samples))


def time_python(params, setpoint, measurement, auto, manual) -> float:
    p = params.tolist()
    sp, y, a, m = setpoint.tolist(), measurement.tolist(), auto.tolist(), manual.tolist()
    state = kernels.pid_state(N, output=50.0).tolist()
    out = [0.0] * N
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(PY_REPEATS):
            reference.pid_step(p, state, sp, y, a, m, 1.0, out)
        samples.append((time.perf_counter() - start) / PY_REPEATS * 1e6)
    return float(np.median(samples))


def start_once(cache: Path) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["EDGE_AGENT_NUMBA_CACHE"] = str(cache)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


AGENT_LOOPS = 50


def agent_config(workdir: Path, port: int) -> Path:
    """A fake plant of 5 devices whose valves are driven by PID loops on its temperatures."""
    devices = []
    for d in range(5):
        points = [{"id": f"t{i}", "signal": {"mode": "walk", "value": 22, "step": 0.2}}
                  for i in range(10)]  # fmt: skip
        points += [{"id": f"v{i}", "writable": True, "limits": {"min": 0, "max": 100},
                    "signal": {"mode": "constant", "value": 50}} for i in range(10)]  # fmt: skip
        devices.append({"id": f"ahu{d}", "driver": "fake", "poll_interval": 1.0, "timeout": 0.5,
                        "points": points})  # fmt: skip
    loops = [{"id": f"pid-{d}-{i}", "type": "pid", "period": 1.0, "measurement": f"ahu{d}.t{i}",
              "setpoint": 22.0, "output": f"ahu{d}.v{i}", "kp": 5.0, "ti": 60.0}
             for d in range(5) for i in range(10)]  # fmt: skip
    config = {
        "site": {"id": "bench"}, "gateway": {"id": "gw"},
        "uplink": {"endpoints": [{"host": "127.0.0.1", "port": port}], "topic_prefix": "b"},
        "store": {"path": str(workdir / "outbox.db")},
        "local": {"socket": str(workdir / "agent.sock")},
        "log_level": "warning", "devices": devices, "loops": loops,
    }  # fmt: skip
    path = workdir / "site.yaml"
    path.write_text(json.dumps(config))
    return path


def agent_start(workdir: Path, config: Path, cache: Path) -> float:
    """Seconds from starting the agent until every loop has stepped once."""
    from edge_agent.local_api import request

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["EDGE_AGENT_NUMBA_CACHE"] = str(cache)
    start = time.perf_counter()
    log = open(workdir / "agent.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
                            cwd=REPO, env=env, stdout=log, stderr=log)  # fmt: skip
    try:
        while time.perf_counter() - start < 120:
            if proc.poll() is not None:
                raise RuntimeError((workdir / "agent.log").read_text()[-2000:])
            try:
                loops = request(workdir / "agent.sock", "loops")["loops"]
            except (OSError, ValueError):
                loops = []
            if len(loops) == AGENT_LOOPS and all(lp["steps"] > 0 for lp in loops):
                return time.perf_counter() - start
            time.sleep(0.01)
        raise RuntimeError("loops did not step within 120 s")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    rng = np.random.default_rng(2026)
    inputs = plant_loops(rng)
    kernels.warm_up()
    us = time_kernel(*inputs)
    py_us = time_python(*inputs)
    print(f"pid_step over {N} loops: numba {us:.1f} us, python {py_us:.0f} us", flush=True)
    from edge_agent.broker_tools import LocalBroker

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cache = workdir / "numba"
        cold, cold_child = start_once(cache)
        warm, warm_child = start_once(cache)
        broker = LocalBroker(workdir / "broker").start()
        try:
            config = agent_config(workdir, broker.port)
            agent_cache = workdir / "agent-numba"
            agent_cold = agent_start(workdir, config, agent_cache)
            agent_warm = agent_start(workdir, config, agent_cache)
        finally:
            broker.stop()
    print(
        f"kernels start: cold {cold:.2f} s, warm {warm:.2f} s; agent with "
        f"{AGENT_LOOPS} loops: cold {agent_cold:.2f} s, warm {agent_warm:.2f} s",
        flush=True,
    )
    result = {
        "us_per_1000_loops": round(us, 1),
        "python_us_per_1000_loops": round(py_us),
        "speedup": round(py_us / us),
        "cold_start_s": round(agent_cold, 2),
        "warm_start_s": round(agent_warm, 2),
        "agent_loops": AGENT_LOOPS,
        "kernels_cold_s": round(cold, 2),
        "kernels_warm_s": round(warm, 2),
        "cold_warm_up_s": round(cold_child["warm_up_s"], 2),
        "warm_warm_up_s": round(warm_child["warm_up_s"], 3),
        "import_ms": round(warm_child["import_ms"], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
