"""The BACnet simulator fixtures, for the router tests that need a real priority array."""

from tests.drivers.bacnet.conftest import sim, start_sim  # noqa: F401 - fixtures
