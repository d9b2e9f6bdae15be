"""What a platform has set on the data logger (password, intervals, OverTime/ReCount, its
clock, real-time on or off), over the configuration's values, kept in the spool across
restarts (docs/hj212.md, "What the platform sets")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.hj212.config import Platform


@dataclass(slots=True)
class PlatformState:
    password: str
    realtime_interval_s: float
    minute_interval: int
    over_time: float
    re_count: int
    realtime: bool  # real-time (2011) and run-status (2021) uploads on
    run_status: bool
    clock_offset_ms: int = 0  # the platform's clock minus ours, from a 1012 we kept

    @classmethod
    def of(cls, platform: Platform, settings: dict[str, str]) -> PlatformState:
        """The config's values, then what the platform set (the spool's `settings`)."""
        state = cls(
            password=platform.password,
            realtime_interval_s=platform.realtime_interval,
            minute_interval=platform.minute_interval,
            over_time=platform.over_time,
            re_count=platform.re_count,
            realtime="realtime" in platform.send,
            run_status="run_status" in platform.send,
        )
        for key, text in settings.items():
            if key in _PARSE:  # a key of an older version is left alone
                setattr(state, key, _PARSE[key](text))
        return state

    @staticmethod
    def stored(**values: object) -> dict[str, str]:
        """`values` as the spool keeps them."""
        return {
            k: ("1" if v else "0") if isinstance(v, bool) else str(v) for k, v in values.items()
        }


def _flag(text: str) -> bool:
    return text == "1"


_PARSE: dict[str, Callable[[str], object]] = {
    "password": str,
    "realtime_interval_s": float,
    "minute_interval": int,
    "over_time": float,
    "re_count": int,
    "realtime": _flag,
    "run_status": _flag,
    "clock_offset_ms": int,
}
