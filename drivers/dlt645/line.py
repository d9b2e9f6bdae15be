"""One serial port for the event loop: pyserial opens and sets it up, the loop's reader
callback collects what arrives (no thread, no blocking read)."""

from __future__ import annotations

import asyncio
import termios
import time

import serial

from drivers.base import SerialSettings


class SerialLine:
    def __init__(self, connection: SerialSettings) -> None:
        self.connection = connection
        self._port: serial.Serial | None = None
        self._received = bytearray()
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """OSError (serial.SerialException is one) if the port cannot be opened."""
        if self._port is not None:
            return
        c = self.connection
        try:
            port = serial.Serial(
                c.port,
                baudrate=c.baudrate,
                parity=c.parity,
                stopbits=c.stopbits,
                bytesize=c.bytesize,
                timeout=0,  # reads never block: the loop tells us when bytes are there
                write_timeout=1.0,  # a frame is ~20 bytes: longer means the line is stuck
            )
        except termios.error as exc:  # pyserial lets the port's refusal of settings through
            raise OSError(f"{c.port}: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(port.fileno(), self._on_readable)
        self._port = port

    def close(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(port.fileno())
        port.close()

    def _on_readable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            chunk = port.read(4096)
        except (OSError, serial.SerialException):
            self.close()  # the other end went away: the next request reopens
            self._arrived.set()
            return
        if chunk:
            self._received += chunk
            self._arrived.set()

    def discard_input(self) -> None:
        """Forget what came before a request (a late answer to the last one)."""
        self._received.clear()
        self._arrived.clear()

    def send(self, frame: bytes) -> None:
        if self._port is None:
            raise OSError("serial port closed")
        try:
            self._port.write(frame)
        except serial.SerialTimeoutException as exc:
            raise OSError(f"write timed out: {exc}") from exc

    @property
    def received(self) -> bytearray:
        """Bytes received since the last `discard_input` (the caller may consume them)."""
        return self._received

    async def wait(self, deadline: float) -> bool:
        """Until more bytes arrive (True) or `deadline` (time.monotonic) passes (False)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), remaining)
        except TimeoutError:
            return False
        if self._port is None:
            raise OSError("serial port closed")
        return True
