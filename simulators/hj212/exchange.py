"""One request of the platform and what the logger answered, in the order it arrived.

How an exchange ends depends on the request's family (docs/simulator.md, "HJ 212 platform"):
- get (1011, 1061, 1063) and history (2051, 2061, 2031): 9011, the data packets, 9012;
- set (1000, 1012, 1062, 1064, 1072): 9011, then 9012;
- start (2011 real-time data, 2021 run status): 9011 only;
- notification (2012, 2022 stop): 9013 only.
A 9011 whose QnRtn is not 1 ends any of the first three.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum

from edge_agent.hj212.codes import Cn, QnRtn
from edge_agent.hj212.frame import Packet, parse_cp
from simulators.hj212.records import Items


class LoggerNotConnected(ConnectionError):
    """A request to a logger that has no connection to the platform."""


class Family(Enum):
    GET = "get"
    SET = "set"
    HISTORY = "history"
    START = "start"
    NOTIFICATION = "notification"


FAMILY: dict[str, Family] = {
    Cn.GET_TIME: Family.GET,
    Cn.GET_RTD_INTERVAL: Family.GET,
    Cn.GET_MIN_INTERVAL: Family.GET,
    Cn.SET_TIMEOUT: Family.SET,
    Cn.SET_TIME: Family.SET,
    Cn.SET_RTD_INTERVAL: Family.SET,
    Cn.SET_MIN_INTERVAL: Family.SET,
    Cn.SET_PASSWORD: Family.SET,
    Cn.MINUTE_DATA: Family.HISTORY,
    Cn.HOUR_DATA: Family.HISTORY,
    Cn.DAY_DATA: Family.HISTORY,
    Cn.RTD_DATA: Family.START,
    Cn.RUN_STATUS: Family.START,
    Cn.RTD_STOP: Family.NOTIFICATION,
    Cn.RUN_STATUS_STOP: Family.NOTIFICATION,
}


@dataclass(eq=False)
class Exchange:
    request: Packet
    frames: list[Packet] = field(default_factory=list)  # what belonged to it, as it came
    timed_out: bool = False
    _done: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def qn(self) -> str:
        assert self.request.qn is not None, "a request always has a QN"
        return self.request.qn

    @property
    def family(self) -> Family:
        return FAMILY[self.request.cn]

    @property
    def arrived(self) -> list[str]:
        """The CNs that answered, in order: ["9011", "2051", "2051", "9012"]."""
        return [packet.cn for packet in self.frames]

    @property
    def answer(self) -> int | None:
        """The QnRtn of the 9011 (None: none came)."""
        return self._return_code(Cn.REQUEST_ANSWER, "QnRtn")

    @property
    def result(self) -> int | None:
        """The ExeRtn of the 9012 (None: none came)."""
        return self._return_code(Cn.EXECUTION_RESULT, "ExeRtn")

    @property
    def notified(self) -> bool:
        return Cn.NOTIFICATION_ANSWER in self.arrived

    @property
    def data(self) -> list[Packet]:
        """The packets of the request's own CN: the values got, the history records."""
        return [packet for packet in self.frames if packet.cn == self.request.cn]

    @property
    def items(self) -> Items:
        """The data packets' items in one mapping (a get's SystemTime, RtdInterval...)."""
        merged: Items = {}
        for packet in self.data:
            merged.update(parse_cp(packet.cp))
        return merged

    @property
    def records(self) -> dict[str, Items]:
        """A history's records: {DataTime: items without DataTime}, in the order sent."""
        out: dict[str, Items] = {}
        for packet in self.data:
            items = parse_cp(packet.cp)
            out[items.pop("DataTime", "")] = items
        return out

    @property
    def complete(self) -> bool:
        if self.family is Family.NOTIFICATION:
            return self.notified
        if self.answer is not None and (self.answer != QnRtn.READY or self.family is Family.START):
            return True
        return self.result is not None

    @property
    def ok(self) -> bool:
        """Complete and successful: ready (QnRtn 1) and, where one comes, ExeRtn 1 (or 100,
        "no data", for a history)."""
        if not self.complete or self.family is Family.NOTIFICATION:
            return self.complete
        if self.answer != QnRtn.READY:
            return False
        wanted = {1, 100} if self.family is Family.HISTORY else {1}
        return self.family is Family.START or self.result in wanted

    def take(self, packet: Packet) -> bool:
        """Add a packet with this exchange's QN if it belongs here (an answer of the kind
        the family expects in its order, or data of the request's CN for a get or history
        after the 9011); False if it does not (the caller counts it as unexpected)."""
        if self.complete or not self._belongs(packet):
            return False
        self.frames.append(packet)
        if self.complete:
            self._done.set()
        return True

    async def wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            self.timed_out = True

    def _belongs(self, packet: Packet) -> bool:
        family, cn = self.family, packet.cn
        if family is Family.NOTIFICATION:
            return cn == Cn.NOTIFICATION_ANSWER
        if cn == Cn.REQUEST_ANSWER:
            return self.answer is None
        if cn == Cn.EXECUTION_RESULT:
            return family is not Family.START and self.answer is not None
        ready = self.answer == QnRtn.READY
        return ready and cn == self.request.cn and family in (Family.GET, Family.HISTORY)

    def _return_code(self, cn: str, key: str) -> int | None:
        for packet in self.frames:
            if packet.cn == cn:
                return int(parse_cp(packet.cp)[key])
        return None
