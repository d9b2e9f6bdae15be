"""DL/T 645-2007 frames and BCD against worked examples.

The frames are from a public debugging log of a DL/T 645-2007 meter ("DLT645-2007报文解析",
found through the search tool; docs/dlt645.md): meter 000000000161 asked for the forward
active energy (00-01-00-00, 000000.26 kWh) and the phase A voltage (02-01-01-00, 100.1 V),
and the broadcast read of 00-01-00-00 from another page of the same kind.
"""

from __future__ import annotations

import pytest

from drivers.dlt645 import codec
from drivers.dlt645.config import COMMON_DIS, CURRENT, ENERGY, POWER, POWER_FACTOR, DataFormat

METER = codec.address_bytes("000000000161")
ENERGY_REQUEST = "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16"
ENERGY_ANSWER = "68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"
VOLTAGE_ANSWER = "68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16"
BROADCAST_READ = "68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16"


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_address_goes_lowest_byte_first() -> None:
    assert codec.address_bytes("000000000161") == bytes((0x61, 0x01, 0, 0, 0, 0))
    assert codec.address_text(METER) == "000000000161"


def test_read_request_as_in_the_worked_example() -> None:
    assert codec.read_request(METER, 0x00010000) == hexbytes(ENERGY_REQUEST)
    assert codec.read_request(b"\xaa" * 6, 0x00010000, preamble=0) == hexbytes(BROADCAST_READ)


def test_answers_of_the_worked_example_decode() -> None:
    found = codec.next_frame(hexbytes(ENERGY_ANSWER))
    assert found.frame == codec.Frame(METER, 0x91, hexbytes("00 00 01 00 26 00 00 00"))
    assert codec.decode_bcd(found.frame.data[4:], ENERGY) == 0.26
    voltage = codec.next_frame(hexbytes(VOLTAGE_ANSWER)).frame
    assert voltage is not None and voltage.data[:4] == codec.di_bytes(0x02010100)
    assert codec.decode_bcd(voltage.data[4:], COMMON_DIS[0x02010100].format) == 100.1


def test_preamble_and_noise_before_a_frame() -> None:
    stream = hexbytes("FE FE 00 13 68 01 " + ENERGY_ANSWER)  # 68 01 ...: no second 68
    found = codec.next_frame(stream)
    assert found.frame is not None and found.frame.control == 0x91
    assert found.end == len(stream)
    assert found.junk == 4  # 00 13 68 01; FE is preamble, not junk


def test_incomplete_frame_waits_for_more() -> None:
    whole = hexbytes("FE FE " + ENERGY_ANSWER)
    for cut in range(len(whole)):
        found = codec.next_frame(whole[:cut])
        assert found.frame is None
        assert found.end <= 2  # nothing of the frame itself may be dropped


def test_bad_checksum_and_bad_end_are_errors() -> None:
    broken = bytearray(hexbytes(ENERGY_ANSWER))
    broken[-2] ^= 0x01
    with pytest.raises(codec.FrameError, match="checksum"):
        codec.next_frame(broken)
    broken = bytearray(hexbytes(ENERGY_ANSWER))
    broken[-1] = 0x17
    with pytest.raises(codec.FrameError, match="garbled"):
        codec.next_frame(broken)


@pytest.mark.parametrize(
    ("fmt", "value", "line"),
    [
        (ENERGY, 123456.78, "78 56 34 12"),
        (CURRENT, -1.5, "00 15 80"),  # the sign: top bit of the highest byte
        (CURRENT, 799.999, "99 99 79"),
        (POWER, -12.3456, "56 34 92"),
        (POWER_FACTOR, 0.987, "87 09"),
        (POWER_FACTOR, -0.5, "00 85"),
        (DataFormat("XXXXXXXX", signed=False), 12345678, "78 56 34 12"),
    ],
)
def test_bcd_both_ways(fmt: DataFormat, value: float, line: str) -> None:
    assert codec.encode_bcd(value, fmt) == hexbytes(line)
    assert codec.decode_bcd(hexbytes(line), fmt) == value


def test_bcd_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        codec.encode_bcd(800.0, CURRENT)  # the top digit has 3 bits beside the sign
    with pytest.raises(ValueError, match="negative"):
        codec.encode_bcd(-1.0, ENERGY)
    with pytest.raises(ValueError, match="not BCD"):
        codec.decode_bcd(hexbytes("7A 00 00 00"), ENERGY)
    with pytest.raises(ValueError, match="bytes"):
        codec.decode_bcd(hexbytes("00 00 00"), ENERGY)
    # An unsigned format reads the top bit as a digit: 0x80 is 80, not minus zero.
    assert codec.decode_bcd(hexbytes("00 00 00 80"), ENERGY) == 800000.0


def test_error_answer_and_its_byte() -> None:
    frame = codec.encode_frame(METER, codec.READ_ERROR, b"\x02", preamble=0)
    found = codec.next_frame(frame).frame
    assert found == codec.Frame(METER, 0xD1, b"\x02")
    assert codec.error_text(0x02) == "no data requested"
    assert codec.error_text(0x05) == "other error, password error or unauthorised"
