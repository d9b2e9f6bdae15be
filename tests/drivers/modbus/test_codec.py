"""The numpy codec against a plain-Python (struct) reference, for every type and order."""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import Decoder, decode, encode
from drivers.modbus.config import ModbusAddress, ModbusPoint
from drivers.modbus.plan import Item, Limits, ReadPlan

FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "float32": "f",
    "float64": "d",
}
ORDERS = [(w, b) for w in ("big", "little") for b in ("big", "little")]


def reference_registers(dtype: str, raw: float, word_order: str, byte_order: str) -> list[int]:
    """How the Modbus world lays a value out, written the slow obvious way."""
    data = struct.pack(">" + FORMATS[dtype], raw)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def spec(dtype: str, word_order: str = "big", byte_order: str = "big") -> ModbusAddress:
    return ModbusAddress(
        table="holding", address=0, type=dtype, word_order=word_order, byte_order=byte_order
    )


SAMPLES = {
    "int16": [0, 1, -1, 32767, -32768, 1234],
    "uint16": [0, 1, 65535, 40000],
    "int32": [0, -1, 2**31 - 1, -(2**31), 123456789],
    "uint32": [0, 2**32 - 1, 4_000_000_000, 65536],
    "int64": [0, -1, 2**63 - 1, -(2**63), -(2**40) - 7],
    "float32": [0.0, -1.5, 6.5, 3.4e38, 1e-3],
    "float64": [0.0, -1.5, math.pi, 1e300, -2.5e-300],
}


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize("dtype", sorted(FORMATS))
def test_encode_and_decode_match_the_reference(
    dtype: str, word_order: str, byte_order: str
) -> None:
    s = spec(dtype, word_order, byte_order)
    for raw in SAMPLES[dtype]:
        expected = reference_registers(dtype, raw, word_order, byte_order)
        assert encode(s, raw) == expected
        back = decode(s, expected)
        if dtype == "float32":
            assert back == struct.unpack(">f", struct.pack(">f", raw))[0]
        else:
            assert back == raw


def test_known_layouts() -> None:
    # float32 1.0 is 0x3F800000: ABCD, CDAB (word swap), BADC (byte swap), DCBA.
    assert encode(spec("float32"), 1.0) == [0x3F80, 0x0000]
    assert encode(spec("float32", "little"), 1.0) == [0x0000, 0x3F80]
    assert encode(spec("float32", "big", "little"), 1.0) == [0x803F, 0x0000]
    assert encode(spec("float32", "little", "little"), 1.0) == [0x0000, 0x803F]


def test_integer_range_and_fraction_are_refused() -> None:
    with pytest.raises(ValueError, match="does not fit int16"):
        encode(spec("int16"), 40000)
    with pytest.raises(ValueError, match="does not fit uint16"):
        encode(spec("uint16"), -1)
    with pytest.raises(ValueError, match="does not fit int32"):
        encode(spec("int32"), 1.5)


def test_strings_and_bits() -> None:
    text = ModbusAddress(table="holding", address=0, type="string", length=4)
    assert encode(text, "AB1") == [0x4142, 0x3100, 0, 0]
    assert decode(text, [0x4142, 0x3100, 0, 0]) == "AB1"
    swapped = ModbusAddress(
        table="holding", address=0, type="string", length=2, byte_order="little"
    )
    assert encode(swapped, "AB12") == [0x4241, 0x3231]
    assert decode(swapped, [0x4241, 0x3231]) == "AB12"
    with pytest.raises(ValueError, match="longer than 4 registers"):
        encode(text, "123456789")
    bit = ModbusAddress(table="holding", address=0, type="bit", bit=15)
    assert encode(bit, True) == [0x8000] and decode(bit, [0x8000]) is True
    assert decode(bit, [0x7FFF]) is False


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(ORDERS))
def test_int32_roundtrip_property(value: int, orders: tuple[str, str]) -> None:
    s = spec("int32", *orders)
    assert encode(s, value) == reference_registers("int32", value, *orders)
    assert decode(s, encode(s, value)) == value


@given(st.floats(allow_nan=False, width=64), st.sampled_from(ORDERS))
def test_float64_roundtrip_property(value: float, orders: tuple[str, str]) -> None:
    s = spec("float64", *orders)
    assert decode(s, encode(s, value)) == value


def _random_points(rng: random.Random, n: int) -> list[ModbusPoint]:
    points, address = [], 0
    for i in range(n):
        dtype = rng.choice([*sorted(FORMATS), "bit"])
        w, b = rng.choice(ORDERS)
        modbus: dict = {"table": "holding", "address": address, "type": dtype}
        fields: dict = {"id": f"p{i}", "modbus": modbus}
        if dtype == "bit":
            modbus["bit"] = rng.randrange(16)
            fields["kind"] = "binary"
        else:
            modbus |= {"word_order": w, "byte_order": b}
            fields |= {"scale": rng.choice([1.0, 0.1, 10.0]), "offset": rng.choice([0.0, -50.0])}
        points.append(ModbusPoint.model_validate(fields))
        address += ModbusAddress.model_validate(modbus).count + rng.choice([0, 0, 3])
    return points


def test_vectorised_decoder_matches_point_by_point_reference() -> None:
    rng = random.Random(7)
    points = _random_points(rng, 400)
    plan = ReadPlan(
        [Item(i, 1, "holding", p.modbus.address, p.modbus.count) for i, p in enumerate(points)],
        Limits(),
    )
    decoder = Decoder(points, plan.blocks)
    memory = [rng.randrange(65536) for _ in range(points[-1].modbus.address + 4)]
    regs = np.zeros(decoder.reg_size, dtype=np.uint16)
    for block, (_, offset, count) in zip(plan.blocks, decoder.slots, strict=True):
        regs[offset : offset + count] = memory[block.start : block.start + count]
    values, _ = decoder.decode(regs, np.zeros(0, dtype=bool))
    for point, value in zip(points, values, strict=True):
        s = point.modbus
        words = memory[s.address : s.address + s.count]
        if s.type == "bit":
            assert value is bool((words[0] >> (s.bit or 0)) & 1)
            continue
        if s.byte_order == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        if s.word_order == "little":
            words = words[::-1]
        raw = struct.unpack(">" + FORMATS[s.type], b"".join(w.to_bytes(2, "big") for w in words))[0]
        if not math.isfinite(raw):
            assert value == raw or (math.isnan(raw) and math.isnan(value))
            continue
        assert value == pytest.approx(_meant(point, raw), rel=1e-14, abs=1e-300), point


def _meant(point, raw: float) -> float:
    """The decimal the device meant: float32 to its 7 significant digits; integers times
    scale plus offset in exact decimal arithmetic."""
    if point.modbus.type == "float32":
        raw = float(f"{raw:.7g}")
    exact = Decimal(repr(raw)) * Decimal(repr(point.scale)) + Decimal(repr(point.offset))
    return float(exact)


@pytest.mark.parametrize(
    ("type_", "words", "scale", "offset", "shown"),
    [
        ("int32", [0, 10321], 0.1, 0.0, 1032.1),  # a meter's 0.1 kW register
        ("int16", [0xFFFF - 4], 0.01, 0.0, -0.05),
        ("uint16", [2731], 0.1, -273.1, 0.0),
        ("float32", [0x40D5, 0x70A4], 1.0, 0.0, 6.67),  # float32(6.67) = 6.670000076...
        ("float32", [0x4139, 0xE1B0], 1.0, 0.0, 11.61760),
    ],
)
def test_values_are_the_decimals_the_device_meant(type_, words, scale, offset, shown) -> None:
    point = ModbusPoint.model_validate(
        {
            "id": "p",
            "scale": scale,
            "offset": offset,
            "modbus": {"table": "holding", "address": 0, "type": type_},
        }
    )
    plan = ReadPlan([Item(0, 1, "holding", 0, point.modbus.count)], Limits())
    values, _ = Decoder([point], plan.blocks).decode(
        np.array(words, dtype=np.uint16), np.zeros(0, dtype=bool)
    )
    assert values[0] == shown
