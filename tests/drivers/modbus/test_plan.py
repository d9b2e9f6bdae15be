"""Read planning: coalescing, gaps, size limits, and splits that are remembered."""

from __future__ import annotations

from drivers.modbus.plan import Block, Item, Limits, ReadPlan, coalesce


def items(*spans: tuple[int, int], table: str = "holding", unit: int = 1) -> list[Item]:
    return [Item(i, unit, table, start, count) for i, (start, count) in enumerate(spans)]


def shape(blocks: list[Block]) -> list[tuple[str, int, int, int]]:
    return [(b.table, b.start, b.count, len(b.items)) for b in blocks]


def test_contiguous_registers_make_one_block() -> None:
    blocks = coalesce(items((0, 2), (2, 1), (3, 4)), Limits())
    assert shape(blocks) == [("holding", 0, 7, 3)]


def test_gaps_up_to_max_gap_are_read_larger_ones_split() -> None:
    assert shape(coalesce(items((0, 1), (9, 1)), Limits(max_gap=8))) == [("holding", 0, 10, 2)]
    assert shape(coalesce(items((0, 1), (10, 1)), Limits(max_gap=8))) == [
        ("holding", 0, 1, 1),
        ("holding", 10, 1, 1),
    ]
    assert len(coalesce(items((0, 1), (1, 1)), Limits(max_gap=0))) == 1
    assert len(coalesce(items((0, 1), (2, 1)), Limits(max_gap=0))) == 2


def test_blocks_respect_the_size_limit() -> None:
    blocks = coalesce(items(*[(a, 2) for a in range(0, 300, 2)]), Limits())
    assert [b.count for b in blocks] == [124, 124, 52]
    assert all(b.count <= 125 for b in blocks)
    small = coalesce(items(*[(a, 1) for a in range(10)]), Limits(max_registers=4))
    assert [b.count for b in small] == [4, 4, 2]


def test_bits_use_the_bit_limit_and_a_wider_gap() -> None:
    coils = items(*[(a, 1) for a in range(0, 4000, 2)], table="coil")
    blocks = coalesce(coils, Limits())
    assert [b.count for b in blocks] == [1999, 1999]
    assert all(b.bits for b in blocks)
    # A gap of 8 registers is 128 bits: reading them costs as little as 8 registers.
    assert len(coalesce(items((0, 1), (129, 1), table="coil"), Limits(max_gap=8))) == 1
    assert len(coalesce(items((0, 1), (130, 1), table="coil"), Limits(max_gap=8))) == 2


def test_tables_and_units_never_share_a_block() -> None:
    mixed = [
        *items((0, 1), (1, 1)),
        Item(2, 1, "input", 2, 1),
        Item(3, 2, "holding", 2, 1),
    ]
    blocks = coalesce(mixed, Limits())
    assert sorted((b.unit, b.table, b.start, b.count) for b in blocks) == [
        (1, "holding", 0, 2),
        (1, "input", 2, 1),
        (2, "holding", 2, 1),
    ]


def test_overlapping_points_share_registers() -> None:
    # Two bit points of one register and a float over the same two registers as two int16s.
    blocks = coalesce(items((200, 1), (200, 1), (100, 2), (100, 1), (101, 1)), Limits())
    assert shape(blocks) == [("holding", 100, 2, 3), ("holding", 200, 1, 2)]


def test_unordered_input_gives_ordered_blocks() -> None:
    assert shape(coalesce(items((50, 1), (0, 1), (20, 1)), Limits(max_gap=100))) == [
        ("holding", 0, 51, 3)
    ]


def test_split_bisects_and_is_remembered() -> None:
    plan = ReadPlan(items(*[(a, 1) for a in range(8)]), Limits())
    (block,) = plan.blocks
    left, right = plan.split(block)
    assert (left.start, left.count, right.start, right.count) == (0, 4, 4, 4)
    assert plan.blocks == [left, right] and plan.version == 1
    assert plan.split(plan.blocks[1])  # 4 -> 2 + 2
    assert [(b.start, b.count) for b in plan.blocks] == [(0, 4), (4, 2), (6, 2)]
    assert plan.requests == 3


def test_a_single_point_block_cannot_split() -> None:
    plan = ReadPlan(items((5, 2)), Limits())
    assert plan.split(plan.blocks[0]) == [] and plan.version == 0


def test_realistic_map_needs_few_requests() -> None:
    # 200 points over 4 areas of one device: 4 requests instead of 200.
    spans = [(base + 2 * k, 2) for base in (0, 1000, 2000, 3000) for k in range(50)]
    assert ReadPlan(items(*spans), Limits()).requests == 4
