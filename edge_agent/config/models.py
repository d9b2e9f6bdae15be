"""The validated, immutable site configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ByteSize, Field, model_validator

from control_loops.config import EquipmentProtection, LoopConfig
from drivers.registry import DEVICE_MODELS
from edge_agent.alarms.rules import AlarmRule
from edge_agent.config.base import Duration, Gap, Id, Model
from edge_agent.energy.config import Energy
from edge_agent.hj212.config import Hj212
from edge_agent.i18n import _

Device = Annotated[DEVICE_MODELS, Field(discriminator="driver")]


class Identity(Model):
    id: Id
    name: str = ""


def _supported_locale(value: str) -> str:
    from edge_agent.i18n import LANGUAGES, language_of

    if language_of(value) is None:
        raise ValueError(f"expected a locale of {', '.join(LANGUAGES)} (e.g. zh_CN.UTF-8)")
    return value


Locale = Annotated[str, AfterValidator(_supported_locale)]


class Site(Identity):
    # The language of the texts people read (CLI, logs' messages, alarm texts): a locale
    # such as zh_CN; a technician's own LANG (not C/POSIX) still wins. Machine fields never
    # change. None: the environment's, else English.
    locale: Locale | None = None


class Endpoint(Model):
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)


class Tls(Model):
    ca: Path | None = None  # CA bundle that signed the broker; None: the system store
    cert: Path | None = None  # client certificate (mutual TLS)
    key: Path | None = None
    insecure: bool = False  # skip host-name check (test rigs only)

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            raise ValueError(_("cert and key must be given together"))
        return self


class Backoff(Model):
    initial: Duration = 0.5
    max: Duration = 30.0


class Uplink(Model):
    # Tried in order; a clustered broker lists every node. Failover rotates through them.
    endpoints: list[Endpoint] = Field(min_length=1)
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None  # default: "{site}-{gateway}"
    topic_prefix: Annotated[str, Field(pattern=r"^[^#+/\s][^#+\s]*[^#+/\s]$|^[^#+/\s]$")] = "edge"
    tls: Tls | None = None
    username: str | None = None
    password_file: Path | None = None
    keepalive: Duration = 30.0
    reconnect: Backoff = Backoff()
    inflight: int = Field(256, ge=1, le=65535)  # QoS 1 messages awaiting PUBACK
    flush_timeout: Duration = 5.0  # how long shutdown may spend publishing the backlog


class Store(Model):
    path: Path = Path("/var/lib/edge-agent/outbox.db")
    disk_budget: ByteSize = ByteSize(2 * 1024**3)
    retention: Duration = 7 * 86400.0  # unsent telemetry older than this is evicted
    history: Duration = 7 * 86400.0  # delivered telemetry is kept this long (export, backfill)
    commit_interval: Duration = 0.1  # how long a poll may wait to share a transaction


class Link(Model):
    """A physical link shared by several devices (an RS-485 bus, a serial server port)."""

    id: Id
    gap: Gap = 0.0  # idle time between requests


class Local(Model):
    socket: Path = Path("/run/edge-agent/agent.sock")  # technician CLI, mode 0660


class Commands(Model):
    # A pushed config must be polling and connected to the broker within this time, or the
    # previous one is restored.
    apply_confirm: Duration = 60.0


class Metrics(Model):
    # Prometheus text on 127.0.0.1 only; off unless a port is given.
    prometheus_port: int | None = Field(default=None, ge=1, le=65535)


class AgentConfig(Model):
    site: Site
    gateway: Identity
    uplink: Uplink
    store: Store = Store()
    local: Local = Local()
    commands: Commands = Commands()
    metrics: Metrics = Metrics()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    links: tuple[Link, ...] = ()
    devices: tuple[Device, ...] = ()
    alarms: tuple[AlarmRule, ...] = ()
    loops: tuple[LoopConfig, ...] = ()
    protection: tuple[EquipmentProtection, ...] = ()
    hj212: Hj212 | None = None  # the environmental platforms (docs/hj212.md)
    energy: Energy | None = None  # meters, virtual meters, the tree (docs/energy-accounting.md)

    @property
    def identity(self) -> dict[str, str]:
        """Who says it: the site and gateway ids every message carries (edge_agent.envelope)."""
        return {"site": self.site.id, "gateway": self.gateway.id}

    @property
    def client_id(self) -> str:
        return self.uplink.client_id or f"{self.site.id}-{self.gateway.id}"

    @property
    def config_hash(self) -> str:
        """Identifies the effective configuration (comments and layout do not change it)."""
        return self.fingerprint()
