"""`edge-agent audit`'s terminal table without an agent (its --since is the CLI's one
parser: tests/edge_agent/test_when.py; the whole command on a real agent's store:
tests/integration/test_audit_cli.py)."""

from __future__ import annotations

from datetime import datetime

import pytest
from rich.cells import cell_len

from edge_agent.cli.audit import render
from edge_agent.commands.audit import AuditEntry, AuditRow

NOW = int(datetime(2026, 11, 24, 15, 30, 0).timestamp() * 1000)  # local time


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
