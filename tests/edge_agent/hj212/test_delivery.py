"""The data logger against the simulated bureau over real TCP: records made from history
with their flags, delivered in order, nothing lost or duplicated as new data through an
outage, a platform that never answers or answers garbage, and two platforms at once."""

from __future__ import annotations

from pathlib import Path

from edge_agent.hj212.spool import Spool
from edge_agent.points import Quality
from simulators.hj212 import HJ212Platform
from tests.edge_agent.hj212.rig import (
    MINUTE,
    MN,
    PW,
    T0,
    Clock,
    Events,
    config,
    made_records,
    poll,
    reporter,
    running,
    start_marks,
    until,
    write_history,
)


def hour_of_monitor_states() -> list:
    """An hour of 10 s polls: each ten minutes the COD analyzer in another state."""
    polls = []
    for i in range(360):
        ts = T0 + i * 10_000
        block = i // 60
        if block == 1:
            polls.append(poll(ts, 100.0, cod_status=2))  # calibration: reads its standard
        elif block == 2:
            polls.append(poll(ts, 48.0, cod_status=1))  # maintenance
        elif block == 3:
            polls.append(poll(ts, None, quality=Quality.BAD))  # the monitor silent
        elif block == 4:
            polls.append(poll(ts, 620.0))  # above the 0-500 measuring range
        else:
            polls.append(poll(ts, 40.0 + (i % 6)))  # normal: 40..45
    return polls


async def test_minute_and_hour_records_carry_the_monitors_states(tmp_path: Path) -> None:
    store, spool = tmp_path / "outbox.db", tmp_path / "hj212.db"
    write_history(store, hour_of_monitor_states())
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        cfg = config([bureau.port], spool)
        start_marks(spool, ["p0"], ["minute", "hour"], T0)
        clock = Clock(T0 + 60 * MINUTE + 6_000)  # the hour has closed and settled
        logger = reporter(cfg, store, clock, Events())
        async with running(logger):
            await until(lambda: len(bureau.records(MN, "2061")) == 1)
            await until(lambda: logger.links["p0"].status.acked >= 8)
        minutes = bureau.records(MN, "2051")
        hour = bureau.records(MN, "2061")
    assert list(minutes) == [f"20261206{h:02d}{m:02d}00" for h in (10,) for m in range(0, 60, 10)]
    flags = [items["w01018-Flag"] for items in minutes.values()]
    assert flags == ["N", "C", "M", "B", "T", "N"]
    first = minutes["20261206100000"]
    assert float(first["w01018-Avg"]) == 42.5 and first["w01018-Min"] == "40.0"
    assert first["w01018-Max"] == "45.0"
    # 36 m3/h for 10 minutes: 6 m3; COD 42.5 mg/L of it: 0.255 kg; the flow is in L/s.
    assert float(first["w00000-Cou"]) == 6.0 and first["w00000-Avg"] == "10.00"
    assert abs(float(first["w01018-Cou"]) - 0.255) < 1e-3
    assert "w01018-Avg" not in minutes["20261206103000"]  # nothing read: no value, flag B
    assert minutes["20261206103000"]["w00000-Flag"] == "B"
    assert all(items["w01001-Flag"] == "N" for k, items in minutes.items() if k[-6:-2] != "1030")
    (only_hour,) = hour.values()
    assert only_hour["w01018-Flag"] != "N"  # 2 valid ten minutes of 6: not a valid hour
    assert only_hour["w01001-Flag"] == "N"  # pH was normal for 50 of 60 minutes: 5 of 6


async def test_an_outage_loses_nothing_and_replays_in_order(tmp_path: Path) -> None:
    spool_path = tmp_path / "hj212.db"
    received: list[str] = []
    bureau = HJ212Platform(loggers={MN: PW}, on_record=lambda r: received.append(r.data_time))
    async with bureau:
        port = bureau.port
        await bureau.refuse()  # the bureau is down
        cfg = config([port], spool_path)
        clock = Clock(T0)
        logger = reporter(cfg, tmp_path / "outbox.db", clock, Events())
        async with running(logger):
            await until(lambda: "p0" in logger.links and logger.spool._spool is not None)
            await logger.spool.call(Spool.make, "p0", made_records(300), T0)
            await until(lambda: logger.links["p0"].status.last_error is not None)
            assert bureau.counts().records == 0
            await bureau.accept()
            await until(lambda: bureau.counts(MN).records == 301, timeout=30)
            backlog = await logger.spool.call(Spool.backlog, "p0")
    counts = bureau.counts(MN)
    assert backlog.owed == 0 and counts.duplicates == 0 and counts.conflicts == 0
    uploads = [t for t in received if t.startswith("20261206")]
    assert uploads[1:] == [record[1] for record in made_records(300)]  # after the restart time


async def test_a_platform_that_never_answers_gets_copies_never_new_data(tmp_path: Path) -> None:
    spool_path = tmp_path / "hj212.db"
    async with HJ212Platform(loggers={MN: PW}, ack_mode="never") as bureau:
        cfg = config([bureau.port], spool_path)
        logger = reporter(cfg, tmp_path / "outbox.db", Clock(T0), Events())
        async with running(logger):
            await until(lambda: "p0" in logger.links)
            link = logger.links["p0"]
            await until(lambda: link.status.drops >= 2, timeout=20)  # ReCount 2, twice
            assert link.status.resent >= 4
            for mode in ("garbage", "bad-crc"):
                bureau.ack_mode = mode
                before = link.status.bad_frames
                await until(lambda b=before: link.status.bad_frames > b, timeout=10)
            assert (await logger.spool.call(Spool.backlog, "p0")).owed == 1  # still owed
            bureau.ack_mode = "ack"
            await until(lambda: link.status.acked >= 1, timeout=20)
            assert (await logger.spool.call(Spool.backlog, "p0")).owed == 0
    counts = bureau.counts(MN)
    # The restart-time record arrived many times: once as new, the rest as copies.
    assert counts.records == 1 and counts.duplicates >= 4 and counts.conflicts == 0


async def test_one_platform_down_never_delays_the_other(tmp_path: Path) -> None:
    async with HJ212Platform(loggers={MN: PW}) as city, HJ212Platform(loggers={MN: PW}) as province:
        await province.refuse()
        cfg = config([province.port, city.port], tmp_path / "hj212.db")
        logger = reporter(cfg, tmp_path / "outbox.db", Clock(T0), Events())
        async with running(logger):
            await until(lambda: {"p0", "p1"} <= logger.links.keys())
            for platform in ("p0", "p1"):
                await logger.spool.call(Spool.make, platform, made_records(50), T0)
                logger.links[platform].wake()
            await until(lambda: city.counts(MN).records == 51, timeout=5)
            assert province.counts().records == 0
            assert (await logger.spool.call(Spool.backlog, "p0")).owed == 51


async def test_a_day_long_outage_makes_every_period_then_delivers_it(tmp_path: Path) -> None:
    """25 hours of history while the bureau is down, the agent's clock stepping through
    them: every ten minutes, hour and the day are made in order, none twice, and all of
    them reach the bureau when it is back."""
    store, spool = tmp_path / "outbox.db", tmp_path / "hj212.db"
    day = T0 - 10 * 3_600_000  # 2026-12-06 00:00 local
    write_history(store, [poll(day + i * 10_000, 40.0 + (i % 6)) for i in range(25 * 360)])
    async with HJ212Platform(loggers={MN: PW}) as bureau:
        await bureau.refuse()
        cfg = config([bureau.port], spool, send=["minute", "hour", "day"])
        start_marks(spool, ["p0"], ["minute", "hour", "day"], day)
        clock = Clock(day)
        logger = reporter(cfg, store, clock, Events())
        async with running(logger):
            await until(lambda: "p0" in logger.states)
            platform = cfg.platforms[0]
            for step in range(1, 25 * 6 + 1):  # ten minutes at a time, as the hours pass
                clock.now_ms = day + step * 10 * MINUTE + 6_000
                await logger.make_due(platform)
            backlog = await logger.spool.call(Spool.backlog, "p0")
            assert backlog.owed == 150 + 25 + 1 + 1  # + the restart time
            assert await logger.make_due(platform) == 0  # nothing made twice
            await bureau.accept()
            await until(lambda: bureau.counts(MN).records == 177, timeout=30)
    assert len(bureau.records(MN, "2051")) == 150 and len(bureau.records(MN, "2061")) == 25
    (daily,) = bureau.records(MN, "2031").items()
    assert daily[0] == "20261206000000"
    hours = [items for t, items in bureau.records(MN, "2061").items() if t < "20261207"]
    assert daily[1]["w01018-Flag"] == "N" and len(hours) == 24
    assert abs(float(daily[1]["w01018-Avg"]) - 42.5) < 0.05
    volume = sum(float(h["w00000-Cou"]) for h in hours)
    assert abs(float(daily[1]["w00000-Cou"]) - volume) < 0.01 and abs(volume - 864.0) < 0.5
    assert bureau.counts(MN).duplicates == 0 and bureau.counts(MN).conflicts == 0


async def test_a_closed_connection_is_noticed_without_waiting_for_overtime(
    tmp_path: Path,
) -> None:
    async with HJ212Platform(loggers={MN: PW}, ack_mode="never") as bureau:
        cfg = config([bureau.port], tmp_path / "hj212.db", over_time=30, re_count=3)
        logger = reporter(cfg, tmp_path / "outbox.db", Clock(T0), Events())
        async with running(logger):
            await until(lambda: bureau.counts().dropped + bureau.counts().frames >= 1)
            link = logger.links["p0"]
            assert link.status.connected
            await bureau.refuse()  # closes the connection while the 2081 waits for its 9014
            await until(lambda: not link.status.connected, timeout=3)  # not 4 x 30 s
            assert "closed" in (link.status.last_error or "")
            bureau.ack_mode = "ack"
            await bureau.accept()
            await until(lambda: link.status.acked == 1, timeout=10)
