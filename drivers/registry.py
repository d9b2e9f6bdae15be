"""Maps a config's `driver:` name to its device model and its driver class.

Device models are light (pydantic only) so that validating a config imports no protocol
library; driver classes are imported only when a device of that kind is started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from drivers.bacnet.config import BacnetDevice
from drivers.dlt645.config import Dlt645Device
from drivers.fake import FakeDevice
from drivers.modbus.config import ModbusDevice

if TYPE_CHECKING:
    from drivers.bacnet.driver import BacnetDriver
    from drivers.base import AnyDriver
    from drivers.dlt645.driver import Dlt645Driver
    from drivers.fake import FakeDriver
    from drivers.modbus.driver import ModbusDriver

# Discriminated by `driver`. Add a new driver's device model here.
DEVICE_MODELS = Union[FakeDevice, ModbusDevice, BacnetDevice, Dlt645Device]  # noqa: UP007 - must stay a Union to take more members


def _fake() -> type[FakeDriver]:
    from drivers.fake import FakeDriver

    return FakeDriver


def _bacnet() -> type[BacnetDriver]:
    from drivers.bacnet.driver import BacnetDriver

    return BacnetDriver


def _modbus() -> type[ModbusDriver]:
    from drivers.modbus.driver import ModbusDriver

    return ModbusDriver


def _dlt645() -> type[Dlt645Driver]:
    from drivers.dlt645.driver import Dlt645Driver

    return Dlt645Driver


_LOADERS: dict[str, Callable[[], type[AnyDriver]]] = {
    "fake": _fake,
    "modbus": _modbus,
    "bacnet": _bacnet,
    "dlt645": _dlt645,
}


def driver_class(name: str) -> type[AnyDriver]:
    try:
        return _LOADERS[name]()
    except KeyError:
        raise KeyError(f"no driver named {name!r} (known: {', '.join(sorted(_LOADERS))})") from None
