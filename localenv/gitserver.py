"""A git server on loopback for tests and the demo: the real `git http-backend` (smart HTTP,
protocol v0 and v2) behind a small threaded HTTPS server (its own CA, `ca_file`), with optional
HTTP basic auth per repository. HTTPS because the W&B SDK refuses plain-HTTP git remotes.

    with GitServer(root) as server:              # serves root/<name>.git
        repo = server.create_repo("public", {"train.py": "print(1)\\n"})
        repo.url, repo.commit
        server.require_auth("private", "user", "token")
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from localenv import pki

GIT = shutil.which("git") or "git"


@dataclass(frozen=True)
class Repo:
    name: str
    url: str
    commit: str
    path: Path


def _git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    base = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd or Path.cwd()), "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost",
            "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([GIT, *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._backend(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._backend(self.rfile.read(length) if length else b"")

    def _authorized(self, repo: str) -> bool:
        needed = self.server.auth.get(repo)
        if needed is None:
            return True
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            return base64.b64decode(header[6:]).decode() == needed
        except ValueError:
            return False

    def _backend(self, body: bytes) -> None:
        url = urlsplit(self.path)
        repo = url.path.lstrip("/").split("/", 1)[0].removesuffix(".git")
        self.server.requests.append(url.path)
        if not self._authorized(repo):
            payload = b"authentication required\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        env = {
            "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": url.path,
            "QUERY_STRING": url.query, "REQUEST_METHOD": self.command, "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.server.root), "PATH": os.environ.get("PATH", ""),
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "uploadpack.allowFilter", "GIT_CONFIG_VALUE_0": "true",
        }
        if self.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run([GIT, "http-backend"], input=body, env=env, capture_output=True, timeout=120,
                              check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.auth: dict[str, str] = {}
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that gave up the TLS handshake is not worth a traceback


class GitServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        ca, serving = pki.create_serving(root / ".tls", "localenv-git-server")
        self.ca_file = ca.cert
        self._server = _Server(root)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(serving.cert, serving.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    def start(self) -> GitServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def require_auth(self, repo: str, username: str, password: str) -> None:
        self._server.auth[repo] = f"{username}:{password}"

    def create_repo(self, name: str, files: dict[str, str | bytes], *, commits: int = 1) -> Repo:
        """A bare repo `<name>.git` whose last of ``commits`` commits holds ``files``."""
        if any(not Path(rel).parts or ".." in Path(rel).parts for rel in files):
            raise ValueError("file paths must stay inside the repository")
        bare = self.root / f"{name}.git"
        work = self.root / f".work-{name}"
        _git("init", "-q", "--bare", str(bare))
        _git("init", "-q", "-b", "main", str(work))
        for i in range(commits):
            for rel, content in files.items():
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                data = content.encode() if isinstance(content, str) else content
                target.write_bytes(data if i == commits - 1 else data + f"\n# draft {i}\n".encode())
                if rel.endswith(".sh"):
                    target.chmod(0o755)
            _git("add", "-A", cwd=work)
            _git("commit", "-q", "-m", f"commit {i}", cwd=work)
        _git("push", "-q", str(bare), "main", cwd=work)
        commit = _git("rev-parse", "HEAD", cwd=work)
        shutil.rmtree(work)
        return Repo(name=name, url=f"{self.url}/{name}.git", commit=commit, path=bare)
