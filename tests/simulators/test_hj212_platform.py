"""The simulated HJ 212 platform against a minimal logger over real TCP on loopback: the
acks of uploads (whole and split), each ack mode, the frames it refuses, duplicates and
conflicts, the request exchanges of every family, refuse/accept, several loggers, and the
command-line program."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.hj212.cipher import Sm4Ecb, transforms
from edge_agent.hj212.codes import QnRtn
from edge_agent.hj212.frame import (
    FrameError,
    FrameReader,
    Packet,
    Transform,
    encode,
    frame,
    split,
)
from simulators.hj212 import AckMode, Exchange, HJ212Platform, LoggerNotConnected, Outcome
from simulators.hj212.acks import GARBAGE
from simulators.hj212.display import record_line
from simulators.hj212.records import Received
from tests.harness import REPO

MN = "010000A8900016F000169DC0"
PW = "123456"
MN2 = "010000A8900016F000169DC1"
PW2 = "654321"
NOW = datetime(2026, 12, 6, 10, 21, 30, 250000)


def minute_cp(data_time: str, cod: str = "48.2") -> str:
    return (
        f"DataTime={data_time};w01018-Min=40.1,w01018-Avg={cod},w01018-Max=55.0,w01018-Flag=N;"
        "w00000-Avg=12.50,w00000-Cou=45.0,w00000-Flag=N"
    )


def minute_items(cod: str = "48.2") -> dict[str, str]:
    items = dict(item.split("=") for item in minute_cp("x", cod).replace(",", ";").split(";"))
    del items["DataTime"]
    return items


class Clock:
    """The platform's local time, set by the test."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Logger:
    """A minimal data logger: builds packets, writes them on a real TCP connection, reads
    what the platform writes back (edge_agent.hj212.frame both ways)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mn: str,
        pw: str,
        cipher: tuple[Transform, Transform] | None,
    ) -> None:
        self.reader, self.writer, self.mn, self.pw = reader, writer, mn, pw
        self.encrypt: Transform | None = None
        decrypt: Transform | None = None
        if cipher is not None:
            self.encrypt, decrypt = cipher
        self.frames = FrameReader(decrypt)
        self.pending: deque[Packet | FrameError] = deque()
        self.qns = iter(range(20261206100000000, 20261206200000000))

    @classmethod
    async def connect(
        cls, port: int, mn: str = MN, pw: str = PW, cipher: Sm4Ecb | None = None
    ) -> Logger:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, mn, pw, transforms(cipher) if cipher else None)

    def packet(self, cn: str, cp: str = "", **fields: Any) -> Packet:
        """An upload of this logger (ST 32, Flag 5, a new QN); `fields` change any field."""
        packet = Packet(qn=str(next(self.qns)), st="32", cn=cn, pw=self.pw, mn=self.mn, flag=5)
        return replace(packet, cp=cp, **fields)

    def reply(self, request: Packet, cn: str, cp: str = "", st: str = "91") -> Packet:
        """An answer to a platform's request: its QN, Flag 4 (no answer wanted)."""
        return Packet(qn=request.qn, st=st, cn=cn, pw=self.pw, mn=self.mn, flag=4, cp=cp)

    async def send(self, *items: Packet | bytes) -> None:
        for item in items:
            self.writer.write(item if isinstance(item, bytes) else encode(item, self.encrypt))
        await self.writer.drain()

    async def upload(self, cn: str, cp: str, **fields: Any) -> Packet:
        packet = self.packet(cn, cp, **fields)
        await self.send(packet)
        return packet

    async def receive(self, timeout: float = 2.0) -> Packet | FrameError:
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the platform closed the connection")
                self.pending.extend(self.frames.feed(data))
        return self.pending.popleft()

    async def packet_in(self, timeout: float = 2.0) -> Packet:
        item = await self.receive(timeout)
        assert isinstance(item, Packet), item
        return item

    async def acked(self, upload: Packet) -> None:
        """The next thing from the platform is the 9014 of `upload`."""
        ack = await self.packet_in()
        assert (ack.cn, ack.qn, ack.st, ack.flag, ack.cp) == ("9014", upload.qn, "91", 4, "")
        assert (ack.mn, ack.pw) == (upload.mn, upload.pw)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def platform(clock: Clock) -> AsyncIterator[HJ212Platform]:
    loggers = {MN: PW, MN2: PW2}
    async with HJ212Platform(loggers=loggers, clock=clock, request_timeout_s=2.0) as running:
        yield running


@pytest.fixture
async def logger(platform: HJ212Platform) -> AsyncIterator[Logger]:
    client = await Logger.connect(platform.port)
    yield client
    await client.close()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for the platform to have handled what was sent (when nothing answers it)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def linked(platform: HJ212Platform, logger: Logger) -> None:
    """Make the platform know the logger's connection (its first valid frame)."""
    probe = await logger.upload("2081", "DataTime=20261206080000;RestartTime=20261206080000")
    await logger.acked(probe)


# -- uploads --------------------------------------------------------------------------------


async def test_an_upload_is_acked_with_its_qn_and_stored(
    platform: HJ212Platform, logger: Logger
) -> None:
    upload = await logger.upload("2051", minute_cp("20261206102000"))
    await logger.acked(upload)
    assert platform.records(MN, "2051") == {"20261206102000": minute_items()}
    counts = platform.counts(MN)
    assert (counts.frames, counts.acks_sent, counts.records) == (1, 1, 1)
    assert platform.counts() == counts and platform.counts(MN2).frames == 0


async def test_an_upload_that_asks_no_answer_gets_none(
    platform: HJ212Platform, logger: Logger
) -> None:
    await logger.upload("2051", minute_cp("20261206102000"), flag=4)
    probe = await logger.upload("2051", minute_cp("20261206102100"))
    await logger.acked(probe)  # the first thing back: nothing answered the first
    assert list(platform.records(MN, "2051")) == ["20261206102000", "20261206102100"]


async def test_records_come_back_in_time_order(platform: HJ212Platform, logger: Logger) -> None:
    for data_time in ["20261206102200", "20261206102000", "20261206102100"]:
        await logger.acked(await logger.upload("2051", minute_cp(data_time)))
    assert list(platform.records(MN, "2051")) == [
        "20261206102000",
        "20261206102100",
        "20261206102200",
    ]
    assert platform.records(MN, "2061") == {}


async def test_a_split_upload_is_acked_part_by_part_and_stored_whole(
    platform: HJ212Platform, logger: Logger
) -> None:
    codes = [f"w{n:05d}" for n in range(40)]
    cp = ";".join(
        [
            "DataTime=20261206102000",
            *(f"{code}-Avg={n}.5,{code}-Flag=N" for n, code in enumerate(codes)),
        ]
    )
    parts = split(logger.packet("2051", cp), 300)
    assert len(parts) >= 3 and {part.qn for part in parts} == {parts[0].qn}
    for number, part in enumerate(parts, start=1):
        assert platform.records(MN, "2051") == {}, "stored before the last part came"
        await logger.send(part)
        await logger.acked(part)
        if number == 1:  # a part sent again (its ack was lost) is taken again
            await logger.send(part)
            await logger.acked(part)
    (items,) = platform.records(MN, "2051").values()
    assert list(items) == [f"{code}-{name}" for code in codes for name in ("Avg", "Flag")]
    assert items["w00039-Avg"] == "39.5"
    counts = platform.counts(MN)
    assert (counts.records, counts.acks_sent, counts.bad_frames) == (1, len(parts) + 1, 0)


async def test_split_parts_that_disagree_on_their_time_are_refused(
    platform: HJ212Platform, logger: Logger
) -> None:
    cp = ";".join(["DataTime=20261206102000", *(f"w{n:05d}-Avg={n}" for n in range(60))])
    first, second, *rest = split(logger.packet("2051", cp), 300)
    second = replace(
        second, cp=second.cp.replace("DataTime=20261206102000", "DataTime=20261206102100")
    )
    await logger.send(first)
    await logger.acked(first)
    await logger.send(second, *rest)
    probe = await logger.upload("2051", minute_cp("20261206103000"))
    for part in [second, *rest][:-1]:
        await logger.acked(part)
    await logger.acked(probe)  # not the last part's: the whole did not parse
    assert list(platform.records(MN, "2051")) == ["20261206103000"]
    assert platform.counts(MN).bad_frames == 1


async def test_a_record_again_is_a_duplicate_and_other_values_a_conflict(
    platform: HJ212Platform, logger: Logger
) -> None:
    seen: list[Outcome] = []
    platform._on_record = lambda record: seen.append(record.outcome)
    for cod in ["48.2", "48.2", "50.0"]:
        await logger.acked(await logger.upload("2051", minute_cp("20261206102000", cod)))
    assert seen == [Outcome.NEW, Outcome.DUPLICATE, Outcome.CONFLICT]
    assert platform.records(MN, "2051") == {"20261206102000": minute_items("48.2")}
    counts = platform.counts(MN)
    assert (counts.records, counts.duplicates, counts.conflicts) == (1, 1, 1)


def _bad_crc(data: bytes) -> bytes:
    crc = int(data[-6:-2], 16) ^ 0x0001
    return data[:-6] + b"%04X\r\n" % crc


BAD_FRAMES: dict[str, Callable[[Logger], Packet | bytes]] = {
    "crc_errors": lambda lg: _bad_crc(encode(lg.packet("2051", minute_cp("20261206102000")))),
    "wrong_password": lambda lg: lg.packet("2051", minute_cp("20261206102000"), pw="999999"),
    "unknown_mn": lambda lg: lg.packet("2051", minute_cp("20261206102000"), mn="NOTOURS"),
    "bad_st": lambda lg: lg.packet("2051", minute_cp("20261206102000"), st="91"),
    "unknown_cn": lambda lg: lg.packet("9014", ""),
    "bad_data_time": lambda lg: lg.packet("2051", minute_cp("20261306102000")),
    "bad_frames": lambda lg: lg.packet("2051", "DataTime=20261206102000;w01018-Avg"),
}


@pytest.mark.parametrize("kind", BAD_FRAMES)
async def test_a_bad_frame_is_counted_and_not_answered(
    platform: HJ212Platform, logger: Logger, kind: str
) -> None:
    await linked(platform, logger)
    await logger.send(BAD_FRAMES[kind](logger))
    probe = await logger.upload("2051", minute_cp("20261206103000"))
    await logger.acked(probe)  # the first answer is the probe's
    assert list(platform.records(MN, "2051")) == ["20261206103000"]
    total = platform.counts()
    assert getattr(total, kind) == 1 and total.frames == 2
    assert platform.counts(MN) == total  # it came on the logger's connection


async def test_a_bad_frame_before_a_logger_is_known_counts_for_no_logger(
    platform: HJ212Platform, logger: Logger
) -> None:
    await logger.send(BAD_FRAMES["crc_errors"](logger), BAD_FRAMES["unknown_mn"](logger))
    await linked(platform, logger)
    assert (platform.counts().crc_errors, platform.counts().unknown_mn) == (1, 1)
    assert (platform.counts(MN).crc_errors, platform.counts(MN).unknown_mn) == (0, 0)
    await logger.send(BAD_FRAMES["wrong_password"](logger))  # the MN is known: its own
    await logger.acked(await logger.upload("2051", minute_cp("20261206103000")))
    assert platform.counts(MN).wrong_password == 1


async def test_garbage_bytes_and_a_frame_missing_fields_are_bad_frames(
    platform: HJ212Platform, logger: Logger
) -> None:
    await logger.send(b"hello", frame(b"QN=1;ST=32;CN=2051;PW=123456"))  # good CRC, no CP
    probe = await logger.upload("2051", minute_cp("20261206103000"))
    await logger.acked(probe)
    assert platform.counts().bad_frames == 2


async def test_another_mn_on_a_loggers_connection_is_refused(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    other = logger.packet("2051", minute_cp("20261206102000"), mn=MN2, pw=PW2)
    await logger.send(other)
    probe = await logger.upload("2051", minute_cp("20261206103000"))
    await logger.acked(probe)
    assert platform.counts(MN).bad_frames == 1 and platform.records(MN2, "2051") == {}


# -- ack modes ------------------------------------------------------------------------------


async def test_never_stores_but_answers_nothing(platform: HJ212Platform, logger: Logger) -> None:
    platform.ack_mode = "never"
    await logger.upload("2051", minute_cp("20261206102000"))
    await logger.upload("2051", minute_cp("20261206102000"))  # the logger resends
    await until(lambda: platform.counts(MN).duplicates == 1)
    platform.ack_mode = AckMode.ACK
    probe = await logger.upload("2051", minute_cp("20261206102100"))
    await logger.acked(probe)
    counts = platform.counts(MN)
    assert (counts.records, counts.duplicates, counts.acks_sent) == (2, 1, 1)


async def test_garbage_answers_bytes_that_are_no_frame(
    platform: HJ212Platform, logger: Logger
) -> None:
    platform.ack_mode = "garbage"
    await logger.upload("2051", minute_cp("20261206102000"))
    data = await asyncio.wait_for(logger.reader.read(65536), 2.0)
    assert data == GARBAGE and b"##" not in data
    (error,) = logger.frames.feed(data)  # no frame: reported as garbage, nothing else
    assert isinstance(error, FrameError)
    assert platform.counts(MN).acks_sent == 0 and platform.counts(MN).records == 1


async def test_bad_crc_answers_a_9014_whose_crc_is_wrong(
    platform: HJ212Platform, logger: Logger
) -> None:
    platform.ack_mode = "bad-crc"
    upload = await logger.upload("2051", minute_cp("20261206102000"))
    error = await logger.receive()
    assert isinstance(error, FrameError)
    assert error.answer is QnRtn.BAD_CRC and error.qn == upload.qn
    assert platform.counts(MN).acks_sent == 0


async def test_late_answers_after_the_delay(platform: HJ212Platform, logger: Logger) -> None:
    platform.ack_mode = "late"
    platform.acks.delay_s = 0.3
    started = time.monotonic()
    upload = await logger.upload("2051", minute_cp("20261206102000"))
    with pytest.raises(TimeoutError):
        await logger.receive(timeout=0.2)
    await logger.acked(upload)
    assert time.monotonic() - started >= 0.3
    assert platform.counts(MN).acks_sent == 1


async def test_drop_first_n_ignores_the_first_copies_of_each_qn(
    platform: HJ212Platform, logger: Logger
) -> None:
    platform.acks.drop_first_n = 2
    platform.ack_mode = "drop-first-n"
    upload = logger.packet("2051", minute_cp("20261206102000"))
    for _ in range(3):
        await logger.send(upload)
    await logger.acked(upload)  # the third copy's
    assert platform.records(MN, "2051") == {"20261206102000": minute_items()}
    other = await logger.upload("2051", minute_cp("20261206102100"))  # its own first copy
    await until(lambda: platform.counts(MN).dropped == 3)
    platform.ack_mode = "ack"
    probe = await logger.upload("2051", minute_cp("20261206102200"))
    await logger.acked(probe)
    assert "20261206102100" not in platform.records(MN, "2051") and other.qn != probe.qn
    counts = platform.counts(MN)
    assert (counts.dropped, counts.acks_sent, counts.records, counts.duplicates) == (3, 2, 2, 0)


def test_an_unknown_ack_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        HJ212Platform(ack_mode="sometimes")


# -- requests -------------------------------------------------------------------------------


async def test_a_get_request_round_trip(platform: HJ212Platform, logger: Logger) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.get_time(MN, "w01018"))
    request = await logger.packet_in()
    assert (request.qn, request.st, request.cn, request.flag) == (
        "20261206102130250",
        "32",
        "1011",
        5,
    )
    assert (request.pw, request.mn, request.cp) == (PW, MN, "PolId=w01018")
    await logger.send(
        logger.reply(request, "9011", "QnRtn=1"),
        logger.reply(request, "1011", "PolId=w01018;SystemTime=20261206102129", st="32"),
        logger.reply(request, "9012", "ExeRtn=1"),
    )
    exchange = await asking
    assert exchange.arrived == ["9011", "1011", "9012"]
    assert exchange.ok and not exchange.timed_out
    assert exchange.items == {"PolId": "w01018", "SystemTime": "20261206102129"}
    assert platform.counts(MN).unexpected == 0


async def test_request_qns_are_unique_on_a_stopped_clock(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    asking = [asyncio.create_task(platform.request(MN, "1061", timeout=0.5)) for _ in range(3)]
    qns = [(await logger.packet_in()).qn for _ in asking]
    assert qns == ["20261206102130250", "20261206102130251", "20261206102130252"]
    for task in asking:
        task.cancel()
    await asyncio.gather(*asking, return_exceptions=True)


@pytest.mark.parametrize(
    ("call", "cn", "cp"),
    [
        (
            lambda p: p.set_time(MN, datetime(2026, 12, 6, 10, 0)),
            "1012",
            "SystemTime=20261206100000",
        ),
        (lambda p: p.set_time(MN), "1012", "SystemTime=20261206102130"),
        (lambda p: p.set_timeout(MN, 5, 3), "1000", "OverTime=5;ReCount=3"),
        (lambda p: p.set_password(MN, "abc123"), "1072", "NewPW=abc123"),
        (lambda p: p.request(MN, "1062", "RtdInterval=30"), "1062", "RtdInterval=30"),
    ],
)
async def test_a_set_request_round_trip(
    platform: HJ212Platform,
    logger: Logger,
    call: Callable[[HJ212Platform], Coroutine[Any, Any, Exchange]],
    cn: str,
    cp: str,
) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(call(platform))
    request = await logger.packet_in()
    assert (request.cn, request.cp, request.flag) == (cn, cp, 5)
    await logger.send(
        logger.reply(request, "9011", "QnRtn=1"), logger.reply(request, "9012", "ExeRtn=1")
    )
    exchange = await asking
    assert exchange.arrived == ["9011", "9012"] and exchange.ok


async def test_set_intervals_sends_1062_then_1064(platform: HJ212Platform, logger: Logger) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.set_intervals(MN, rtd_s=30, minute_min=10))
    for cn, cp in [("1062", "RtdInterval=30"), ("1064", "MinInterval=10")]:
        request = await logger.packet_in()
        assert (request.cn, request.cp) == (cn, cp)
        await logger.send(
            logger.reply(request, "9011", "QnRtn=1"), logger.reply(request, "9012", "ExeRtn=1")
        )
    assert [exchange.ok for exchange in await asking] == [True, True]


async def test_a_new_password_is_taken_once_the_logger_has_set_it(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.set_password(MN, "abc123"))
    request = await logger.packet_in()
    await logger.send(logger.reply(request, "9011", "QnRtn=1"))
    logger.pw = "abc123"  # the logger has changed it: its 9012 carries the new one
    await logger.send(logger.reply(request, "9012", "ExeRtn=1"))
    assert (await asking).ok and platform.password(MN) == "abc123"
    await logger.send(logger.packet("2051", minute_cp("20261206102000"), pw=PW))
    probe = await logger.upload("2051", minute_cp("20261206102100"))
    await logger.acked(probe)
    assert platform.counts(MN).wrong_password == 1


async def test_a_password_the_logger_refused_stays_the_old_one(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.set_password(MN, "abc123"))
    request = await logger.packet_in()
    await logger.send(
        logger.reply(request, "9011", "QnRtn=1"), logger.reply(request, "9012", "ExeRtn=3")
    )
    exchange = await asking
    assert exchange.complete and not exchange.ok and exchange.result == 3
    assert platform.password(MN) == PW


async def test_a_history_request_gets_each_record_acked_then_the_result(
    platform: HJ212Platform, logger: Logger
) -> None:
    await logger.acked(await logger.upload("2051", minute_cp("20261206100000")))  # held already
    asking = asyncio.create_task(
        platform.history(MN, "2051", datetime(2026, 12, 6, 10, 0), datetime(2026, 12, 6, 10, 1))
    )
    request = await logger.packet_in()
    assert (request.cn, request.cp) == ("2051", "BeginTime=20261206100000;EndTime=20261206100100")
    await logger.send(logger.reply(request, "9011", "QnRtn=1"))
    for data_time in ["20261206100000", "20261206100100"]:
        record = replace(logger.reply(request, "2051", minute_cp(data_time), st="32"), flag=5)
        await logger.send(record)
        await logger.acked(record)
    await logger.send(logger.reply(request, "9012", "ExeRtn=1"))
    exchange = await asking
    assert exchange.arrived == ["9011", "2051", "2051", "9012"] and exchange.ok
    assert exchange.records == {
        "20261206100000": minute_items(),
        "20261206100100": minute_items(),
    }
    assert list(platform.records(MN, "2051")) == ["20261206100000", "20261206100100"]
    counts = platform.counts(MN)
    assert (counts.records, counts.duplicates) == (2, 0)  # a history answer is no retransmission


async def test_a_history_with_no_data(platform: HJ212Platform, logger: Logger) -> None:
    await linked(platform, logger)
    begin = datetime(2026, 12, 5)
    asking = asyncio.create_task(platform.history(MN, "2061", begin, begin + timedelta(days=1)))
    request = await logger.packet_in()
    await logger.send(
        logger.reply(request, "9011", "QnRtn=1"), logger.reply(request, "9012", "ExeRtn=100")
    )
    exchange = await asking
    assert exchange.ok and exchange.result == 100 and exchange.records == {}


async def test_a_refused_request_ends_at_its_9011(platform: HJ212Platform, logger: Logger) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.request(MN, "1063"))
    request = await logger.packet_in()
    await logger.send(logger.reply(request, "9011", "QnRtn=2"))
    exchange = await asking
    assert exchange.arrived == ["9011"] and exchange.complete and not exchange.ok
    assert exchange.answer == QnRtn.REJECTED and not exchange.timed_out


async def test_a_request_times_out_with_what_arrived(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.request(MN, "1061", timeout=0.2))
    request = await logger.packet_in()
    await logger.send(logger.reply(request, "9011", "QnRtn=1"))
    exchange = await asking
    assert exchange.timed_out and not exchange.complete and exchange.arrived == ["9011"]
    # The result that comes after the end belongs to no request.
    await logger.send(logger.reply(request, "9012", "ExeRtn=1"))
    probe = await logger.upload("2051", minute_cp("20261206102100"))
    await logger.acked(probe)
    assert platform.counts(MN).unexpected == 1


async def test_answers_out_of_order_are_not_taken(platform: HJ212Platform, logger: Logger) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.request(MN, "1063", timeout=0.3))
    request = await logger.packet_in()
    await logger.send(
        logger.reply(request, "9012", "ExeRtn=1"),
        logger.reply(request, "1063", "MinInterval=10", st="32"),
        logger.reply(request, "9011", "QnRtn=1"),
    )
    exchange = await asking
    assert exchange.arrived == ["9011"] and exchange.timed_out
    assert platform.counts(MN).unexpected == 2


async def test_real_time_data_start_and_stop(platform: HJ212Platform, logger: Logger) -> None:
    await linked(platform, logger)
    asking = asyncio.create_task(platform.start_realtime(MN))
    request = await logger.packet_in()
    assert request.cn == "2011" and request.cp == ""
    await logger.send(logger.reply(request, "9011", "QnRtn=1"))
    assert (await asking).arrived == ["9011"] and asking.result().ok
    for second in ["00", "30"]:
        rtd = await logger.upload(
            "2011", f"DataTime=202612061021{second};w01018-Rtd=48.0,w01018-Flag=N"
        )
        await logger.acked(rtd)
    assert len(platform.records(MN, "2011")) == 2
    stopping = asyncio.create_task(platform.stop_realtime(MN))
    notification = await logger.packet_in()
    assert notification.cn == "2012" and notification.flag == 5
    await logger.send(logger.reply(notification, "9013"))
    exchange = await stopping
    assert exchange.arrived == ["9013"] and exchange.notified and exchange.ok


async def test_a_loggers_time_calibration_request_is_answered_with_the_clock(
    platform: HJ212Platform, logger: Logger
) -> None:
    await logger.upload("1013", "PolId=w01018", flag=4)
    request = await logger.packet_in()
    assert (request.cn, request.cp) == ("1012", "PolId=w01018;SystemTime=20261206102130")
    await logger.send(
        logger.reply(request, "9011", "QnRtn=1"), logger.reply(request, "9012", "ExeRtn=1")
    )
    await until(lambda: bool(platform.calibrations))
    assert platform.calibrations[0].ok


async def test_requests_need_a_connected_known_logger(platform: HJ212Platform) -> None:
    with pytest.raises(LoggerNotConnected):
        await platform.get_time(MN)
    with pytest.raises(KeyError):
        await platform.get_time("NOTOURS")
    with pytest.raises(ValueError):
        await platform.request(MN, "9014")


# -- connections ----------------------------------------------------------------------------


async def test_refuse_closes_the_loggers_and_accept_listens_again(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    port = platform.port
    await platform.refuse()
    with pytest.raises(EOFError):
        await logger.receive()
    assert platform.connected == set()
    with pytest.raises(ConnectionRefusedError):
        await Logger.connect(port)
    await platform.accept()
    assert platform.port == port
    again = await Logger.connect(port)
    try:
        await linked(platform, again)
        assert platform.connected == {MN}
    finally:
        await again.close()


async def test_two_loggers_at_once(platform: HJ212Platform, logger: Logger) -> None:
    second = await Logger.connect(platform.port, MN2, PW2)
    try:
        for n in range(3):
            for client in (logger, second):
                upload = await client.upload("2051", minute_cp(f"2026120610{n:02d}00"))
                await client.acked(upload)
        await platform.wait_connected(MN2)
        assert platform.connected == {MN, MN2}
        asking = asyncio.create_task(platform.request(MN2, "1061"))
        request = await second.packet_in()
        assert request.mn == MN2 and request.pw == PW2
        await second.send(
            second.reply(request, "9011", "QnRtn=1"),
            second.reply(request, "1061", "RtdInterval=30", st="32"),
            second.reply(request, "9012", "ExeRtn=1"),
        )
        assert (await asking).items == {"RtdInterval": "30"}
        probe = await logger.upload("2051", minute_cp("20261206110000"))
        await logger.acked(probe)  # the request did not go to the first logger
        assert platform.counts(MN).records == 4 and platform.counts(MN2).records == 3
        assert platform.counts().records == 7
    finally:
        await second.close()


async def test_a_logger_back_on_a_new_connection_replaces_the_old(
    platform: HJ212Platform, logger: Logger
) -> None:
    await linked(platform, logger)
    again = await Logger.connect(platform.port)
    try:
        await linked(platform, again)
        with pytest.raises(EOFError):
            await logger.receive()
        assert platform.connected == {MN}
    finally:
        await again.close()


async def test_an_encrypted_link(clock: Clock) -> None:
    cipher = Sm4Ecb(b"0123456789abcdef")
    async with HJ212Platform(loggers={MN: PW}, cipher=cipher, clock=clock) as platform:
        client = await Logger.connect(platform.port, cipher=cipher)
        try:
            upload = await client.upload("2051", minute_cp("20261206102000"))
            await client.acked(upload)
            assert platform.records(MN, "2051") == {"20261206102000": minute_items()}
        finally:
            await client.close()


# -- what it shows --------------------------------------------------------------------------


def test_the_record_line() -> None:
    record = Received(MN, "2051", "20261206102000", minute_items(), Outcome.NEW, False)
    assert (
        record_line(record)
        == "bureau  2051  2026-12-06 10:20  w01018 Avg=48.2 N  w00000 Avg=12.50 N"
    )
    again = replace(record, outcome=Outcome.DUPLICATE)
    assert record_line(again, with_mn=True) == (
        f"bureau  {MN}  2051  2026-12-06 10:20  w01018 Avg=48.2 N  w00000 Avg=12.50 N  (again)"
    )


async def test_the_json_lines_log(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "bureau.jsonl"
    async with HJ212Platform(loggers={MN: PW}, clock=clock, log_path=path) as platform:
        client = await Logger.connect(platform.port)
        try:
            upload = await client.upload("2051", minute_cp("20261206102000"))
            await client.acked(upload)
            await client.send(client.packet("2051", minute_cp("20261206102100"), pw="999999"))
            await client.acked(await client.upload("2051", minute_cp("20261206102000")))
        finally:
            await client.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [entry["verdict"] for entry in entries] == ["new", "wrong_password", "duplicate"]
    assert entries[0]["qn"] == upload.qn and entries[0]["segment"] == upload.segment()
    assert entries[1]["reason"] and entries[0]["at"] == "2026-12-06T10:21:30.250"


# -- the command ----------------------------------------------------------------------------


def _command(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulators.hj212_platform", *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def command(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = _command("--port", "0", "--logger", f"{MN}={PW}", "--log", str(tmp_path / "log"))
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("bureau: listening on 127.0.0.1:"), line
        yield process, int(line.rsplit(":", 1)[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # and close the pipes


def test_the_command_shows_minute_records_and_exits_0_on_sigterm(
    command: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    process, port = command
    upload = Packet(
        qn="20261206102000000",
        st="32",
        cn="2051",
        pw=PW,
        mn=MN,
        flag=5,
        cp=minute_cp("20261206102000"),
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as link:
        link.sendall(encode(upload))
        reader, got = FrameReader(), list[Packet | FrameError]()
        while not got:
            got = reader.feed(link.recv(4096))
        assert isinstance(got[0], Packet) and got[0].cn == "9014" and got[0].qn == upload.qn
    assert process.stdout is not None
    assert process.stdout.readline().rstrip("\n") == (
        "bureau  2051  2026-12-06 10:20  w01018 Avg=48.2 N  w00000 Avg=12.50 N"
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(5) == 0
    assert json.loads((tmp_path / "log").read_text().splitlines()[0])["verdict"] == "new"


def test_the_command_refuses_a_bad_logger_and_a_taken_port() -> None:
    bad = _command("--logger", "MN-without-password")
    _, stderr = bad.communicate(timeout=10)
    assert bad.returncode == 2 and "expected MN=PW" in stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _command("--port", str(port), "--logger", f"{MN}={PW}")
        _, stderr = busy.communicate(timeout=10)
    assert busy.returncode == 3
    assert stderr.strip().splitlines() == [
        f"error: hj212 platform cannot listen on 127.0.0.1:{port}: "
        "Address already in use (another simulator or program holds it)"
    ]
