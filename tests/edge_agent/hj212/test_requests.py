"""Every request of the platform, round trip over real TCP against the data logger: the
answers the standard asks for, what is kept across a restart, and requests that are wrong."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.cache import PointCache
from edge_agent.hj212.cipher import Sm4Ecb
from edge_agent.hj212.codes import Cn, Protocol, QnRtn, St, make_flag
from edge_agent.hj212.config import RunStatus
from edge_agent.hj212.frame import FrameReader, Packet, encode, frame, parse_cp
from edge_agent.hj212.reporter import Hj212Reporter
from edge_agent.hj212.spool import Spool
from edge_agent.points import Reading
from simulators.hj212 import HJ212Platform
from tests.edge_agent.hj212.rig import (
    MN,
    PW,
    T0,
    Clock,
    Events,
    config,
    made_records,
    running,
    until,
)

LOCAL_T0 = datetime(2026, 12, 6, 10, 0)


def logger_of(cfg, tmp_path: Path, clock: Clock, events: Events, synchronised: bool = False):
    cache = PointCache()
    cache.configure_device("sewage", 60.0)
    return Hj212Reporter(
        cfg, tmp_path / "outbox.db", cache, events, {"sewage": 10.0},
        synchronised=lambda: synchronised, clock=clock,
    )  # fmt: skip


async def test_gets_and_sets_are_answered_and_kept(tmp_path: Path) -> None:
    events, clock = Events(), Clock(T0)
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db")
        logger = logger_of(cfg, tmp_path, clock, events)
        async with running(logger):
            await bureau.wait_connected(MN)
            got = await bureau.get_time(MN, pol_id="w01018")
            assert got.ok and got.arrived == ["9011", "1011", "9012"]
            assert got.items == {"PolId": "w01018", "SystemTime": "20261206100000"}
            rtd = await bureau.request(MN, Cn.GET_RTD_INTERVAL)
            minutes = await bureau.request(MN, Cn.GET_MIN_INTERVAL)
            assert rtd.items == {"RtdInterval": "30"} and minutes.items == {"MinInterval": "10"}
            for exchange in await bureau.set_intervals(MN, rtd_s=60, minute_min=5):
                assert exchange.ok
            bad = await bureau.set_intervals(MN, rtd_s=10, minute_min=7)  # out of range
            assert [e.result for e in bad] == [3, 3]
            assert (await bureau.set_timeout(MN, 5, 1)).ok
            assert (await bureau.set_timeout(MN, 0, 1)).result == 3
            state = logger.states["p0"]
            assert (state.realtime_interval_s, state.minute_interval) == (60.0, 5)
            assert (state.over_time, state.re_count) == (5.0, 1)
    # A new agent (a restart) keeps what the platform set, not the config's values.
    settings = Spool(tmp_path / "hj212.db").settings("p0")
    again = logger_of(cfg, tmp_path, clock, events)
    async with running(again):
        await until(lambda: "p0" in again.states)
    assert again.states["p0"].minute_interval == 5 and settings["re_count"] == "1"


async def test_a_new_password_is_used_from_the_next_frame(tmp_path: Path) -> None:
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db")
        logger = logger_of(cfg, tmp_path, Clock(T0), Events())
        async with running(logger):
            await bureau.wait_connected(MN)
            assert (await bureau.set_password(MN, "654321")).ok
            assert bureau.password(MN) == "654321"
            await logger.spool.call(Spool.make, "p0", made_records(3), T0)
            logger.links["p0"].wake()
            await until(lambda: len(bureau.records(MN, "2051")) == 3)
            assert bureau.counts(MN).wrong_password == 0
            # The platform's requests, now with the new password, are served.
            assert (await bureau.request(MN, Cn.GET_RTD_INTERVAL)).ok


@pytest.mark.parametrize(("policy", "synchronised", "kept"), [
    ("offset", True, True), ("refuse", False, False), ("auto", True, False),
    ("auto", False, True),
])  # fmt: skip
async def test_a_set_time_never_moves_the_system_clock(
    tmp_path: Path, policy: str, synchronised: bool, kept: bool
) -> None:
    events, clock = Events(), Clock(T0)
    async with HJ212Platform(loggers={MN: PW}, clock=lambda: LOCAL_T0) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db", set_time=policy)
        logger = logger_of(cfg, tmp_path, clock, events, synchronised)
        async with running(logger):
            await bureau.wait_connected(MN)
            if kept:  # a logger that may keep the platform's time asks for it first (1013)
                await until(lambda: bureau.calibrations and bureau.calibrations[0].complete)
                events.seen.clear()
            else:
                await asyncio.sleep(0.3)
                assert bureau.calibrations == []
            answer = await bureau.set_time(MN, LOCAL_T0 + timedelta(minutes=3))
            now = await bureau.get_time(MN)
    assert answer.answer == QnRtn.READY and answer.result == (1 if kept else 3)
    if kept:
        assert now.items["SystemTime"] == "20261206100300"
        (event,) = events.of("hj212_clock_offset")
        assert event["offset_ms"] == 180_000
    else:
        assert now.items["SystemTime"] == "20261206100000"
        (event,) = events.of("hj212_set_time_refused")
        assert event["reason"] == "clock_synchronised" and event["offset_ms"] == 180_000


async def test_history_is_sent_from_the_spool(tmp_path: Path) -> None:
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db")
        logger = logger_of(cfg, tmp_path, Clock(T0), Events())
        async with running(logger):
            await bureau.wait_connected(MN)
            await logger.spool.call(Spool.make, "p0", made_records(30), T0)
            logger.links["p0"].wake()
            await until(lambda: len(bureau.records(MN, "2051")) == 30)
            begin, end = LOCAL_T0 + timedelta(minutes=5), LOCAL_T0 + timedelta(minutes=9)
            found = await bureau.history(MN, Cn.MINUTE_DATA, begin, end)
            none = await bureau.history(MN, Cn.HOUR_DATA, begin, end)
            reversed_range = await bureau.history(MN, Cn.MINUTE_DATA, end, begin)
    assert found.ok and found.result == 1
    assert list(found.records) == [f"20261206100{m}00" for m in range(5, 10)]
    assert found.records["20261206100500"]["w01018-Avg"] == "45.0"
    assert none.result == 100 and reversed_range.result == 3
    assert bureau.counts(MN).duplicates == 0  # answers to a request are not retransmissions


async def test_real_time_data_start_and_stop(tmp_path: Path) -> None:
    clock = Clock(T0)
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db", realtime_interval=30)
        logger = logger_of(cfg, tmp_path, clock, Events())
        logger.cache.update("sewage", [
            Reading("cod", 48.25, T0), Reading("cod_status", 2, T0),  # calibrating
            Reading("flow", 36.0, T0), Reading("flow_status", 0, T0),
        ])  # fmt: skip
        async with running(logger):
            await bureau.wait_connected(MN)
            started = await bureau.start_realtime(MN)
            assert started.ok and started.arrived == ["9011"]
            for step in range(1, 4):
                clock.now_ms = T0 + step * 30_000
                await until(lambda s=step: len(bureau.records(MN, "2011")) == s)
            stopped = await bureau.stop_realtime(MN)
            assert stopped.notified and not logger.states["p0"].realtime
            clock.now_ms = T0 + 5 * 30_000
            await asyncio.sleep(1.5)
    realtime = bureau.records(MN, "2011")
    assert list(realtime) == ["20261206100030", "20261206100100", "20261206100130"]
    first = realtime["20261206100030"]
    assert first["w01018-Rtd"] == "48.2" and first["w01018-Flag"] == "C"
    assert first["w00000-Rtd"] == "10.00" and first["w00000-Flag"] == "N"
    assert "w01001-Rtd" not in first and first["w01001-Flag"] == "B"  # pH never read


async def test_wrong_requests_are_answered_and_the_link_goes_on(tmp_path: Path) -> None:
    """A platform of our own making sends what the simulated one would not: garbage, a bad
    CRC, the wrong MN, password and CN; each gets its 9011 and the link stays up."""
    answers: list[Packet] = []
    connected = asyncio.Event()

    def request(cn: str, *, qn: str, pw: str = PW, mn: str = MN, cp: str = "") -> bytes:
        flag = make_flag(Protocol.HJ212_2017, ack=True)
        return encode(
            Packet(qn=qn, st=St.SURFACE_WATER_SOURCE, cn=cn, pw=pw, mn=mn, flag=flag, cp=cp)
        )

    async def platform(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        first = True
        while data := await reader.read(65536):
            for packet in frames.feed(data):
                assert isinstance(packet, Packet)
                if packet.cn == Cn.RESTART_TIME and first:
                    first = False
                    writer.write(
                        encode(Packet(qn=packet.qn, st="91", cn="9014", pw=PW, mn=MN, flag=4))
                    )
                    broken = f"QN=20261206100000001;ST=32;CN=1061;PW={PW};MN={MN};Flag=5;CP=&&"
                    bad_crc = request(Cn.GET_RTD_INTERVAL, qn="20261206100000007")
                    writer.write(
                        b"\xff garbage \r\n"
                        + frame(broken.encode())  # a good CRC over a segment without its &&
                        + bad_crc[:-6] + b"0000\r\n"
                        + request(Cn.GET_RTD_INTERVAL, qn="20261206100000002", mn="OTHER")
                        + request(Cn.GET_RTD_INTERVAL, qn="20261206100000003", pw="000000")
                        + request("3020", qn="20261206100000004")
                        + request(Cn.HOUR_DATA, qn="20261206100000005", cp="BeginTime")
                        + request(Cn.GET_RTD_INTERVAL, qn="20261206100000006")
                    )  # fmt: skip
                    connected.set()
                else:
                    answers.append(packet)

    server = await asyncio.start_server(platform, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        cfg = config([port], tmp_path / "hj212.db")
        logger = logger_of(cfg, tmp_path, Clock(T0), Events())
        async with running(logger):
            await asyncio.wait_for(connected.wait(), 10)
            await until(lambda: any(p.cn == "9012" and p.qn.endswith("6") for p in answers))
            status = logger.links["p0"].status
    by_qn: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for packet in answers:
        assert packet.qn is not None
        by_qn.setdefault(packet.qn[-1], []).append((packet.cn, parse_cp(packet.cp)))
    assert by_qn["1"] == [("9011", {"QnRtn": "100"})]  # a segment out of form
    assert by_qn["7"] == [("9011", {"QnRtn": "9"})]  # CRC
    assert by_qn["2"] == [("9011", {"QnRtn": "4"})]  # MN
    assert by_qn["3"] == [("9011", {"QnRtn": "3"})]  # password
    assert by_qn["4"] == [("9011", {"QnRtn": "8"})]  # CN
    assert by_qn["5"] == [("9011", {"QnRtn": "2"})]  # a CP item without '='
    assert [cn for cn, _ in by_qn["6"]] == ["9011", "1061", "9012"]  # and the link goes on
    assert status.connects == 1 and status.bad_frames == 3  # garbage, out of form, CRC


async def test_run_status_starts_and_stops(tmp_path: Path) -> None:
    clock = Clock(T0)
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db")
        cfg = cfg.model_copy(update={"run_status": (
            RunStatus(code="SB1", point="sewage.lift_pump"),
            RunStatus(code="SB2", point="sewage.blower"),
        )})  # fmt: skip
        logger = logger_of(cfg, tmp_path, clock, Events())
        logger.cache.configure_device("sewage", 60.0)
        logger.cache.update("sewage", [Reading("lift_pump", True, T0), Reading("blower", 0, T0)])
        async with running(logger):
            await bureau.wait_connected(MN)
            assert (await bureau.request(MN, Cn.RUN_STATUS)).ok
            clock.now_ms = T0 + 30_000
            await until(lambda: bureau.records(MN, "2021"))
            assert (await bureau.request(MN, Cn.RUN_STATUS_STOP)).notified
    (status,) = bureau.records(MN, "2021").values()
    assert status == {"SB1-RS": "1", "SB2-RS": "0"}


async def test_hj212_2025_encrypts_the_data_segment(tmp_path: Path) -> None:
    key = bytes(range(16))
    key_file = tmp_path / "sm4.key"
    key_file.write_text(key.hex())
    cipher = Sm4Ecb(key)
    async with HJ212Platform(
        loggers={MN: PW}, protocol=Protocol.HJ212_2025, cipher=cipher
    ) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db", protocol="hj212-2025",
                     cipher={"name": "sm4-ecb", "key_file": str(key_file)})  # fmt: skip
        logger = logger_of(cfg, tmp_path, Clock(T0), Events())
        async with running(logger):
            await bureau.wait_connected(MN)
            await logger.spool.call(Spool.make, "p0", made_records(5), T0)
            logger.links["p0"].wake()
            await until(lambda: len(bureau.records(MN, "2051")) == 5)
            got = await bureau.get_time(MN)
    assert got.ok and got.items["SystemTime"] == "20261206100000"
    assert bureau.counts(MN).crc_errors == 0


def test_a_cipher_needs_hj212_2025(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2025"):
        config([1], tmp_path / "hj212.db", cipher={"name": "sm4-ecb", "key_file": "k"})


async def test_an_unsynchronised_logger_asks_the_platform_for_its_time(tmp_path: Path) -> None:
    """1013 once connected (after the restart time): the platform's 1012 is kept as the
    offset, so that the bureau's timestamps are on its clock, and an event says so."""
    events = Events()
    bureau_time = LOCAL_T0 + timedelta(minutes=7)
    async with HJ212Platform(loggers={MN: PW}, clock=lambda: bureau_time) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db", set_time="auto")
        logger = logger_of(cfg, tmp_path, Clock(T0), events, synchronised=False)
        async with running(logger):
            await until(lambda: bureau.calibrations and bureau.calibrations[0].complete)
            now = await bureau.get_time(MN)
    assert bureau.calibrations[0].result == 1
    assert now.items["SystemTime"] == "20261206100700"
    assert events.of("hj212_clock_offset")[0]["offset_ms"] == 7 * 60_000


async def test_a_set_time_hours_off_is_refused(tmp_path: Path) -> None:
    events = Events()
    async with HJ212Platform(loggers={MN: PW}, clock=lambda: LOCAL_T0) as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db", set_time="offset")
        logger = logger_of(cfg, tmp_path, Clock(T0), events)
        async with running(logger):
            await bureau.wait_connected(MN)
            await until(lambda: bureau.calibrations and bureau.calibrations[0].complete)
            answer = await bureau.set_time(MN, LOCAL_T0 - timedelta(hours=8))  # UTC, not +8
            now = await bureau.get_time(MN)
    assert answer.result == 3 and now.items["SystemTime"] == "20261206100000"
    (refused,) = events.of("hj212_set_time_refused")
    assert refused["reason"] == "offset_too_large" and refused["offset_ms"] == -8 * 3_600_000
