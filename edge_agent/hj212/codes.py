"""The code tables of HJ 212-2017 that the data logger speaks (docs/hj212.md).

CN command codes, the return codes of 9011 (QnRtn) and 9012 (ExeRtn), the system codes
(ST) and the protocol-version bits of Flag. Pollutant codes are site configuration
(`hj212.pollutants`): the defaults below only name and format the common ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Cn(StrEnum):
    """Command codes (HJ 212-2017 table 9) that the data logger sends or answers."""

    SET_TIMEOUT = "1000"  # OverTime and ReCount
    GET_TIME = "1011"
    SET_TIME = "1012"
    TIME_CALIBRATION = "1013"  # the logger asks the platform for the time
    GET_RTD_INTERVAL = "1061"
    SET_RTD_INTERVAL = "1062"
    GET_MIN_INTERVAL = "1063"
    SET_MIN_INTERVAL = "1064"
    SET_PASSWORD = "1072"
    RTD_DATA = "2011"  # real-time data; from the platform: start sending them
    RTD_STOP = "2012"
    RUN_STATUS = "2021"  # equipment run status
    RUN_STATUS_STOP = "2022"
    DAY_DATA = "2031"
    DAY_RUNTIME = "2041"
    MINUTE_DATA = "2051"
    HOUR_DATA = "2061"
    RESTART_TIME = "2081"
    REQUEST_ANSWER = "9011"
    EXECUTION_RESULT = "9012"
    NOTIFICATION_ANSWER = "9013"
    DATA_ANSWER = "9014"


class QnRtn(IntEnum):
    """The answer of 9011 to a request."""

    READY = 1
    REJECTED = 2
    BAD_PASSWORD = 3
    BAD_MN = 4
    BAD_ST = 5
    BAD_FLAG = 6
    BAD_QN = 7
    BAD_CN = 8
    BAD_CRC = 9
    UNKNOWN = 100


class ExeRtn(IntEnum):
    """The result of 9012 after a request was executed."""

    SUCCESS = 1
    FAILED = 2  # failed, reason unknown
    CONDITION = 3  # the request's conditions are wrong (a bad parameter)
    TIMEOUT = 4
    BUSY = 5
    FAULT = 6
    NO_DATA = 100


class St(StrEnum):
    SURFACE_WATER_SOURCE = "32"  # 地表水体环境污染源: a wastewater outfall
    SYSTEM = "91"  # system interaction: the answers 9011..9014


class Protocol(StrEnum):
    HJ212_2017 = "hj212-2017"
    HJ212_2025 = "hj212-2025"


# Flag = V5..V0 D A: bit 0 the receiver must answer, bit 1 the packet is one of several
# (PNUM/PNO follow), bits 2-7 the protocol version: 000000 HJ/T 212-2005, 000001 HJ 212-2017.
# HJ 212-2025's number is assumed to be the next one, 000010 (docs/hj212.md, assumptions).
VERSION_BITS = {Protocol.HJ212_2017: 1, Protocol.HJ212_2025: 2}
FLAG_ACK = 0x01
FLAG_SPLIT = 0x02


def make_flag(protocol: Protocol, *, ack: bool, split: bool = False) -> int:
    return VERSION_BITS[protocol] << 2 | (FLAG_SPLIT if split else 0) | (FLAG_ACK if ack else 0)


@dataclass(frozen=True, slots=True)
class Pollutant:
    """What the 2017 code table says about a code, as far as we have confirmed it."""

    name: str
    rtd_unit: str
    cou_unit: str | None  # None: no cumulative value (pH, temperature)
    decimals: int


# Defaults for the codes of a hospital outfall; a site's config may give any code (local
# extension codes) with its own unit and decimals.
POLLUTANTS: dict[str, Pollutant] = {
    "w00000": Pollutant("wastewater flow", "L/s", "m3", 2),
    "w01001": Pollutant("pH", "", None, 2),
    "w01010": Pollutant("water temperature", "°C", None, 1),
    "w01012": Pollutant("suspended solids", "mg/L", "kg", 1),
    "w01018": Pollutant("COD", "mg/L", "kg", 1),
    "w21001": Pollutant("total nitrogen", "mg/L", "kg", 2),
    "w21003": Pollutant("ammonia nitrogen", "mg/L", "kg", 3),
    "w21011": Pollutant("total phosphorus", "mg/L", "kg", 3),
    "w02003": Pollutant("fecal coliform", "MPN/L", None, 0),
}
