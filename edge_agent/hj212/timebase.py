"""HJ 212 time: local time (DataTime, SystemTime, QN) on the agent's clock, plus the offset
a platform set by 1012 when the `set_time` policy kept it (docs/hj212.md, "Time")."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from edge_agent.points import wall_ms


class Timebase:
    def __init__(
        self,
        tz_offset_ms: int,
        offset_of: Callable[[str], int],
        clock: Callable[[], int] = wall_ms,  # the system clock, epoch ms (tests move it)
    ) -> None:
        self.tz_offset_ms = tz_offset_ms
        self._offset_of = offset_of  # platform id -> its clock offset (ms)
        self._clock = clock
        self._last_qn: dict[str, int] = {}

    def wall_ms(self) -> int:
        return self._clock()

    def hj_ms(self, platform: str) -> int:
        """Now on the platform's clock (epoch ms)."""
        return self._clock() + self._offset_of(platform)

    def offset_ms(self, platform: str) -> int:
        return self._offset_of(platform)

    def text(self, epoch_ms: int, digits: int = 14) -> str:
        """yyyyMMddHHmmss (14) or with milliseconds (17), in the site's local time."""
        local = datetime(1970, 1, 1) + timedelta(milliseconds=epoch_ms + self.tz_offset_ms)
        return local.strftime("%Y%m%d%H%M%S%f")[:digits]

    def hj_time(self, platform: str) -> str:
        return self.text(self.hj_ms(platform))

    def parse(self, text: str) -> int:
        """Epoch ms of a local yyyyMMddHHmmss; ValueError if it is not one."""
        if len(text) != 14 or not text.isdigit():
            raise ValueError(f"{text!r} is not yyyyMMddHHmmss")
        local = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        return int(local.timestamp() * 1000) - self.tz_offset_ms

    def qn(self, platform: str) -> str:
        """A QN never given before to this platform by this process: its clock's ms, moved
        on by 1 ms when two packets are made in one ms."""
        ms = max(self.hj_ms(platform), self._last_qn.get(platform, 0) + 1)
        self._last_qn[platform] = ms
        return self.text(ms, 17)


_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


def clock_synchronised() -> bool:
    """Whether the kernel says NTP keeps the system clock (adjtimex, read only)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return False
    timex = ctypes.create_string_buffer(512)  # struct timex; modes = 0: only read
    state = libc.adjtimex(timex)
    return 0 <= state < _TIME_ERROR
