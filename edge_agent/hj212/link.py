"""One TCP connection to one environmental platform (docs/hj212.md, "Delivery").

The link sends what the spool owes the platform, in order, one packet at a time: each
waits for the platform's 9014 (OverTime), is sent again up to ReCount times, and after
that the connection is dropped and made again with a jittered backoff; the packet stays
owed, so nothing is lost and the order holds. Between packets the link serves the
platform's requests (`Requests`). A frame from the platform that breaks the standard is
counted, answered with its 9011 code when it carried a QN, and never ends the link.
Several platforms have a link each: one down never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent import logs
from edge_agent.events import EventSink
from edge_agent.hj212.codes import Cn, QnRtn, St, make_flag
from edge_agent.hj212.config import Platform
from edge_agent.hj212.frame import FrameError, FrameReader, Packet, Transform, encode, split
from edge_agent.hj212.spool import Owed, Spool, SpoolWorker
from edge_agent.hj212.state import PlatformState
from edge_agent.points import wall_ms

log = logs.get("hj212")

READ_SIZE = 65536


class LinkLost(Exception):
    """The platform did not answer a packet ReCount + 1 times, or the connection closed."""


class Requests(Protocol):
    """Serves one request of the platform (the reporter's): answers through `link`."""

    async def serve(self, request: Packet, link: PlatformLink) -> None: ...


@dataclass(slots=True)
class LinkStatus:
    connected: bool = False
    since_ms: int | None = None  # connected or disconnected since
    last_ack_ms: int | None = None
    sent: int = 0  # packets (parts) written, copies included
    resent: int = 0  # copies written because no 9014 came in OverTime
    acked: int = 0
    connects: int = 0
    drops: int = 0  # connections dropped because the platform did not answer
    bad_frames: int = 0  # frames from the platform that broke the standard
    requests: int = 0
    last_error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


class PlatformLink:
    def __init__(
        self,
        platform: Platform,
        spool: SpoolWorker,
        state: PlatformState,
        requests: Requests,
        events: EventSink,
        transforms: tuple[Transform, Transform] | None = None,
        ask_time: Callable[[], bool] = lambda: False,
        make_qn: Callable[[], str] | None = None,
    ) -> None:
        self.platform = platform
        self.spool = spool
        self.state = state
        self.requests = requests
        self.events = events
        self.status = LinkStatus()
        self._encrypt: Transform | None = transforms[0] if transforms else None
        self._decrypt: Transform | None = transforms[1] if transforms else None
        self._wake = asyncio.Event()
        self._inbox: asyncio.Queue[Packet] = asyncio.Queue()
        self._asked = asyncio.Event()  # a request came in (set with every put)
        self._waiting: tuple[str, asyncio.Future[None]] | None = None  # (QN, its 9014)
        self._writer: asyncio.StreamWriter | None = None
        self._ask_time = ask_time  # whether to ask the platform for its time (1013)
        self._make_qn = make_qn

    def wake(self) -> None:
        """New records are owed: send them now rather than at the next look."""
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.platform.host, self.platform.port),
                    self.platform.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                self.status.last_error = f"connect: {exc or type(exc).__name__}"
            else:
                acked_before = self.status.acked
                await self._session(reader, writer)
                if self.status.acked > acked_before:  # it worked for a while: start over
                    failures = 0
            failures += 1
            delay = min(self.platform.reconnect_max, 2.0 ** min(failures - 1, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.status.connected, self.status.since_ms = True, wall_ms()
        self.status.connects += 1
        self.events.emit("hj212_connected", platform=self.platform.id)
        listening = asyncio.create_task(self._listen(reader), name=f"hj212-{self.platform.id}-in")
        try:
            if self._make_qn is not None and self._ask_time():
                await self._ask_for_time(self._make_qn())
            await self._serve(listening)
        except LinkLost as exc:
            self.status.last_error = str(exc)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            self._writer = None
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            self.status.connected, self.status.since_ms = False, wall_ms()
            if self._waiting is not None:
                self._waiting[1].cancel()
                self._waiting = None
            self.events.emit(
                "hj212_disconnected", level="warning", platform=self.platform.id,
                reason=self.status.last_error,
            )  # fmt: skip

    async def _serve(self, listening: asyncio.Task[None]) -> None:
        """Requests first, then what is owed, until the connection is lost."""
        while True:
            if listening.done():
                raise LinkLost(self.status.last_error or "the platform closed the connection")
            while not self._inbox.empty():
                self.status.requests += 1
                await self.requests.serve(self._inbox.get_nowait(), self)
            owed = await self.spool.call(Spool.owed, self.platform.id, 50)
            for packet in owed:
                await self._deliver_owed(packet)
                if not self._inbox.empty() or listening.done():
                    break
            if not owed:
                self._wake.clear()
                self._asked.clear()
                if self._inbox.empty():
                    await _first(self._wake.wait(), self._asked.wait(), listening, timeout=1.0)

    async def _ask_for_time(self, qn: str) -> None:
        """1013: the platform answers with a set-time (1012), served like any request. It
        follows the restart time (owed first), which tells the platform who we are."""
        owed = await self.spool.call(Spool.owed, self.platform.id, 1)
        if owed:
            await self._deliver_owed(owed[0])
        await self.send(Packet(
            qn=qn, st=self.platform.st, cn=Cn.TIME_CALIBRATION,
            pw=self.state.password, mn=self.platform.mn,
            flag=make_flag(self.platform.protocol, ack=False),
        ))  # fmt: skip

    async def _deliver_owed(self, owed: Owed) -> None:
        sends = await self.upload(Packet(
            qn=owed.qn, st=self.platform.st, cn=owed.cn, pw=self.state.password,
            mn=self.platform.mn, flag=make_flag(self.platform.protocol, ack=True), cp=owed.cp,
        ))  # fmt: skip
        await self.spool.call(Spool.ack, owed.id, wall_ms(), sends)

    async def upload(self, packet: Packet) -> int:
        """Send `packet` (split when long) and wait for each part's 9014; LinkLost when a
        part goes unanswered ReCount + 1 times. How many frames it took."""
        assert packet.qn is not None
        return sum(
            [await self._until_acked(part) for part in split(packet, self.platform.split_at)]
        )

    async def _until_acked(self, part: Packet) -> int:
        assert part.qn is not None
        loop = asyncio.get_running_loop()
        for attempt in range(self.state.re_count + 1):
            answered: asyncio.Future[None] = loop.create_future()
            self._waiting = (part.qn, answered)
            await self.send(part)
            if attempt:
                self.status.resent += 1
            try:
                await asyncio.wait_for(asyncio.shield(answered), self.state.over_time)
            except TimeoutError:
                continue
            finally:
                self._waiting = None
            self.status.acked += 1
            self.status.last_ack_ms = wall_ms()
            return attempt + 1
        self.status.drops += 1
        raise LinkLost(f"no 9014 for QN {part.qn} after {self.state.re_count + 1} sends")

    async def send(self, packet: Packet) -> None:
        """Write one frame (an answer, or a part of an upload)."""
        if self._writer is None:
            raise LinkLost("not connected")
        try:
            self._writer.write(encode(packet, self._encrypt))
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise LinkLost(f"write: {exc}") from exc
        self.status.sent += 1

    def answer(self, request: Packet, cn: Cn, cp: str = "") -> Packet:
        """An answer to `request` (9011, 9012, 9013 or the data of a get request)."""
        st = St.SYSTEM if cn.startswith("9") else self.platform.st
        return Packet(
            qn=request.qn, st=st, cn=cn, pw=self.state.password, mn=self.platform.mn,
            flag=make_flag(self.platform.protocol, ack=False), cp=cp,
        )  # fmt: skip

    # -- what the platform sends -----------------------------------------------------------

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        await self._read(reader)
        # Closed (not cancelled): a packet waiting for its 9014 need not wait OverTime.
        waiting = self._waiting
        if waiting is not None and not waiting[1].done():
            waiting[1].set_exception(LinkLost(self.status.last_error or "connection closed"))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader(self._decrypt)
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except OSError as exc:
                self.status.last_error = f"read: {exc}"
                return
            if not data:
                self.status.last_error = "the platform closed the connection"
                return
            for item in frames.feed(data):
                if isinstance(item, FrameError):
                    await self._bad_frame(item)
                else:
                    await self._received(item)

    async def _received(self, packet: Packet) -> None:
        if packet.cn == Cn.DATA_ANSWER:
            waiting = self._waiting
            ours = waiting is not None and packet.qn == waiting[0] and not waiting[1].done()
            if waiting is not None and ours and packet.mn == self.platform.mn:
                waiting[1].set_result(None)
                return
            self.status.extra["stray_answers"] = self.status.extra.get("stray_answers", 0) + 1
            return
        refusal = self._refusal(packet)
        if refusal is not None:
            if packet.qn is not None:
                await self._try_send(self.answer(packet, Cn.REQUEST_ANSWER, f"QnRtn={refusal}"))
            self.status.extra["refused"] = self.status.extra.get("refused", 0) + 1
            return
        self._inbox.put_nowait(packet)
        self._asked.set()

    def _refusal(self, packet: Packet) -> QnRtn | None:
        """Why a request cannot be served (the 9011 code), or None."""
        if packet.qn is None:
            return QnRtn.BAD_QN
        if packet.mn != self.platform.mn:
            return QnRtn.BAD_MN
        if packet.pw != self.state.password:
            return QnRtn.BAD_PASSWORD
        if packet.st not in (self.platform.st, St.SYSTEM):
            return QnRtn.BAD_ST
        if packet.cn not in SERVED:
            return QnRtn.BAD_CN
        return None

    async def _bad_frame(self, error: FrameError) -> None:
        self.status.bad_frames += 1
        if self.status.bad_frames % 100 == 1:  # a platform sending garbage floods no log
            log.warning("hj212 bad frame", platform=self.platform.id, error=str(error),
                        bad_frames=self.status.bad_frames)  # fmt: skip
        if error.qn is not None:
            refusal = Packet(
                qn=error.qn, st=St.SYSTEM, cn=Cn.REQUEST_ANSWER, pw=self.state.password,
                mn=self.platform.mn, flag=make_flag(self.platform.protocol, ack=False),
                cp=f"QnRtn={int(error.answer)}",
            )  # fmt: skip
            await self._try_send(refusal)

    async def _try_send(self, packet: Packet) -> None:
        with contextlib.suppress(LinkLost):
            await self.send(packet)


# The requests the data logger serves (edge_agent.hj212.requests); another CN is answered
# 9011 QnRtn=8.
SERVED = frozenset(
    {
        Cn.SET_TIMEOUT, Cn.GET_TIME, Cn.SET_TIME, Cn.GET_RTD_INTERVAL, Cn.SET_RTD_INTERVAL,
        Cn.GET_MIN_INTERVAL, Cn.SET_MIN_INTERVAL, Cn.SET_PASSWORD, Cn.RTD_DATA, Cn.RTD_STOP,
        Cn.RUN_STATUS, Cn.RUN_STATUS_STOP, Cn.DAY_DATA, Cn.MINUTE_DATA, Cn.HOUR_DATA,
    }
)  # fmt: skip


async def _first(*waits: Awaitable[object], timeout: float) -> None:
    """Until the first of `waits` is done or `timeout` passes; the others are cancelled
    (a Task among them is only waited for, never cancelled: it is not ours)."""
    tasks = [w if isinstance(w, asyncio.Task) else asyncio.ensure_future(w) for w in waits]
    ours = [t for t, w in zip(tasks, waits, strict=True) if not isinstance(w, asyncio.Task)]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in ours:
            task.cancel()
