"""DL/T 645-2007 frames and BCD values, both ways (the driver decodes answers, the
simulator requests; both encode).

A frame on the line: 0-4 x FE (preamble), 68, A0..A5 (address, lowest byte first), 68,
C (control), L (data length), DATA (each byte + 0x33), CS (sum of 68..DATA mod 256), 16.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.dlt645.config import BROADCAST, DataFormat

START, END, PREAMBLE = 0x68, 0x16, 0xFE
HEADER = 10  # 68 A0..A5 68 C L
OFFSET = 0x33  # added to every data byte on the line
MAX_DATA = 200  # the standard's longest data field for a read (answers are shorter)

READ = 0x11
READ_ANSWER = 0x91  # normal answer, no follow-up frame
READ_ANSWER_MORE = 0xB1  # normal answer, follow-up frames exist (read with 0x12)
READ_ERROR = 0xD1  # error answer: one error byte
READ_ADDRESS = 0x13
READ_ADDRESS_ANSWER = 0x93

# The error byte of an error answer (DL/T 645-2007 table: "error information word").
ERROR_BITS = (
    (0x01, "other error"),
    (0x02, "no data requested"),
    (0x04, "password error or unauthorised"),
    (0x08, "baud rate cannot change"),
    (0x10, "annual time zones exceeded"),
    (0x20, "daily periods exceeded"),
    (0x40, "tariffs exceeded"),
)


class FrameError(ValueError):
    """A complete frame that is broken; `reason` is what a reading says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    address: bytes  # 6 bytes in line order (A0 first)
    control: int
    data: bytes  # the data field with the 0x33 taken off


@dataclass(frozen=True, slots=True)
class Found:
    """What `next_frame` found in a buffer: a frame (or None), where it ended (bytes of
    the buffer used up), and how many bytes before it were neither preamble nor frame."""

    frame: Frame | None
    end: int
    junk: int


def address_bytes(text: str) -> bytes:
    """ "000000000161" (as printed on the meter) -> 61 01 00 00 00 00 (line order)."""
    if text == BROADCAST:
        return b"\xaa" * 6
    return bytes.fromhex(text)[::-1]


def address_text(address: bytes) -> str:
    return address[::-1].hex().upper()


def di_bytes(di: int) -> bytes:
    """DI3-DI2-DI1-DI0 -> DI0 first, as it goes in a data field."""
    return di.to_bytes(4, "little")


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_frame(address: bytes, control: int, data: bytes = b"", preamble: int = 4) -> bytes:
    if len(address) != 6:
        raise ValueError(f"an address is 6 bytes, not {len(address)}")
    if len(data) > 255:
        raise ValueError(f"a data field holds at most 255 bytes, not {len(data)}")
    body = bytes((START, *address, START, control, len(data))) + bytes(
        (b + OFFSET) & 0xFF for b in data
    )
    return bytes((PREAMBLE,) * preamble) + body + bytes((checksum(body), END))


def read_request(address: bytes, di: int, preamble: int = 4) -> bytes:
    return encode_frame(address, READ, di_bytes(di), preamble)


def next_frame(buffer: bytes | bytearray) -> Found:
    """The first complete frame in `buffer`.

    Bytes that cannot start a frame are skipped (counted in `junk`, except FE); a start
    (68) whose second 68 is not where it must be is skipped too. Not yet complete:
    `Found(None, n, junk)` with n the bytes that may be dropped. A complete frame whose
    checksum or end byte is wrong raises FrameError (its bytes are of no further use)."""
    position, junk = 0, 0
    size = len(buffer)
    while position < size:
        byte = buffer[position]
        if byte != START:
            junk += byte != PREAMBLE
            position += 1
            continue
        if size - position < HEADER:
            return Found(None, position, junk)
        if buffer[position + 7] != START:
            junk += 1
            position += 1
            continue
        length = buffer[position + 9]
        end = position + HEADER + length + 2
        if size < end:
            return Found(None, position, junk)
        body = bytes(buffer[position : end - 2])
        if buffer[end - 2] != checksum(body):
            raise FrameError("checksum error")
        if buffer[end - 1] != END:
            raise FrameError("garbled answer")
        data = bytes((b - OFFSET) & 0xFF for b in body[HEADER:])
        return Found(Frame(body[1:7], body[8], data), end, junk)
    return Found(None, size, junk)


def error_text(code: int) -> str:
    """The error byte of an error answer, in words (every bit set)."""
    said = [text for bit, text in ERROR_BITS if code & bit]
    return ", ".join(said) if said else f"error 0x{code:02X}"


def decode_bcd(raw: bytes, fmt: DataFormat) -> float:
    """A value field (lowest byte first) -> the number; ValueError if not BCD or the
    length does not fit the format."""
    if len(raw) != fmt.size:
        raise ValueError(f"{len(raw)} bytes for format {fmt.text} ({fmt.size} expected)")
    high = raw[-1]
    negative = fmt.signed and bool(high & 0x80)
    if fmt.signed:
        raw = raw[:-1] + bytes((high & 0x7F,))
    digits = raw[::-1].hex()
    if not digits.isdigit():
        raise ValueError(f"not BCD: {raw[::-1].hex().upper()}")
    magnitude = int(digits)
    value = magnitude / 10**fmt.decimals if fmt.decimals else float(magnitude)
    return -value if negative else value


def encode_bcd(value: float, fmt: DataFormat) -> bytes:
    """The number -> a value field (lowest byte first), rounded to the format's decimals;
    ValueError if it does not fit (too large, or negative for an unsigned format)."""
    magnitude = round(abs(value) * 10**fmt.decimals)
    negative = value < 0 and magnitude != 0
    if negative and not fmt.signed:
        raise ValueError(f"{value} is negative: format {fmt.text} has no sign")
    limit = 8 * 10 ** (fmt.digits - 1) if fmt.signed else 10**fmt.digits
    if magnitude >= limit:
        raise ValueError(f"{value} does not fit format {fmt.text}")
    raw = bytearray(bytes.fromhex(f"{magnitude:0{fmt.digits}d}")[::-1])
    if negative:
        raw[-1] |= 0x80
    return bytes(raw)
