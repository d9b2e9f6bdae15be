"""The telemetry codec: exact round trip of every value type, compactness, corrupt input."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.points import Quality, Reading
from edge_agent.store.codec import decode, encode

TS = 1_764_000_000_000

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(),  # beyond int64 too: a counter may outgrow it
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e9, max_value=1e9).map(lambda x: round(x, 2)),  # short decimals
    st.sampled_from([0.0, -0.0, 0.1, 1e-7, 5e-324, 2.0**53, -(2.0**53) + 1, 1e300]),
    st.text(),
)
readings = st.builds(
    Reading,
    point=st.text(min_size=1, max_size=12),
    value=values,
    ts=st.one_of(st.just(TS), st.integers(min_value=0, max_value=2**62)),
    quality=st.sampled_from(list(Quality)),
    reason=st.one_of(st.none(), st.text(max_size=20)),
)


def _same(a: Reading, b: Reading) -> bool:
    """Equal including the value's exact type and float bits (nan, -0.0)."""
    if type(a.value) is not type(b.value):
        return False
    if isinstance(a.value, float):
        return struct.pack("<d", a.value) == struct.pack("<d", b.value) and (
            (a.point, a.ts, a.quality, a.reason) == (b.point, b.ts, b.quality, b.reason)
        )
    return a == b


def _round_trip(batch: list[Reading], batch_ts: int = TS) -> list[Reading]:
    schema, body = encode(batch, batch_ts)
    assert schema == tuple(r.point for r in batch)
    return decode(schema, body, batch_ts)


@settings(max_examples=300, deadline=None)
@given(st.lists(readings, max_size=40), st.integers(min_value=0, max_value=2**62))
def test_any_batch_round_trips_exactly(batch: list[Reading], batch_ts: int) -> None:
    out = _round_trip(batch, batch_ts)
    assert len(out) == len(batch)
    assert all(_same(a, b) for a, b in zip(batch, out, strict=True)), (batch, out)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 1.7976931348623157e308,
        0.1 + 0.2, 21.3, -4.56, 123456.78, 1.005, 2.0**53, 1e-6, 1.5e-7,
        True, False, None, 0, -1, 2**63 - 1, -(2**63), 2**64, -(2**200), "", "é\ud800",
    ],
)  # fmt: skip
def test_edge_values_keep_value_and_type(value: object) -> None:
    (out,) = _round_trip([Reading("p", value, TS)])
    assert _same(Reading("p", value, TS), out)


def test_numpy_scalars_become_plain_python_values() -> None:
    batch = [Reading("a", np.float64(1.5), TS), Reading("b", np.int32(7), TS),
             Reading("c", np.bool_(True), TS)]  # fmt: skip
    assert [(type(r.value), r.value) for r in _round_trip(batch)] == [
        (float, 1.5), (int, 7), (bool, True)
    ]  # fmt: skip


def test_an_unstorable_value_is_refused() -> None:
    with pytest.raises(TypeError, match="list"):
        encode([Reading("a", [1, 2], TS)], TS)  # type: ignore[arg-type]


def test_stale_and_bad_readings_keep_ts_quality_and_reason() -> None:
    batch = [
        Reading("t", 21.5, TS - 65_000, Quality.STALE),
        Reading.bad("p", "exception 2", TS),
        Reading("o", 1.0, TS + 3, Quality.OVERRIDDEN, "manual"),
    ]
    assert _round_trip(batch) == batch


def _plant_poll(rng: random.Random, state: list[float]) -> list[Reading]:
    """60 analog walks at sensor resolution, 30 binaries, 10 energy counters."""
    out = []
    for i in range(60):
        state[i] += rng.gauss(0, 0.3)
        out.append(Reading(f"a{i}", round(state[i], 1), TS))
    out += [Reading(f"b{i}", rng.random() < 0.2, TS) for i in range(30)]
    for i in range(10):
        state[60 + i] += rng.uniform(0, 0.5)
        out.append(Reading(f"kwh{i}", round(state[60 + i], 2), TS))
    return out


def test_a_plant_poll_costs_a_few_bytes_per_point() -> None:
    rng = random.Random(7)
    state = [rng.uniform(5, 80) for _ in range(60)] + [rng.uniform(1e4, 1e6) for _ in range(10)]
    sizes = [len(encode(_plant_poll(rng, state), TS)[1]) for _ in range(50)]
    assert sum(sizes) / len(sizes) / 100 < 3.0  # the outbox target is 8 bytes incl. overhead


def test_a_down_device_is_cheap() -> None:
    batch = [Reading.bad(f"p{i}", "timeout", TS) for i in range(100)]
    _schema, body = encode(batch, TS)
    assert len(body) < 40
    assert _round_trip(batch) == batch


def test_empty_batch() -> None:
    assert _round_trip([]) == []


@pytest.mark.parametrize(
    "mangle",
    [lambda b: b"\x09" + b[1:], lambda b: b[:2] + b"garbage", lambda b: b[:-3], lambda b: b""],
    ids=["format", "deflate", "truncated", "empty"],
)
def test_a_corrupt_body_raises_value_error(mangle) -> None:
    batch = [Reading(f"p{i}", i * 0.5, TS) for i in range(10)] + [Reading("s", "text", TS)]
    schema, body = encode(batch, TS)
    with pytest.raises(ValueError, match=r"format|corrupt"):
        decode(schema, mangle(body), TS)


def test_an_unknown_value_tag_raises() -> None:
    schema, body = encode([Reading("a", None, TS)], TS)
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    forged = body[:2] + packer.compress(b"\x0f") + packer.flush()  # tag 15
    with pytest.raises(ValueError, match="tag"):
        decode(schema, forged, TS)


def test_a_body_with_the_wrong_schema_raises() -> None:
    schema, body = encode([Reading(f"p{i}", float(i), TS) for i in range(10)], TS)
    with pytest.raises(ValueError, match="corrupt"):
        decode(schema[:5], body, TS)
