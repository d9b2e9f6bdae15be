"""What the gateway answers on `…/ack` (docs/mqtt-api.md, "Replies"), as models.

The router builds its replies as plain dicts (they ride through the outbox as JSON); these
models say what those dicts are. `edge_agent.commands.schema` turns them, and the command
models of `messages`, into the JSON Schemas in `docs/schema/`, and the contract tests
check every reply a real agent sends against those schemas. Replies are open: a field may
be added within version 1, and consumers must ignore fields they do not know.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.commands.messages import CommandType, Reason

Scalar = bool | int | float | str | None
SourceLabel = Literal["safety", "manual", "platform", "auto"]
QualityLabel = Literal["good", "bad", "stale", "overridden"]
Stage = Literal["accepted", "rejected", "done", "failed"]


class Open(BaseModel):
    """A reply object: known fields typed, later fields allowed."""

    model_config = ConfigDict(extra="allow")


class WriteResult(Open):
    """`write` done: the value is on the device and in the sender's hold."""

    point: str
    value: Scalar = Field(description="what was written (the point's kind)")
    readback: Scalar = Field(description="read from the device right after writing")
    quality: QualityLabel
    source: SourceLabel
    until: int | None = Field(
        description="the hold's end, ms since the epoch; null: until released"
    )


class DryRunResult(Open):
    """`write` with `dry_run`: every check passed, nothing was written."""

    point: str
    value: Scalar
    dry_run: Literal[True]


class ReleaseResult(Open):
    """`release` done. `effective` is who is in force now: the source whose hold took over,
    `device` (its own control), `unchanged` (the released hold was not in force), or, with
    `pending`, still the releasing source: equipment protection refuses the change the
    release would make (e.g. a chiller's minimum on time), so the hold stays in force and
    ends by itself as soon as it may (event `hold_ended`)."""

    point: str
    released: SourceLabel
    effective: str
    readback: Scalar = Field(None, description="after the hold ended (absent when pending)")
    quality: QualityLabel | None = None
    pending: Literal[True] | None = None
    protection: str | None = Field(None, description="with pending: why, and when it may")


class ReadResult(Open):
    point: str
    value: Scalar
    quality: QualityLabel
    read_ts: int = Field(description="when the device answered, ms since the epoch")
    quality_reason: str | None = None


class LoopEnabled(Open):
    loop: str
    enabled: Literal[True]


class LoopDisabled(Open):
    loop: str
    enabled: Literal[False]
    released: list[str] = Field(description="outputs given back (the loop's holds ended)")
    pending: dict[str, str] | None = Field(
        None, description="outputs whose hold protection keeps for now, with why"
    )


class LoopSet(Open):
    loop: str
    parameter: str
    value: float


class AlarmResult(Open):
    """The acknowledged alarm, as `edge-agent alarms --json` lists it (docs/alarms.md)."""

    id: str
    rule: str
    point: str
    severity: str
    state: Literal["active", "acknowledged", "cleared"]
    acked: Literal[True]
    ack_by: str
    ack_ts: int


class ConfigApplied(Open):
    config_hash: str
    previous_hash: str


class ConfigUnchanged(Open):
    config_hash: str
    changed: Literal[False]


class ConfigRolledBack(Open):
    """`config_apply` failed: the previous file and configuration run again."""

    config_hash: str
    rolled_back: Literal[True]


class BackfillResult(Open):
    messages: int = Field(description="telemetry messages republished (historical: true)")
    points: int
    history_oldest_ts: int | None = Field(description="the oldest history still kept")


class RebirthResult(Open):
    devices: int
    points: int


class StatusResult(Open):
    """What `edge-agent status --json` shows; its parts may grow."""

    version: str
    pid: int
    site: str
    gateway: str
    config_hash: str
    uptime_s: float
    uplink: dict[str, Any]
    commands: dict[str, Any] | None
    alarms: dict[str, Any]
    loops: list[dict[str, Any]]
    store: dict[str, Any]
    devices: dict[str, dict[str, Any]]
    hj212: list[dict[str, Any]] | None = Field(
        default=None,
        description="per environmental platform (docs/hj212.md): connected, last_ack_ms, "
        "owed, oldest_owed; null without an hj212 section",
    )


class FailedDetail(Open):
    """What a `failed` reply may carry besides its reason: `readback_mismatch` the value
    the device reads back; `config_failed` the configuration running now."""

    readback: Scalar = None


# The `result` of a `done` reply, by command type.
DONE_RESULTS: dict[str, tuple[type[Open], ...]] = {
    "write": (WriteResult, DryRunResult),
    "release": (ReleaseResult,),
    "read": (ReadResult,),
    "loop": (LoopEnabled, LoopDisabled, LoopSet),
    "alarm_ack": (AlarmResult,),
    "config_apply": (ConfigApplied, ConfigUnchanged),
    "backfill": (BackfillResult,),
    "status": (StatusResult,),
    "rebirth": (RebirthResult,),
}
FAILED_RESULTS: tuple[type[Open], ...] = (FailedDetail, ConfigRolledBack)


class Reply(Open):
    """One stage of one command's outcome, published on `…/ack` (QoS 1, not retained)."""

    v: Literal[1]
    type: Literal["command_result"]
    site: str
    gateway: str
    id: str | int | float = Field(
        description="the command's id; in a `malformed` reply exactly as sent, which may not "
        "be a usable id (a number, a string with spaces or too long)"
    )
    command: CommandType | None = Field(description="the command's type; null when unknown")
    stage: Stage
    ts: int = Field(description="when this stage was reached, ms since the epoch")
    seq: int = Field(description="the ack stream's own sequence number")
    historical: bool
    reason: Reason | None = Field(None, description="rejected and failed only")
    message: str | None = Field(None, description="rejected and failed only: readable")
    result: dict[str, Any] | None = Field(None, description="done (and some failed)")
    duplicate: Literal[True] | None = Field(
        None, description="an answer from the audit log to a repeated id (not executed again)"
    )
