"""Fixtures of the edge_agent tests."""

from tests.agent_logs import agent_logs  # noqa: F401 - the fixture
