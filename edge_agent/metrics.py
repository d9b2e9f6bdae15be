"""Prometheus text exposition of the agent's status, on a loopback-only port (off by
default: `metrics.prometheus_port`). The same figures are in `edge-agent status --json`.

The text is prometheus_client's (numbers exact, labels escaped, HELP and TYPE lines); the
HTTP side is a few lines of asyncio on the agent's own loop, so that a scrape reads the
status where it lives rather than from another thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from edge_agent import logs

log = logs.get("metrics")

StatusSource = Callable[[], Awaitable[dict[str, Any]]]
MAX_REQUEST_BYTES = 8192
Family = GaugeMetricFamily | CounterMetricFamily


def render(status: dict[str, Any]) -> str:
    """The status as Prometheus text format 0.0.4."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(status))
    return generate_latest(registry).decode()


class _Snapshot(Collector):
    """One status report as metric families (made afresh for every scrape)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        devices = status["devices"]

        def per_device(family: Family, key: str, scale: float = 1.0) -> Family:
            for device, health in devices.items():
                family.add_metric([device], float(health[key]) * scale)
            return family

        yield per_device(_gauge("device_up", "1 while the device answers", "device"), "up")
        yield per_device(
            _gauge("device_rtt_seconds", "duration of the last poll", "device"), "rtt_ms", 0.001
        )
        yield per_device(_counter("device_polls", "polls since start", "device"), "polls")
        yield per_device(
            _counter("device_failures", "polls that failed as a whole", "device"), "failures"
        )
        yield per_device(
            _gauge("device_bad_points", "points of the last poll that were not good", "device"),
            "bad_points",
        )
        suppressed = _counter(
            "device_library_records_suppressed",
            "library log records about the device counted, not written, while it was down",
            "device",
            "library",
        )
        for device, health in devices.items():
            for library, n in sorted(health.get("library_records_suppressed", {}).items()):
                suppressed.add_metric([device, library], n)
        yield suppressed
        store = status["store"]
        oldest = store.get("oldest_ts")
        yield _gauge("backlog_points", "points waiting to be published",
                     value=store["backlog_points"])  # fmt: skip
        yield _gauge("backlog_age_seconds", "age of the oldest unpublished row",
                     value=time.time() - oldest / 1000 if oldest else 0)  # fmt: skip
        yield _gauge("store_used_bytes", "outbox size", value=store["used_bytes"])
        yield _counter("evicted_points", "unsent points deleted for the disk budget",
                       value=store["evicted_points"])  # fmt: skip
        uplink = status["uplink"]
        yield _gauge("uplink_connected", "1 while connected to the broker",
                     value=uplink["state"] == "connected")  # fmt: skip
        yield _counter("published", "messages published", value=uplink["published"])
        commands = status.get("commands") or {}
        by_stage = _counter("commands", "commands by outcome", "stage")
        for stage in ("done", "rejected", "failed", "dropped"):
            by_stage.add_metric([stage], commands.get(stage, 0))
        yield by_stage
        alarms = status.get("alarms") or {}
        by_severity = _gauge("alarms_active", "active alarms by severity", "severity")
        for severity in ("critical", "major", "minor", "warning"):
            by_severity.add_metric([severity], alarms.get(severity, 0))
        yield by_severity
        steps = _gauge("loop_step_seconds", "duration of the last step of a control loop", "loop")
        for lp in status.get("loops") or []:
            steps.add_metric([lp["id"]], (lp.get("step_us") or 0) / 1e6)
        yield steps


def _gauge(name: str, help_: str, *labels: str, value: float | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"edge_agent_{name}", help_, labels=labels)
    if value is not None:
        family.add_metric([], float(value))
    return family


def _counter(
    name: str, help_: str, *labels: str, value: float | None = None
) -> CounterMetricFamily:
    """`name` without `_total`: the exposition adds it."""
    family = CounterMetricFamily(f"edge_agent_{name}", help_, labels=labels)
    if value is not None:
        family.add_metric([], float(value))
    return family


async def serve(port: int, status: StatusSource) -> None:
    """HTTP on 127.0.0.1 only: GET (or HEAD) /metrics; another path is 404, another
    method 405."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            words = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            method, target = [*words, "", ""][:2]
            allow = ""
            if target.split("?")[0] != "/metrics":
                body, code = b"not found\n", "404 Not Found"
            elif method in ("GET", "HEAD"):
                body, code = render(await status()).encode(), "200 OK"
            else:
                body, code, allow = b"only GET and HEAD\n", "405 Method Not Allowed", "GET, HEAD"
            head = (
                f"HTTP/1.1 {code}\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                + (f"Allow: {allow}\r\n" if allow else "")
                + "\r\n"
            )
            # HEAD: the headers GET would send, its length too, without the body.
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):  # fmt: skip
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=MAX_REQUEST_BYTES)
    log.info("prometheus metrics", url=f"http://127.0.0.1:{port}/metrics")
    async with server:
        await server.serve_forever()
