"""What makes a well-framed packet from a logger one the platform refuses (and so does not
answer, so that the logger sends it again): an unknown MN, a wrong password, a CN it does
not take from a logger, the wrong system code, a CP that does not parse, a bad time."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from edge_agent.hj212.codes import Cn, St
from edge_agent.hj212.frame import FrameError, Packet, parse_cp
from simulators.hj212.records import Items

# Uploads stored as records (keyed by their DataTime).
RECORD_CNS = frozenset(
    {
        Cn.RTD_DATA,
        Cn.MINUTE_DATA,
        Cn.HOUR_DATA,
        Cn.DAY_DATA,
        Cn.RUN_STATUS,
        Cn.DAY_RUNTIME,
        Cn.RESTART_TIME,
    }
)
GET_ANSWER_CNS = frozenset({Cn.GET_TIME, Cn.GET_RTD_INTERVAL, Cn.GET_MIN_INTERVAL})
ANSWER_CNS = frozenset({Cn.REQUEST_ANSWER, Cn.EXECUTION_RESULT, Cn.NOTIFICATION_ANSWER})
FROM_LOGGER = RECORD_CNS | GET_ANSWER_CNS | ANSWER_CNS | {Cn.TIME_CALIBRATION}
TIME_ITEMS = ("DataTime", "SystemTime", "RestartTime", "BeginTime", "EndTime")
TIME_FORMAT = "%Y%m%d%H%M%S"
_RETURN_CODE: dict[str, str] = {Cn.REQUEST_ANSWER: "QnRtn", Cn.EXECUTION_RESULT: "ExeRtn"}


class Rejected(Exception):
    """`kind` is the Counts field that counts it."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def check(packet: Packet, passwords: Collection[str] | None, data_st: Collection[str]) -> Items:
    """The packet's CP items if the platform takes it, else Rejected. `passwords`: what the
    packet's MN may use (None: an MN the platform does not know); `data_st`: the system
    codes of the loggers' data (the answers 9011..9013 carry 91)."""
    if passwords is None:
        raise Rejected("unknown_mn", f"MN {packet.mn} is not a logger of this platform")
    if packet.pw not in passwords:
        raise Rejected("wrong_password", f"wrong password for MN {packet.mn}")
    if packet.cn not in FROM_LOGGER:
        raise Rejected("unknown_cn", f"CN {packet.cn} is not one a logger sends")
    wanted = {St.SYSTEM.value} if packet.cn in ANSWER_CNS else set(data_st)
    if packet.st not in wanted:
        raise Rejected("bad_st", f"ST {packet.st} with CN {packet.cn}: expected {sorted(wanted)}")
    if packet.qn is None and (packet.needs_answer or packet.cn in ANSWER_CNS):
        raise Rejected("bad_frames", f"CN {packet.cn} without a QN cannot be answered")
    try:
        items = parse_cp(packet.cp)
    except FrameError as exc:
        raise Rejected("bad_frames", str(exc)) from exc
    for key in TIME_ITEMS:
        if key in items and not well_formed_time(items[key]):
            raise Rejected("bad_data_time", f"{key}={items[key]!r} is not yyyyMMddHHmmss")
    if packet.cn in RECORD_CNS and "DataTime" not in items:
        raise Rejected("bad_data_time", f"CN {packet.cn} without a DataTime")
    code = _RETURN_CODE.get(packet.cn)
    if code is not None and not items.get(code, "").isdigit():
        raise Rejected("bad_frames", f"CN {packet.cn} without a numeric {code}")
    return items


def well_formed_time(text: str) -> bool:
    if len(text) != 14 or not text.isdigit():
        return False
    try:
        datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        return False
    return True
