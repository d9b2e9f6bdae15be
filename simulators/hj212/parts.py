"""Split uploads (Flag bit 1, PNUM/PNO, every part with the upload's QN) put back together.

Every part repeats the upload's DataTime (edge_agent.hj212.frame.split); the whole packet
keeps it once. A part sent again replaces the copy held; a new PNUM for the same QN starts
over. Parts of uploads that never complete are forgotten, oldest first, past `limit`.
"""

from __future__ import annotations

from dataclasses import replace

from edge_agent.hj212.codes import FLAG_SPLIT
from edge_agent.hj212.frame import Packet


class Assembly:
    def __init__(self, limit: int = 32) -> None:
        self._open: dict[tuple[str, str | None], dict[int, Packet]] = {}
        self._limit = limit

    def add(self, part: Packet) -> Packet | None:
        """The whole packet once `part` completes it, else None. The caller checks the
        whole (its items may repeat across parts, its DataTimes may disagree)."""
        assert part.pnum is not None and part.pno is not None, "a split part has PNUM and PNO"
        key = (part.cn, part.qn)
        held = self._open.pop(key, {})
        if any(other.pnum != part.pnum for other in held.values()):
            held = {}
        held[part.pno] = part
        if len(held) < part.pnum:
            self._open[key] = held  # re-inserted: the most recent is the last to go
            while len(self._open) > self._limit:
                del self._open[next(iter(self._open))]
            return None
        ordered = [held[number] for number in sorted(held)]
        return replace(
            ordered[0], flag=part.flag & ~FLAG_SPLIT, pnum=None, pno=None, cp=_joined(ordered)
        )

    def __len__(self) -> int:
        return len(self._open)


def _joined(parts: list[Packet]) -> str:
    head, _, _ = parts[0].cp.partition(";")
    pieces = [parts[0].cp]
    for part in parts[1:]:
        first, _, rest = part.cp.partition(";")
        # The repeated DataTime goes; one that differs stays and makes the whole invalid.
        pieces.append(rest if first == head and head.startswith("DataTime=") else part.cp)
    return ";".join(piece for piece in pieces if piece)
