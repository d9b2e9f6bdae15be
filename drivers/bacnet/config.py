"""Config models of BACnet/IP devices and points (pydantic only: no bacpypes3 import)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from edge_agent.config.base import DeviceBase, Duration, Model, PointBase
from edge_agent.i18n import N_, _

ObjectTypeName = Literal[
    "analog-input",
    "analog-output",
    "analog-value",
    "binary-input",
    "binary-output",
    "binary-value",
    "multi-state-input",
    "multi-state-output",
    "multi-state-value",
]
# Objects whose present-value is commandable (has a priority array) in the standard.
COMMANDABLE = frozenset({"analog-output", "binary-output", "multi-state-output"})
LIFE_SAFETY_PRIORITIES = frozenset({1, 2})

Instance = Annotated[int, Field(ge=0, le=4194302)]  # 4194303 is the wildcard
Priority = Annotated[int, Field(ge=1, le=16)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _interface(value: str) -> str:
    """An IPv4 address with its prefix ("192.168.1.10/24"): the prefix gives the broadcast
    address, and an explicit address keeps the stack off the machine's main interface."""
    if "/" not in value:
        raise ValueError(_("give the prefix length too, e.g. 192.168.1.10/24"))
    try:
        ipaddress.IPv4Interface(value)
    except ValueError as exc:
        raise ValueError(
            f"expected an IPv4 address with prefix, e.g. 192.168.1.10/24: {exc}"
        ) from None
    return value


def _peer(value: str) -> str:
    """A device's unicast address, "host" or "host:port" (default port 47808)."""
    host, _colon, port = value.partition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError as exc:
        raise ValueError(f"expected an IPv4 address, host or host:port: {exc}") from None
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"bad port in {value!r}")
    return value


class BacnetRef(Model):
    """Where a point lives in the device: one property of one object."""

    object: ObjectTypeName
    instance: Instance
    property: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")] = "present-value"
    priority: Priority = 8  # write priority (8 = manual operator)
    allow_life_safety_priority: bool = False  # priorities 1-2 are for life-safety systems

    @model_validator(mode="after")
    def _life_safety(self) -> BacnetRef:
        if self.priority in LIFE_SAFETY_PRIORITIES and not self.allow_life_safety_priority:
            raise ValueError(
                f"priority {self.priority} is reserved for life safety; "
                "set allow_life_safety_priority: true if this is intended"
            )
        return self


class BacnetPoint(PointBase):
    bacnet: BacnetRef

    @model_validator(mode="after")
    def _writable_pv(self) -> BacnetPoint:
        if self.writable and self.bacnet.property != "present-value":
            raise ValueError(_("only present-value points can be writable"))
        return self


class BacnetConnection(Model):
    local_address: Annotated[str, AfterValidator(_interface)]  # our bind address, with prefix
    local_port: Port = 47808
    device_instance: Instance  # our own device object (must be unique on the network)
    address: Annotated[str, AfterValidator(_peer)]  # the field device
    max_concurrent: Annotated[int, Field(ge=1, le=32)] = 2  # requests in flight
    rpm_max_properties: Annotated[int, Field(ge=1, le=500)] = 20
    cov: bool = False
    cov_lifetime: Annotated[Duration, Field(ge=10)] = 300.0  # renewed before it expires
    cov_confirmed: bool = False

    @property
    def bind(self) -> str:
        """The bacpypes3 address of the local link layer: "a.b.c.d/nn:port"."""
        return f"{self.local_address}:{self.local_port}"


class BacnetDevice(DeviceBase):
    driver: Literal["bacnet"]
    connection: BacnetConnection
    points: list[BacnetPoint] = Field(min_length=1)
    timeout: Duration = 2.0

    def poll_floor(self) -> tuple[str, float, str]:
        """(what, seconds, why): the shortest poll_interval a config may give (the config
        checks refuse less; docs/configuration.md)."""
        return (
            "BACnet",
            1.0,
            N_(
                "BACnet controllers refresh present values on a program cycle of about a second "
                "and serve every client (the BMS too) from one small stack: faster polling reads "
                "the same values again and delays the others"
            ),
        )
