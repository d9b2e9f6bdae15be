"""The libraries' stdlib records through the agent's logging (edge_agent.logs): one format,
one ring buffer, and what a library says about a device known down counted, not printed."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from typing import Any

import pytest

from drivers.base import DeviceUnavailable, Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent import logs
from edge_agent.cache import PointCache
from edge_agent.scheduler import Poller, addresses
from tests.events import EventLog

PYMODBUS = logging.getLogger("pymodbus.logging")
FRAMES = "\n>>>>> send: 0x0 0x1 0x0 0x0 0x0 0x6 0x1 0x3 0x0 0x0 0x0 0x2"


def test_a_library_record_is_a_json_line_in_the_ring_buffer(agent_logs: Any) -> None:
    PYMODBUS.error("No response received after 0 retries, continue with next request" + FRAMES)
    logging.getLogger("paho.mqtt.client").warning("Connection lost: %s", "reset")
    logging.getLogger("pymodbus.logging").info("Connected to comm")  # below WARNING
    (first, second) = agent_logs.lines()
    assert first["event"] == "No response received after 0 retries, continue with next request"
    assert first["level"] == "error" and first["logger"] == "pymodbus.logging"
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "Connection lost: reset" and second["level"] == "warning"
    kept = logs.BUFFER.recent(2)
    assert [r["event"] for r in kept] == [first["event"], second["event"]]
    assert "_record" not in kept[0]


def test_python_warnings_become_records(agent_logs: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("ModbusDeviceContext is deprecated", DeprecationWarning, stacklevel=1)
    (line,) = agent_logs.lines()
    assert line["logger"] == "py.warnings" and "deprecated" in line["event"]


def test_a_failed_poll_holds_then_counts_a_good_poll_writes(agent_logs: Any) -> None:
    with logs.LIBRARY.polling("ch-2") as poll:
        PYMODBUS.error("No response received" + FRAMES)
        PYMODBUS.error("No response received" + FRAMES)
        poll.failed = True
    assert agent_logs.lines() == []
    assert logs.LIBRARY.suppressed("ch-2") == {"pymodbus": 2}
    # Known down: what a command's write makes pymodbus say is counted as well.
    with logs.LIBRARY.about("ch-2"):
        PYMODBUS.warning("Failed to connect [Errno 111] Connection refused")
    assert agent_logs.lines() == []
    assert logs.LIBRARY.suppressed("ch-2") == {"pymodbus": 3}
    # Back up: the poll's records are written (late, with their own time), then the count.
    with logs.LIBRARY.polling("ch-2") as poll:
        PYMODBUS.warning("ERROR: received pdu without a corresponding request, IGNORING")
        assert agent_logs.lines() == []  # held until the poll's outcome is known
        poll.failed = False
    written, summary = agent_logs.lines()
    assert written["device"] == "ch-2" and "IGNORING" in written["event"]
    assert summary["event"] == "library records suppressed"
    assert (summary["device"], summary["library"], summary["count"], summary["total"]) == (
        "ch-2",
        "pymodbus",
        3,
        3,
    )
    assert summary["timestamp"] >= written["timestamp"]
    # Up: written at once, named.
    with logs.LIBRARY.about("ch-2"):
        PYMODBUS.warning("Cleanup recv buffer before send: 0x1")
    assert [line["device"] for line in agent_logs.lines()] == ["ch-2"]


def test_a_cancelled_poll_writes_what_it_held(agent_logs: Any) -> None:
    with pytest.raises(asyncio.CancelledError), logs.LIBRARY.polling("ch-1"):
        PYMODBUS.warning("something odd")
        raise asyncio.CancelledError
    assert [line["event"] for line in agent_logs.lines()] == ["something odd"]


def test_records_naming_the_address_of_a_device_known_down(agent_logs: Any) -> None:
    logs.LIBRARY.watch("ch-2", ["10.0.0.5:502", "('10.0.0.5', 502)"])
    with logs.LIBRARY.polling("ch-2") as poll:
        poll.failed = True
    PYMODBUS.warning("Failed to connect [Errno 113] Connect call failed ('10.0.0.5', 502)")
    PYMODBUS.warning("Failed to connect [Errno 113] Connect call failed ('10.0.0.5', 5020)")
    PYMODBUS.warning("Connection to 10.0.0.50:502 lost")
    lines = agent_logs.lines()
    assert [line["event"][-15:] for line in lines] == [
        "'10.0.0.5', 5020)"[-15:],
        "10.0.0.50:502 lost"[-15:],
    ]
    assert "device" not in lines[0]
    assert logs.LIBRARY.suppressed("ch-2") == {"pymodbus": 1}


def test_agent_records_and_other_loggers_are_never_held(agent_logs: Any) -> None:
    with logs.LIBRARY.polling("ch-2") as poll:
        logging.getLogger("asyncio").error("Task exception was never retrieved")
        logs.get("poller").warning("poll slots skipped", device="ch-2")
        poll.failed = True
    events = [line["event"] for line in agent_logs.lines()]
    assert events == ["Task exception was never retrieved", "poll slots skipped"]


def test_at_debug_level_every_library_record_is_written(agent_logs: Any) -> None:
    assert not PYMODBUS.isEnabledFor(logging.INFO)
    agent_logs.configure("debug")
    assert PYMODBUS.isEnabledFor(logging.DEBUG)
    with logs.LIBRARY.polling("ch-2") as poll:
        PYMODBUS.debug("send: 0x0 0x2")
        PYMODBUS.error("No response received")
        poll.failed = True
    lines = agent_logs.lines()
    assert [(line["level"], line["event"], line["device"]) for line in lines] == [
        ("debug", "send: 0x0 0x2", "ch-2"),
        ("error", "No response received", "ch-2"),
    ]
    assert logs.LIBRARY.suppressed("ch-2") == {}


def test_restore_undoes_the_routing(agent_logs: Any) -> None:
    logs.restore_stdlib()
    assert not any(type(h).__name__ == "_StdlibRoute" for h in logging.getLogger().handlers), (
        "the root handler is still installed"
    )


def test_addresses_of_devices() -> None:
    class Tcp:
        host, port = "192.168.10.20", 502

    class Serial:
        port = "/dev/ttyUSB0"

    class Bacnet:
        address = "192.168.10.30:47808"

    def of(connection: object) -> list[str]:
        return addresses(type("Device", (), {"connection": connection})())  # type: ignore[arg-type]

    assert of(Tcp()) == ["192.168.10.20:502", "('192.168.10.20', 502)"]
    assert of(Serial()) == ["/dev/ttyUSB0"]
    assert of(Bacnet()) == ["192.168.10.30:47808", "('192.168.10.30', 47808)"]
    assert of(None) == []


# -- with the poller -------------------------------------------------------------------------


class ChattyDriver(FakeDriver):
    """A fake device whose "library" talks like pymodbus while it is offline."""

    silent = True

    async def read(self, points: Any) -> Any:
        if self.silent:
            PYMODBUS.error("No response received after 0 retries" + FRAMES)
            raise DeviceUnavailable("timeout")
        return await super().read(points)


async def test_a_device_down_is_one_event_and_a_count(agent_logs: Any) -> None:
    device = FakeDevice.model_validate(
        {
            "id": "ch-2",
            "driver": "fake",
            "poll_interval": 0.02,
            "points": [{"id": "t", "signal": {"mode": "walk", "value": 7}}],
        }
    )
    events = EventLog()
    driver = ChattyDriver(device, Link(device.id))
    poller = Poller(device, driver, lambda _batch: None, PointCache(), events.events())
    for _ in range(5):
        await poller.poll_once()
    lines = agent_logs.lines()
    assert [line["event"] for line in lines] == ["device_down"]
    assert poller.health.as_dict()["library_records_suppressed"] == {"pymodbus": 5}
    driver.silent = False
    await poller.poll_once()
    assert [line["event"] for line in agent_logs.lines()] == [
        "library records suppressed",
        "device_recovered",
    ]
    assert events.types() == ["device_down", "device_recovered"]
    assert poller.health.as_dict()["library_records_suppressed"] == {"pymodbus": 5}


def test_a_device_that_stays_down_gets_a_count_now_and_then(
    agent_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failed_poll(records: int) -> None:
        with logs.LIBRARY.polling("ch-2") as poll:
            for _ in range(records):
                PYMODBUS.error("No response received")
            poll.failed = True

    failed_poll(2)
    assert agent_logs.lines() == []  # within SUMMARY_INTERVAL_S of the first
    monkeypatch.setattr(logs, "SUMMARY_INTERVAL_S", 0.0)
    failed_poll(1)
    (line,) = agent_logs.lines()
    assert (line["event"], line["count"], line["total"]) == ("library records suppressed", 3, 3)
    failed_poll(0)  # nothing new: nothing to say
    assert agent_logs.lines() == []
    failed_poll(1)
    assert [(x["count"], x["total"]) for x in agent_logs.lines()] == [(1, 4)]
    logs.LIBRARY.summarise("ch-2")  # the poller stops: nothing pending
    assert agent_logs.lines() == []


def test_on_a_console_a_library_line_looks_like_the_agents(agent_logs: Any, capsys: Any) -> None:
    """Without --log-json (a terminal): structlog's console lines, the libraries' too."""
    logs.configure("info", json=False)
    logs.get("poller").warning("poll slots skipped", device="ch-1", skipped=2)
    PYMODBUS.error("No response received after 0 retries" + FRAMES)
    ours, theirs = capsys.readouterr().err.splitlines()
    shape = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[(\w+)\s*\] (.+?)(?:\s{2,}|\s\[|$)")
    assert (m := shape.match(ours)) and m.group(1, 2) == ("warning", "poll slots skipped")
    assert "device=ch-1" in ours
    assert (m := shape.match(theirs)), theirs
    assert m.group(1, 2) == ("error", "No response received after 0 retries")
    assert "pymodbus.logging" in theirs and ">>>>>" not in theirs
