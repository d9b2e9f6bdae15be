"""`edge-agent audit`'s pieces without an agent: the --since parser and the terminal table
(the whole command on a real agent's store: tests/integration/test_audit_cli.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from rich.cells import cell_len

from edge_agent.cli.audit import WhenError, parse_when, render
from edge_agent.commands.audit import AuditEntry, AuditRow

NOW = int(datetime(2026, 11, 24, 15, 30, 0).timestamp() * 1000)  # local time


@pytest.mark.parametrize(
    ("text", "ago_s"),
    [
        ("600", 600),
        ("10m", 600),
        ("2h30m", 9000),
        ("1.5h", 5400),
        ("1d", 86400),
        ("90s", 90),
        ("-10m", 600),
        ("10m ago", 600),
        ("2h 30m", 9000),
        (" 10M ", 600),
        ("now", 0),
    ],
)
def test_times_ago(text: str, ago_s: int) -> None:
    assert parse_when(text, NOW) == NOW - ago_s * 1000


def test_today_yesterday_epoch_and_iso_times() -> None:
    midnight = datetime(2026, 11, 24)
    assert parse_when("today", NOW) == int(midnight.timestamp() * 1000)
    assert parse_when("Yesterday", NOW) == int((midnight - timedelta(days=1)).timestamp() * 1000)
    assert parse_when("@1764000000", NOW) == 1_764_000_000_000
    assert parse_when("@1764000000.5", NOW) == 1_764_000_000_500
    local = int(datetime(2026, 11, 24, 8, 0).timestamp() * 1000)
    assert parse_when("2026-11-24 08:00", NOW) == local
    assert parse_when("2026-11-24T08:00", NOW) == local
    assert parse_when("2026-11-24T08:00:00Z", NOW) == 1_795_507_200_000
    assert parse_when("2026-11-24T09:00+01:00", NOW) == 1_795_507_200_000


@pytest.mark.parametrize("text", ["lately", "", "10x", "m10", "@", "@soon", "@nan", "2026-13-01"])
def test_what_is_not_a_time(text: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_when(text, NOW)
    assert isinstance(caught.value, ValueError)  # the shared parser's contract
    assert str(caught.value)


def _entry(point: str, value: object, stage: str = "done", **row: object) -> AuditEntry:
    fields: dict = {
        "id": "c-1", "source": "manual", "type": "write", "by": "李工", "received_ts": NOW,
        "stage": stage, "reason": None, "message": None,
        "result": {"readback": value} if stage == "done" else None, "finished_ts": NOW,
    }  # fmt: skip
    fields.update(row)
    return AuditEntry(AuditRow(**fields), {"point": point, "value": value})


@pytest.mark.parametrize("width", [80, 60])
def test_the_table_fits_its_width_with_wide_characters(width: int) -> None:
    entries = [
        _entry("chiller-1.chws_setpoint", 7.5),
        _entry("冷水机组-2.冷冻水出水温度设定值_夏季_工作日", "自动模式", by="王"),
        _entry(
            "ahu-1.sp",
            30,
            "rejected",
            reason="out_of_limits",
            message="ahu-1.sp takes 5 to 12 degC, not 30; 超出范围，请检查设定值上下限",
        ),
    ]
    lines = "\n".join(render(entries, width)).splitlines()
    assert max(cell_len(line) for line in lines) <= width, "\n".join(lines)
    text = "".join(line.strip() for line in lines)
    assert "chws_setpoint" in text and "冷冻水出水温度设定值" in "".join(text.split())
    assert "超出范围" in text and "out_of_limits" in text
