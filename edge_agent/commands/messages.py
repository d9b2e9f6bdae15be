"""Command messages (docs/mqtt-api.md, "Commands"): decoding and the reasons for refusal.

Decoding never raises anything but `Rejected`: whatever arrives on the command topic (or
the local socket) becomes either a typed command or a rejection that says why, carrying
the command id when one could be read (so that the sender gets a `rejected` reply).
"""

from __future__ import annotations

import json
import math
import re
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic import ValidationError as PydanticError

from edge_agent import envelope
from edge_agent.config.base import Duration, Id, Model

VERSION = envelope.VERSION  # commands and everything the gateway publishes
MAX_PAYLOAD = 1024 * 1024  # a whole config may ride in a config_apply
# A larger message is refused (`malformed`); up to this size it is still read for its id,
# so that the sender hears why. Past it, it is dropped unread.
MAX_READ = 8 * MAX_PAYLOAD
MAX_MESSAGE = 300  # characters of a rejection's readable message
MAX_ECHOED_ID = 1024  # an unusable id this long or shorter is echoed in the malformed reply
_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces: safe in logs and SQL
_REF = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class Reason(StrEnum):
    """Machine-readable reasons of `rejected` and `failed` replies."""

    MALFORMED = "malformed"  # not JSON, not an object, missing or wrong fields
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    RETAINED = "retained"  # a retained message is old news, never an order
    EXPIRED = "expired"
    UNKNOWN_POINT = "unknown_point"
    READ_ONLY = "read_only"
    WRONG_TYPE = "wrong_type"
    OUT_OF_LIMITS = "out_of_limits"
    RATE_LIMITED = "rate_limited"
    OVERRIDDEN = "overridden"  # a higher-priority source holds the point
    PROTECTION = "protection"  # equipment protection (min on/off time, starts, flow)
    NOT_HELD = "not_held"  # release of a point this source does not hold
    PRIORITY_RESERVED = "priority_reserved"
    PRIORITY_UNSUPPORTED = "priority_unsupported"  # the point has no priority array
    UNKNOWN_LOOP = "unknown_loop"
    UNKNOWN_ALARM = "unknown_alarm"
    ALREADY_ACKNOWLEDGED = "already_acknowledged"
    UNAVAILABLE = "unavailable"  # the feature is not configured (no loops, no history)
    CONFIG_INVALID = "config_invalid"
    CONFIG_CONFLICT = "config_conflict"  # base_hash is not the running config
    BAD_RANGE = "bad_range"
    BUSY = "busy"
    # failed (after accepted)
    DEVICE_UNAVAILABLE = "device_unavailable"
    WRITE_FAILED = "write_failed"
    READBACK_MISMATCH = "readback_mismatch"
    CONFIG_FAILED = "config_failed"  # the new config did not start; rolled back
    INTERNAL = "internal"


class Source(IntEnum):
    """Who asks, in order of precedence (lower wins)."""

    SAFETY = 0  # equipment protection and interlocks inside the agent
    MANUAL = 1  # the technician on site
    PLATFORM = 2  # the central platform
    AUTO = 3  # the agent's own control loops

    @property
    def label(self) -> str:
        return self.name.lower()


class Rejected(Exception):
    """A command refused before anything was done. `command_id` is what the reply echoes
    (None: the message cannot be answered); it is a usable id unless `reason` is MALFORMED,
    where it is the id exactly as sent. `command_type`: the command's type, when known."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        command_id: str | int | float | None = None,
        command_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message[:MAX_MESSAGE]
        self.command_id = command_id
        self.command_type = command_type


class Failed(Exception):
    """An accepted command that could not be carried out."""

    def __init__(self, reason: Reason, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message[:MAX_MESSAGE]
        self.detail = detail


class Deferred(Exception):  # a control-flow signal, not an error
    """Raised by an execution whose outcome is known only later (a config apply finishes
    in the next runtime): the router answers `accepted` and waits for `complete`."""


def _integral(value: object) -> object:
    """JSON has one number type: 8.0 is the integer 8 (as JSON Schema says), 8.5 is not."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


PointRef = Annotated[str, Field(pattern=_REF)]
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
EpochMs = Annotated[int, Field(ge=0, lt=2**53), BeforeValidator(_integral)]
Priority = Annotated[int, Field(ge=1, le=16), BeforeValidator(_integral)]


CommandId = Annotated[
    str, Field(pattern=_ID.pattern, description="1-128 printable ASCII, no spaces")
]
# Seconds as a number, or a string with a unit: 500ms, 30s, 30m, 2h, 1d.
HoldDuration = Annotated[
    Duration,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                # a positive number: a non-zero digit before or after the point
                {
                    "type": "string",
                    "pattern": r"^\s*([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)"
                    r"\s*(ms|s|m|h|d)?\s*$",
                },
            ],
            "description": "seconds, or a number with a unit: 500ms, 30s, 30m, 2h, 1d",
        }
    ),
]


class Base(Model):
    # Strict: every field has one JSON type. "dry_run": "no" is no boolean, "priority": "8"
    # no integer, and `true` is not the version 1; none of them is coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Annotated[Literal[1], BeforeValidator(_integral)]
    id: CommandId
    ts: EpochMs | None = None  # when the platform made it (informational)
    expires: EpochMs | None = None  # refused after this instant (ms since the epoch)


class Write(Base):
    type: Literal["write"]
    point: PointRef
    value: Scalar
    priority: Priority | None = None  # BACnet points only
    duration: HoldDuration | None = None  # the hold ends after this long …
    until: EpochMs | None = None  # … or at this instant; neither: until released
    dry_run: bool = False  # validate only

    model_config = ConfigDict(  # merged with Base's: also in the schema, not both ends
        json_schema_extra={
            "not": {
                "required": ["duration", "until"],
                "properties": {
                    "duration": {"not": {"type": "null"}},
                    "until": {"not": {"type": "null"}},
                },
            }
        },
    )

    @model_validator(mode="after")
    def _one_end(self) -> Write:
        if self.duration is not None and self.until is not None:
            raise ValueError("give duration or until, not both")
        return self


class Release(Base):
    type: Literal["release"]
    point: PointRef


class Read(Base):
    type: Literal["read"]
    point: PointRef


class LoopCommand(Base):
    type: Literal["loop"]
    loop: Id
    action: Literal["enable", "disable", "set"]
    parameter: str | None = None  # for "set": e.g. "setpoint"
    value: StrictFloat | StrictInt | None = None


class AlarmAck(Base):
    type: Literal["alarm_ack"]
    alarm: Annotated[str, Field(min_length=1, max_length=200)]
    by: Annotated[str, Field(max_length=100)] | None = None
    note: Annotated[str, Field(max_length=1000)] | None = None


class ConfigApply(Base):
    type: Literal["config_apply"]
    config: Annotated[str, Field(min_length=1)]  # the whole YAML document
    base_hash: str | None = None  # refuse unless this is the running config's hash


class Backfill(Base):
    type: Literal["backfill"]
    since: EpochMs
    until: EpochMs
    devices: list[Id] | None = None


class Status(Base):
    type: Literal["status"]


class Rebirth(Base):
    type: Literal["rebirth"]


Command = (
    Write | Release | Read | LoopCommand | AlarmAck | ConfigApply | Backfill | Status | Rebirth
)
# The commands' `type` tags, in the order of `Command` (tests/edge_agent/commands check
# that they agree with the models).
CommandType = Literal[
    "write", "release", "read", "loop", "alarm_ack", "config_apply", "backfill", "status", "rebirth"
]
TYPES: tuple[str, ...] = get_args(CommandType)
ADAPTER: TypeAdapter[Command] = TypeAdapter(Annotated[Command, Field(discriminator="type")])


def decode(payload: bytes | str) -> Command:
    """Parse one command message; raises `Rejected` (with `command_id` when it can be
    answered). The order of the checks is the contract (docs/mqtt-api.md): size, JSON,
    object, id, v, type, then the fields of the type."""
    if len(payload) > MAX_READ:
        raise Rejected(Reason.MALFORMED, f"message larger than {MAX_PAYLOAD} bytes")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Rejected(Reason.MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Rejected(Reason.MALFORMED, "a command is a JSON object")
    sent_id = data.get("id")
    type_ = data.get("type")
    known_type = type_ if isinstance(type_, str) and type_ in TYPES else None
    command_id = _usable_id(sent_id)
    if command_id is None:
        raise Rejected(
            Reason.MALFORMED,
            "id: missing or unusable (1-128 printable ASCII characters, no spaces)",
            sent_id if _echoable(sent_id) else None,
            known_type,
        )
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(
            Reason.MALFORMED, f"message larger than {MAX_PAYLOAD} bytes", command_id, known_type
        )
    version = _integral(data.get("v"))
    if type(version) is not int:  # `true` == 1 in Python: not here
        raise Rejected(
            Reason.MALFORMED, f"v: missing or not an integer ({version!r})", command_id, known_type
        )
    if version != VERSION:
        raise Rejected(
            Reason.UNSUPPORTED_VERSION, f"v must be {VERSION}, got {version}", command_id,
            known_type,
        )  # fmt: skip
    if not isinstance(type_, str):
        raise Rejected(Reason.MALFORMED, f"type: missing or not a string ({type_!r})", command_id)
    if known_type is None:
        raise Rejected(
            Reason.UNKNOWN_TYPE,
            f"type must be one of {', '.join(TYPES)}; got {type_!r}",
            command_id,
        )
    try:
        return ADAPTER.validate_python(data)
    except PydanticError as exc:
        raise Rejected(Reason.MALFORMED, _first_problem(exc), command_id, known_type) from None


def _usable_id(value: object) -> str | None:
    """The id as sent if it is usable, else None."""
    return value if isinstance(value, str) and _ID.fullmatch(value) is not None else None


def _echoable(value: object) -> bool:
    """An unusable id that can still be sent back, so the sender can tell which message
    was refused: a string (of reasonable length) or a number."""
    if isinstance(value, str):
        return len(value) <= MAX_ECHOED_ID
    # NaN and infinities (Python's JSON reads them) cannot be written back as JSON.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _first_problem(exc: PydanticError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"][1:]) or "command"  # [0] is the type tag
        message = error["msg"]
        if error["type"] == "string_pattern_mismatch":
            message = "expected a point as device.point" if where == "point" else "not an id"
        problems.append(f"{where}: {message}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more
