"""The alarm list survives restarts; a damaged state file never stops the agent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_agent.alarms import engine as engine_module
from tests.edge_agent.alarms.rig import T0, Rig, S, good, rule

HIGH = rule(id="hot", type="high", point="tx.winding_temp", limit=130, deadband=5)
COMM = rule(id="tx-comm", type="comm_loss", point="tx", duration="30s")


def hot(engine, value: float, now: int) -> None:
    engine.observe("tx", [good("winding_temp", value)], now)


def test_restart_neither_reraises_nor_forgets(rig: Rig) -> None:
    first = rig.engine(HIGH)
    hot(first, 140.0, T0)
    [before] = first.active()
    assert rig.saved()["alarms"][0]["id"] == before["id"]

    rig.records.clear()
    second = rig.engine(HIGH, now=T0 + 60 * S)  # the agent restarted
    hot(second, 141.0, T0 + 61 * S)  # still hot: the same occurrence, nothing published
    second.tick(T0 + 62 * S)
    [after] = second.active()
    assert {k: v for k, v in after.items() if k != "current"} == {
        k: v for k, v in before.items() if k != "current"
    }
    assert rig.records == []
    hot(second, 120.0, T0 + 70 * S)  # then it cools down: cleared as usual
    assert rig.events() == [("cleared", "hot", "cleared")]
    assert rig.messages()[0]["id"] == before["id"]


def test_acknowledgement_survives_a_restart(rig: Rig) -> None:
    first = rig.engine(HIGH)
    hot(first, 140.0, T0)
    first.ack("hot", by="li.wei", note="fans on", now_ms=T0 + S)
    second = rig.engine(HIGH)
    [alarm] = second.active()
    assert (alarm["state"], alarm["ack_by"], alarm["ack_note"]) == (
        "acknowledged",
        "li.wei",
        "fans on",
    )
    hot(second, 100.0, T0 + 2 * S)
    assert second.active() == []
    assert rig.engine(HIGH).active() == []  # and the closed alarm stays gone


def test_a_cleared_unacknowledged_alarm_survives_a_restart(rig: Rig) -> None:
    first = rig.engine(HIGH)
    hot(first, 140.0, T0)
    hot(first, 100.0, T0 + S)
    second = rig.engine(HIGH)
    assert [(a["state"], a["acked"]) for a in second.active()] == [("cleared", False)]
    second.ack("hot", by="li.wei")
    assert second.active() == []


def test_a_restored_comm_loss_stays_until_the_device_is_heard(rig: Rig) -> None:
    first = rig.engine(COMM, now=T0)
    first.tick(T0 + 30 * S)
    assert len(first.active()) == 1
    rig.records.clear()
    second = rig.engine(COMM, now=T0 + 100 * S)
    second.tick(T0 + 101 * S)  # no news yet: neither cleared nor raised again
    assert [a["state"] for a in second.active()] == ["active"] and rig.records == []
    second.observe("tx", [good("winding_temp", 80.0)], T0 + 102 * S)
    assert [a["state"] for a in second.active()] == ["cleared"]


@pytest.mark.parametrize(("enabled", "reason"), [(None, "rule removed"), (False, "rule disabled")])
def test_alarms_of_rules_no_longer_configured_are_dropped(
    rig: Rig, enabled: bool | None, reason: str
) -> None:
    first = rig.engine(HIGH, COMM)
    hot(first, 140.0, T0)
    rig.records.clear()
    rules = [COMM] if enabled is None else [COMM, HIGH.model_copy(update={"enabled": False})]
    second = rig.engine(*rules, now=T0 + 10 * S)
    assert second.active() == []
    [message] = rig.messages()
    assert (message["event"], message["rule"], message["state"]) == ("cleared", "hot", "cleared")
    assert message["reason"] == reason and message["closed"] is True
    assert message["cleared_ts"] == T0 + 10 * S
    assert rig.saved()["alarms"] == []


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x00\x00garbage",
        b'{"v": 1, "alarms": [{"id": "x"}]}',  # valid JSON, not a list of alarms
        b'{"v": 99, "alarms": []}',
        b"[1, 2, 3]",
        b'{"v": 1, "alarms": [',  # cut short
        b"\xff\xfe",
    ],
)
def test_a_corrupt_state_file_is_moved_aside(rig: Rig, content: bytes) -> None:
    rig.path.parent.mkdir(parents=True)
    rig.path.write_bytes(content)
    engine = rig.engine(HIGH, now=T0)
    assert engine.active() == []
    aside = rig.path.with_name(f"alarms.json.corrupt-{T0}")
    assert aside.read_bytes() == content and not rig.path.exists()
    hot(engine, 140.0, T0 + S)  # and the engine works on
    assert rig.saved()["alarms"][0]["rule"] == "hot"


def test_an_unreadable_state_file_starts_empty(rig: Rig, tmp_path: Path) -> None:
    rig.path.parent.mkdir(parents=True)
    rig.path.mkdir()  # a directory where the file should be
    engine = rig.engine(HIGH)
    assert engine.active() == []
    hot(engine, 140.0, T0)  # saving fails (logged); the alarm is still raised and published
    assert [a["rule"] for a in engine.active()] == ["hot"]
    assert rig.events() == [("raised", "hot", "active")]


def test_saves_are_atomic_and_leave_no_temporary_file(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = rig.engine(HIGH)
    hot(engine, 140.0, T0)
    assert not rig.path.with_name("alarms.json.tmp").exists()
    good_copy = rig.path.read_bytes()

    def power_cut(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(engine_module.os, "replace", power_cut)
    engine.ack("hot", by="li.wei", now_ms=T0 + S)  # the write fails before the rename
    assert rig.path.read_bytes() == good_copy  # the old list is intact, not half written
    assert not rig.path.with_name("alarms.json.tmp").exists()
    json.loads(good_copy)


def test_every_transition_is_saved(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    hot(engine, 140.0, T0)
    assert rig.saved()["alarms"][0]["state"] == "active"
    engine.ack("hot", by="li.wei", now_ms=T0 + S)
    assert rig.saved()["alarms"][0]["state"] == "acknowledged"
    hot(engine, 100.0, T0 + 2 * S)
    saved = rig.saved()
    assert (saved["v"], saved["alarms"]) == (1, [])
    assert [(a["rule"], a["closed"]) for a in saved["ended"]] == [("hot", "cleared")]
