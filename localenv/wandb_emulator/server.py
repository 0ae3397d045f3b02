"""The HTTP server: GraphQL, file_stream, file uploads, the telemetry probe and the admin API.

A stdlib `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive; each response is written
in one piece (and with TCP_NODELAY) so that small request/response exchanges stay fast.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from localenv.wandb_emulator.admin import AdminApi
from localenv.wandb_emulator.artifact_resolvers import BLOB_ROUTE, UPLOAD_ROUTE
from localenv.wandb_emulator.faults import FaultDecision, FaultInjector
from localenv.wandb_emulator.graphql_api import GraphQLEndpoint
from localenv.wandb_emulator.operations import client_kind
from localenv.wandb_emulator.request_log import RequestLog
from localenv.wandb_emulator.resolvers import RequestContext
from localenv.wandb_emulator.state import EmulatorState, User

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


class Emulator:
    """Everything one running emulator owns; independent of the HTTP plumbing."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.graphql = GraphQLEndpoint()
        self.log = RequestLog()
        self.faults = FaultInjector()
        self.admin = AdminApi(state, self.log, self.faults)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    # --- plumbing ------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        reason = _REASONS.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "\r\n"
        ).encode()
        self.wfile.write(head + payload)

    def _send_json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode())

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _user(self) -> User | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user_pass = base64.b64decode(header[6:]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        _, _, key = user_pass.partition(":")
        return self.server.emulator.state.user_for_key(key)

    def _apply_fault(self, operation: str) -> bool:
        """Apply injected faults; True when the request has been answered (or dropped)."""
        decision: FaultDecision = self.server.emulator.faults.decide(operation)
        self._lose_response = decision.lose_response
        if decision.delay:
            time.sleep(decision.delay)
        if decision.drop:
            self._drop()
            return True
        if decision.status is not None:
            self._send_json(decision.status, {"errors": [{"message": f"injected HTTP {decision.status}"}]})
            return True
        if decision.graphql_error is not None:
            self._send_json(200, {"data": None, "errors": [{"message": decision.graphql_error}]})
            return True
        return False

    def _base_url(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    # --- routes --------------------------------------------------------------------------

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path == "/graphql":
            self._graphql(body)
        elif url.path.startswith("/files/") and url.path.endswith("/file_stream"):
            self._file_stream(url.path, body)
        elif url.path.startswith("/_emulator/"):
            self._admin("POST", url.path, url.query, body)
        else:
            self._send_json(404, {"error": "not found"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith(BLOB_ROUTE) or url.path.startswith("/artifacts/"):
            self._artifact_blob(url.path)
        elif url.path.startswith("/_emulator/uploads/"):
            data = self.server.emulator.state.get_file(unquote(url.path[len("/_emulator/uploads/") :]))
            if data is None:
                self._send_json(404, {"error": "no such upload"})
            else:
                self._send(200, data, "application/octet-stream")
        elif url.path.startswith("/_emulator/"):
            self._admin("GET", url.path, url.query, b"")
        else:
            self._send_json(404, {"error": "not found"})

    def do_PUT(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path.startswith(UPLOAD_ROUTE):
            if self._apply_fault("artifact_upload"):
                return
            state = self.server.emulator.state
            with state.lock:
                stored = state.artifacts.upload(unquote(url.path[len(UPLOAD_ROUTE):]), body)
            self.server.emulator.log.record("artifact_upload", status=200 if stored else 404,
                                            client=client_kind(self.headers.get("User-Agent", "")))
            self._send(200, b"") if stored else self._send_json(404, {"error": "no such upload"})
        elif url.path.startswith("/_emulator/uploads/"):
            if self._apply_fault("upload"):
                return
            self.server.emulator.state.put_file(unquote(url.path[len("/_emulator/uploads/") :]), body)
            self.server.emulator.log.record("upload", status=200, client=client_kind(self.headers.get("User-Agent", "")))
            self._send(200, b"")
        elif url.path.startswith("/_emulator/"):
            self._admin("PUT", url.path, url.query, body)
        else:
            self._send_json(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/_emulator/"):
            self._admin("DELETE", url.path, url.query, self._body())
        else:
            self._send_json(404, {"error": "not found"})

    def _artifact_blob(self, path: str) -> None:
        """A file behind a direct URL (no auth, like a signed URL), or by the V1 storage layout
        path ``/artifacts/<entity>/<hex md5>`` (which needs the API key)."""
        if self._apply_fault("artifact_download"):
            return
        state = self.server.emulator.state
        if path.startswith(BLOB_ROUTE):
            key = unquote(path[len(BLOB_ROUTE):])
        else:
            parts = [unquote(p) for p in path.split("/")]
            if len(parts) != 4 or self._user() is None:
                self._send_json(404 if len(parts) != 4 else 401, {"error": "not found"})
                return
            with state.lock:
                key = next((k for k in state.artifacts.blobs if k.startswith(parts[2] + "/")
                            and k.endswith("/" + parts[3])), "")
        with state.lock:
            data = state.artifacts.blobs.get(key)
        client = client_kind(self.headers.get("User-Agent", ""))
        self.server.emulator.log.record("artifact_download", status=200 if data is not None else 404, client=client)
        if data is None:
            self._send_json(404, {"error": "no such file"})
        else:
            self._send(200, data, "application/octet-stream")

    def _admin(self, method: str, path: str, query: str, body: bytes) -> None:
        try:
            doc = json.loads(body) if body else {}
        except json.JSONDecodeError:
            self._send_json(400, {"error": "request body is not JSON"})
            return
        status, result = self.server.emulator.admin.handle(method, path, dict(parse_qsl(query)), doc)
        self._send_json(status, result)

    def _graphql(self, raw: bytes) -> None:
        emulator = self.server.emulator
        client = client_kind(self.headers.get("User-Agent", ""))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send_json(400, {"errors": [{"message": "request body is not JSON"}]})
            return
        if not isinstance(body, dict):
            self._send_json(400, {"errors": [{"message": "request body must be a JSON object"}]})
            return
        operation = emulator.graphql.operation_name(body)
        user = self._user()
        if user is None:
            emulator.log.record(operation, status=401, client=client, error="unauthorized")
            self._send_json(401, {"errors": [{"message": "unauthorized: HTTP Basic auth api:<API key> required"}]})
            return
        if self._apply_fault(operation):
            emulator.log.record(operation, status=0, client=client, error="injected fault")
            return
        context = RequestContext(state=emulator.state, user=user, base_url=self._base_url())
        try:
            outcome = emulator.graphql.run(body, context)
        except Exception as exc:  # a defect here must still be answered in-band, never as a 5xx
            traceback.print_exc(file=sys.stderr)
            emulator.log.record(operation, status=200, client=client, error=f"internal error: {exc!r}")
            self._send_json(200, {"data": None, "errors": [{"message": f"emulator internal error: {exc!r}"}]})
            return
        errors = outcome.body.get("errors")
        lost = getattr(self, "_lose_response", False)
        emulator.log.record(
            outcome.operation,
            status=0 if lost else 200,
            client=client,
            summary=outcome.summary,
            variables=body.get("variables") if isinstance(body.get("variables"), dict) else None,
            error="injected fault: response lost" if lost else
            ("; ".join(str(e.get("message")) for e in errors) if errors else None),
        )
        if lost:  # processed, but the answer never reaches the client
            self._drop()
            return
        self._send_json(200, outcome.body)

    def _file_stream(self, path: str, raw: bytes) -> None:
        emulator = self.server.emulator
        parts = [unquote(p) for p in path.split("/")]
        # /files/<entity>/<project>/<run>/file_stream
        if len(parts) != 6:
            self._send_json(404, {"error": "not found"})
            return
        if self._user() is None:
            self._send_json(401, {"error": "unauthorized"})
            return
        if self._apply_fault("file_stream"):
            return
        entity, project, run_name = parts[2], parts[3], parts[4]
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {}
        if isinstance(body, dict) and body.get("complete"):
            emulator.state.finish_run(entity, project, run_name, int(body.get("exitcode") or 0))
        emulator.log.record("file_stream", status=200, client=client_kind(self.headers.get("User-Agent", "")))
        run = emulator.state.get_run(entity, project, run_name)
        self._send_json(200, {"stopped": True} if run is not None and run.stopped else {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class EmulatorServer:
    """A running emulator: `start()` serves on a background thread, `stop()` shuts it down."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._server = _Server((host, port), emulator)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="wandb-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
