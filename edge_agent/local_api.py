"""The technician's local socket: JSON lines over a Unix socket (mode 0660, no network port).

Each request is one JSON object with a "cmd" key; each answer one JSON object with "ok".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_agent import logs

log = logs.get("local")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024


class AgentAlreadyRunning(RuntimeError):
    pass


class LocalServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers

    async def run(self) -> None:
        self._claim_path()
        server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o660)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _claim_path(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink()  # left behind by an agent that died
        else:
            raise AgentAlreadyRunning(f"another agent is listening on {self.path}")
        finally:
            probe.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = _peer_user(writer.get_extra_info("socket"))
            while line := await reader.readline():
                answer = await self._answer(line, peer)
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes, peer: str) -> dict[str, Any]:
        try:
            request = json.loads(line)
            handler = self.handlers[request["cmd"]]
            request["peer"] = peer  # who asks, from the kernel: never from the request
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "bad_request", "known": sorted(self.handlers)}
        try:
            return {"ok": True, **(await handler(request))}
        except Exception as exc:
            log.exception("local request failed", cmd=request.get("cmd"))
            return {"ok": False, "error": "internal", "message": str(exc)}


def _peer_user(sock: socket.socket | None) -> str:
    """The unix user at the other end (SO_PEERCRED): the technician's name in the audit."""
    if sock is None:
        return "unknown"
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "unknown"
    _pid, uid, _gid = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def request(path: Path, cmd: str, timeout: float = 2.0, **args: Any) -> dict[str, Any]:
    """Client side (blocking, for the CLI). Raises OSError when no agent listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
