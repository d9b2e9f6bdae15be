"""Configuration models of the Modbus driver (pydantic only: validating imports no pymodbus).

Addresses are 0-based protocol addresses. Modicon notation (1xxxx/3xxxx/4xxxx and the
6-digit 1xxxxx/3xxxxx/4xxxxx forms) is converted to table + protocol address; set
`modicon: false` on a point whose device really uses protocol addresses >= 10000.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from edge_agent.config.base import DeviceBase, Duration, Model, PointBase
from edge_agent.i18n import N_, _

Table = Literal["coil", "discrete", "holding", "input"]
DataType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64", "string"
]
Order = Literal["big", "little"]

BIT_TABLES = ("coil", "discrete")
WRITABLE_TABLES = ("coil", "holding")
# Registers per numeric type (strings: `length`; bool: one bit).
REGISTERS = {
    "bit": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "float64": 4,
}
MAX_ADDRESS = 65535
# (low, high, table, base): 5-digit then 6-digit Modicon ranges; 0xxxx cannot be told
# apart from a protocol address, so coils are always given with `table: coil`.
_MODICON = (
    (10001, 19999, "discrete", 10001),
    (30001, 39999, "input", 30001),
    (40001, 49999, "holding", 40001),
    (100001, 165536, "discrete", 100001),
    (300001, 365536, "input", 300001),
    (400001, 465536, "holding", 400001),
)


def modicon(address: int) -> tuple[str, int] | None:
    """Modicon reference -> (table, 0-based protocol address), or None if not Modicon."""
    for low, high, table, base in _MODICON:
        if low <= address <= high:
            return table, address - base
    return None


class ModbusAddress(Model):
    """Where and how a point's value lives in the device (the `modbus:` key of a point)."""

    table: Table
    address: Annotated[int, Field(ge=0, le=MAX_ADDRESS)]
    type: DataType
    word_order: Order = "big"  # which register holds the most significant word
    byte_order: Order = "big"  # byte order inside each register
    bit: Annotated[int, Field(ge=0, le=15)] | None = None  # with type bit only
    length: Annotated[int, Field(ge=1, le=125)] | None = None  # registers; strings only
    modicon: bool = True  # read 1xxxx/3xxxx/4xxxx addresses as Modicon references

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)  # never mutate the caller's mapping
        address = data.get("address")
        converted = (
            modicon(address) if isinstance(address, int) and not isinstance(address, bool) else None
        )
        if converted is not None and data.get("modicon", True):
            table, protocol = converted
            given = data.get("table")
            if given is not None and given != table:
                raise ValueError(
                    f"address {address} is Modicon notation for {table} register {protocol}, "
                    f"but table is {given!r} (use modicon: false for a protocol address)"
                )
            # From here on the address is a protocol address: say so, so that a dumped and
            # re-read config (`config show`, the simulator) is not converted twice.
            data["table"], data["address"], data["modicon"] = table, protocol, False
        if "table" not in data:
            raise ValueError(_("table is required (coil, discrete, holding or input)"))
        if "type" not in data and data["table"] in BIT_TABLES:
            data["type"] = "bool"
        elif "type" not in data:
            data["type"] = "bit" if data.get("bit") is not None else "uint16"
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModbusAddress:
        bit_table = self.table in BIT_TABLES
        if bit_table and self.type != "bool":
            raise ValueError(f"type {self.type} is not possible on a {self.table} (only bool)")
        if not bit_table and self.type == "bool":
            raise ValueError(f"type bool needs a coil or discrete table, not {self.table}")
        if (self.bit is not None) != (self.type == "bit"):
            raise ValueError(_("bit (0-15) is required with type bit and allowed only with it"))
        if (self.length is not None) != (self.type == "string"):
            raise ValueError(_("length (in registers) is required with type string and only there"))
        if self.address + self.count - 1 > MAX_ADDRESS:
            raise ValueError(f"address {self.address} + {self.count} goes past {MAX_ADDRESS}")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits, on a bit table) the value occupies."""
        if self.type == "bool":
            return 1
        if self.type == "string":
            return self.length or 0
        return REGISTERS[self.type]


class ModbusPoint(PointBase):
    modbus: ModbusAddress

    @model_validator(mode="after")
    def _kind_fits(self) -> ModbusPoint:
        dtype = self.modbus.type
        if self.writable and self.modbus.table not in WRITABLE_TABLES:
            raise ValueError(f"a {self.modbus.table} table cannot be written (writable: true)")
        if dtype in ("bool", "bit") and self.kind != "binary":
            raise ValueError(f"type {dtype} needs kind: binary (kind is {self.kind})")
        if dtype == "string" and self.kind != "string":
            raise ValueError(f"type string needs kind: string (kind is {self.kind})")
        if self.kind in ("binary", "string") and dtype not in ("bool", "bit", "string"):
            raise ValueError(f"kind {self.kind} does not fit type {dtype}")
        if dtype in ("bool", "bit", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset apply to numbers, not to type {dtype}")
        return self


class TcpConnection(Model):
    transport: Literal["tcp", "rtu-over-tcp"]
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255)


class RtuConnection(Model):
    transport: Literal["rtu"]
    port: str = Field(min_length=1)  # /dev/ttyUSB0
    baudrate: int = Field(9600, ge=300, le=1_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit: int = Field(1, ge=1, le=247)  # 0 is broadcast: never answered


Connection = Annotated[TcpConnection | RtuConnection, Field(discriminator="transport")]


class ModbusDevice(DeviceBase):
    driver: Literal["modbus"]
    connection: Connection
    points: list[ModbusPoint] = Field(min_length=1)
    poll_interval: Duration = 5.0
    retries: int = Field(1, ge=0, le=5)  # repeats of a request that timed out
    max_gap_registers: int = Field(8, ge=0, le=124)  # unused registers read to save a request
    max_block_registers: int = Field(125, ge=1, le=125)
    max_block_bits: int = Field(2000, ge=1, le=2000)
    fc16_only: bool = False  # the device refuses FC6: single registers go with FC16

    def poll_floor(self) -> tuple[str, float, str]:
        """(what, seconds, why): the shortest poll_interval a config may give (the config
        checks refuse less; docs/configuration.md)."""
        if self.connection.transport == "tcp":
            return (
                "Modbus TCP",
                0.1,
                N_(
                    "a Modbus device answers one request at a time and refreshes its "
                    "registers every 100ms or more (PLC scan, meter cycle): faster polling "
                    "reads the same values again and crowds out the other masters (BMS, "
                    "vendor tools)"
                ),
            )
        return (
            "Modbus RTU" if self.connection.transport == "rtu" else "Modbus RTU over TCP",
            0.2,
            N_(
                "a serial bus carries one request at a time (at 9600 baud a short read takes "
                "about 30ms, a full one 300ms): faster polling leaves no time for the other "
                "devices on the bus"
            ),
        )

    @model_validator(mode="after")
    def _blocks_fit(self) -> ModbusDevice:
        for point in self.points:
            spec = point.modbus
            if spec.table not in BIT_TABLES and spec.count > self.max_block_registers:
                raise ValueError(
                    f"point {point.id}: {spec.type} of {spec.count} registers does not fit "
                    f"max_block_registers ({self.max_block_registers})"
                )
        return self
