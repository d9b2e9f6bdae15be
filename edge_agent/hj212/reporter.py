"""The data logger: what to upload to each environmental platform, and when (docs/hj212.md).

Per platform: real-time data (2011) every RtdInterval while real-time is on, run status
(2021) likewise, and a record for every minute period (MinInterval), hour and day once it
has closed (`settle` after its end, so its last polls are committed). Records are made
from the store's history and committed to the spool with the watermark of their kind in
one transaction: after a restart or an outage the missed periods are made in order, none
twice. The links deliver what the spool owes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_agent import logs
from edge_agent.cache import PointCache
from edge_agent.events import EventSink
from edge_agent.hj212 import records
from edge_agent.hj212.aggregate import Record, period_starts
from edge_agent.hj212.cipher import CIPHERS, transforms
from edge_agent.hj212.codes import Cn
from edge_agent.hj212.config import Hj212, Platform
from edge_agent.hj212.link import PlatformLink
from edge_agent.hj212.records import DAY_MS, HOUR_MS, MINUTE_MS, Series
from edge_agent.hj212.requests import PlatformDesk
from edge_agent.hj212.spool import Spool, SpoolWorker
from edge_agent.hj212.state import PlatformState
from edge_agent.hj212.timebase import Timebase, clock_synchronised
from edge_agent.points import wall_ms
from edge_agent.store.history import HistoryReader

log = logs.get("hj212")

TICK_S = 1.0
PRUNE_S = 3600.0
CATCH_UP_MS = 7 * DAY_MS  # periods missed longer ago than this are not made (no history)
KIND_CN = {
    "minute": Cn.MINUTE_DATA, "hour": Cn.HOUR_DATA, "day": Cn.DAY_DATA,
    "realtime": Cn.RTD_DATA, "run_status": Cn.RUN_STATUS,
}  # fmt: skip
SPAN_MS = {"hour": HOUR_MS, "day": DAY_MS}


class Hj212Reporter:
    def __init__(
        self,
        config: Hj212,
        store_path: Path,
        cache: PointCache,
        events: EventSink,
        poll_interval_s: Mapping[str, float],
        synchronised: Callable[[], bool] = clock_synchronised,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.config = config
        self.store_path = Path(store_path)
        self.cache = cache
        self.events = events
        self.poll_interval_s = poll_interval_s  # by device id
        self.spool = SpoolWorker(config.store or self.store_path.parent / "hj212.db")
        self.states: dict[str, PlatformState] = {}
        self.links: dict[str, PlatformLink] = {}
        self.timebase = Timebase(
            config.tz_offset_ms, lambda p: self.states[p].clock_offset_ms, clock
        )
        self._synchronised = synchronised
        self._due: dict[tuple[str, str], int] = {}  # (platform, realtime|run_status) -> ms
        self.made = 0

    async def run(self) -> None:
        await self.spool.open()
        try:
            for platform in self.config.platforms:
                settings = await self.spool.call(Spool.settings, platform.id)
                self.states[platform.id] = PlatformState.of(platform, settings)
                await self._restarted(platform)
            async with asyncio.TaskGroup() as tg:
                for platform in self.config.platforms:
                    link = self._link(platform)
                    self.links[platform.id] = link
                    tg.create_task(link.run(), name=f"hj212-link:{platform.id}")
                    tg.create_task(self._make_forever(platform), name=f"hj212-make:{platform.id}")
                tg.create_task(self._prune_forever(), name="hj212-prune")
        finally:
            await self.spool.close()

    def _link(self, platform: Platform) -> PlatformLink:
        state = self.states[platform.id]
        desk = PlatformDesk(
            platform, state, self.spool, self.timebase, self.events, self._synchronised,
            changed=lambda: self._due.clear(),
        )  # fmt: skip
        cipher = None
        if platform.cipher is not None:
            key = _key(platform.cipher.key_file)
            cipher = transforms(CIPHERS[platform.cipher.name](key))

        # Ask the platform for its time (1013) only where its answer could be kept.
        def ask_time() -> bool:
            policy = platform.set_time
            return policy == "offset" or (policy == "auto" and not self._synchronised())

        return PlatformLink(
            platform, self.spool, state, desk, self.events, cipher, ask_time,
            make_qn=lambda: self.timebase.qn(platform.id),
        )  # fmt: skip

    # -- making records ---------------------------------------------------------------------

    async def _make_forever(self, platform: Platform) -> None:
        failing: str | None = None  # logged once until it changes or heals
        while True:
            try:
                await self.make_due(platform)
                failing = None
            except Exception as exc:  # a bad history row must not stop the uploads
                if str(exc) != failing:
                    log.exception("hj212 records not made", platform=platform.id, error=str(exc))
                failing = str(exc)
            await asyncio.sleep(TICK_S)

    async def make_due(self, platform: Platform) -> int:
        """Make whatever is due for `platform` now; how many records were new."""
        state = self.states[platform.id]
        made = 0
        now = self.timebase.hj_ms(platform.id)
        if state.realtime:  # on from the config's `send`, or by 2011; off by 2012
            made += await self._make_now(platform, "realtime", state.realtime_interval_s, now)
        if state.run_status and self.config.run_status:
            made += await self._make_now(platform, "run_status", state.realtime_interval_s, now)
        for kind in ("minute", "hour", "day"):
            if kind in platform.send:
                made += await self._close_periods(platform, kind, now)
        if made:
            self.made += made
            link = self.links.get(platform.id)
            if link is not None:
                link.wake()
        return made

    async def _restarted(self, platform: Platform) -> None:
        """2081, the logger's restart time: owed like data; it also tells the platform which
        MN this connection is before anything else is owed."""
        now = self.timebase.hj_ms(platform.id)
        data_time = self.timebase.text(now)
        cp = f"DataTime={data_time};RestartTime={data_time}"
        record = (Cn.RESTART_TIME.value, data_time, self.timebase.qn(platform.id), cp)
        await self.spool.call(Spool.make, platform.id, [record], self.timebase.wall_ms())

    async def _make_now(self, platform: Platform, kind: str, every_s: float, now: int) -> int:
        every_ms = int(every_s * 1000)
        due = self._due.get((platform.id, kind))
        if due is not None and now < due:
            return 0
        self._due[(platform.id, kind)] = (now // every_ms + 1) * every_ms
        if due is None and now % every_ms > 2000:
            return 0  # not on the interval's grid yet: the first lands on it
        at = now // 1000 * 1000
        data_time = self.timebase.text(at)
        latest = {ref: self.cache.get(ref) for ref in self._refs(kind)}
        if kind == "realtime":
            cn, cp = Cn.RTD_DATA, records.realtime_cp(self.config, data_time, latest)
        else:
            cn, cp = Cn.RUN_STATUS, records.run_status_cp(self.config, data_time, latest)
        record = (cn.value, data_time, self.timebase.qn(platform.id), cp)
        return await self.spool.call(Spool.make, platform.id, [record], at)

    async def _close_periods(self, platform: Platform, kind: str, now: int) -> int:
        state = self.states[platform.id]
        length = state.minute_interval * MINUTE_MS if kind == "minute" else SPAN_MS[kind]
        tz = self.config.tz_offset_ms
        mark = await self.spool.call(Spool.mark, platform.id, kind)
        closed_by = now - int(self.config.settle * 1000)
        if mark is None:  # a new platform: from the first whole period on (none of the past,
            # nor the one under way, which the logger did not watch from its start)
            mark = -(-(now + tz) // length) * length - tz  # rounded up to a period start
            await self.spool.call(Spool.set_mark, platform.id, kind, mark)
        mark = max(mark, now - CATCH_UP_MS)
        starts = period_starts(mark, closed_by, length, tz)
        made = 0
        for chunk in _chunks(starts, max(1, DAY_MS // length)):
            made += await self._make_periods(platform, kind, chunk, length)
        return made

    async def _make_periods(
        self, platform: Platform, kind: str, starts: list[int], length: int
    ) -> int:
        offset = self.timebase.offset_ms(platform.id)
        first, end = starts[0], starts[-1] + length
        minute_ms = self.states[platform.id].minute_interval * MINUTE_MS
        series = await asyncio.to_thread(self._series, first - offset, end - offset)
        made = []
        for start in starts:
            data = self._period(kind, series, start - offset, length, minute_ms)
            cp = records.records_cp(self.config, self.timebase.text(start), data)
            made.append(
                (KIND_CN[kind].value, self.timebase.text(start), self.timebase.qn(platform.id), cp)
            )
        mark = (kind, end)
        return await self.spool.call(Spool.make, platform.id, made, self.timebase.wall_ms(), mark)

    def _period(
        self, kind: str, series: Series, start: int, length: int, minute_ms: int
    ) -> dict[str, Record]:
        """The records of one period starting at wall-clock `start`."""
        if kind == "minute":
            return records.minute_records(
                self.config, series, start, start + length, self._expected(length)
            )
        if kind == "day":
            hours = [
                self._period("hour", series, at, HOUR_MS, minute_ms)
                for at in range(start, start + length, HOUR_MS)
            ]
            need_day = self.config.validity.day_hours
            return records.rolled_up(self.config, hours, start, start + length, need_day)
        expected = self._expected(minute_ms)
        minutes = [
            records.minute_records(self.config, series, at, at + minute_ms, expected)
            for at in range(start, start + length, minute_ms)
        ]
        need_hour = records.hour_valid_count(self.config, minute_ms // MINUTE_MS)
        return records.rolled_up(self.config, minutes, start, start + length, need_hour)

    def _expected(self, length_ms: int) -> dict[str, int]:
        return {
            p.code: round(length_ms / 1000 / self.poll_interval_s.get(p.point.split(".")[0], 1.0))
            for p in self.config.pollutants
        }

    def _series(self, since_ms: int, until_ms: int) -> Series:
        devices = sorted({ref.split(".")[0] for ref in self._refs("records")})
        try:
            with HistoryReader(self.store_path) as history:
                rows = history.rows(since_ms, until_ms, devices)
                return Series.of(self.config, (row.batch for row in rows if row.batch is not None))
        except Exception as exc:  # no store yet, or unreadable: the periods go up flagged B
            log.warning("hj212 history not read", error=str(exc))
            return Series.of(self.config, ())

    def _refs(self, kind: str) -> list[str]:
        if kind == "run_status":
            return [equipment.point for equipment in self.config.run_status]
        refs = [p.point for p in self.config.pollutants]
        return refs + [p.status for p in self.config.pollutants if p.status]

    async def _prune_forever(self) -> None:
        while True:
            before = self.timebase.wall_ms() - int(self.config.keep * 1000)
            with contextlib.suppress(Exception):
                await self.spool.call(Spool.prune, before)
            await asyncio.sleep(PRUNE_S)

    # -- for the technician ---------------------------------------------------------------

    async def status(self) -> list[dict[str, Any]]:
        out = []
        for platform in self.config.platforms:
            backlog = await self.spool.call(Spool.backlog, platform.id) if self.states else None
            link = self.links.get(platform.id)
            state = self.states.get(platform.id)
            out.append({
                "platform": platform.id,
                "endpoint": f"{platform.host}:{platform.port}",
                "mn": platform.mn,
                "link": asdict(link.status) if link is not None else None,
                "backlog": asdict(backlog) if backlog else None,
                "settings": _shown(state) if state is not None else None,
            })  # fmt: skip
        return out

    async def summary(self) -> list[dict[str, Any]]:
        """For `edge-agent status`: per platform, connected or not and what is owed."""
        out = []
        for platform in self.config.platforms:
            backlog = await self.spool.call(Spool.backlog, platform.id) if self.states else None
            link = self.links.get(platform.id)
            out.append({
                "platform": platform.id,
                "connected": bool(link and link.status.connected),
                "last_ack_ms": link.status.last_ack_ms if link else None,
                "owed": backlog.owed if backlog else None,
                "oldest_owed": backlog.oldest_data_time if backlog else None,
            })  # fmt: skip
        return out

    async def resend(
        self, since_ms: int, platform: str | None, kinds: tuple[str, ...]
    ) -> dict[str, int]:
        """Owe again the records of `kinds` whose period starts at `since_ms` or later
        (`hj212 send --since`): copies with their QN, never new data."""
        cns = tuple(KIND_CN[kind].value for kind in kinds)
        counts = {}
        for each in self.config.platforms:
            if platform is None or each.id == platform:
                since = self.timebase.text(since_ms + self.timebase.offset_ms(each.id))
                counts[each.id] = await self.spool.call(Spool.resend, each.id, since, cns)
                if each.id in self.links:
                    self.links[each.id].wake()
        return counts


def _shown(state: PlatformState) -> dict[str, Any]:
    return {k: getattr(state, k) for k in state.__slots__ if k != "password"}


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[at : at + size] for at in range(0, len(items), size)]


def _key(path: Path) -> bytes:
    raw = path.read_bytes().strip()
    try:
        return bytes.fromhex(raw.decode("ascii")) if len(raw) == 32 else raw
    except (UnicodeDecodeError, ValueError):
        return raw
