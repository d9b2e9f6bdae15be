"""Prometheus text exposition of the agent's status, on a loopback-only port (off by
default: `metrics.prometheus_port`). The same figures are in `edge-agent status --json`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from edge_agent import logs

log = logs.get("metrics")

StatusSource = Callable[[], Awaitable[dict[str, Any]]]
MAX_REQUEST_BYTES = 8192


def render(status: dict[str, Any]) -> str:
    """The status as Prometheus text format 0.0.4."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
        out.append(f"# HELP edge_agent_{name} {help_}")
        out.append(f"# TYPE edge_agent_{name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            out.append(f"edge_agent_{name}{{{text}}} {_number(value)}" if text
                       else f"edge_agent_{name} {_number(value)}")  # fmt: skip

    devices = status["devices"]
    metric("device_up", "gauge", "1 while the device answers",
           [({"device": d}, h["up"]) for d, h in devices.items()])  # fmt: skip
    metric("device_rtt_seconds", "gauge", "duration of the last poll",
           [({"device": d}, h["rtt_ms"] / 1000) for d, h in devices.items()])  # fmt: skip
    metric("device_polls_total", "counter", "polls since start",
           [({"device": d}, h["polls"]) for d, h in devices.items()])  # fmt: skip
    metric("device_failures_total", "counter", "polls that failed as a whole",
           [({"device": d}, h["failures"]) for d, h in devices.items()])  # fmt: skip
    metric("device_bad_points", "gauge", "points of the last poll that were not good",
           [({"device": d}, h["bad_points"]) for d, h in devices.items()])  # fmt: skip
    metric("device_library_records_suppressed_total", "counter",
           "library log records about the device counted, not written, while it was down",
           [({"device": d, "library": lib}, n) for d, h in devices.items()
            for lib, n in sorted(h.get("library_records_suppressed", {}).items())])  # fmt: skip
    store = status["store"]
    oldest = store.get("oldest_ts")
    metric("backlog_points", "gauge", "points waiting to be published",
           [({}, store["backlog_points"])])  # fmt: skip
    metric("backlog_age_seconds", "gauge", "age of the oldest unpublished row",
           [({}, time.time() - oldest / 1000 if oldest else 0)])  # fmt: skip
    metric("store_used_bytes", "gauge", "outbox size", [({}, store["used_bytes"])])
    metric("evicted_points_total", "counter", "unsent points deleted for the disk budget",
           [({}, store["evicted_points"])])  # fmt: skip
    uplink = status["uplink"]
    metric("uplink_connected", "gauge", "1 while connected to the broker",
           [({}, uplink["state"] == "connected")])  # fmt: skip
    metric("published_total", "counter", "messages published", [({}, uplink["published"])])
    commands = status.get("commands") or {}
    metric("commands_total", "counter", "commands by outcome",
           [({"stage": s}, commands.get(s, 0)) for s in ("done", "rejected", "failed",
                                                         "dropped")])  # fmt: skip
    alarms = status.get("alarms") or {}
    metric("alarms_active", "gauge", "active alarms by severity",
           [({"severity": s}, alarms.get(s, 0)) for s in ("critical", "major", "minor",
                                                          "warning")])  # fmt: skip
    loops = status.get("loops") or []
    metric("loop_step_seconds", "gauge", "duration of the last step of a control loop",
           [({"loop": lp["id"]}, (lp.get("step_us") or 0) / 1e6) for lp in loops])  # fmt: skip
    return "\n".join(out) + "\n"


def _number(value: float | bool) -> str:
    return str(int(value)) if isinstance(value, bool) else f"{value:g}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def serve(port: int, status: StatusSource) -> None:
    """HTTP on 127.0.0.1 only: GET /metrics. Anything else is 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            if line.split(" ")[:2] == ["GET", "/metrics"]:
                body, code = render(await status()).encode(), "200 OK"
            else:
                body, code = b"not found\n", "404 Not Found"
            writer.write(
                f"HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
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
