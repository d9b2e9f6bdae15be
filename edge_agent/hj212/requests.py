"""The platform's requests and the data logger's answers (docs/hj212.md, "Requests").

Every request first gets 9011 (QnRtn=1: it will be served; the link has already refused
a wrong MN, PW, ST or CN). Then: a get request its data under the request's QN and 9012;
a set request 9012 once applied (ExeRtn=3 when a value is out of the standard's range);
history every record in the range (each acknowledged by 9014 like an upload) and 9012 (100:
no data); 2011/2021 start the uploads; the notifications 2012/2022 get 9013.

What a platform sets is kept in the spool and outlives restarts. A set-time (1012) never
touches the system clock: it is kept as this platform's clock offset, or refused with
ExeRtn=3 while NTP keeps the system clock (the `set_time` policy); an event says which.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edge_agent.events import EventSink
from edge_agent.hj212.codes import Cn, ExeRtn, QnRtn, make_flag
from edge_agent.hj212.config import MINUTE_INTERVALS, RTD_INTERVAL_S, Platform
from edge_agent.hj212.frame import FrameError, Packet, parse_cp
from edge_agent.hj212.link import PlatformLink
from edge_agent.hj212.spool import Spool, SpoolWorker
from edge_agent.hj212.state import PlatformState
from edge_agent.hj212.timebase import Timebase

HISTORY = {Cn.MINUTE_DATA, Cn.HOUR_DATA, Cn.DAY_DATA}
_TIME = re.compile(r"\d{14}")


@dataclass(slots=True)
class PlatformDesk:
    """Serves the requests of one platform (the `Requests` of its link)."""

    platform: Platform
    state: PlatformState
    spool: SpoolWorker
    timebase: Timebase
    events: EventSink
    clock_synchronised: Callable[[], bool]
    changed: Callable[[], None]  # the reporter: intervals or real-time changed

    async def serve(self, request: Packet, link: PlatformLink) -> None:
        if request.cn in (Cn.RTD_STOP, Cn.RUN_STATUS_STOP):  # notifications
            await link.send(link.answer(request, Cn.NOTIFICATION_ANSWER))
            key = "realtime" if request.cn == Cn.RTD_STOP else "run_status"
            await self._store(**{key: False})
            return
        try:
            items = parse_cp(request.cp)
        except FrameError:
            await link.send(link.answer(request, Cn.REQUEST_ANSWER, f"QnRtn={QnRtn.REJECTED}"))
            return
        await link.send(link.answer(request, Cn.REQUEST_ANSWER, f"QnRtn={QnRtn.READY}"))
        result = await self._execute(request, items, link)
        if result is not None:
            await link.send(link.answer(request, Cn.EXECUTION_RESULT, f"ExeRtn={result}"))

    async def _execute(
        self, request: Packet, items: dict[str, str], link: PlatformLink
    ) -> ExeRtn | None:
        cn, state = request.cn, self.state
        if cn == Cn.GET_TIME:
            now = self.timebase.hj_time(self.platform.id)
            await link.send(
                link.answer(request, Cn.GET_TIME, _with_pol(items, f"SystemTime={now}"))
            )
            return ExeRtn.SUCCESS
        if cn == Cn.GET_RTD_INTERVAL:
            cp = f"RtdInterval={int(state.realtime_interval_s)}"
            await link.send(link.answer(request, Cn.GET_RTD_INTERVAL, cp))
            return ExeRtn.SUCCESS
        if cn == Cn.GET_MIN_INTERVAL:
            cp = f"MinInterval={state.minute_interval}"
            await link.send(link.answer(request, Cn.GET_MIN_INTERVAL, cp))
            return ExeRtn.SUCCESS
        if cn == Cn.SET_TIMEOUT:
            over, count = _int(items.get("OverTime")), _int(items.get("ReCount"))
            if over is None or count is None or not 1 <= over <= 600 or not 0 <= count <= 99:
                return ExeRtn.CONDITION
            await self._store(over_time=float(over), re_count=count)
            return ExeRtn.SUCCESS
        if cn == Cn.SET_RTD_INTERVAL:
            seconds = _int(items.get("RtdInterval"))
            if seconds is None or not RTD_INTERVAL_S[0] <= seconds <= RTD_INTERVAL_S[1]:
                return ExeRtn.CONDITION
            await self._store(realtime_interval_s=float(seconds))
            return ExeRtn.SUCCESS
        if cn == Cn.SET_MIN_INTERVAL:
            minutes = _int(items.get("MinInterval"))
            if minutes not in MINUTE_INTERVALS:
                return ExeRtn.CONDITION
            await self._store(minute_interval=minutes)
            return ExeRtn.SUCCESS
        if cn == Cn.SET_PASSWORD:
            new = items.get("NewPW", "")
            if not re.fullmatch(r"[0-9A-Za-z]{6}", new):
                return ExeRtn.CONDITION
            # 9012 still carries the password the request came with; the next frame the new.
            await link.send(link.answer(request, Cn.EXECUTION_RESULT, f"ExeRtn={ExeRtn.SUCCESS}"))
            await self._store(password=new)
            self.events.emit("hj212_password_changed", platform=self.platform.id)
            return None
        if cn == Cn.SET_TIME:
            return await self._set_time(items)
        if cn in (Cn.RTD_DATA, Cn.RUN_STATUS):
            await self._store(**{"realtime" if cn == Cn.RTD_DATA else "run_status": True})
            return None  # the uploads are the answer; 2012/2022 end them
        if cn in HISTORY:
            return await self._history(request, items, link)
        return ExeRtn.FAILED  # pragma: no cover - the link serves only the CNs above

    async def _set_time(self, items: dict[str, str]) -> ExeRtn:
        text = items.get("SystemTime", "")
        platform_id = self.platform.id
        try:
            wanted = self.timebase.parse(text)
        except ValueError:
            return ExeRtn.CONDITION
        offset = wanted - self.timebase.wall_ms()
        policy = self.platform.set_time
        refuse = policy == "refuse" or (policy == "auto" and self.clock_synchronised())
        if refuse or abs(offset) > self.platform.max_clock_offset * 1000:
            self.events.emit(
                "hj212_set_time_refused", level="warning", platform=platform_id,
                platform_time=text, offset_ms=offset,
                reason="clock_synchronised" if refuse else "offset_too_large",
            )  # fmt: skip
            return ExeRtn.CONDITION
        await self._store(clock_offset_ms=offset)
        self.events.emit(
            "hj212_clock_offset", level="warning", platform=platform_id, platform_time=text,
            offset_ms=offset,
        )  # fmt: skip
        return ExeRtn.SUCCESS

    async def _history(self, request: Packet, items: dict[str, str], link: PlatformLink) -> ExeRtn:
        begin, end = items.get("BeginTime", ""), items.get("EndTime", "")
        if not (_TIME.fullmatch(begin) and _TIME.fullmatch(end)) or begin > end:
            return ExeRtn.CONDITION
        found = await self.spool.call(Spool.records, self.platform.id, request.cn, begin, end)
        for record in found:  # each acknowledged like an upload; LinkLost ends the exchange
            answer = link.answer(request, Cn(request.cn), record.cp)
            await link.upload(replace(answer, flag=make_flag(self.platform.protocol, ack=True)))
        return ExeRtn.SUCCESS if found else ExeRtn.NO_DATA

    async def _store(self, **values: object) -> None:
        for key, value in values.items():
            setattr(self.state, key, value)
        await self.spool.call(Spool.set, self.platform.id, **PlatformState.stored(**values))
        shown: dict[str, Any] = {k: v for k, v in values.items() if k != "password"}
        self.events.emit("hj212_settings_changed", platform=self.platform.id, **shown)
        self.changed()


def _with_pol(items: dict[str, str], cp: str) -> str:
    pol = items.get("PolId")
    return cp if pol is None else f"PolId={pol};{cp}"


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
