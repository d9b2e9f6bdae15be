"""The technician's status screen: texts from devices, brokers and rules are shown as text."""

from __future__ import annotations

import time

from rich.console import Console

from edge_agent.cli.status_view import render_status


def _status(message: str, error: str) -> dict:
    now_ms = int(time.time() * 1000)
    device = {"driver": "modbus", "up": False, "points": 4, "bad_points": 4, "rtt_ms": 0.0,
              "last_good_ts": now_ms - 5000, "error_rate": 1.0, "last_error": error}  # fmt: skip
    return {
        "site": "s", "gateway": "g", "version": "0.1.0", "pid": 1, "uptime_s": 10.0,
        "config_hash": "abc",
        "uplink": {"state": "disconnected", "endpoint": None, "published": 0, "in_flight": 0,
                   "connects": 0, "last_error": error},
        "store": {"backlog_rows": 0, "backlog_points": 0, "oldest_ts": None, "used_bytes": 0,
                  "budget_bytes": 1, "evicted_points": 0, "error": error},
        "alarms": {"active": 1, "unacknowledged": 1, "major": 1,
                   "list": [{"state": "active", "severity": "major", "message": message}]},
        "commands": {"done": 0, "rejected": 0, "failed": 0,
                     "holds": [{"point": "p.sp", "source": "manual", "value": [1, 2]}]},
        "loops": [{"id": "chw-reset", "mode": "waiting"}],
        "devices": {"sewage": device},
    }  # fmt: skip


def test_brackets_in_messages_are_text_not_markup() -> None:
    console = Console(width=200, record=True)
    console.print(render_status(_status("COD 300 [mg/L] above the limit [/]", "[Errno 111] [/x]")))
    text = console.export_text()
    assert "COD 300 [mg/L] above the limit [/]" in text
    assert text.count("[Errno 111] [/x]") == 3  # uplink, store, the device below the table
    assert "p.sp held by manual = [1, 2]" in text
    assert "chw-reset waiting" in text


def test_device_strings_and_reasons_in_the_points_table_are_text() -> None:
    from edge_agent.cli.points import _points_table

    now_ms = int(time.time() * 1000)
    values = {
        "sewage.state": {"value": "[/] [ALARM] [mg/L]", "quality": "good", "ts": now_ms},
        "sewage.ph": {"value": None, "quality": "bad", "reason": "timeout [unit 3]", "ts": 0},
    }
    console = Console(width=200, record=True)
    console.print(_points_table(values, {}))
    text = console.export_text()
    assert "[/] [ALARM] [mg/L]" in text
    assert "bad: timeout [unit 3]" in text


def test_a_full_disk_and_a_pending_hold_end_are_shown() -> None:
    status = _status("ok", "")
    status["store"].update(too_small="the disk is too small to keep anything useful: …",
                           dropped_points=1967, error=None)  # fmt: skip
    status["uplink"].update(ack_error="database or disk is full", unrecorded_acks=12,
                            last_error=None)  # fmt: skip
    status["commands"]["holds"] = [{"point": "chiller-3.enable", "source": "platform",
                                    "value": True, "ending": "minimum on time"}]  # fmt: skip
    console = Console(width=200, record=True)
    console.print(render_status(status))
    text = console.export_text()
    assert "the disk is too small to keep anything useful" in text
    assert "1967 points never stored" in text
    assert "acknowledgements not recorded (12 waiting): database or disk is full" in text
    assert "chiller-3.enable held by platform = true, ending: minimum on time" in text
