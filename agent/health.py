"""`/healthz`, `/readyz` and `/metrics` on one port, served by a minimal asyncio HTTP/1.1 server,
and the heartbeats that decide liveness.

Liveness says whether the process is stuck, not whether W&B or the API server is slow: every loop
beats at least once per `max_silence` seconds, and each loop's `max_silence` is longer than the
worst case of the calls it waits on (they are all bounded). A loop that is blocked past that,
or an event loop that cannot answer the probe at all, fails it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.metrics import Metrics


class Heartbeats:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._silence: dict[str, float] = {}

    def register(self, name: str, max_silence: float) -> None:
        self._silence[name] = max_silence
        self._last[name] = time.monotonic()

    def unregister(self, name: str) -> None:
        self._silence.pop(name, None)
        self._last.pop(name, None)

    def beat(self, name: str) -> None:
        if name in self._silence:
            self._last[name] = time.monotonic()

    def stalled(self) -> list[str]:
        now = time.monotonic()
        return sorted(n for n, limit in self._silence.items() if now - self._last[n] > limit)

    def ok(self) -> bool:
        return not self.stalled()


class HealthServer:
    def __init__(self, metrics: Metrics, *, live: Callable[[], bool], ready: Callable[[], bool],
                 host: str = "0.0.0.0", port: int = 8080) -> None:
        self._metrics = metrics
        self._live = live
        self._ready = ready
        self._host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while True:  # drain headers
                line = await asyncio.wait_for(reader.readline(), 5)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else "/"
            if path == "/healthz":
                ok = self._live()
                status, body, ctype = (200 if ok else 503), ("ok\n" if ok else "unhealthy\n"), "text/plain"
            elif path == "/readyz":
                ok = self._ready()
                status, body, ctype = (200 if ok else 503), ("ready\n" if ok else "not ready\n"), "text/plain"
            elif path == "/metrics":
                status, body, ctype = 200, self._metrics.render(), "text/plain; version=0.0.4"
            else:
                status, body, ctype = 404, "not found\n", "text/plain"
            data = body.encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
