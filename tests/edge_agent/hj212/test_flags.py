"""The data flag of one value: every rule of flag_of and the order they apply in."""

from __future__ import annotations

import math

import pytest

from edge_agent.hj212.flags import DataFlag, default_status_map, flag_of
from edge_agent.points import Quality

N, F, M, S, D, C, T, B = (DataFlag[name] for name in "NFMSDCTB")
VENDOR = default_status_map()
RANGE = (0.0, 500.0)

GOOD, BAD, STALE, OVERRIDDEN = (q.value for q in Quality)

# (why, quality, value, status, status quality, status map, measuring range, flag)
CASES = [
    # 1. an unreadable value is B, whatever the status says
    ("bad value", BAD, None, 0, GOOD, VENDOR, RANGE, B),
    ("bad value with a value", BAD, 12.0, 0, GOOD, VENDOR, RANGE, B),
    ("stale value", STALE, 12.0, 0, GOOD, VENDOR, RANGE, B),
    ("good but None", GOOD, None, 0, GOOD, VENDOR, RANGE, B),
    ("NaN", GOOD, math.nan, 0, GOOD, VENDOR, RANGE, B),
    ("infinite", GOOD, math.inf, 0, GOOD, VENDOR, None, B),
    ("a string", GOOD, "12.0", 0, GOOD, VENDOR, RANGE, B),
    ("a bool is no measurement", GOOD, True, 0, GOOD, VENDOR, RANGE, B),
    ("unreadable beats maintenance", BAD, None, 1, GOOD, VENDOR, RANGE, B),
    ("unreadable beats an unknown status", STALE, 5.0, 99, GOOD, VENDOR, RANGE, B),
    ("unreadable beats an override of the status", BAD, None, 1, OVERRIDDEN, VENDOR, RANGE, B),
    # 2. a configured status that cannot be read is B
    ("status missing", GOOD, 12.0, None, None, VENDOR, RANGE, B),
    ("status value missing", GOOD, 12.0, None, GOOD, VENDOR, RANGE, B),
    ("status quality missing", GOOD, 12.0, 0, None, VENDOR, RANGE, B),
    ("status bad", GOOD, 12.0, 0, BAD, VENDOR, RANGE, B),
    ("status stale", GOOD, 12.0, 0, STALE, VENDOR, RANGE, B),
    ("status bad beats an override", OVERRIDDEN, 12.0, 0, BAD, VENDOR, RANGE, B),
    ("status bad beats over range", GOOD, 900.0, 0, STALE, VENDOR, RANGE, B),
    # 3. the status's flag
    ("maintenance", GOOD, 12.0, 1, GOOD, VENDOR, RANGE, M),
    ("calibration", GOOD, 100.0, 2, GOOD, VENDOR, RANGE, C),
    ("fault", GOOD, 0.0, 3, GOOD, VENDOR, RANGE, D),
    ("stopped", GOOD, 12.0, 4, GOOD, VENDOR, RANGE, F),
    ("manual value", GOOD, 12.0, 5, GOOD, VENDOR, RANGE, S),
    ("the instrument says over range", GOOD, 499.0, 6, GOOD, VENDOR, RANGE, T),
    ("status beats an override of the value", OVERRIDDEN, 12.0, 1, GOOD, VENDOR, RANGE, M),
    ("status beats over range", GOOD, 900.0, 2, GOOD, VENDOR, RANGE, C),
    ("an overridden status declares maintenance", GOOD, 12.0, 1, OVERRIDDEN, VENDOR, RANGE, M),
    ("a site's own map", GOOD, 12.0, 7, GOOD, {7: C, 8: N}, RANGE, C),
    # 4. an unknown status code is D
    ("unknown status", GOOD, 12.0, 99, GOOD, VENDOR, RANGE, D),
    ("negative status", GOOD, 12.0, -1, GOOD, VENDOR, RANGE, D),
    ("code of the vendor table, not of this map", GOOD, 12.0, 1, GOOD, {8: N}, RANGE, D),
    ("unknown status beats an override", OVERRIDDEN, 12.0, 99, GOOD, VENDOR, RANGE, D),
    ("unknown status beats over range", GOOD, 900.0, 99, GOOD, VENDOR, RANGE, D),
    # 5. an override is S
    ("overridden value", OVERRIDDEN, 12.0, 0, GOOD, VENDOR, RANGE, S),
    ("overridden value, no status point", OVERRIDDEN, 12.0, None, None, {}, RANGE, S),
    ("overridden status that says normal", GOOD, 12.0, 0, OVERRIDDEN, VENDOR, RANGE, S),
    ("override beats over range", OVERRIDDEN, 900.0, 0, GOOD, VENDOR, RANGE, S),
    # 6. outside the measuring range is T
    ("above the range", GOOD, 500.5, 0, GOOD, VENDOR, RANGE, T),
    ("below the range", GOOD, -0.1, 0, GOOD, VENDOR, RANGE, T),
    ("an int above the range", GOOD, 501, 0, GOOD, VENDOR, RANGE, T),
    ("above the range, no status point", GOOD, 600.0, None, None, {}, RANGE, T),
    # 7. otherwise N
    ("normal", GOOD, 12.0, 0, GOOD, VENDOR, RANGE, N),
    ("at the low bound", GOOD, 0.0, 0, GOOD, VENDOR, RANGE, N),
    ("at the high bound", GOOD, 500.0, 0, GOOD, VENDOR, RANGE, N),
    ("an int", GOOD, 12, 0, GOOD, VENDOR, RANGE, N),
    ("no range", GOOD, 1e9, 0, GOOD, VENDOR, None, N),
    ("no status point: its reading is not looked at", GOOD, 12.0, 3, BAD, {}, RANGE, N),
    ("no status point, no reading", GOOD, 12.0, None, None, {}, None, N),
    ("a site's own normal code", GOOD, 12.0, 8, GOOD, {7: C, 8: N}, RANGE, N),
]


@pytest.mark.parametrize(
    ("quality", "value", "status", "status_quality", "status_map", "measuring_range", "flag"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_flag_of(quality, value, status, status_quality, status_map, measuring_range, flag):
    assert flag_of(quality, value, status, status_quality, status_map, measuring_range) is flag


def test_the_quality_enum_works_as_well_as_its_string():
    assert flag_of(Quality.OVERRIDDEN, 1.0, 0, Quality.GOOD, VENDOR, None) is S
    assert flag_of(Quality.GOOD, 1.0, 0, Quality.STALE, VENDOR, None) is B


def test_never_n_for_what_could_not_be_read():
    # Every combination of unreadable value or status, whatever else holds.
    for quality in (BAD, STALE):
        for value in (None, 1.0, math.nan):
            for status in (None, *range(-1, 9)):
                for status_quality in (None, GOOD, BAD, STALE, OVERRIDDEN):
                    got = flag_of(quality, value, status, status_quality, VENDOR, RANGE)
                    assert got is B
    for status_quality in (None, BAD, STALE):
        assert flag_of(GOOD, 1.0, 0, status_quality, VENDOR, RANGE) is B


def test_an_unknown_quality_is_an_error():
    with pytest.raises(ValueError):
        flag_of("excellent", 1.0, 0, GOOD, VENDOR, RANGE)
    with pytest.raises(ValueError):
        flag_of(GOOD, 1.0, 0, "excellent", VENDOR, RANGE)


def test_a_range_upside_down_is_an_error():
    with pytest.raises(ValueError, match="low above high"):
        flag_of(GOOD, 1.0, 0, GOOD, VENDOR, (10.0, 0.0))


def test_the_default_status_map_is_the_vendor_table():
    assert default_status_map() == {0: N, 1: M, 2: C, 3: D, 4: F, 5: S, 6: T}
    # A new one each time: a caller adapting its copy changes nobody else's.
    mine = default_status_map()
    mine[7] = C
    assert 7 not in default_status_map()


def test_the_flags_are_hj212s_letters():
    assert [flag.value for flag in DataFlag] == list("NFMSDCTB")
