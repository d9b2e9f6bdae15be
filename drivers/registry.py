"""Maps a config's `driver:` name to its device model and its driver class.

Device models are light (pydantic only) so that validating a config imports no protocol
library; driver classes are imported only when a device of that kind is started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from drivers.fake import FakeDevice

if TYPE_CHECKING:
    from drivers.base import Driver

# Discriminated by `driver`. Add a new driver's device model here.
DEVICE_MODELS = Union[FakeDevice]  # noqa: UP007 - must stay a Union to take more members


def _fake() -> type[Driver]:
    from drivers.fake import FakeDriver

    return FakeDriver


_LOADERS: dict[str, Callable[[], type[Driver]]] = {"fake": _fake}


def driver_class(name: str) -> type[Driver]:
    try:
        return _LOADERS[name]()
    except KeyError:
        raise KeyError(f"no driver named {name!r} (known: {', '.join(sorted(_LOADERS))})") from None
