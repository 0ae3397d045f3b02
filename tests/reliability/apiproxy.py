"""A TCP proxy on loopback in front of the API server, one per agent, that a test can cut.

`blackhole()` is a network partition: bytes stop flowing both ways and new connections are
accepted but go nowhere (the client sees hangs, not errors). `reset()` drops every open
connection at once (watch streams break, as when a load balancer restarts). `restore()` ends a
partition; the connections it held are reset so clients reconnect."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


def _rst(sock: socket.socket) -> None:
    """Abort the connection: the peer sees a reset. (A plain close() from another thread would
    wait for the thread blocked in recv() on it; shutdown() wakes that thread first.)"""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self._target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._held: set[socket.socket] = set()
        self._closed = False
        self.resets = 0
        threading.Thread(target=self._accept, name=f"proxy:{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                with self._lock:
                    self._held.add(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _rst(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._open.wait()
                if src not in self._conns:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _rst(src)
            _rst(dst)

    def blackhole(self) -> None:
        self._open.clear()

    def restore(self) -> None:
        with self._lock:
            stale = list(self._conns) + list(self._held)
            self._conns.clear()
            self._held.clear()
        self._open.set()
        for sock in stale:
            _rst(sock)

    def reset(self) -> int:
        """Drop every open connection; the number dropped."""
        with self._lock:
            socks = list(self._conns)
            self._conns.clear()
        for sock in socks:
            _rst(sock)
        self.resets += 1
        return len(socks) // 2

    def close(self) -> None:
        self._closed = True
        self.restore()
        with contextlib.suppress(OSError):
            self._listener.close()
