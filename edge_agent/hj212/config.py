"""The `hj212:` section: the outfall's pollutants and the platforms (docs/hj212.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from edge_agent.config.base import Duration, Id, Model
from edge_agent.hj212.codes import Protocol
from edge_agent.hj212.flags import DataFlag, default_status_map
from edge_agent.i18n import _

_REF = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
PointRef = Annotated[str, Field(pattern=_REF)]
# A pollutant or equipment code: the 2017 table's (w01018) or a province's extension.
Code = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{1,11}$")]
# MinInterval values that divide an hour, so minute records tile hours and days.
MINUTE_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
RTD_INTERVAL_S = (30, 3600)  # RtdInterval's range in HJ 212-2017 (1062)


def _minute_interval(value: int) -> int:
    if value not in MINUTE_INTERVALS:
        listed = ", ".join(map(str, MINUTE_INTERVALS))
        raise ValueError(_("expected one of {listed}").format(listed=listed))
    return value


def _rtd_interval(value: float) -> float:
    low, high = RTD_INTERVAL_S
    if not low <= value <= high:
        raise ValueError(_("expected {low} s to {high} s").format(low=low, high=high))
    return value


def _ordered(value: tuple[float, float] | None) -> tuple[float, float] | None:
    if value is not None and not value[0] < value[1]:
        raise ValueError(_("the low end must be below the high end"))
    return value


def _tz_offset(value: str) -> str:
    if not re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", value):
        raise ValueError(_("expected a UTC offset such as +08:00"))
    return value


class Pollutant(Model):
    code: Code
    point: PointRef  # the measured value, in the unit the platform expects times 1/scale
    scale: float = Field(1.0, gt=0, allow_inf_nan=False)  # e.g. m3/h -> L/s: 1/3.6
    decimals: int | None = Field(None, ge=0, le=6)  # None: the code table's, else 3
    # The instrument's status register and what its codes mean (default: the vendor table
    # of docs/hj212.md); None: the flag comes from the reading's quality and range alone.
    status: PointRef | None = None
    status_map: dict[int, DataFlag] = Field(default_factory=default_status_map)
    # The measuring range, in the monitor's own unit (before `scale`): outside it is flag T.
    range: Annotated[tuple[float, float] | None, AfterValidator(_ordered)] = None
    # Cou: "volume" of a flow (m3), "load" of a concentration (kg, needs a flow pollutant).
    cou: Literal["none", "volume", "load"] = "none"
    weighting: Literal["arithmetic", "flow"] = "arithmetic"  # of hourly and daily means
    # The unit the flow is reported in (after `scale`): the code table's L/s for w00000.
    # Volumes and loads are computed in m3/h whatever it is.
    flow_unit: Literal["L/s", "m3/h"] = "L/s"

    @property
    def m3h_per_unit(self) -> float:
        return 3.6 if self.flow_unit == "L/s" else 1.0


class RunStatus(Model):
    """Equipment whose run state goes up as 2021 (`SB1-RS=1`)."""

    code: Code
    point: PointRef  # a binary or multistate point: 0 stopped, 1 running, ...


class Validity(Model):
    """HJ 356 as we assume it (docs/hj212.md, "Aggregates")."""

    minute_fraction: float = Field(default=0.75, gt=0, le=1)  # of the expected polls in a record
    hour_fraction: float = Field(default=0.75, gt=0, le=1)  # of the minute records in an hour
    day_hours: int = Field(default=20, ge=1, le=24)  # valid hours that make a valid day


class Cipher(Model):
    name: Literal["sm4-ecb"]
    key_file: Path  # 16 bytes, or 32 hex digits


Kind = Literal["realtime", "minute", "hour", "day", "run_status"]


class Platform(Model):
    """One environmental platform (province, city): its own MN, password and state."""

    id: Id
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    mn: str = Field(pattern=r"^[0-9A-Za-z]{1,24}$")
    password: str = Field(pattern=r"^[0-9A-Za-z]{6}$")  # PW; 1072 from the platform changes it
    st: str = Field("32", pattern=r"^\d{2}$")
    protocol: Protocol = Protocol.HJ212_2017
    send: tuple[Kind, ...] = ("realtime", "minute", "hour", "day")
    realtime_interval: Annotated[Duration, AfterValidator(_rtd_interval)] = 30.0  # RtdInterval
    minute_interval: Annotated[int, AfterValidator(_minute_interval)] = 10  # MinInterval, min
    over_time: Duration = 15.0  # OverTime, s: how long to wait for 9014; 1000 changes it
    re_count: int = Field(3, ge=0, le=99)  # ReCount: resends before the link is dropped
    split_at: int = Field(1024, ge=256, le=9999)  # a longer data segment is split
    # 1012 (set time) from the platform: "refuse" answers that the clock is NTP's; "offset"
    # keeps the platform's time for this platform's timestamps; "auto": refuse while the
    # system clock is synchronised, else offset. Never the system clock.
    set_time: Literal["auto", "refuse", "offset"] = "auto"
    # A larger difference is refused even where it could be kept: a platform hours off is
    # more likely in another time zone than right (the clock is the technician's to fix).
    max_clock_offset: Duration = 3600.0
    cipher: Cipher | None = None  # HJ 212-2025 Appendix A; off unless given
    connect_timeout: Duration = 10.0
    reconnect_max: Duration = 60.0

    @field_validator("cipher")
    @classmethod
    def _cipher_is_2025s(cls, cipher: Cipher | None, info: ValidationInfo) -> Cipher | None:
        if cipher is not None and info.data.get("protocol") is not Protocol.HJ212_2025:
            raise ValueError(
                _("the data-segment encryption is HJ 212-2025's (protocol: hj212-2025)")
            )
        return cipher


class Hj212(Model):
    store: Path | None = None  # default: hj212.db beside the store
    timezone: Annotated[str, AfterValidator(_tz_offset)] = "+08:00"  # DataTime is local time
    keep: Duration = 400 * 86400.0  # acknowledged records kept for the platforms' re-send
    settle: Duration = 15.0  # a period is closed this long after its end (late polls)
    pollutants: tuple[Pollutant, ...]
    run_status: tuple[RunStatus, ...] = ()
    validity: Validity = Validity()
    platforms: tuple[Platform, ...]

    @model_validator(mode="after")
    def _codes(self) -> Hj212:
        # Not min_length: pydantic would also report a tuple whose one item is bad as empty.
        if not self.pollutants or not self.platforms:
            raise ValueError(_("needs at least one pollutant and one platform"))
        codes = [p.code for p in self.pollutants]
        for code in codes:
            if codes.count(code) > 1:
                raise ValueError(_("pollutant {code} twice").format(code=code))
        ids = [p.id for p in self.platforms]
        for platform_id in ids:
            if ids.count(platform_id) > 1:
                raise ValueError(_("platform {id} twice").format(id=platform_id))
        weighted = any(p.cou == "load" or p.weighting == "flow" for p in self.pollutants)
        if weighted and self.flow is None:
            raise ValueError(_("a load or a flow-weighted mean needs a pollutant with cou: volume"))
        return self

    @property
    def flow(self) -> Pollutant | None:
        """The pollutant whose Cou is a volume: the flow that loads and weights use."""
        return next((p for p in self.pollutants if p.cou == "volume"), None)

    @property
    def tz_offset_ms(self) -> int:
        sign = -1 if self.timezone[0] == "-" else 1
        hours, minutes = self.timezone[1:].split(":")
        return sign * (int(hours) * 3600 + int(minutes) * 60) * 1000
