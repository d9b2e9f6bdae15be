"""The platform's answer to an upload that asks for one (Flag bit 0): a 9014 with the
upload's QN; and the ways the failure tests make that answer go wrong."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from edge_agent.hj212.codes import Cn, St
from edge_agent.hj212.frame import TRAILER, Packet, Transform, crc16, encode

# Bytes with no `##` in them: a reader finds no frame at all.
GARBAGE = b"\xff\xfeERROR: not an HJ 212 frame\r\n"


class AckMode(StrEnum):
    ACK = "ack"
    NEVER = "never"  # swallow the upload: store it, answer nothing
    GARBAGE = "garbage"  # answer bytes that are not a frame
    BAD_CRC = "bad-crc"  # answer a 9014 whose CRC is wrong
    LATE = "late"  # answer after `delay_s`
    DROP_FIRST_N = "drop-first-n"  # ignore (neither store nor answer) the first n copies


def data_answer(upload: Packet) -> Packet:
    """The 9014 of an upload: its QN, PW and MN, Flag with the upload's version, no items."""
    return Packet(
        qn=upload.qn,
        st=St.SYSTEM.value,
        cn=Cn.DATA_ANSWER.value,
        pw=upload.pw,
        mn=upload.mn,
        flag=upload.version << 2,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    data: bytes
    delay_s: float = 0.0
    is_ack: bool = True  # a well-formed 9014 (counted in acks_sent)


class AckPolicy:
    """The current mode and its parameters; settable at any time. Setting the mode again
    starts drop-first-n's count of copies afresh."""

    def __init__(
        self, mode: AckMode | str = AckMode.ACK, delay_s: float = 1.0, drop_first_n: int = 1
    ) -> None:
        self.delay_s = delay_s
        self.drop_first_n = drop_first_n
        self._copies: Counter[tuple[str, str | None, int | None]] = Counter()
        self.mode = AckMode(mode)

    @property
    def mode(self) -> AckMode:
        return self._mode

    @mode.setter
    def mode(self, mode: AckMode | str) -> None:
        self._mode = AckMode(mode)  # ValueError for a mode that does not exist
        self._copies.clear()

    def drops(self, upload: Packet) -> bool:
        """In drop-first-n: whether this copy of the upload (of this split part) is one of
        the first n, which the platform ignores as if the network had lost it."""
        if self._mode is not AckMode.DROP_FIRST_N:
            return False
        key = (upload.mn, upload.qn, upload.pno)
        self._copies[key] += 1
        return self._copies[key] <= self.drop_first_n

    def answer(self, upload: Packet, encrypt: Transform | None = None) -> Answer | None:
        """What to write back for an upload that asked for an answer (None: nothing)."""
        mode = self._mode
        if mode is AckMode.NEVER:
            return None
        if mode is AckMode.GARBAGE:
            return Answer(GARBAGE, is_ack=False)
        ack = data_answer(upload)
        if mode is AckMode.BAD_CRC:
            return Answer(_with_wrong_crc(ack, encrypt), is_ack=False)
        delay = self.delay_s if mode is AckMode.LATE else 0.0
        return Answer(encode(ack, encrypt), delay_s=delay)


def _with_wrong_crc(packet: Packet, encrypt: Transform | None) -> bytes:
    data = encode(packet, encrypt)
    crc = crc16(packet.segment().encode("ascii")) ^ 0x0001
    return data[: -4 - len(TRAILER)] + b"%04X" % crc + TRAILER
