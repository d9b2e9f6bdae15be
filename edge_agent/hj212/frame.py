"""HJ 212 frames: `##`, the data segment's length in 4 decimal digits, the data segment,
its CRC in 4 hex digits, CRLF (docs/hj212.md, "Frames").

The data segment is `QN=...;ST=..;CN=....;PW=......;MN=...;Flag=.;[PNUM=..;PNO=..;]CP=&&...&&`.
Parsing is strict: a field out of its form raises `FrameError` carrying the 9011 return
code (QnRtn) that answers it, and the QN when it could be read, so the link can answer
what the standard says and go on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from edge_agent.hj212.codes import FLAG_ACK, FLAG_SPLIT, QnRtn

HEADER = b"##"
TRAILER = b"\r\n"
MAX_SEGMENT = 9999  # what 4 decimal digits can say
# A packet longer than this is split (PNUM/PNO); 1024 is HJ/T 212-2005's limit, which
# platforms still assume (docs/hj212.md, assumptions).
DEFAULT_SPLIT_AT = 1024

# A transformation of the data segment's bytes, length-preserving: the cipher of HJ 212-2025
# Appendix A (edge_agent.hj212.cipher). The CRC is the plain segment's, built first.
Transform = Callable[[bytes], bytes]


def _crc_round(value: int) -> int:
    for _ in range(8):
        value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
    return value


# (crc >> 8) ^ byte is below 256, so the eight shifts of each step are a table lookup.
_CRC_TABLE = tuple(_crc_round(index) for index in range(256))


def crc16(data: bytes) -> int:
    """The CRC of HJ 212 (not Modbus's: the byte enters the high byte's place shifted down).

    From 0xFFFF: for each byte, crc = (crc >> 8) ^ byte; then 8 times shift right,
    XOR 0xA001 when the bit shifted out was 1 (here a table of those eight shifts). The
    standard's example: the 101-byte data segment of its CN=1062 frame gives 0x1C80
    (tests/edge_agent/hj212/test_frame.py, which also checks the table against the loop).
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc >> 8) ^ byte]
    return crc


class FrameError(ValueError):
    """A frame or data segment that breaks the standard. `answer` is the QnRtn of the 9011
    reply; `qn` the request's QN when it could be read (an answer needs it)."""

    def __init__(self, message: str, answer: QnRtn = QnRtn.UNKNOWN, qn: str | None = None):
        super().__init__(message)
        self.answer = answer
        self.qn = qn


@dataclass(frozen=True, slots=True)
class Packet:
    """One data segment. `cp` is the text between `CP=&&` and the final `&&`."""

    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    cp: str = ""
    qn: str | None = None  # data uploads of HJ/T 212-2005 have none; requests always do
    pnum: int | None = None  # split packets: how many, and which one (from 1)
    pno: int | None = None

    @property
    def needs_answer(self) -> bool:
        return bool(self.flag & FLAG_ACK)

    @property
    def version(self) -> int:
        return self.flag >> 2

    def segment(self) -> str:
        fields = [] if self.qn is None else [f"QN={self.qn}"]
        fields += [f"ST={self.st}", f"CN={self.cn}", f"PW={self.pw}", f"MN={self.mn}"]
        fields.append(f"Flag={self.flag}")
        if self.pnum is not None:
            fields += [f"PNUM={self.pnum}", f"PNO={self.pno}"]
        fields.append(f"CP=&&{self.cp}&&")
        return ";".join(fields)


def encode(packet: Packet, encrypt: Transform | None = None) -> bytes:
    return frame(packet.segment().encode("ascii"), encrypt)


def frame(segment: bytes, encrypt: Transform | None = None) -> bytes:
    if len(segment) > MAX_SEGMENT:
        raise ValueError(f"data segment of {len(segment)} bytes: at most {MAX_SEGMENT}")
    crc = crc16(segment)
    body = segment if encrypt is None else encrypt(segment)
    return b"%s%04d%s%04X%s" % (HEADER, len(body), body, crc, TRAILER)


def split(packet: Packet, limit: int = DEFAULT_SPLIT_AT) -> list[Packet]:
    """The packet itself when its segment fits `limit`, else packets with PNUM/PNO whose CP
    parts are cut between whole items (`;` groups) so each part parses on its own. The
    DataTime item (if any) starts every part: a part must say which period it is."""
    if len(packet.segment()) <= limit:
        return [packet]
    items = packet.cp.split(";")
    head = [items.pop(0)] if items and items[0].startswith("DataTime=") else []
    flag = packet.flag | FLAG_SPLIT
    overhead = len(replace(packet, flag=flag, pnum=9999, pno=9999, cp="").segment())
    room = limit - overhead
    parts: list[list[str]] = []
    current: list[str] = list(head)
    for item in items:
        size = len(";".join([*current, item]))
        if current != head and size > room:
            parts.append(current)
            current = [*head, item]
        else:
            current.append(item)
        if len(";".join(current)) > room:
            raise ValueError(f"one CP item of {len(item)} characters cannot fit a packet")
    parts.append(current)
    return [
        replace(packet, flag=flag, pnum=len(parts), pno=number, cp=";".join(part))
        for number, part in enumerate(parts, start=1)
    ]


# -- parsing ------------------------------------------------------------------------------

_QN = re.compile(r"\d{17}")  # yyyyMMddHHmmssSSS
_ST = re.compile(r"\d{2}")
_CN = re.compile(r"\d{4}")
_PW = re.compile(r"[0-9A-Za-z]{6}")
_MN = re.compile(r"[0-9A-Za-z]{1,24}")
_FLAG = re.compile(r"\d{1,3}")
_NUMBER = re.compile(r"\d{1,4}")
_FIELDS = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")


def parse_segment(text: str) -> Packet:
    """The packet of a data segment; FrameError (with the QnRtn to answer) if any field is
    missing, repeated, unknown or out of its form."""
    cp_at = text.find("CP=&&")
    if cp_at < 0 or not text.endswith("&&") or len(text) < cp_at + 7:
        raise FrameError("no CP=&&...&& at the end of the data segment", qn=_qn_of(text))
    if cp_at and text[cp_at - 1] != ";":
        raise FrameError("CP is not separated from the fields by ';'", qn=_qn_of(text))
    cp = text[cp_at + 5 : -2]
    head = text[: max(cp_at - 1, 0)]
    fields: dict[str, str] = {}
    for item in head.split(";") if head else []:
        key, eq, value = item.partition("=")
        if not eq or key not in _FIELDS:
            raise FrameError(f"unknown field {item!r}", qn=fields.get("QN"))
        if key in fields:
            raise FrameError(f"field {key} twice", qn=fields.get("QN"))
        fields[key] = value
    qn = fields.get("QN")
    checks = (
        ("QN", _QN, QnRtn.BAD_QN, False),
        ("ST", _ST, QnRtn.BAD_ST, True),
        ("CN", _CN, QnRtn.BAD_CN, True),
        ("PW", _PW, QnRtn.BAD_PASSWORD, True),
        ("MN", _MN, QnRtn.BAD_MN, True),
        ("Flag", _FLAG, QnRtn.BAD_FLAG, True),
    )
    for key, form, answer, required in checks:
        found = fields.get(key)
        if found is None:
            if required:
                raise FrameError(f"no {key}", answer, qn if key != "QN" else None)
            continue
        if not form.fullmatch(found):
            raise FrameError(f"{key}={found!r} is not of the standard's form", answer, qn)
    flag = int(fields["Flag"])
    if flag > 255:
        raise FrameError(f"Flag={flag} is more than a byte", QnRtn.BAD_FLAG, qn)
    pnum, pno = _packet_numbers(fields, flag, qn)
    return Packet(
        st=fields["ST"],
        cn=fields["CN"],
        pw=fields["PW"],
        mn=fields["MN"],
        flag=flag,
        cp=cp,
        qn=qn,
        pnum=pnum,
        pno=pno,
    )


def _packet_numbers(
    fields: dict[str, str], flag: int, qn: str | None
) -> tuple[int, int] | tuple[None, None]:
    has = "PNUM" in fields, "PNO" in fields
    if not flag & FLAG_SPLIT:
        if any(has):
            raise FrameError("PNUM/PNO without the split bit of Flag", QnRtn.BAD_FLAG, qn)
        return None, None
    if not all(has):
        raise FrameError("the split bit of Flag without PNUM and PNO", QnRtn.BAD_FLAG, qn)
    if not (_NUMBER.fullmatch(fields["PNUM"]) and _NUMBER.fullmatch(fields["PNO"])):
        raise FrameError("PNUM/PNO are not numbers", QnRtn.BAD_FLAG, qn)
    pnum, pno = int(fields["PNUM"]), int(fields["PNO"])
    if not 1 <= pno <= pnum:
        raise FrameError(f"PNO={pno} of PNUM={pnum}", QnRtn.BAD_FLAG, qn)
    return pnum, pno


def _qn_of(text: str) -> str | None:
    match = re.match(r"QN=(\d{17});", text)
    return match.group(1) if match else None


def parse_cp(cp: str) -> dict[str, str]:
    """The items of a CP, `;` between groups and `,` within one (`w01018-Rtd=1,w01018-Flag=N`),
    as one flat mapping in order; FrameError for an item without '=' or a key twice."""
    items: dict[str, str] = {}
    if not cp:
        return items
    for group in cp.split(";"):
        for item in group.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise FrameError(f"CP item {item!r} is not KEY=VALUE", QnRtn.REJECTED)
            if key in items:
                raise FrameError(f"CP item {key} twice", QnRtn.REJECTED)
            items[key] = value
    return items


def format_cp(groups: Iterable[Sequence[tuple[str, str]]]) -> str:
    """`;` between groups, `,` within a group: [[("DataTime", t)], [("w01018-Rtd", "1"), ...]]."""
    return ";".join(",".join(f"{key}={value}" for key, value in group) for group in groups)


class FrameReader:
    """Frames out of a TCP byte stream, however it is cut; garbage between frames is skipped.

    `feed(data)` returns, in order, the packets and the FrameErrors of what arrived: a bad
    length, CRC, trailer or data segment is one FrameError (its QN if it could be read),
    after which reading resumes at the next `##`. The buffer never holds more than one
    frame's worth of bytes.
    """

    def __init__(self, decrypt: Transform | None = None) -> None:
        self._buffer = bytearray()
        self._decrypt = decrypt

    def feed(self, data: bytes) -> list[Packet | FrameError]:
        self._buffer += data
        out: list[Packet | FrameError] = []
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                # Keep a trailing '#': it may be the first half of the next header.
                keep = 1 if self._buffer.endswith(b"#") else 0
                if len(self._buffer) > keep:
                    dropped = len(self._buffer) - keep
                    out.append(FrameError(f"{dropped} bytes of garbage, no frame"))
                    del self._buffer[:dropped]
                return out
            if start:
                out.append(FrameError(f"{start} bytes of garbage before a frame"))
                del self._buffer[:start]
            if len(self._buffer) < 6:
                return out
            digits = bytes(self._buffer[2:6])
            if not digits.isdigit():
                out.append(FrameError(f"length field {digits!r} is not 4 digits"))
                del self._buffer[:2]
                continue
            length = int(digits)
            end = 6 + length + 6
            if len(self._buffer) < end:
                return out
            if self._buffer[end - 2 : end] != TRAILER:
                # A frame cut short (a lost byte, a peer that restarted): resynchronise at
                # the next header inside it rather than swallowing the frame after it.
                again = self._buffer.find(HEADER, 2, end)
                out.append(FrameError("the frame does not end with CRLF"))
                del self._buffer[: again if again > 0 else end]
                continue
            raw = bytes(self._buffer[:end])
            del self._buffer[:end]
            out.append(self._packet(raw, length))

    def _packet(self, raw: bytes, length: int) -> Packet | FrameError:
        segment, crc_text = raw[6 : 6 + length], raw[6 + length : -2]
        if self._decrypt is not None:
            segment = self._decrypt(segment)
        text = segment.decode("ascii", "replace")
        try:
            crc = int(crc_text, 16)
        except ValueError:
            return FrameError(f"CRC {crc_text!r} is not 4 hex digits", QnRtn.BAD_CRC, _qn_of(text))
        if crc != crc16(segment):
            message = f"CRC {crc:04X}, the data segment's is {crc16(segment):04X}"
            return FrameError(message, QnRtn.BAD_CRC, _qn_of(text))
        try:
            segment.decode("ascii")
        except UnicodeDecodeError:
            return FrameError("the data segment is not ASCII", qn=_qn_of(text))
        try:
            return parse_segment(text)
        except FrameError as exc:
            return exc
