"""`edge-agent status` stays fast: it never imports numba, numpy or pydantic."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import REPO

PROBE = """
import sys
from edge_agent.cli import main
try:
    main(["status", "--socket", sys.argv[1]])
except SystemExit as exc:
    code = exc.code
print(code, sorted(m for m in ("numba", "numpy", "pydantic") if m in sys.modules))
"""


def test_status_imports_nothing_heavy(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "none.sock")],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "3 []", result.stdout + result.stderr
    assert "agent is not running" in result.stderr


def test_every_command_is_listed_and_loads(tmp_path):
    listing = subprocess.run(
        [sys.executable, "-m", "edge_agent", "--help"], capture_output=True, text=True, cwd=REPO
    ).stdout
    names = [line.split()[0] for line in listing.split("Commands:")[1].splitlines() if line.strip()]
    assert {"status", "points", "write", "alarms", "export", "discover", "config"} <= set(names)
    for name in names:
        result = subprocess.run(
            [sys.executable, "-m", "edge_agent", name, "--help"],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 0 and "Usage:" in result.stdout, (name, result.stderr)
