"""Read planning: as few requests as possible for a set of points.

Points of one unit id and table are sorted by address and coalesced into blocks while
the unused registers between them stay within `max_gap` and the block within the
protocol's size limit. A block that the device refuses with exception 2 (a register it
does not have, often in a gap) is split in two by points; the plan keeps the split for
the next polls, so the cost of discovering a hole is paid once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BIT_TABLES = ("coil", "discrete")


@dataclass(frozen=True, slots=True)
class Item:
    """The footprint of one point: `count` registers (or bits) from `start`."""

    index: int  # position of the point in the list the plan was made for
    unit: int
    table: str
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class Block:
    """One read request."""

    unit: int
    table: str
    start: int
    count: int
    items: tuple[Item, ...]

    @property
    def bits(self) -> bool:
        return self.table in BIT_TABLES


@dataclass(frozen=True, slots=True)
class Limits:
    max_gap: int = 8  # registers; on bit tables 16 bits per register of gap
    max_registers: int = 125
    max_bits: int = 2000


def _block(items: Sequence[Item]) -> Block:
    start = min(i.start for i in items)
    end = max(i.end for i in items)
    first = items[0]
    return Block(first.unit, first.table, start, end - start, tuple(items))


def coalesce(items: Iterable[Item], limits: Limits) -> list[Block]:
    """Group items into blocks, in (unit, table, address) order."""
    blocks: list[Block] = []
    current: list[Item] = []
    start = end = 0
    for item in sorted(items, key=lambda i: (i.unit, i.table, i.start, i.count)):
        bits = item.table in BIT_TABLES
        size = limits.max_bits if bits else limits.max_registers
        gap = limits.max_gap * 16 if bits else limits.max_gap
        if (
            current
            and current[0].unit == item.unit
            and current[0].table == item.table
            and item.start - end <= gap
            and max(end, item.end) - start <= size
        ):
            current.append(item)
            end = max(end, item.end)
            continue
        if current:
            blocks.append(_block(current))
        current, start, end = [item], item.start, item.end
    if current:
        blocks.append(_block(current))
    return blocks


class ReadPlan:
    """The blocks to read for one list of points; `version` changes when a block splits."""

    def __init__(self, items: Sequence[Item], limits: Limits) -> None:
        self.items = tuple(items)
        self.blocks = coalesce(items, limits)
        self.version = 0

    @property
    def requests(self) -> int:
        return len(self.blocks)

    def split(self, block: Block) -> list[Block]:
        """Bisect `block` by points; returns the halves (empty if it holds one point)."""
        if len(block.items) < 2:
            return []
        half = len(block.items) // 2
        parts = [_block(block.items[:half]), _block(block.items[half:])]
        at = self.blocks.index(block)
        self.blocks[at : at + 1] = parts
        self.version += 1
        return parts
