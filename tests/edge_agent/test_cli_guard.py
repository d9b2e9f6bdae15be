"""A CLI that meets something it does not expect still ends in one line, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import run_cli


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A Unix socket that answers every request with the next canned line."""
    path = tmp_path / "agent.sock"
    answers: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, answers
    server.close()


def _cli(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_DEBUG"}
    if debug:
        env["EDGE_AGENT_DEBUG"] = "1"
    return run_cli(*args, env=env)


def test_an_answer_that_is_not_json_is_one_line(impostor):
    path, answers = impostor
    answers.append(b"HTTP/1.1 400 Bad Request\n")
    result = _cli("status", "--socket", str(path))
    assert result.returncode == 1
    assert result.stderr == f"error: the answer on {path} is not the agent's (not JSON)\n"


def test_an_answer_the_cli_does_not_expect_is_one_line(impostor):
    path, answers = impostor
    answers += [b'{"ok": true}\n', b'{"ok": true}\n']  # e.g. an agent of another version
    result = _cli("status", "--socket", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: unexpected KeyError: 'uplink' (a bug: please report")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    # For the developer, the trace is one variable away.
    debug = _cli("status", "--socket", str(path), debug=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
