from __future__ import annotations

import pytest
from bacpypes3.basetypes import BinaryPV, PriorityValue, Reliability, StatusFlags
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.primitivedata import CharacterString, Null, ObjectIdentifier, Real, Unsigned

from drivers.bacnet.config import BacnetPoint
from drivers.bacnet.values import encode, present, to_python
from drivers.base import DriverError


def point(kind: str = "analog", **extra: object) -> BacnetPoint:
    return BacnetPoint.model_validate(
        {"id": "p", "kind": kind, "bacnet": {"object": "analog-value", "instance": 1}, **extra}
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Real(6.5), 6.5),
        (BinaryPV("active"), True),
        (BinaryPV("inactive"), False),
        (Unsigned(3), 3),
        (CharacterString("AHU-1"), "AHU-1"),
        (Reliability("no-fault-detected"), "no-fault-detected"),
        (StatusFlags([1, 0, 0, 1]), "in-alarm;out-of-service"),
        (StatusFlags([0, 0, 0, 0]), "none"),
        (ObjectIdentifier("analog-input,1"), "analog-input,1"),
        (Null(()), None),
    ],
    ids=lambda v: type(v).__name__,  # bacpypes3 strings break pytest's default ids
)
def test_to_python(value: object, expected: object) -> None:
    assert to_python(value) == expected
    assert type(to_python(value)) is type(expected)


def test_constructed_values_become_short_text() -> None:
    array = ArrayOf(PriorityValue)([PriorityValue(null=()) for _ in range(16)])
    text = to_python(array)
    assert isinstance(text, str) and len(text) <= 120


def test_present_scales_analog_and_types_the_kinds() -> None:
    assert present(point(scale=0.1, offset=-40), Real(650.0)) == pytest.approx(25.0)
    assert present(point("multistate"), Unsigned(2)) == 2
    assert present(point("binary"), BinaryPV("active")) is True
    assert present(point("string"), StatusFlags([0, 1, 0, 0])) == "fault"
    with pytest.raises(ValueError):
        present(point(), CharacterString("n/a"))


def test_encode() -> None:
    assert float(encode(point(scale=0.1), 2.5)) == pytest.approx(25.0)
    assert encode(point("binary"), True) == BinaryPV("active")
    assert encode(point("multistate"), 2) == 2
    for bad_point, value in [(point("multistate"), 1.5), (point("string"), "x"), (point(), None)]:
        with pytest.raises(DriverError):
            encode(bad_point, value)
    with pytest.raises(DriverError, match="outside"):
        encode(point(limits={"min": 0, "max": 10}), 11)


@pytest.mark.parametrize(("sent", "meant"), [(6.67, 6.67), (4738.97, 4738.97), (-0.0123, -0.0123)])
def test_a_real_is_the_decimal_the_device_meant(sent: float, meant: float) -> None:
    received = Real.decode(Real(sent).encode())  # as it arrives: float32 on the wire
    assert float(received) != meant  # 6.67 arrives as 6.670000076293945
    assert to_python(received) == meant
