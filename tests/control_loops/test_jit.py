"""The numba helper: lazy import and a writable cache dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from control_loops import jit

REPO = Path(__file__).resolve().parents[2]


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.ENV_VAR, str(tmp_path / "nb"))
    assert jit.cache_dir() == tmp_path / "nb"
    monkeypatch.delenv(jit.ENV_VAR)
    assert jit.cache_dir() == Path("~/.cache/edge-agent/numba").expanduser()


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_cache_dir_applies_even_if_numba_was_imported_first(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env[jit.ENV_VAR] = str(tmp_path / "late")
    code = "import numba\nfrom control_loops import jit\njit.numba()\n" + (
        "from numba.core import config\nprint(config.CACHE_DIR)\n"
    )
    assert _run(code, env) == str(tmp_path / "late")


def test_import_is_lazy_and_cache_lands_in_our_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env[jit.ENV_VAR] = str(tmp_path / "cache")
    code = (
        "import sys\n"
        "from control_loops import ocl\n"
        "assert 'numba' not in sys.modules, 'importing ocl must not import numba'\n"
        "r = ocl.solve([[1, 2, 3, 4]], [10.0], 5.0)\n"
        "import os; print(os.environ['NUMBA_CACHE_DIR'])\n"
    )
    assert _run(code, env) == str(tmp_path / "cache")
    assert list((tmp_path / "cache").rglob("*.nbi")), "no numba index files in the cache dir"
