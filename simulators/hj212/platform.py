"""The simulated platform: a TCP server the loggers connect to, one connection per MN.

It checks every frame (edge_agent.hj212.frame, then simulators.hj212.checks), answers the
uploads that ask for it with a 9014 (as `ack_mode` says), stores their records, and sends
requests whose answers it collects into an Exchange. Processing of what arrives is
synchronous, so frames are handled and answered in the order they came.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_agent.hj212.cipher import BlockCipher, transforms
from edge_agent.hj212.codes import Cn, Protocol, QnRtn, St, make_flag
from edge_agent.hj212.frame import FrameError, FrameReader, Packet, Transform, encode, parse_cp
from simulators.hj212.acks import AckMode, AckPolicy, Answer
from simulators.hj212.checks import ANSWER_CNS, RECORD_CNS, TIME_FORMAT, Rejected, check
from simulators.hj212.display import JsonLog
from simulators.hj212.exchange import FAMILY, Exchange, Family, LoggerNotConnected
from simulators.hj212.parts import Assembly
from simulators.hj212.records import Counts, Items, Outcome, Received, RecordStore, Tally

_RECORD_COUNTER = {
    Outcome.NEW: "records",
    Outcome.DUPLICATE: "duplicates",
    Outcome.CONFLICT: "conflicts",
}


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter, decrypt: Transform | None) -> None:
        self.writer = writer
        host, port, *_ = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{host}:{port}"
        self.mn: str | None = None  # the logger's, from its first frame that passed the checks
        self.frames = FrameReader(decrypt)
        self.assembly = Assembly()
        self.closed = asyncio.Event()

    def send(self, data: bytes) -> bool:
        if self.writer.is_closing():
            return False
        self.writer.write(data)
        return True


def china_time() -> datetime:
    """Now in China (UTC+8, no daylight saving time), naive: a bureau's local time,
    whatever zone the machine that simulates it is set to."""
    return datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=8)


class HJ212Platform:
    """`loggers`: {MN: password}. `data_st`: the system codes the loggers' data carry (the
    first is the ST of the platform's requests). `clock`: the platform's local time,
    China's by default (QNs, the time it sets). `on_record` sees every record received,
    `on_link` every logger that connects (True) or goes (False). See docs/simulator.md,
    "HJ 212 platform"."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        loggers: Mapping[str, str] | None = None,
        *,
        data_st: Iterable[str] = (St.SURFACE_WATER_SOURCE.value,),
        protocol: Protocol = Protocol.HJ212_2017,
        cipher: BlockCipher | None = None,
        clock: Callable[[], datetime] = china_time,
        log_path: Path | None = None,
        on_record: Callable[[Received], None] | None = None,
        on_link: Callable[[str, str, bool], None] | None = None,
        ack_mode: AckMode | str = AckMode.ACK,
        ack_delay_s: float = 1.0,
        drop_first_n: int = 1,
        request_timeout_s: float = 5.0,
    ) -> None:
        self.host, self.port = host, port
        self._passwords = dict(loggers or {})
        self._new_passwords: dict[str, str] = {}  # while a 1072 is open: the one it sets
        self._data_st = tuple(data_st)
        self._protocol = protocol
        self._encrypt: Transform | None = None
        self._decrypt: Transform | None = None
        if cipher is not None:
            self._encrypt, self._decrypt = transforms(cipher)
        self._clock = clock
        self._log = JsonLog(log_path) if log_path else None
        self._on_record, self._on_link = on_record, on_link
        self.acks = AckPolicy(ack_mode, ack_delay_s, drop_first_n)
        self.request_timeout_s = request_timeout_s
        self.calibrations: list[Exchange] = []  # the 1012s that answered a logger's 1013
        self._store = RecordStore()
        self._tally = Tally()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._links: dict[str, _Connection] = {}
        self._linked: dict[str, asyncio.Event] = {}
        self._pending: dict[tuple[str, str], Exchange] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_qn_time: datetime | None = None

    # -- life cycle --------------------------------------------------------------------

    async def __aenter__(self) -> HJ212Platform:
        await self.accept()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._log:
            self._log.close()

    async def accept(self) -> None:
        """Listen (again, on the same port once one was given or chosen)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Stop listening and close every logger's connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        connections = list(self._connections)
        for connection in connections:
            connection.writer.close()
        await asyncio.gather(*(connection.closed.wait() for connection in connections))

    # -- what it holds -----------------------------------------------------------------

    @property
    def ack_mode(self) -> AckMode:
        return self.acks.mode

    @ack_mode.setter
    def ack_mode(self, mode: AckMode | str) -> None:
        self.acks.mode = AckMode(mode)

    @property
    def connected(self) -> set[str]:
        return set(self._links)

    def password(self, mn: str) -> str:
        return self._passwords[mn]

    def records(self, mn: str, cn: str) -> dict[str, Items]:
        return self._store.records(mn, cn)

    def counts(self, mn: str | None = None) -> Counts:
        """A snapshot of one logger's counters, or (mn None) of all of them."""
        return self._tally.snapshot(mn)

    async def wait_connected(self, mn: str, timeout: float = 5.0) -> None:
        """Until the logger has sent a frame that passed the checks; TimeoutError after."""
        async with asyncio.timeout(timeout):
            await self._linked.setdefault(mn, asyncio.Event()).wait()

    # -- requests ----------------------------------------------------------------------

    async def request(
        self, mn: str, cn: str, cp: str = "", timeout: float | None = None
    ) -> Exchange:
        """Send a request (QN: the platform's time, unique) and collect what answers it until
        the exchange is complete or `timeout` (default request_timeout_s) has passed."""
        if cn not in FAMILY:
            raise ValueError(f"CN {cn} is not a request this platform makes")
        if mn not in self._passwords:
            raise KeyError(f"MN {mn} is not a logger of this platform")
        connection = self._links.get(mn)
        if connection is None:
            raise LoggerNotConnected(f"logger {mn} is not connected")
        request = Packet(
            qn=self._next_qn(),
            st=self._data_st[0],
            cn=cn,
            pw=self._passwords[mn],
            mn=mn,
            flag=make_flag(self._protocol, ack=True),
            cp=cp,
        )
        exchange = Exchange(request)
        new_password = parse_cp(cp).get("NewPW") if cn == Cn.SET_PASSWORD else None
        if new_password:
            self._new_passwords[mn] = new_password
        self._pending[(mn, exchange.qn)] = exchange
        try:
            connection.send(encode(request, self._encrypt))
            await exchange.wait(self.request_timeout_s if timeout is None else timeout)
        finally:
            del self._pending[(mn, exchange.qn)]
            if new_password:
                del self._new_passwords[mn]
                if exchange.ok:
                    self._passwords[mn] = new_password
        return exchange

    async def history(
        self, mn: str, cn: str, begin: datetime, end: datetime, timeout: float | None = None
    ) -> Exchange:
        if FAMILY.get(cn) is not Family.HISTORY:
            raise ValueError(f"CN {cn} is not minute, hour or day data")
        cp = f"BeginTime={begin:{TIME_FORMAT}};EndTime={end:{TIME_FORMAT}}"
        return await self.request(mn, cn, cp, timeout)

    async def get_time(self, mn: str, pol_id: str | None = None) -> Exchange:
        return await self.request(mn, Cn.GET_TIME, f"PolId={pol_id}" if pol_id else "")

    async def set_time(
        self, mn: str, when: datetime | None = None, pol_id: str | None = None
    ) -> Exchange:
        system_time = f"SystemTime={(when or self._clock()):{TIME_FORMAT}}"
        cp = f"PolId={pol_id};{system_time}" if pol_id else system_time
        return await self.request(mn, Cn.SET_TIME, cp)

    async def set_intervals(
        self, mn: str, *, rtd_s: int | None = None, minute_min: int | None = None
    ) -> list[Exchange]:
        """1062 (real-time interval, s) and/or 1064 (minute-data interval, min), in turn."""
        wanted = [(Cn.SET_RTD_INTERVAL, "RtdInterval", rtd_s)]
        wanted.append((Cn.SET_MIN_INTERVAL, "MinInterval", minute_min))
        return [
            await self.request(mn, cn, f"{key}={value}")
            for cn, key, value in wanted
            if value is not None
        ]

    async def set_password(self, mn: str, new: str) -> Exchange:
        """1072; the platform takes the new password once the logger answers ExeRtn 1
        (while the exchange is open, both are accepted)."""
        return await self.request(mn, Cn.SET_PASSWORD, f"NewPW={new}")

    async def set_timeout(self, mn: str, over_time_s: int, re_count: int) -> Exchange:
        return await self.request(mn, Cn.SET_TIMEOUT, f"OverTime={over_time_s};ReCount={re_count}")

    async def start_realtime(self, mn: str) -> Exchange:
        return await self.request(mn, Cn.RTD_DATA)

    async def stop_realtime(self, mn: str) -> Exchange:
        return await self.request(mn, Cn.RTD_STOP)

    def _next_qn(self) -> str:
        """yyyyMMddHHmmssSSS of the clock, one millisecond past the last QN if need be."""
        now = self._clock()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_qn_time is not None and now <= self._last_qn_time:
            now = self._last_qn_time + timedelta(milliseconds=1)
        self._last_qn_time = now
        return f"{now:{TIME_FORMAT}}{now.microsecond // 1000:03d}"

    # -- what arrives ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer, self._decrypt)
        self._connections.add(connection)
        try:
            while data := await reader.read(65536):
                for item in connection.frames.feed(data):
                    self._receive(connection, item)
        except ConnectionError:
            pass  # the logger went; as if it had closed
        finally:
            self._connections.discard(connection)
            self._unlink(connection)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            connection.closed.set()

    def _receive(self, connection: _Connection, item: Packet | FrameError) -> None:
        if isinstance(item, FrameError):
            kind = "crc_errors" if item.answer is QnRtn.BAD_CRC else "bad_frames"
            self._reject(connection, kind, str(item), None, item.qn)
            return
        try:
            items = check(item, self._passwords_of(item.mn), self._data_st)
            if connection.mn not in (None, item.mn):
                raise Rejected("bad_frames", f"MN {item.mn} on the connection of {connection.mn}")
        except Rejected as exc:
            self._reject(connection, exc.kind, str(exc), item, item.qn)
            return
        self._link(connection, item.mn)
        self._tally.count("frames", item.mn)
        if item.cn in ANSWER_CNS:
            exchange = self._pending.get((item.mn, item.qn or ""))
            if exchange is not None and exchange.take(item):
                self._note(connection, "answer", item)
            else:
                self._unexpected(connection, item)
        elif item.cn == Cn.TIME_CALIBRATION:
            self._note(connection, "calibration", item)
            self._spawn(self._calibrate(item.mn, items.get("PolId")))
        else:
            self._upload(connection, item, items)

    def _upload(self, connection: _Connection, packet: Packet, items: Items) -> None:
        if self.acks.drops(packet):
            self._tally.count("dropped", packet.mn)
            self._note(connection, "dropped", packet)
            return
        whole: Packet | None = packet
        if packet.pnum is not None:
            whole = connection.assembly.add(packet)
            if whole is not None:
                try:
                    items = check(whole, self._passwords_of(whole.mn), self._data_st)
                except Rejected as exc:  # the parts do not make one packet: no answer
                    self._reject(connection, exc.kind, str(exc), packet, packet.qn)
                    return
        if whole is None:
            self._note(connection, "part", packet)
        else:
            exchange = self._pending.get((packet.mn, packet.qn or ""))
            solicited = exchange is not None and exchange.take(whole)
            if whole.cn in RECORD_CNS:
                self._store_record(connection, whole, items, solicited)
            elif solicited:
                self._note(connection, "data", whole)
            else:
                self._unexpected(connection, whole)
        if packet.needs_answer:
            self._answer(connection, packet)

    def _store_record(
        self, connection: _Connection, packet: Packet, items: Items, solicited: bool
    ) -> None:
        values = dict(items)
        data_time = values.pop("DataTime")
        outcome = self._store.put(packet.mn, packet.cn, data_time, values)
        if not (outcome is Outcome.DUPLICATE and solicited):  # a history answer repeats
            self._tally.count(_RECORD_COUNTER[outcome], packet.mn)
        self._note(connection, outcome.value, packet)
        if self._on_record:
            self._on_record(Received(packet.mn, packet.cn, data_time, values, outcome, solicited))

    def _answer(self, connection: _Connection, upload: Packet) -> None:
        answer = self.acks.answer(upload, self._encrypt)
        if answer is None:
            return
        if answer.delay_s > 0:
            self._spawn(self._answer_later(connection, upload.mn, answer))
        elif connection.send(answer.data) and answer.is_ack:
            self._tally.count("acks_sent", upload.mn)

    async def _answer_later(self, connection: _Connection, mn: str, answer: Answer) -> None:
        await asyncio.sleep(answer.delay_s)
        if connection.send(answer.data) and answer.is_ack:
            self._tally.count("acks_sent", mn)

    async def _calibrate(self, mn: str, pol_id: str | None) -> None:
        """A logger's 1013 asks for the time: answer with a 1012 carrying the clock."""
        with contextlib.suppress(LoggerNotConnected):
            self.calibrations.append(await self.set_time(mn, self._clock(), pol_id))

    def _passwords_of(self, mn: str) -> set[str] | None:
        if mn not in self._passwords:
            return None
        return {self._passwords[mn], *filter(None, [self._new_passwords.get(mn)])}

    def _link(self, connection: _Connection, mn: str) -> None:
        if connection.mn == mn:
            return
        connection.mn = mn
        old = self._links.get(mn)
        if old is not None:  # the logger came back on a new connection: the old one is dead
            old.writer.close()
        self._links[mn] = connection
        self._linked.setdefault(mn, asyncio.Event()).set()
        if self._on_link:
            self._on_link(mn, connection.peer, True)

    def _unlink(self, connection: _Connection) -> None:
        mn = connection.mn
        if mn is None or self._links.get(mn) is not connection:
            return
        del self._links[mn]
        self._linked[mn].clear()
        if self._on_link:
            self._on_link(mn, connection.peer, False)

    def _reject(
        self,
        connection: _Connection,
        kind: str,
        reason: str,
        packet: Packet | None,
        qn: str | None,
    ) -> None:
        claimed = packet.mn if packet is not None and packet.mn in self._passwords else None
        self._tally.count(kind, connection.mn or claimed)
        self._note(connection, kind, packet, reason=reason, qn=qn)

    def _unexpected(self, connection: _Connection, packet: Packet) -> None:
        self._tally.count("unexpected", packet.mn)
        self._note(connection, "unexpected", packet)

    def _note(
        self,
        connection: _Connection,
        verdict: str,
        packet: Packet | None,
        *,
        reason: str | None = None,
        qn: str | None = None,
    ) -> None:
        if self._log is not None:
            at = self._clock()
            self._log.frame(at, connection.peer, verdict, packet, reason=reason, qn=qn)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
