"""The `agent_logs` fixture: this process logs as the agent does (JSON), and a test reads
what it wrote to stderr, line by line, parsed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from edge_agent import logs


class AgentLogs:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def configure(self, level: str = "info") -> None:
        logs.configure(level, json=True)

    def lines(self) -> list[dict[str, Any]]:
        """What was written to stderr since the last call: JSON only, or it fails."""
        err = self._capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines()]


@pytest.fixture
def agent_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[AgentLogs]:
    """Logging as the agent's at info level, undone after the test."""
    saved = structlog.get_config()
    logs.LIBRARY.reset()
    result = AgentLogs(capsys)
    result.configure()
    yield result
    logs.restore_stdlib()
    structlog.configure(**saved)
    logs.LIBRARY.reset()
