"""Configuration models of the DL/T 645-2007 driver (pydantic only: validating imports no
pyserial).

A point names a data identifier (DI, four bytes DI3-DI2-DI1-DI0 as the standard writes
them, "00-01-00-00" or "00010000") and takes its data format from the table of common DIs
below; a DI outside the table needs `format:` (and `signed:`). See docs/dlt645.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from edge_agent.config.base import DeviceBase, Duration, Model, PointBase
from edge_agent.i18n import N_, _

BROADCAST = "AAAAAAAAAAAA"  # the address every meter answers a read of its address on
DI_PATTERN = r"^[0-9A-Fa-f]{2}(-?)[0-9A-Fa-f]{2}\1[0-9A-Fa-f]{2}\1[0-9A-Fa-f]{2}$"
_DI = re.compile(DI_PATTERN)
_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


@dataclass(frozen=True, slots=True)
class DataFormat:
    """How a value is coded: BCD digits (two a byte, lowest byte first), the decimals,
    and whether the top bit of the highest byte is a sign."""

    text: str  # "XXXXXX.XX"
    signed: bool

    @property
    def digits(self) -> int:
        return len(self.text.replace(".", ""))

    @property
    def decimals(self) -> int:
        _, _, fraction = self.text.partition(".")
        return len(fraction)

    @property
    def size(self) -> int:
        """Bytes of the value in an answer (after the DI)."""
        return self.digits // 2


@dataclass(frozen=True, slots=True)
class KnownDi:
    name: str
    format: DataFormat
    unit: str


ENERGY = DataFormat("XXXXXX.XX", signed=False)
ENERGY_SIGNED = DataFormat("XXXXXX.XX", signed=True)  # combined energies may be negative
VOLTAGE = DataFormat("XXX.X", signed=False)
CURRENT = DataFormat("XXX.XXX", signed=True)
POWER = DataFormat("XX.XXXX", signed=True)
POWER_FACTOR = DataFormat("X.XXX", signed=True)
FREQUENCY = DataFormat("XX.XX", signed=False)

_PHASES = {0x00: "total", 0x01: "phase A", 0x02: "phase B", 0x03: "phase C"}
_ENERGIES = {
    0x00: ("combined active energy", ENERGY_SIGNED, "kWh"),
    0x01: ("forward active energy", ENERGY, "kWh"),
    0x02: ("reverse active energy", ENERGY, "kWh"),
    0x03: ("combined reactive energy 1", ENERGY_SIGNED, "kvarh"),
    0x04: ("combined reactive energy 2", ENERGY_SIGNED, "kvarh"),
}


def _table() -> dict[int, KnownDi]:
    """The common DIs of DL/T 645-2007 appendix A (docs/dlt645.md lists them)."""
    table: dict[int, KnownDi] = {}
    for di2, (name, fmt, unit) in _ENERGIES.items():
        table[di2 << 16] = KnownDi(f"{name}, total (current)", fmt, unit)
        for tariff in range(1, 5):  # DI1: the tariff (rate) 1-4; meters may have up to 63
            table[di2 << 16 | tariff << 8] = KnownDi(f"{name}, tariff {tariff}", fmt, unit)
    for phase in (1, 2, 3):
        table[0x02010000 | phase << 8] = KnownDi(f"voltage {_PHASES[phase]}", VOLTAGE, "V")
        table[0x02020000 | phase << 8] = KnownDi(f"current {_PHASES[phase]}", CURRENT, "A")
    for di1, phase_name in _PHASES.items():
        table[0x02030000 | di1 << 8] = KnownDi(f"active power {phase_name}", POWER, "kW")
        table[0x02040000 | di1 << 8] = KnownDi(f"reactive power {phase_name}", POWER, "kvar")
        table[0x02050000 | di1 << 8] = KnownDi(f"apparent power {phase_name}", POWER, "kVA")
        table[0x02060000 | di1 << 8] = KnownDi(f"power factor {phase_name}", POWER_FACTOR, "")
    table[0x02800001] = KnownDi("neutral current", CURRENT, "A")
    table[0x02800002] = KnownDi("grid frequency", FREQUENCY, "Hz")
    return table


COMMON_DIS: dict[int, KnownDi] = _table()


def di_text(di: int) -> str:
    """0x00010000 -> "00-01-00-00" (DI3 first, as the standard writes it)."""
    return "-".join(f"{b:02X}" for b in di.to_bytes(4, "big"))


def parse_di(text: str) -> int:
    if not _DI.match(text):
        raise ValueError(
            _(
                'a data identifier is 4 bytes in hex, "00-01-00-00" or "00010000", not {text!r}'
            ).format(text=text)
        )
    return int(text.replace("-", ""), 16)


def parse_format(text: str, signed: bool) -> DataFormat:
    match = _FORMAT.match(text)
    if match is None:
        raise ValueError(
            _(
                "a data format is X digits with an optional point, such as XXXXXX.XX, not {text!r}"
            ).format(text=text)
        )
    digits = len(match.group(1)) + len(match.group(2) or "")
    if digits % 2 or not 2 <= digits <= 16:
        raise ValueError(
            _("format {text!r} has {digits} digits: BCD needs an even number, 2 to 16").format(
                text=text, digits=digits
            )
        )
    return DataFormat(text, signed)


def _di_before(value: Any) -> Any:
    if isinstance(value, str):
        return parse_di(value)
    raise ValueError(_('give the data identifier as text, such as "00-01-00-00"'))


# A DI: text in the file and in a dump ("00-01-00-00"), the 32-bit number in the model.
DataId = Annotated[
    int,
    BeforeValidator(_di_before),
    PlainSerializer(di_text, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DI_PATTERN,
            "description": 'a data identifier DI3-DI2-DI1-DI0: "00-01-00-00" or "00010000"',
        }
    ),
]


class Dlt645Item(Model):
    """The `dlt645:` key of a point: the data identifier and, outside the table, its format."""

    di: DataId
    format: str | None = None  # "XXXXXX.XX": required for a DI not in the table
    signed: bool | None = None  # the top bit of the highest byte is a sign (default: table)

    @model_validator(mode="after")
    def _known_or_given(self) -> Dlt645Item:
        if self.format is None and self.di not in COMMON_DIS:
            raise ValueError(
                _(
                    "DI {di} is not in the table of common DIs (docs/dlt645.md): give its "
                    "format (such as XXXXXX.XX) and signed"
                ).format(di=di_text(self.di))
            )
        if self.format is not None:
            parse_format(self.format, bool(self.signed))
        return self

    @property
    def data_format(self) -> DataFormat:
        known = COMMON_DIS.get(self.di)
        if self.format is None:
            assert known is not None  # the validator saw to it
            fmt = known.format
            return fmt if self.signed is None else DataFormat(fmt.text, self.signed)
        signed = self.signed if self.signed is not None else bool(known and known.format.signed)
        return parse_format(self.format, signed)


class Dlt645Point(PointBase):
    dlt645: Dlt645Item

    @model_validator(mode="after")
    def _read_only_number(self) -> Dlt645Point:
        if self.writable:
            raise ValueError(_("DL/T 645 points are read-only (writes need the meter's password)"))
        if self.kind != "analog":
            raise ValueError(
                _("a DL/T 645 value is a number: kind must be analog, not {kind}").format(
                    kind=self.kind
                )
            )
        return self


class SerialConnection(Model):
    port: str = Field(min_length=1)  # /dev/ttyUSB0
    baudrate: int = Field(2400, ge=300, le=115200)  # meters ship at 2400 8E1
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    address: str  # 12 BCD digits as printed on the meter, or AAAAAAAAAAAA
    preamble: int = Field(4, ge=0, le=4)  # FE bytes that wake the meter's receiver

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                _('quote the meter address ("000000000161"): a number loses its leading zeros')
            )
        if isinstance(value, str):
            text = value.strip().upper()
            if text != BROADCAST and not re.fullmatch(r"[0-9]{12}", text):
                raise ValueError(
                    _(
                        "a meter address is 12 digits (or AAAAAAAAAAAA to ask it), not {value!r}"
                    ).format(value=value)
                )
            return text
        return value

    @property
    def broadcast(self) -> bool:
        return self.address == BROADCAST


class Dlt645Device(DeviceBase):
    driver: Literal["dlt645"]
    connection: SerialConnection
    points: list[Dlt645Point] = Field(min_length=1)
    poll_interval: Duration = 10.0
    timeout: Duration = 1.0  # per request; a meter answers within 500 ms (docs/dlt645.md)
    retries: Annotated[int, Field(ge=0, le=5)] = 1  # repeats of a request that timed out

    def poll_floor(self) -> tuple[str, float, str]:
        """(what, seconds, why): the shortest poll_interval a config may give."""
        return (
            "DL/T 645",
            1.0,
            N_(
                "a DL/T 645 meter answers one data identifier a request (at 2400 baud about "
                "100ms each): faster polling leaves no time for the other meters on the bus"
            ),
        )
