"""The alarm engine: rule types, delays, deadbands, the lifecycle and what is published."""

from __future__ import annotations

import math

import pytest

from edge_agent.alarms.engine import AlarmError, AlreadyAcknowledged, UnknownAlarm
from edge_agent.points import Quality, Reading
from edge_agent.store.outbox import Record, TrafficClass
from tests.edge_agent.alarms.rig import IDENTITY, T0, Rig, S, bad, good, rule, stale

HIGH = rule(
    id="chw-warm",
    type="high",
    point="plant.chws_temp",
    limit=9.0,
    deadband=0.5,
    on_delay="10s",
    off_delay="5s",
    message="CHW supply {value} °C (limit {limit})",
)


def feed(engine, value, now, point="chws_temp", device="plant") -> None:
    engine.observe(device, [good(point, value, now)], now)


def listed(engine) -> list[tuple[str, str, bool]]:
    return [(a["rule"], a["state"], a["acked"]) for a in engine.active()]


# --- limits, delays, deadbands ------------------------------------------------------------


def test_high_limit_waits_for_the_on_delay(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    feed(engine, 9.4, T0)
    feed(engine, 9.6, T0 + 5 * S)
    engine.tick(T0 + 10 * S - 1)
    assert engine.active() == [] and rig.records == []
    engine.tick(T0 + 10 * S)  # held for exactly on_delay: raised by the timer, no new reading
    [alarm] = engine.active()
    assert alarm["state"] == "active" and alarm["raised_ts"] == T0 + 10 * S
    assert alarm["value"] == 9.6 and alarm["limit"] == 9.0
    assert alarm["message"] == "CHW supply 9.6 °C (limit 9.0)"


def test_a_dip_restarts_the_on_delay(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    feed(engine, 9.5, T0)
    feed(engine, 8.9, T0 + 8 * S)  # not above the limit any more
    feed(engine, 9.5, T0 + 9 * S)
    engine.tick(T0 + 18 * S)
    assert engine.active() == []
    engine.tick(T0 + 19 * S)
    assert listed(engine) == [("chw-warm", "active", False)]


def test_at_the_limit_is_not_above_it(rig: Rig) -> None:
    engine = rig.engine(rule(id="r", type="high", point="plant.chws_temp", limit=9.0))
    feed(engine, 9.0, T0)
    assert engine.active() == []
    feed(engine, 9.0001, T0 + S)
    assert listed(engine) == [("r", "active", False)]


def test_deadband_and_off_delay(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    feed(engine, 10.0, T0)
    engine.tick(T0 + 10 * S)
    assert len(engine.active()) == 1
    feed(engine, 8.6, T0 + 11 * S)  # below the limit, inside the deadband: still in alarm
    engine.tick(T0 + 60 * S)
    assert listed(engine) == [("chw-warm", "active", False)]
    feed(engine, 8.4, T0 + 61 * S)  # past limit - deadband: the off delay starts
    feed(engine, 8.7, T0 + 64 * S)  # back into the deadband: the clear is called off
    engine.tick(T0 + 70 * S)
    assert listed(engine) == [("chw-warm", "active", False)]
    feed(engine, 8.0, T0 + 71 * S)
    engine.tick(T0 + 76 * S - 1)
    assert listed(engine) == [("chw-warm", "active", False)]
    engine.tick(T0 + 76 * S)
    assert listed(engine) == [("chw-warm", "cleared", False)]
    assert rig.events() == [("raised", "chw-warm", "active"), ("cleared", "chw-warm", "cleared")]
    assert rig.messages()[-1]["clear_value"] == 8.0


def test_low_limit_mirrors_high(rig: Rig) -> None:
    low = rule(id="ph-low", type="low", point="sewage.ph", limit=6.0, deadband=0.2)
    engine = rig.engine(low)
    feed(engine, 6.0, T0, "ph", "sewage")
    assert engine.active() == []
    feed(engine, 5.9, T0 + S, "ph", "sewage")
    assert listed(engine) == [("ph-low", "active", False)]
    feed(engine, 6.15, T0 + 2 * S, "ph", "sewage")
    assert listed(engine) == [("ph-low", "active", False)]
    feed(engine, 6.21, T0 + 3 * S, "ph", "sewage")
    assert listed(engine) == [("ph-low", "cleared", False)]


def test_bad_and_unusable_values_neither_raise_nor_clear(rig: Rig) -> None:
    r = rule(id="r", type="high", point="plant.chws_temp", limit=9.0)
    engine = rig.engine(r)
    for value in (math.nan, math.inf, "hot", True, None):
        feed(engine, value, T0)
    engine.observe("plant", [bad("chws_temp")], T0)
    assert engine.active() == []
    feed(engine, 12.0, T0 + S)
    engine.observe("plant", [bad("chws_temp")], T0 + 2 * S)
    feed(engine, math.nan, T0 + 3 * S)
    engine.observe("plant", [Reading("chws_temp", 1.0, T0, Quality.OVERRIDDEN)], T0 + 3 * S)
    engine.tick(T0 + 60 * S)
    assert listed(engine) == [("r", "active", False)]


def test_other_points_devices_and_disabled_rules_cost_nothing(rig: Rig) -> None:
    off = rule(id="off", type="high", point="plant.chws_temp", limit=0.0, enabled=False)
    engine = rig.engine(HIGH, off)
    engine.observe("plant", [good("chwr_temp", 99.0)], T0)
    engine.observe("chiller-1", [good("chws_temp", 99.0)], T0)
    engine.tick(T0 + 60 * S)
    assert engine.active() == [] and rig.records == []
    feed(engine, 5.0, T0 + 61 * S)  # would trip the disabled rule
    assert engine.active() == []


# --- lifecycle ------------------------------------------------------------------------------


def raise_high(engine, now: int = T0) -> str:
    feed(engine, 11.0, now)
    engine.tick(now + 10 * S)
    return engine.active()[0]["id"]


def clear_high(engine, now: int) -> None:
    feed(engine, 7.0, now)
    engine.tick(now + 5 * S)


def test_ack_then_clear_leaves_the_list(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    occurrence = raise_high(engine)
    view = engine.ack("chw-warm", by="li.wei", note="checking chiller 2", now_ms=T0 + 20 * S)
    assert view["id"] == occurrence and view["state"] == "acknowledged"
    assert (view["ack_by"], view["ack_note"], view["ack_ts"]) == (
        "li.wei",
        "checking chiller 2",
        T0 + 20 * S,
    )
    assert listed(engine) == [("chw-warm", "acknowledged", True)]
    clear_high(engine, T0 + 30 * S)
    assert engine.active() == []
    assert rig.events() == [
        ("raised", "chw-warm", "active"),
        ("acknowledged", "chw-warm", "acknowledged"),
        ("cleared", "chw-warm", "cleared"),
    ]
    assert [m["closed"] for m in rig.messages()] == [False, False, True]


def test_clear_before_ack_stays_listed_until_acknowledged(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    occurrence = raise_high(engine)
    clear_high(engine, T0 + 30 * S)
    assert listed(engine) == [("chw-warm", "cleared", False)]
    view = engine.ack(occurrence, by="li.wei", now_ms=T0 + 40 * S)  # by occurrence id
    assert view["state"] == "cleared" and view["acked"] is True
    assert engine.active() == []
    last = rig.messages()[-1]
    assert (last["event"], last["state"], last["acked"], last["closed"]) == (
        "acknowledged",
        "cleared",
        True,
        True,
    )


def test_ack_errors_are_distinct_and_machine_readable(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    with pytest.raises(UnknownAlarm) as unknown:
        engine.ack("chw-warm", by="li.wei")  # a rule with nothing listed
    assert unknown.value.reason == "unknown_alarm"
    raise_high(engine)
    with pytest.raises(UnknownAlarm):
        engine.ack("no-such-alarm", by="li.wei")
    engine.ack("chw-warm", by="li.wei", now_ms=T0 + 20 * S)
    with pytest.raises(AlreadyAcknowledged) as again:
        engine.ack("chw-warm", by="zhang.min", now_ms=T0 + 21 * S)
    assert again.value.reason == "already_acknowledged"
    assert isinstance(again.value, AlarmError) and "li.wei" in str(again.value)
    assert engine.active()[0]["ack_by"] == "li.wei"  # the failed ack changed nothing
    assert len(rig.records) == 2


def test_reraise_after_clear_is_a_new_occurrence(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    first = raise_high(engine)
    engine.ack(first, by="li.wei", now_ms=T0 + 11 * S)
    clear_high(engine, T0 + 20 * S)
    second = raise_high(engine, T0 + 40 * S)
    assert second != first
    assert listed(engine) == [("chw-warm", "active", False)]  # unacknowledged again


def test_reraise_supersedes_a_cleared_unacknowledged_occurrence(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    first = raise_high(engine)
    clear_high(engine, T0 + 20 * S)
    second = raise_high(engine, T0 + 40 * S)
    [only] = engine.active()  # one entry per rule, however much the alarm chatters
    assert only["id"] == second != first
    superseded = rig.messages()[-2]
    assert superseded["event"] == "superseded" and superseded["id"] == first
    assert superseded["closed"] is True and superseded["superseded_by"] == second
    with pytest.raises(UnknownAlarm):
        engine.ack(first, by="li.wei")


def test_active_lists_unacknowledged_first_then_by_severity(rig: Rig) -> None:
    rules = [
        rule(id="minor", type="high", point="d.p", limit=0, severity="minor"),
        rule(id="critical", type="high", point="d.p", limit=0, severity="critical"),
        rule(id="warning", type="high", point="d.p", limit=0, severity="warning"),
    ]
    engine = rig.engine(*rules)
    engine.observe("d", [good("p", 1.0)], T0)
    engine.ack("critical", by="x", now_ms=T0)
    assert [a["rule"] for a in engine.active()] == ["minor", "warning", "critical"]
    assert engine.summary()["unacknowledged"] == 2 and engine.summary()["critical"] == 1
    assert engine.active()[0]["current"] == 1.0


# --- what is published ------------------------------------------------------------------------


def test_every_transition_is_an_alarm_record(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    raise_high(engine)
    engine.ack("chw-warm", by="li.wei", now_ms=T0 + 12 * S)
    clear_high(engine, T0 + 20 * S)
    assert len(rig.records) == 3
    for record in rig.records:
        assert isinstance(record, Record) and record.cls is TrafficClass.ALARM
        assert record.stream == "alarm" and record.batch is None
    first, *_ = rig.messages()
    assert first["v"] == 1 and first["type"] == "alarm"
    assert {k: first[k] for k in IDENTITY} == IDENTITY
    assert first["ts"] == rig.records[0].ts == first["raised_ts"]
    expected = {
        "id", "rule", "point", "severity", "state", "event", "ts", "raised_ts", "value", "limit",
        "message", "acked", "ack_ts", "ack_by", "ack_note", "cleared_ts", "clear_value", "closed",
    }  # fmt: skip
    assert expected <= set(first)
    assert (first["rule"], first["point"], first["severity"]) == (
        "chw-warm",
        "plant.chws_temp",
        "major",
    )


def test_a_failing_outbox_does_not_lose_the_alarm(rig: Rig) -> None:
    def broken(record: Record) -> None:
        raise RuntimeError("store closed")

    engine = rig.engine(HIGH)
    engine._publish = broken  # the outbox going away under the engine
    raise_high(engine)
    assert listed(engine) == [("chw-warm", "active", False)]
    assert rig.saved()["alarms"][0]["rule"] == "chw-warm"


# --- other rule types ---------------------------------------------------------------------------


def test_rate_of_change_over_a_window(rig: Rig) -> None:
    rate = rule(id="rising", type="rate", point="d.t", limit=0.5, window="60s", direction="rising")
    engine = rig.engine(rate)
    # +0.6 per minute, polled every 10 s: not judged before a whole window of history.
    for n in range(6):
        engine.observe("d", [good("t", 7.0 + 0.1 * n)], T0 + n * 10 * S)
    assert engine.active() == []
    engine.observe("d", [good("t", 7.6)], T0 + 60 * S)
    [alarm] = engine.active()
    assert alarm["value"] == pytest.approx(0.6)
    engine.observe("d", [good("t", 7.65)], T0 + 70 * S)  # 0.55 / min over the last minute
    assert engine.active()[0]["state"] == "active"
    engine.observe("d", [good("t", 7.65)], T0 + 80 * S)  # 0.45 / min
    assert engine.active()[0]["state"] == "cleared"


def test_rate_directions(rig: Rig) -> None:
    falling = rule(id="f", type="rate", point="d.t", limit=1, window="60s", direction="falling")
    either = rule(id="e", type="rate", point="d.t", limit=1, window="60s")
    rising = rule(id="r", type="rate", point="d.t", limit=1, window="60s", direction="rising")
    engine = rig.engine(falling, either, rising)
    engine.observe("d", [good("t", 10.0)], T0)
    engine.observe("d", [good("t", 8.0)], T0 + 60 * S)
    assert sorted(a["rule"] for a in engine.active()) == ["e", "f"]


def test_rate_restarts_after_a_gap(rig: Rig) -> None:
    rate = rule(id="r", type="rate", point="d.t", limit=1, window="60s")
    engine = rig.engine(rate)
    engine.observe("d", [good("t", 0.0)], T0)
    engine.observe("d", [bad("t")], T0 + 30 * S)
    engine.observe("d", [good("t", 5.0)], T0 + 60 * S)  # no reference a window old any more
    assert engine.active() == []


def test_stuck_value(rig: Rig) -> None:
    stuck = rule(id="s", type="stuck", point="sewage.ph", tolerance=0.01, duration="10m")
    engine = rig.engine(stuck)
    for n in range(61):  # wobbling within the tolerance for 10 minutes
        feed(engine, 7.2 + (0.005 if n % 2 else 0.0), T0 + n * 10 * S, "ph", "sewage")
        if n < 60:
            assert engine.active() == [], n
    [alarm] = engine.active()
    assert alarm["value"] == 7.2 and alarm["message"] == "sewage.ph stuck at 7.2"
    feed(engine, 7.25, T0 + 610 * S, "ph", "sewage")  # it moves: cleared
    assert listed(engine) == [("s", "cleared", False)]


def test_stuck_timing_restarts_after_bad_quality(rig: Rig) -> None:
    stuck = rule(id="s", type="stuck", point="d.p", duration="60s")
    engine = rig.engine(stuck)
    feed(engine, 1.0, T0, "p", "d")
    engine.observe("d", [bad("p")], T0 + 30 * S)
    feed(engine, 1.0, T0 + 40 * S, "p", "d")
    feed(engine, 1.0, T0 + 90 * S, "p", "d")
    assert engine.active() == []
    feed(engine, 1.0, T0 + 100 * S, "p", "d")
    assert len(engine.active()) == 1


def test_comm_loss_without_any_reading(rig: Rig) -> None:
    comm = rule(id="c", type="comm_loss", point="chiller-1", duration="30s")
    engine = rig.engine(comm, now=T0)
    engine.tick(T0 + 29 * S)
    assert engine.active() == []
    engine.tick(T0 + 30 * S)  # nothing ever heard from it
    [alarm] = engine.active()
    assert alarm["message"] == "chiller-1: no communication" and alarm["value"] == "no data"
    engine.observe("chiller-1", [good("chws_temp", 7.0)], T0 + 31 * S)
    assert listed(engine) == [("c", "cleared", False)]


def test_comm_loss_counts_from_the_last_good_poll(rig: Rig) -> None:
    comm = rule(id="c", type="comm_loss", point="chiller-1", duration="30s")
    engine = rig.engine(comm)
    engine.observe("chiller-1", [good("chws_temp", 7.0)], T0 + 10 * S)
    engine.observe("chiller-1", [bad("chws_temp", "timeout")], T0 + 15 * S)
    engine.device_down("chiller-1", "timeout", T0 + 15 * S)
    engine.tick(T0 + 39 * S)
    assert engine.active() == []
    engine.tick(T0 + 40 * S)
    [alarm] = engine.active()
    assert alarm["value"] == "timeout"
    engine.tick(T0 + 100 * S)
    assert len(rig.records) == 1  # raised once, not on every tick
    engine.device_recovered("chiller-1", T0 + 101 * S)
    assert listed(engine) == [("c", "cleared", False)]


def test_comm_loss_of_one_point(rig: Rig) -> None:
    comm = rule(id="c", type="comm_loss", point="chiller-1.chws_temp", duration="30s")
    engine = rig.engine(comm)
    for n in range(4):  # the device answers, this point does not
        engine.observe(
            "chiller-1", [good("power_kw", 300.0), bad("chws_temp", "exception 2")], T0 + n * 10 * S
        )
    assert listed(engine) == [("c", "active", False)]
    assert engine.active()[0]["value"] == "exception 2"


def test_bad_quality_for_longer_than_the_duration(rig: Rig) -> None:
    rule_ = rule(id="q", type="bad_quality", point="d.p", duration="60s")
    engine = rig.engine(rule_)
    engine.observe("d", [bad("p", "decode error")], T0)
    engine.observe("d", [stale("p", 1.0)], T0 + 30 * S)
    engine.tick(T0 + 59 * S)
    assert engine.active() == []
    engine.tick(T0 + 60 * S)
    assert engine.active()[0]["value"] == "not refreshed"
    engine.observe("d", [Reading("p", 2.0, T0, Quality.OVERRIDDEN)], T0 + 61 * S)
    assert listed(engine) == [("q", "cleared", False)]
    # A short bad spell is not an alarm.
    engine.ack("q", by="x")
    engine.observe("d", [bad("p")], T0 + 100 * S)
    engine.observe("d", [good("p", 1.0)], T0 + 150 * S)
    engine.tick(T0 + 200 * S)
    assert engine.active() == []


def test_state_rule_with_delays(rig: Rig) -> None:
    state = rule(
        id="trip", type="state", point="chiller-1.fault", alarm_value=True,
        on_delay="5s", off_delay="5s",
    )  # fmt: skip
    engine = rig.engine(state)
    feed(engine, False, T0, "fault", "chiller-1")
    feed(engine, True, T0 + S, "fault", "chiller-1")
    feed(engine, False, T0 + 3 * S, "fault", "chiller-1")  # a blip shorter than on_delay
    engine.tick(T0 + 20 * S)
    assert engine.active() == []
    feed(engine, True, T0 + 21 * S, "fault", "chiller-1")
    engine.tick(T0 + 26 * S)
    [alarm] = engine.active()
    assert alarm["message"] == "chiller-1.fault is True" and alarm["limit"] is True
    feed(engine, False, T0 + 27 * S, "fault", "chiller-1")
    engine.tick(T0 + 32 * S)
    assert listed(engine) == [("trip", "cleared", False)]


def test_state_rule_on_a_multistate_number_or_name(rig: Rig) -> None:
    by_number = rule(id="n", type="state", point="ch.status", alarm_value=3)
    by_name = rule(id="t", type="state", point="ch.mode", alarm_value="fault")
    engine = rig.engine(by_number, by_name)
    engine.observe("ch", [good("status", 2), good("mode", "running")], T0)
    assert engine.active() == []
    engine.observe("ch", [good("status", 3), good("mode", "fault")], T0 + S)
    assert sorted(a["rule"] for a in engine.active()) == ["n", "t"]


def test_when_suppresses_the_rule_while_its_guard_does_not_hold(rig: Rig) -> None:
    trip = rule(
        id="pump-trip", type="state", point="pump.run_status", alarm_value=False,
        when={"point": "pump.enable", "equals": True}, on_delay="30s",
    )  # fmt: skip
    engine = rig.engine(trip)
    engine.observe("pump", [good("run_status", False)], T0)  # the guard not read yet
    engine.tick(T0 + 60 * S)
    assert engine.active() == []
    engine.observe("pump", [good("enable", False), good("run_status", False)], T0 + 61 * S)
    engine.tick(T0 + 120 * S)  # on standby: not a trip
    assert engine.active() == []
    engine.observe("pump", [good("enable", True), good("run_status", False)], T0 + 121 * S)
    engine.tick(T0 + 150 * S)
    assert engine.active() == []
    engine.tick(T0 + 151 * S)  # commanded on and not running for 30 s
    assert listed(engine) == [("pump-trip", "active", False)]
    engine.observe("pump", [bad("enable"), good("run_status", False)], T0 + 152 * S)
    assert listed(engine) == [("pump-trip", "active", False)]  # an unreadable guard: no change
    engine.observe("pump", [good("enable", False)], T0 + 153 * S)  # switched off: cleared
    assert listed(engine) == [("pump-trip", "cleared", False)]


def test_message_placeholders_and_a_template_that_does_not_fit(rig: Rig) -> None:
    fancy = rule(
        id="f", type="high", point="d.p", limit=1, message="{rule} {severity}: {value:.1f}"
    )
    wrong = rule(id="w", type="state", point="d.s", alarm_value="on", message="{value:.1f}")
    engine = rig.engine(fancy, wrong)
    engine.observe("d", [good("p", 2.25), good("s", "on")], T0)
    messages = {a["rule"]: a["message"] for a in engine.active()}
    assert messages == {"f": "f major: 2.2", "w": "{value:.1f} (value on)"}


def test_ended_occurrences_are_kept_newest_first_across_a_restart(rig: Rig) -> None:
    engine = rig.engine(HIGH)
    first = raise_high(engine)
    engine.ack("chw-warm", by="li.wei", note="chiller 2 tripped", now_ms=T0 + 20 * S)
    clear_high(engine, T0 + 30 * S)  # acknowledged, then cleared: ended by the clear
    second = raise_high(engine, T0 + 60 * S)
    clear_high(engine, T0 + 90 * S)
    third = raise_high(engine, T0 + 120 * S)  # the second, never acknowledged: superseded
    assert [(a["id"], a["closed"]) for a in engine.history()] == [
        (second, "superseded"),
        (first, "cleared"),
    ]
    ended = engine.history()[1]
    assert (ended["ack_by"], ended["ack_note"], ended["closed_ts"]) == (
        "li.wei",
        "chiller 2 tripped",
        T0 + 35 * S,
    )
    engine.ack(third, by="zhang.min", now_ms=T0 + 150 * S)
    clear_high(engine, T0 + 160 * S)
    assert engine.history()[0]["id"] == third
    again = rig.engine(HIGH, now=T0 + 200 * S)  # a restart: the history is on disk
    assert [a["id"] for a in again.history()] == [third, second, first]
    gone = rig.engine(now=T0 + 300 * S)  # the rule removed: its listed alarm ends too
    assert gone.history()[0]["id"] == third  # nothing was listed: nothing new ended
