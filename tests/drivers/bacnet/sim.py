"""The simulator process handle lives with the simulator; re-exported for the tests."""

from simulators.bacnet_server import REPO, SimProcess, free_udp_port

__all__ = ["REPO", "SimProcess", "free_udp_port"]
