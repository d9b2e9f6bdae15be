from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.base import Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.points import Quality


def _device(*points: dict) -> FakeDevice:
    return FakeDevice.model_validate({"id": "d1", "driver": "fake", "points": list(points)})


@pytest.mark.parametrize("mode", ["walk", "counter"])
def test_a_string_point_cannot_walk_or_count(mode: str) -> None:
    # Text has no arithmetic: such a point used to pass validation and then fail every
    # poll of its device with a TypeError (found by mypy).
    with pytest.raises(ValidationError, match=f"a {mode} signal needs a number"):
        _device({"id": "msg", "kind": "string", "signal": {"mode": mode, "value": "x"}})


async def test_string_points_keep_the_signals_they_can_carry() -> None:
    device = _device(
        {"id": "msg", "kind": "string", "signal": {"value": "ok"}},
        {"id": "flip", "kind": "string", "signal": {"mode": "toggle", "period": 1}},
        {"id": "n", "signal": {"mode": "counter", "value": 1, "rate": 2}},
    )
    driver = FakeDriver(device, Link(device.id))
    readings = await driver.read(device.points)
    assert [r.quality for r in readings] == [Quality.GOOD] * 3
    assert [r.value for r in readings] == ["ok", "True", 3.0]
