"""Properties of a limit rule with deadband and delays, over random reading sequences."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.edge_agent.alarms.rig import T0, Rig, S, good, rule

LIMIT = 10.0

# A step: wait dt ms, then either a reading (a value) or a timer tick (None). Time always
# moves (two readings of one point at the same instant leave "the value at t" ambiguous).
steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=4000),
        st.one_of(
            st.none(),
            st.sampled_from([LIMIT, LIMIT - 0.5, LIMIT - 1.0, LIMIT - 2.0]),
            st.floats(min_value=LIMIT - 4, max_value=LIMIT + 4),
        ),
    ),
    max_size=80,
)


def run_start(readings: list[tuple[int, float]], t: int, inside) -> int | None:
    """When the run of readings satisfying `inside` that is in effect at t began (None if
    the reading in effect at t does not satisfy it)."""
    start = None
    for ts, value in readings:
        if ts > t:
            break
        start = (ts if start is None else start) if inside(value) else None
    return start


@settings(max_examples=300, deadline=None, database=None)
@given(
    steps=steps,
    deadband=st.sampled_from([0.0, 0.5, 1.5]),
    on_s=st.integers(min_value=0, max_value=8),
    off_s=st.integers(min_value=0, max_value=8),
)
def test_delays_and_deadband_hold(
    steps: list[tuple[int, float | None]], deadband: float, on_s: int, off_s: int
) -> None:
    high = rule(
        id="h", type="high", point="d.p", limit=LIMIT, deadband=deadband,
        on_delay=on_s, off_delay=off_s,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp) / "alarms.json")
        engine = rig.engine(high)
        now, readings = T0, []
        for dt, value in steps:
            now += dt
            if value is None:
                engine.tick(now)
            else:
                readings.append((now, value))
                engine.observe("d", [good("p", value, now)], now)

        transitions = [
            (m["event"], m["ts"]) for m in rig.messages() if m["event"] in ("raised", "cleared")
        ]
        # Raised and cleared alternate, starting with a raise.
        assert [e for e, _ in transitions] == ["raised", "cleared"] * (len(transitions) // 2) + (
            ["raised"] if len(transitions) % 2 else []
        )
        for event, ts in transitions:
            if event == "raised":
                # Never raised before the value has been above the limit for on_delay.
                since = run_start(readings, ts, lambda v: v > LIMIT)
                assert since is not None and ts - since >= on_s * S, (ts, since)
            else:
                # Never cleared inside the deadband, nor before off_delay below it.
                since = run_start(readings, ts, lambda v: v < LIMIT - deadband)
                assert since is not None and ts - since >= off_s * S, (ts, since)

        # And it does act: a lasting excursion raises, a lasting return clears.
        now += 1
        engine.observe("d", [good("p", LIMIT + 5, now)], now)
        engine.tick(now + on_s * S)
        assert [a["state"] for a in engine.active()] == ["active"]
        now += on_s * S + 1
        engine.observe("d", [good("p", LIMIT - deadband - 1, now)], now)
        engine.tick(now + off_s * S)
        assert [a["state"] for a in engine.active()] == ["cleared"]
