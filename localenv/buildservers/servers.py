"""Starts and stops the servers image builds talk to, each a real implementation on one address:

| server | what | implementation |
| --- | --- | --- |
| ``registry`` | OCI distribution registry (optionally with htpasswd basic auth) | CNCF distribution (Go) |
| ``s3`` | S3, STS, ECR APIs | moto[server] (PyPI) |
| ``gcs`` | Google Cloud Storage JSON/XML API | fake-gcs-server (Go) |
| ``azure`` | Azure blob (HTTPS with OAuth ``basic`` when asked) | Azurite (npm) |

Each server runs as a child process whose command line names its state directory (so
``stop`` only signals what it started), logs into ``<state>/logs/<name>.log`` and listens on
``host`` (loopback by default; the address pods reach when one is given).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
import sys
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localenv import cluster, pki, tools
from localenv.buildservers import install

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented well-known development key for devstoreaccount1.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MOTO_MAIN = "import sys; from moto.server import main; main(sys.argv[2:])"


class ServerError(RuntimeError):
    """A server did not start; the message names it and its log."""


@dataclass
class Server:
    name: str
    pid: int
    url: str  # base URL clients use
    host: str
    port: int
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildServers:
    """The running servers of one state directory."""

    state_dir: Path
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.state_dir / "buildservers.json"

    def save(self) -> None:
        self.path.write_text(json.dumps({n: asdict(s) for n, s in self.servers.items()}, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> BuildServers:
        path = state_dir / "buildservers.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        return cls(state_dir, {n: Server(**s) for n, s in data.items()})

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]


def _ready(check: Callable[[], bool], name: str, pid: int, state_dir: Path, timeout: float) -> None:
    try:
        cluster._wait(f"the {name} server", check, timeout, state_dir, {name: pid})
    except cluster.LocalenvError as exc:
        raise ServerError(str(exc)) from None


def _http_status(url: str, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt  # test dependency: the registry's htpasswd accepts bcrypt only

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"


def start_registry(state_dir: Path, host: str, port: int, *, users: dict[str, str] | None = None,
                   tie_to_parent: bool = True, name: str = "registry") -> Server:
    """The distribution registry on http://host:port, filesystem storage under the state dir."""
    data = state_dir / name
    data.mkdir(parents=True, exist_ok=True)
    auth = ""
    if users:
        (data / "htpasswd").write_text("".join(htpasswd_line(u, p) + "\n" for u, p in users.items()))
        auth = f"auth:\n  htpasswd:\n    realm: localenv\n    path: {data / 'htpasswd'}\n"
    config = data / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}:{port}\n  secret: {secrets.token_hex(16)}\n" + auth
    )
    env = dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_SDK_DISABLED="true")
    pid = cluster._spawn(name, [str(tools.binary("registry")), "serve", str(config)], state_dir, tie_to_parent,
                         env=env)
    url = f"http://{host}:{port}"
    _ready(lambda: _http_status(f"{url}/v2/") in (200, 401), name, pid, state_dir, 60)
    return Server(name, pid, url, host, port, {"users": ",".join(users or {})})


def start_s3(state_dir: Path, host: str, port: int, *, tie_to_parent: bool = True) -> Server:
    """moto's server (S3, STS, ECR, ...) on http://host:port."""
    python = install.moto_python()
    env = dict(os.environ, MOTO_ALLOW_NONEXISTENT_REGION="true")
    pid = cluster._spawn("s3", [str(python), "-c", MOTO_MAIN, str(state_dir), "-H", host, "-p", str(port)],
                         state_dir, tie_to_parent, env=env)
    url = f"http://{host}:{port}"
    _ready(lambda: _http_status(f"{url}/moto-api/") == 200, "s3", pid, state_dir, 120)
    return Server("s3", pid, url, host, port)


def start_gcs(state_dir: Path, host: str, port: int, *, tie_to_parent: bool = True) -> Server:
    """fake-gcs-server on http://host:port (clients: STORAGE_EMULATOR_HOST)."""
    root = state_dir / "gcs"
    root.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    args = [str(tools.binary("fake-gcs-server")), "-scheme", "http", "-host", host, "-port", str(port),
            "-backend", "filesystem", "-filesystem-root", str(root), "-public-host", f"{host}:{port}",
            "-external-url", url, "-log-level", "warn"]
    pid = cluster._spawn("gcs", args, state_dir, tie_to_parent)
    _ready(lambda: _http_status(f"{url}/storage/v1/b") == 200, "gcs", pid, state_dir, 60)
    return Server("gcs", pid, url, host, port)


def start_azure(state_dir: Path, host: str, port: int, *, https: bool = False,
                tie_to_parent: bool = True) -> Server:
    """Azurite's blob service; with ``https`` a fresh CA (``extra['ca']``) and OAuth ``basic``."""
    main = install.azurite_main()
    root = state_dir / "azurite"
    root.mkdir(parents=True, exist_ok=True)
    args = ["node", str(main), "--blobHost", host, "--blobPort", str(port), "--location", str(root),
            "--skipApiVersionCheck", "--loose", "--disableTelemetry"]
    extra: dict[str, str] = {"account": AZURITE_ACCOUNT, "key": AZURITE_KEY}
    context = None
    if https:
        ca, cert = pki.server_certificate(root / "tls", "azurite", names=("localhost",), ips=(host,))
        args += ["--cert", str(cert.cert), "--key", str(cert.key), "--oauth", "basic"]
        extra["ca"] = str(ca.cert)
        context = ssl.create_default_context(cafile=str(ca.cert))
    pid = cluster._spawn("azure", args, state_dir, tie_to_parent)
    scheme = "https" if https else "http"
    url = f"{scheme}://{host}:{port}/{AZURITE_ACCOUNT}"
    _ready(lambda: _http_status(f"{url}?comp=list", context) in (200, 400, 401, 403), "azure", pid, state_dir, 60)
    return Server("azure", pid, url, host, port, extra)


STARTERS = {"registry": start_registry, "s3": start_s3, "gcs": start_gcs, "azure": start_azure}


def up(state_dir: Path, names: Iterable[str] = ("registry", "s3", "gcs", "azure"), host: str = "127.0.0.1",
       tie_to_parent: bool = True, **options: dict) -> BuildServers:
    """Start the named servers (free ports on *host*); ``options[name]`` are that starter's keywords."""
    state_dir.mkdir(parents=True, exist_ok=True)
    names = list(names)
    ports = cluster.free_ports(names, host)
    running = BuildServers.load(state_dir)
    try:
        for name in names:
            running.servers[name] = STARTERS[name](state_dir, host, ports[name], tie_to_parent=tie_to_parent,
                                                   **options.get(name, {}))
            running.save()
    except BaseException:
        down(state_dir)
        raise
    return running


def down(state_dir: Path) -> list[str]:
    """Stop the servers started for *state_dir* (only PIDs whose command line names it)."""
    running = BuildServers.load(state_dir)
    stopped = cluster.stop_pids({n: s.pid for n, s in running.servers.items()}, state_dir, grace=5.0)
    with contextlib.suppress(FileNotFoundError):
        running.path.unlink()
    return stopped


if __name__ == "__main__":  # pragma: no cover - manual use: python -m localenv.buildservers.servers DIR
    servers = up(Path(sys.argv[1]), tie_to_parent=False)
    print(json.dumps({n: s.url for n, s in servers.servers.items()}, indent=2))
