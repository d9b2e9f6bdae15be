"""benchmarks/hj212.py in a tiny configuration (a 2-hour outage): it runs as a module, its
last line is JSON, and the logger made what the schedule says and lost nothing."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import REPO

HOURS, SLOW_HOURS, ACK_DELAY_S = 2, 0.25, 0.02


def test_the_outage_benchmark_runs_and_loses_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hj212", "--hours", str(HOURS),
         "--slow-hours", str(SLOW_HOURS), "--ack-delay", str(ACK_DELAY_S)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # Real-time data every 30 s, the outage's start and end included; 10-minute records.
    assert result["records_by_kind"] == {
        "realtime": HOURS * 120 + 1, "minute": HOURS * 6, "hour": HOURS, "day": 0, "restart": 1,
    }  # fmt: skip
    assert result["as_scheduled"] and result["acked_while_down"] == 0
    assert result["records_expected"] == sum(result["records_by_kind"].values())
    assert result["records_acked"] == result["records_expected"] and result["lost"] == 0
    assert result["duplicates_as_new"] == 0 and result["crc_errors"] == 0
    assert result["in_order"] and result["baseline_records_stored"] == result["records_expected"]
    slow = result["slow_platform"]
    assert slow["lost"] == 0 and slow["duplicates_as_new"] == 0 and slow["in_order"]
    # One packet at a time, each waiting for its late 9014: never faster than the delays.
    assert slow["delivery_s"] >= slow["packets"] * ACK_DELAY_S
