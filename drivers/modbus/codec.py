"""Registers <-> values, vectorised with numpy.

A `Decoder` is built once per read plan: it lays the blocks end to end in one register
buffer and one bit buffer and precomputes, for every group of points of one type and
order, the buffer indices of their registers. A poll then costs one gather and one
`view` per group, not a conversion per point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter

import numpy as np

from drivers.modbus.config import REGISTERS, ModbusAddress, ModbusPoint
from drivers.modbus.plan import Block
from drivers.numbers import FLOAT32_DIGITS
from edge_agent.points import Value

# numpy type codes; applied big-endian to registers laid out most significant word first.
_CODES = {
    "bit": "u2",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "int64": "i8",
    "float32": "f4",
    "float64": "f8",
}


def registers_to_raw(regs: np.ndarray, dtype: str, word_order: str, byte_order: str) -> np.ndarray:
    """(n, k) uint16 register values -> n raw numbers of `dtype`."""
    if byte_order == "little":
        regs = (regs >> 8) | (regs << 8)
    if word_order == "little":
        regs = regs[:, ::-1]
    wire = np.ascontiguousarray(regs, dtype=">u2")
    return wire.view(">" + _CODES[dtype]).reshape(-1)


def raw_to_registers(raw: np.ndarray, dtype: str, word_order: str, byte_order: str) -> np.ndarray:
    """n raw numbers of `dtype` -> (n, k) uint16 register values."""
    k = REGISTERS[dtype]
    # Typed as the function returns it: numpy's stubs make `uint16 >> int` signed, while
    # numpy 2 (NEP 50) keeps it uint16.
    regs: np.ndarray = (
        np.asarray(raw, dtype=">" + _CODES[dtype]).view(">u2").reshape(-1, k).astype(np.uint16)
    )
    if word_order == "little":
        regs = regs[:, ::-1]
    if byte_order == "little":
        regs = (regs >> 8) | (regs << 8)
    return np.ascontiguousarray(regs)


def string_from_registers(regs: Sequence[int] | np.ndarray, byte_order: str) -> str:
    """Registers -> text; NUL padding and trailing spaces are not part of the value.
    Raises UnicodeDecodeError on bytes that are not UTF-8."""
    data = np.asarray(regs, dtype=np.uint16).astype(">u2" if byte_order == "big" else "<u2")
    return data.tobytes().split(b"\x00", 1)[0].decode("utf-8").rstrip(" ")


def string_to_registers(text: str, length: int, byte_order: str) -> list[int]:
    data = text.encode("utf-8")
    if len(data) > 2 * length:
        raise ValueError(f"{text!r} is longer than {length} registers ({2 * length} bytes)")
    data = data.ljust(2 * length, b"\x00")
    return np.frombuffer(data, dtype=">u2" if byte_order == "big" else "<u2").tolist()


def encode(spec: ModbusAddress, raw: float | int | bool | str) -> list[int]:
    """One raw value (before scale/offset) -> the registers (or [bit]) to write.
    Integer types take integers in range; raises ValueError otherwise."""
    if spec.type == "bool":
        return [int(bool(raw))]
    if spec.type == "string":
        return string_to_registers(str(raw), spec.count, spec.byte_order)
    if spec.type == "bit":
        return [int(bool(raw)) << (spec.bit or 0)]
    code = _CODES[spec.type]
    if code[0] != "f":
        info = np.iinfo(code)
        if raw != int(raw) or not info.min <= raw <= info.max:
            raise ValueError(f"{raw} does not fit {spec.type} ({info.min}..{info.max})")
        raw = int(raw)
    regs = raw_to_registers(np.array([raw]), spec.type, spec.word_order, spec.byte_order)
    return regs[0].tolist()


def decode(spec: ModbusAddress, regs: Sequence[int]) -> float | int | bool | str:
    """The registers (or [bit]) of one value -> its raw value (scalar helper)."""
    if spec.type == "bool":
        return bool(regs[0])
    if spec.type == "string":
        return string_from_registers(regs, spec.byte_order)
    if spec.type == "bit":
        return bool((regs[0] >> (spec.bit or 0)) & 1)
    array = np.asarray([regs], dtype=np.uint16)
    return registers_to_raw(array, spec.type, spec.word_order, spec.byte_order)[0].item()


@dataclass(slots=True)
class _Group:
    """Points sharing one numeric type and order: decoded together."""

    dtype: str
    word_order: str
    byte_order: str
    positions: list[int]  # index in the point list
    index: np.ndarray  # (n, k) into the register buffer
    scale: np.ndarray
    offset: np.ndarray
    integral: list[int]  # positions (within the group) of multistate points: int values
    # Powers of ten to round to: a float32 carries ~7 significant digits, and 1032 * 0.1 is
    # 103.2 on the meter's display, not 103.20000000000002. Rounding keeps published values
    # what the device meant (and short decimals store in ~2 bytes). None: exact as decoded.
    unit: np.ndarray | None
    significant: int | None  # float32: round to 7 significant digits


def _decimals(x: float) -> int:
    """Decimal places of a config number such as 0.1 (1) or 0.025 (3)."""
    exponent = Decimal(repr(x)).as_tuple().exponent
    return min(9, -exponent) if isinstance(exponent, int) and exponent < 0 else 0


def _round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        unit = 10.0 ** np.where(np.isfinite(magnitude), digits - 1 - magnitude, 0)
        return np.where(np.isfinite(values), np.round(values * unit) / unit, values)


class Decoder:
    """Turns the responses of one plan's blocks into point values (in point order)."""

    def __init__(self, points: Sequence[ModbusPoint], blocks: Sequence[Block]) -> None:
        self.size = len(points)
        self.points_of: list[list[int]] = [[] for _ in blocks]  # point positions per block
        self.slots: list[tuple[bool, int, int]] = []  # (bits, buffer offset, count) per block
        where: dict[int, tuple[bool, int]] = {}  # point -> (bits, buffer position)
        reg_size = bit_size = 0
        for b, block in enumerate(blocks):
            base = bit_size if block.bits else reg_size
            self.slots.append((block.bits, base, block.count))
            for item in block.items:
                self.points_of[b].append(item.index)
                where[item.index] = (block.bits, base + item.start - block.start)
            if block.bits:
                bit_size += block.count
            else:
                reg_size += block.count
        self.reg_size, self.bit_size = reg_size, bit_size

        groups: dict[tuple[str, str, str], list[int]] = {}
        bools: list[tuple[int, int]] = []
        bit_fields: list[tuple[int, int, int]] = []
        self.strings: list[tuple[int, int, int, str]] = []
        for i, point in enumerate(points):
            spec, (_, pos) = point.modbus, where[i]
            if spec.type == "bool":
                bools.append((i, pos))
            elif spec.type == "bit":
                bit_fields.append((i, pos, spec.bit or 0))
            elif spec.type == "string":
                self.strings.append((i, pos, spec.count, spec.byte_order))
            else:
                groups.setdefault((spec.type, spec.word_order, spec.byte_order), []).append(i)
        self.bool_pos = [i for i, _ in bools]
        self.bool_index = np.array([p for _, p in bools], dtype=np.intp)
        self.bitf_pos = [i for i, _, _ in bit_fields]
        self.bitf_index = np.array([p for _, p, _ in bit_fields], dtype=np.intp)
        self.bitf_shift = np.array([s for _, _, s in bit_fields], dtype=np.uint16)
        self.groups = [self._group(points, where, key, members) for key, members in groups.items()]
        # decode() gathers values group after group; one C-level itemgetter puts them back in
        # point order (a Python loop of `out[i] = value` would cost more than numpy does).
        gathered = [i for g in self.groups for i in g.positions]
        gathered += self.bool_pos + self.bitf_pos + [i for i, *_ in self.strings]
        where_gathered = {point: at for at, point in enumerate(gathered)}
        perm = [where_gathered[i] for i in range(self.size)]
        self._reorder = itemgetter(*perm) if len(perm) > 1 else (lambda values: (values[0],))

    @staticmethod
    def _group(
        points: Sequence[ModbusPoint],
        where: dict[int, tuple[bool, int]],
        key: tuple[str, str, str],
        members: list[int],
    ) -> _Group:
        dtype, word_order, byte_order = key
        k = REGISTERS[dtype]
        starts = np.array([where[i][1] for i in members], dtype=np.intp)
        decimals = [max(_decimals(points[i].scale), _decimals(points[i].offset)) for i in members]
        scaled = any(points[i].scale != 1 or points[i].offset != 0 for i in members)
        return _Group(
            dtype,
            word_order,
            byte_order,
            members,
            starts[:, None] + np.arange(k, dtype=np.intp),
            np.array([points[i].scale for i in members]),
            np.array([points[i].offset for i in members]),
            [g for g, i in enumerate(members) if points[i].kind == "multistate"],
            10.0 ** np.array(decimals) if scaled and not dtype.startswith("float") else None,
            FLOAT32_DIGITS if dtype == "float32" else None,
        )

    def decode(
        self, regs: np.ndarray, bits: np.ndarray
    ) -> tuple[Sequence[Value], list[tuple[int, str]]]:
        """Values in point order, and (position, reason) of the values that are not valid."""
        gathered: list[Value] = []
        invalid: list[tuple[int, str]] = []
        for group in self.groups:
            raw = registers_to_raw(
                regs[group.index], group.dtype, group.word_order, group.byte_order
            )
            with np.errstate(invalid="ignore"):  # a device's signalling NaN is just "not a number"
                if group.significant is not None:  # before scaling: an offset adds no digits
                    raw = _round_significant(raw.astype(np.float64), group.significant)
                scaled = raw * group.scale + group.offset
                if group.unit is not None:
                    scaled = np.round(scaled * group.unit) / group.unit
            if group.dtype.startswith("float"):
                bad = np.flatnonzero(~np.isfinite(scaled)).tolist()
                invalid += [(group.positions[g], "not a number") for g in bad]
            values = scaled.tolist()
            for g in group.integral:
                values[g] = round(values[g]) if math.isfinite(values[g]) else values[g]
            gathered += values
        if self.bool_pos:
            gathered += bits[self.bool_index].tolist()
        if self.bitf_pos:
            gathered += ((regs[self.bitf_index] >> self.bitf_shift) & 1).astype(bool).tolist()
        for i, pos, count, byte_order in self.strings:
            try:
                gathered.append(string_from_registers(regs[pos : pos + count], byte_order))
            except UnicodeDecodeError:
                gathered.append(None)
                invalid.append((i, "decode error"))
        return self._reorder(gathered), invalid
