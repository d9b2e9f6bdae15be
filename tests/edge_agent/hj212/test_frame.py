"""HJ 212 frames against the standard's worked example and frames of field data loggers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.hj212.cipher import Sm4Ecb, blockwise, transforms
from edge_agent.hj212.codes import Protocol, QnRtn, make_flag
from edge_agent.hj212.frame import (
    FrameError,
    FrameReader,
    Packet,
    crc16,
    encode,
    format_cp,
    frame,
    parse_cp,
    parse_segment,
    split,
)

# HJ 212-2017's example of a request (set the real-time interval to 30 s), as printed.
STANDARD = (
    b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
    b"Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
)
# A real-time upload of an air-quality station's data logger, captured off the wire and
# published as hex in an article on HJ 212 integration (blog.csdn.net, 2024): another
# implementation's CRC over a 313-byte segment.
FIELD_CAPTURE = bytes.fromhex(
    "232330333133514e3d32303234313131353139303430383030303b53543d32373b434e3d323031313b50573d"
    "3132333435363b4d4e3d415149323431313133323630303333323b466c61673d353b43503d26264461746154"
    "696d653d32303234313131353139303430383b6132313032362d5274643d3131373b6132313030342d527464"
    "3d31363b6f33313130342d5274643d32393b6132313030352d5274643d302e31343b6133343030342d527464"
    "3d363b6133343030322d5274643d363b6133343030312d5274643d363b6130313030312d5274643d32382e31"
    "3b6130313030322d5274643d36383b4c412d5274643d34393b6130313030362d5274643d313030323b613036"
    "3030312d5274643d302e303b6130343030332d5274643d303b6130313030372d5274643d302e303b61303130"
    "30382d5274643d37302626393930310d0a"
)


def test_the_standards_example_frame_is_rebuilt_byte_for_byte() -> None:
    segment = STANDARD[6:-6]
    assert len(segment) == 101 and crc16(segment) == 0x1C80
    packet = Packet(
        qn="20160801085857223",
        st="32",
        cn="1062",
        pw="100000",
        mn="010000A8900016F000169DC0",
        flag=make_flag(Protocol.HJ212_2017, ack=True),
        cp="RtdInterval=30",
    )
    assert encode(packet) == STANDARD
    assert FrameReader().feed(STANDARD) == [packet]
    assert packet.needs_answer and packet.version == 1


def test_a_field_loggers_frame_checks_and_parses() -> None:
    (packet,) = FrameReader().feed(FIELD_CAPTURE)
    assert isinstance(packet, Packet)
    assert (packet.qn, packet.st, packet.cn, packet.mn) == (
        "20241115190408000",
        "27",
        "2011",
        "AQI2411132600332",
    )
    items = parse_cp(packet.cp)
    assert items["DataTime"] == "20241115190408" and items["a01001-Rtd"] == "28.1"
    assert len(items) == 16
    assert encode(packet) == FIELD_CAPTURE


@given(st.binary(max_size=2000))
def test_the_crc_table_is_the_standards_bit_loop(data: bytes) -> None:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    assert crc16(data) == crc


def test_the_crc_is_not_modbus_crc() -> None:
    # Modbus CRC-16 of the standard's segment is a different number: the CRCs differ.
    segment = STANDARD[6:-6]
    modbus = 0xFFFF
    for byte in segment:
        modbus ^= byte
        for _ in range(8):
            modbus = (modbus >> 1) ^ 0xA001 if modbus & 1 else modbus >> 1
    assert modbus != crc16(segment)


packets = st.builds(
    Packet,
    st=st.sampled_from(["32", "91"]),
    cn=st.sampled_from(["2011", "2051", "2061", "2031", "9014", "1012"]),
    pw=st.text("0123456789abcdef", min_size=6, max_size=6),
    mn=st.text("0123456789ABCDEF", min_size=1, max_size=24),
    flag=st.sampled_from([4, 5, 8, 9]),
    cp=st.text("0123456789.-=;,wDataTimeRtdFlagN", max_size=300),
    qn=st.one_of(st.none(), st.text("0123456789", min_size=17, max_size=17)),
)


@given(packet=packets, cuts=st.lists(st.integers(1, 40), max_size=30))
def test_frames_survive_any_cut_of_the_stream(packet: Packet, cuts: list[int]) -> None:
    data = b"noise" + encode(packet) + encode(packet)
    reader, got, at = FrameReader(), [], 0
    for size in [*cuts, len(data)]:
        got += reader.feed(data[at : at + size])
        at += size
    packets_got = [item for item in got if isinstance(item, Packet)]
    assert packets_got == [packet, packet]
    # The noise is reported (once per piece it came in), before the frames, never after.
    assert isinstance(got[0], FrameError) and got[-2:] == [packet, packet]


def test_a_bad_crc_is_answered_with_9_and_the_qn() -> None:
    bad = STANDARD.replace(b"1C80", b"1C81")
    (error,) = FrameReader().feed(bad)
    assert isinstance(error, FrameError)
    assert error.answer is QnRtn.BAD_CRC and error.qn == "20160801085857223"


def test_a_cut_frame_does_not_swallow_the_next_one() -> None:
    cut = STANDARD[:40]  # the peer restarted mid-frame
    got = FrameReader().feed(cut + STANDARD)
    assert isinstance(got[0], FrameError) and got[-1] == parse_segment(STANDARD[6:-6].decode())


def test_a_bad_length_field_and_a_missing_trailer() -> None:
    got = FrameReader().feed(b"##01x1QN=1;ST=32" + STANDARD)
    assert isinstance(got[0], FrameError) and isinstance(got[-1], Packet)
    got = FrameReader().feed(STANDARD[:-2] + b"\n\n")
    assert len(got) == 1 and isinstance(got[0], FrameError)


def test_the_reader_holds_no_garbage_and_reports_it() -> None:
    reader = FrameReader()
    for _ in range(1000):
        (error,) = reader.feed(b"x" * 999 + b"#")
        assert isinstance(error, FrameError) and "bytes of garbage" in str(error)
        assert len(reader._buffer) == 1  # the '#' that may begin a header
    assert reader.feed(STANDARD[1:]) == FrameReader().feed(STANDARD)


@pytest.mark.parametrize(
    ("segment", "answer"),
    [
        ("QN=2016;ST=32;CN=1062;PW=100000;MN=A;Flag=5;CP=&&&&", QnRtn.BAD_QN),
        ("QN=20160801085857223;ST=3;CN=1062;PW=100000;MN=A;Flag=5;CP=&&&&", QnRtn.BAD_ST),
        ("QN=20160801085857223;ST=32;CN=10x2;PW=100000;MN=A;Flag=5;CP=&&&&", QnRtn.BAD_CN),
        ("QN=20160801085857223;ST=32;CN=1062;PW=1000;MN=A;Flag=5;CP=&&&&", QnRtn.BAD_PASSWORD),
        ("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=;Flag=5;CP=&&&&", QnRtn.BAD_MN),
        ("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=x;CP=&&&&", QnRtn.BAD_FLAG),
        ("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=300;CP=&&&&", QnRtn.BAD_FLAG),
        ("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=7;CP=&&&&", QnRtn.BAD_FLAG),
        (
            "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=5;PNUM=2;PNO=1;CP=&&&&",
            QnRtn.BAD_FLAG,
        ),
        (
            "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=7;PNUM=2;PNO=3;CP=&&&&",
            QnRtn.BAD_FLAG,
        ),
        ("QN=20160801085857223;ST=32;PW=100000;MN=A;Flag=5;CP=&&&&", QnRtn.BAD_CN),
        ("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=5;XX=1;CP=&&&&", QnRtn.UNKNOWN),
        ("QN=20160801085857223;ST=32;ST=32;CN=1062;PW=100000;MN=A;Flag=5;CP=&&&&", QnRtn.UNKNOWN),
        (
            "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=A;Flag=5;CP=&&RtdInterval=30",
            QnRtn.UNKNOWN,
        ),
    ],
)
def test_each_bad_field_gets_its_answer(segment: str, answer: QnRtn) -> None:
    with pytest.raises(FrameError) as caught:
        parse_segment(segment)
    assert caught.value.answer is answer
    if "QN=20160801085857223" in segment:
        assert caught.value.qn == "20160801085857223"


def test_cp_items_round_trip() -> None:
    cp = format_cp(
        [
            [("DataTime", "20160801084000")],
            [("w01018-Min", "1.0"), ("w01018-Avg", "2.0"), ("w01018-Flag", "N")],
        ]
    )
    assert cp == "DataTime=20160801084000;w01018-Min=1.0,w01018-Avg=2.0,w01018-Flag=N"
    assert list(parse_cp(cp)) == ["DataTime", "w01018-Min", "w01018-Avg", "w01018-Flag"]
    for bad in ["a=1;b", "a=1;a=2", "=1"]:
        with pytest.raises(FrameError):
            parse_cp(bad)


def test_a_long_upload_is_split_into_parts_that_each_parse() -> None:
    items = [f"w{n:05d}-Avg={n}.25,w{n:05d}-Flag=N" for n in range(120)]
    packet = Packet(
        qn="20260101000000000",
        st="32",
        cn="2051",
        pw="123456",
        mn="010000A8900016F000169DC0",
        flag=5,
        cp=";".join(["DataTime=20260101000000", *items]),
    )
    parts = split(packet, 400)
    assert len(parts) > 3
    joined: list[str] = []
    for number, part in enumerate(parts, start=1):
        data = encode(part)
        assert len(data) - 12 <= 400
        (parsed,) = FrameReader().feed(data)
        assert parsed == part and (part.pnum, part.pno) == (len(parts), number)
        assert part.flag == 7 and part.cp.startswith("DataTime=20260101000000;")
        joined += part.cp.split(";")[1:]
    assert joined == items
    assert split(packet, 4000) == [packet]


def test_sm4_matches_the_standards_example() -> None:
    # GB/T 32907-2016 appendix A, example 1: the key encrypts itself.
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert Sm4Ecb(key).encrypt_block(key).hex() == "681edf34d206965e86b3e94f536e4246"


def test_an_encrypted_frame_keeps_its_remainder_plain_and_the_plain_crc() -> None:
    encrypt, decrypt = transforms(Sm4Ecb(b"0123456789abcdef"))
    segment = STANDARD[6:-6]
    sealed = blockwise(encrypt, segment)
    assert len(sealed) == 101 and sealed[96:] == segment[96:] and sealed[:16] != segment[:16]
    data = frame(segment, encrypt)
    assert data.endswith(b"1C80\r\n")  # the CRC of the plain segment
    assert FrameReader(decrypt).feed(data) == FrameReader().feed(STANDARD)
    (error,) = FrameReader().feed(data)  # read without the key: the CRC does not match
    assert isinstance(error, FrameError) and error.answer is QnRtn.BAD_CRC
