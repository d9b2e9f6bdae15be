"""MQTT uplink: drains the outbox to the broker, in order, at least once.

paho-mqtt runs its network loop on its own thread; everything else happens on the asyncio
thread. The uplink leases committed rows from the outbox, publishes them with QoS 1 and
acks (deletes) them only on the broker's PUBACK. On disconnect every unacknowledged row
goes back to ready; after reconnect it is published again, so a message whose PUBACK was
lost can arrive twice (at-least-once), never zero times.

Three lanes share the window of in-flight messages: PRIORITY (events, alarms, command
results), LIVE (telemetry committed after this connection's CONNACK) and BACKLOG (telemetry
committed before it, and backfill). Backlog may never fill the last `reserve` slots, so
live data is not starved while a long backlog drains.

`historical` is exact: true iff the row was committed before the CONNACK of the connection
that publishes it (the outbox's `committed_id()` read on paho's thread as the CONNACK
arrives), or it is republished by a backfill; false for everything committed after it.

Commands: the uplink subscribes to exactly one topic, `…/cmd` (MQTT 5: retain-as-published,
so every retained command is seen as such), and hands each message to `on_command` on the
asyncio thread with its retain flag; a message on any other topic is ignored. The session is
clean, so a command counts as deliverable only once the broker's SUBACK granted the
subscription: status shows it as `commands` (off, subscribing, subscribed, refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent import logs, payloads
from edge_agent.config.models import AgentConfig, Endpoint
from edge_agent.events import Events
from edge_agent.points import wall_ms
from edge_agent.store.outbox import Lane, Outbox, Row, StoreError
from edge_agent.store.worker import StoreWorker

log = logs.get("uplink")
_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 10.0
ACK_RETRY_S = 1.0  # after the outbox could not record acknowledgements (a full disk)


class ConnectFailed(Exception):
    pass


class SessionEnded(Exception):
    pass


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, so that a fleet of
    gateways that lost the broker together does not reconnect in lockstep."""
    ceiling = min(maximum, initial * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _exchange(
    outbox: Outbox, acked: list[int], free: int, reserve: int, stopping: bool
) -> tuple[list[tuple[Row, Lane]], str | None]:
    """Runs on the store thread: record acknowledged rows, seal pending eviction
    announcements (at once when stopping, so they go out before `offline`), then lease the
    next window. A failure to record the acks (the disk is full even after making room) is
    returned, not raised: those rows stay leased, so nothing is published twice meanwhile,
    and publishing goes on."""
    failed = None
    if acked:
        try:
            outbox.ack(acked)
        except StoreError as exc:
            failed = str(exc)
    outbox.announce(force=stopping)
    leased: list[tuple[Row, Lane]] = []
    for lane, room in ((Lane.PRIORITY, free), (Lane.LIVE, free), (Lane.BACKLOG, free - reserve)):
        want = room - len(leased)
        if want > 0:
            leased.extend((row, lane) for row in outbox.lease(lane, want))
    return leased, failed


class Uplink:
    # How much longer than its flush timeout a stop may take (the offline status, the
    # disconnect) before the agent cuts it short.
    STOP_MARGIN_S = 3.0

    def __init__(
        self,
        config: AgentConfig,
        store: StoreWorker,
        version: str,
        on_command: Callable[[bytes, bool], None] | None = None,
        events: Events | None = None,
    ) -> None:
        self.config = config
        self.cfg = config.uplink
        self.store = store
        self.identity = config.identity
        self.topics = payloads.Topics.for_gateway(
            self.cfg.topic_prefix, config.site.id, config.gateway.id
        )
        self._online = {"version": version, "config_hash": config.config_hash}
        self._announce = False  # the online status changed: publish it again
        self._on_command = on_command
        self._events = events
        self.ignored_messages = 0
        self._reserve = max(1, self.cfg.inflight // 8)
        self._wake = asyncio.Event()
        self._acks: deque[tuple[int, bool]] = deque()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id
        self._boundary = 0  # the newest row id committed before this connection's CONNACK
        self._unrecorded: list[int] = []  # PUBACKed rows the outbox could not record yet
        self._ack_retry_at = 0.0
        self._connected = False
        self._lost_reason: str | None = None
        self._stop_deadline: float | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        store.on_commit(self._wake.set)
        # What status shows.
        self.state = "starting"
        self.endpoint: str | None = None
        self.connected_since: int | None = None
        self.last_error: str | None = None
        self.published = 0
        self.acked = 0
        self.connects = 0
        self.commands = "off" if on_command is None else "subscribing"
        self.ack_error: str | None = None  # while acknowledgements cannot be recorded

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        endpoints = self.cfg.endpoints
        index, failures = 0, 0
        while self._stop_deadline is None:
            endpoint = endpoints[index % len(endpoints)]
            self.state, self.endpoint = "connecting", f"{endpoint.host}:{endpoint.port}"
            try:
                client = await self._connect(endpoint)
            except ConnectFailed as exc:
                failures += 1
                index += 1  # fail over to the next node of the cluster
                self._note_error(f"connect to {self.endpoint} failed: {exc}", first=failures == 1)
                await self._pause(
                    backoff_delay(failures, self.cfg.reconnect.initial, self.cfg.reconnect.max)
                )
                continue
            failures = 0
            try:
                await self._session(client)
            finally:
                await self._disconnect(client)
                await self.store.call(self.store.outbox.requeue, None)
                self._inflight.clear()
                self._acks.clear()
                self.state, self.connected_since = "disconnected", None
                if self.commands != "off":
                    self.commands = "subscribing"  # again, on the next connection
            if self._stop_deadline is None:
                self._note_error(
                    f"connection to {self.endpoint} lost: {self._lost_reason}", first=True
                )
                await self._pause(
                    backoff_delay(1, self.cfg.reconnect.initial, self.cfg.reconnect.max)
                )
        self.state = "stopped"

    async def stop(self, timeout: float) -> None:
        """Ask `run` to publish what is committed (for at most `timeout` s) and return."""
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()

    def stats(self) -> dict[str, object]:
        return {
            "state": self.state,
            "endpoint": self.endpoint,
            "connected_since": self.connected_since,
            "published": self.published,
            "acked": self.acked,
            "in_flight": len(self._inflight),
            "connects": self.connects,
            "commands": self.commands,
            "last_error": self.last_error,
            "unrecorded_acks": len(self._unrecorded),
            "ack_error": self.ack_error,
        }

    # -- connection ----------------------------------------------------------------------

    def _client(self) -> mqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,  # MQTT 5 has none (paho refuses one)
        )
        client.connect_timeout = CONNECT_TIMEOUT_S
        if cfg.tls is not None:
            tls = cfg.tls
            client.tls_set(
                ca_certs=str(tls.ca) if tls.ca else None,
                certfile=str(tls.cert) if tls.cert else None,
                keyfile=str(tls.key) if tls.key else None,
            )
            client.tls_insecure_set(tls.insecure)
        if cfg.username is not None:
            password = cfg.password_file.read_text().strip() if cfg.password_file else None
            client.username_pw_set(cfg.username, password)
        client.will_set(
            self.topics.status,
            payloads.status(self.identity, "offline", wall_ms(), reason="connection lost"),
            qos=1,
            retain=True,
        )
        client.max_inflight_messages_set(cfg.inflight + 2)  # + the status messages
        return client

    async def _connect(self, endpoint: Endpoint) -> mqtt.Client:
        loop = self._loop
        assert loop is not None
        try:
            client = self._client()
        except (OSError, ValueError) as exc:  # unreadable certificate or password file
            raise ConnectFailed(str(exc)) from exc
        connack: asyncio.Future[tuple[mqtt.ReasonCode, int]] = loop.create_future()
        outbox = self.store.outbox

        def on_connect(_c, _u, _flags, reason, _props) -> None:
            # Here, on paho's thread as the CONNACK arrives: rows committed up to now are
            # historical on this connection, later ones live.
            loop.call_soon_threadsafe(_settle, connack, (reason, outbox.committed_id()))

        def on_disconnect(_c, _u, _flags, reason, _props) -> None:
            loop.call_soon_threadsafe(self._on_lost, str(reason))

        def on_publish(_c, _u, mid, reason, _props) -> None:
            self._acks.append((mid, reason.is_failure))
            loop.call_soon_threadsafe(self._wake.set)

        def on_subscribe(_c, _u, _mid, reasons: list[mqtt.ReasonCode], _props) -> None:
            loop.call_soon_threadsafe(self._on_suback, any(r.is_failure for r in reasons))

        def on_message(_c, _u, message: mqtt.MQTTMessage) -> None:
            # paho types the payload bytes | bytearray; it hands bytes (bytes() is then
            # the object itself), and commands are taken as bytes.
            loop.call_soon_threadsafe(
                self._deliver, message.topic, bytes(message.payload), bool(message.retain)
            )

        client.on_connect, client.on_disconnect, client.on_publish = (
            on_connect,
            on_disconnect,
            on_publish,
        )
        client.on_message, client.on_subscribe = on_message, on_subscribe
        try:
            await asyncio.wait_for(
                asyncio.to_thread(
                    client.connect, endpoint.host, endpoint.port, int(self.cfg.keepalive)
                ),
                CONNECT_TIMEOUT_S + 1,
            )
            client.loop_start()
            reason, self._boundary = await self._unless_stopped(connack, CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            await self._disconnect(client)
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        if reason.is_failure:
            await self._disconnect(client)
            raise ConnectFailed(f"broker refused: {reason}")
        _no_delay(client)
        return client

    async def _unless_stopped(self, future: asyncio.Future[_T], timeout: float) -> _T:
        """The result of `future`; TimeoutError after `timeout`, or at once when asked to
        stop: a broker that never answers must not hold up the agent's stop."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        waiting: set[asyncio.Future[_T] | asyncio.Task[bool]] = {future, stopping}
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if future.done():
            return future.result()
        raise TimeoutError("stopping" if self._stopping.is_set() else "no CONNACK in time")

    async def _disconnect(self, client: mqtt.Client) -> None:
        def close() -> None:
            client.disconnect()  # also stops paho's own reconnect attempts
            client.loop_stop()

        await asyncio.to_thread(close)

    def _on_suback(self, refused: bool) -> None:
        if not refused:
            self.commands = "subscribed"
            return
        # Telemetry still flows, so keep the session; but the platform must hear why its
        # commands go unanswered, and the technician sees it in status.
        self.commands = "refused"
        self.last_error = (
            f"broker refused the subscription to {self.topics.command} (check the broker ACL)"
        )
        if self._events is None:
            log.error("commands_refused", reason=self.last_error)
        else:
            self._events.emit(
                "commands_refused", level="error", topic=self.topics.command, endpoint=self.endpoint
            )

    def _on_lost(self, reason: str) -> None:
        self._connected = False
        self._lost_reason = reason
        self._wake.set()

    # -- publishing ----------------------------------------------------------------------

    async def _session(self, client: mqtt.Client) -> None:
        self._connected, self._lost_reason = True, None
        self.connects += 1
        self.state, self.connected_since = "connected", wall_ms()
        log.info("uplink connected", endpoint=self.endpoint)
        if self._on_command is not None:
            # Before `online`: the broker handles one connection's packets in order, so a
            # command the platform sends once it sees `online` finds the subscription.
            self._subscribe_commands(client)
        self._say_online(client)
        await self.store.call(self.store.outbox.mark_boundary, self._boundary)
        self._wake.set()
        idle = False
        while True:
            if self._stop_deadline is not None:
                remaining = self._stop_deadline - time.monotonic()
                if remaining <= 0 or (idle and not self._inflight):
                    await self._say_offline(client, max(0.0, remaining))
                    return
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    continue
            else:
                await self._wake.wait()
            self._wake.clear()
            if not self._connected:
                return
            if self._announce:
                self._say_online(client)
            due = self._acks_due(self._take_acks())
            free = self.cfg.inflight - len(self._inflight)
            stopping = self._stop_deadline is not None
            leased, failed = await self.store.call(
                _exchange, self.store.outbox, due, free, self._reserve, stopping
            )
            self._after_acks(due, failed)
            idle = not leased
            if not self._publish(client, leased):
                return

    def _subscribe_commands(self, client: mqtt.Client) -> None:
        """MQTT 5: retain-as-published, so that a retained command forwarded live keeps its
        flag and is refused like the copy replayed at subscription. MQTT 3.1.1 has no such
        option: the broker clears the flag on live delivery (§3.3.1.3), so only the replayed
        copy can be told apart (docs/mqtt-api.md)."""
        if self.cfg.protocol == "5":
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            client.subscribe(self.topics.command, options=options)
        else:
            client.subscribe(self.topics.command, qos=1)

    def _deliver(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic != self.topics.command or self._on_command is None:
            self.ignored_messages += 1  # only the configured command topic is obeyed
            log.warning("message on an unexpected topic ignored", topic=topic)
            return
        self._on_command(payload, retained)

    def _take_acks(self) -> list[int]:
        acked: list[int] = []
        while self._acks:
            mid, failed = self._acks.popleft()
            row_id = self._inflight.pop(mid, None)
            if row_id is None:
                continue  # a status message
            if failed:
                # The broker refused it (MQTT 5, e.g. not authorised). Keep the row and end
                # the session: reconnecting with backoff beats hammering a refusal.
                self._on_lost("broker rejected a publish (check the broker ACL)")
                continue
            acked.append(row_id)
        self.acked += len(acked)
        return acked

    def _acks_due(self, acked: list[int]) -> list[int]:
        """The acknowledgements to record now: the new ones and those the outbox refused
        before, but not sooner than ACK_RETRY_S after a refusal."""
        self._unrecorded += acked
        if not self._unrecorded or time.monotonic() < self._ack_retry_at:
            return []
        due, self._unrecorded = self._unrecorded, []
        return due

    def _after_acks(self, due: list[int], failed: str | None) -> None:
        if failed is None:
            if due and self.ack_error is not None:
                log.info("acknowledgements recorded again", after_error=self.ack_error)
                self.ack_error = None
            return
        # Keep them (a requeue after a disconnect does not matter: recording an ack of a
        # row that is ready again is harmless) and try again soon; the session goes on.
        self._unrecorded[:0] = due
        self._ack_retry_at = time.monotonic() + ACK_RETRY_S
        assert self._loop is not None
        self._loop.call_later(ACK_RETRY_S, self._wake.set)
        if self.ack_error is None:
            log.error("cannot record acknowledgements; publishing goes on, retrying",
                      rows=len(self._unrecorded), error=failed)  # fmt: skip
        self.ack_error = failed

    def _publish(self, client: mqtt.Client, leased: Iterable[tuple[Row, Lane]]) -> bool:
        for row, lane in leased:
            # BACKLOG: telemetry committed before the CONNACK, or backfill. The id test
            # applies the same rule to events, alarms and command results.
            historical = lane is Lane.BACKLOG or row.id <= self._boundary
            topic, body = payloads.render(row, self.topics, self.identity, historical)
            info = client.publish(topic, body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._on_lost(f"publish failed: {mqtt.error_string(info.rc)}")
                return False
            self._inflight[info.mid] = row.id
            self.published += 1
        return True

    def announce(self, config_hash: str) -> None:
        """Another configuration runs on this connection: the retained `online` status says
        so (at once if connected, else when the next connection is made)."""
        self._online = {**self._online, "config_hash": config_hash}
        self._announce = True
        self._wake.set()

    def _say_online(self, client: mqtt.Client) -> None:
        self._announce = False
        client.publish(
            self.topics.status,
            payloads.status(self.identity, "online", wall_ms(), **self._online),
            qos=1,
            retain=True,
        )

    async def _say_offline(self, client: mqtt.Client, timeout: float) -> None:
        """A clean shutdown is announced (the Last Will only covers unclean ones)."""
        info = client.publish(
            self.topics.status,
            payloads.status(self.identity, "offline", wall_ms(), reason="shutdown"),
            qos=1,
            retain=True,
        )
        wait = max(timeout, 1.0)
        # Best effort: the broker may already be gone (RuntimeError/ValueError from paho).
        with contextlib.suppress(TimeoutError, RuntimeError, ValueError):
            await asyncio.wait_for(asyncio.to_thread(info.wait_for_publish, wait), wait + 0.5)
        acked, self._unrecorded = self._unrecorded + self._take_acks(), []
        if acked:
            try:
                await self.store.call(self.store.outbox.ack, acked)
            except StoreError as exc:  # those rows are simply published again next time
                log.error("acknowledgements not recorded at stop", rows=len(acked), error=str(exc))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _note_error(self, message: str, *, first: bool) -> None:
        self.last_error = message
        (log.warning if first else log.info)("uplink", error=message)


def _no_delay(client: mqtt.Client) -> None:
    """Small messages go out at once (a command's reply waits for nothing): without
    TCP_NODELAY, Nagle's algorithm and the peer's delayed ACK add up to 40 ms each."""
    sock = client.socket()  # a TCP or TLS socket (websockets are not used)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _settle(future: asyncio.Future, value: object) -> None:
    if not future.done():
        future.set_result(value)
