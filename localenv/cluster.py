"""Run a local control plane as plain processes on 127.0.0.1.

``up`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake
nodes) — and the W&B emulator when its package is present — each supervised by PID in a
state directory, waits until the cluster can run pods, and records everything in
``state.json``. ``down`` stops exactly those PIDs and removes the directory.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from localenv import crds, kubeconfig, kwok, pki, tools

STATE_FILE = "state.json"
KUBECONFIG_NAME = "kubeconfig"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
ISSUER = "https://kubernetes.default.svc.cluster.local"
EMULATOR_MODULE = "localenv.wandb_emulator"
# Stop order: the reverse of start order, the emulator last.
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "wandb-emulator")

Log = Callable[[str], None]


class LocalenvError(RuntimeError):
    """A failure the user should read as one line (with a log path where there is one)."""


@dataclass
class State:
    state_dir: str
    server: str
    kubeconfig: str
    bin_dir: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    emulator_url: str | None = None
    emulator_api_key: str | None = None
    started_at: float = 0.0
    ready_seconds: float = 0.0
    real_node: bool = False  # a real kubelet node is attached (localenv.node)

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> State | None:
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def env(self) -> dict[str, str]:
        """Environment variables that point a shell at this localenv."""
        env = {"KUBECONFIG": self.kubeconfig, "LOCALENV_STATE_DIR": self.state_dir, "LOCALENV_BIN_DIR": self.bin_dir}
        if self.emulator_url:
            env["WANDB_BASE_URL"] = self.emulator_url
        if self.emulator_api_key:
            env["WANDB_API_KEY"] = self.emulator_api_key
        return env


def default_state_dir() -> Path:
    return tools.cache_root() / "localenv" / "state" / "default"


def free_ports(names: Sequence[str], host: str = "127.0.0.1") -> dict[str, int]:
    """Distinct free TCP ports on *host* (held open together while choosing)."""
    sockets = []
    try:
        ports = {}
        for name in names:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
            ports[name] = sock.getsockname()[1]
        return ports
    finally:
        for sock in sockets:
            sock.close()


# --- process supervision ---------------------------------------------------------------

def _die_with_parent() -> None:
    """preexec hook: the child gets SIGTERM when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _spawn(name: str, args: Sequence[str], state_dir: Path, tie_to_parent: bool, env: dict | None = None,
           pass_fds: Sequence[int] = ()) -> int:
    log_path = state_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            list(args), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=state_dir, start_new_session=True, close_fds=True, env=env, pass_fds=tuple(pass_fds),
            preexec_fn=_die_with_parent if tie_to_parent else None,
        )
    return proc.pid


def _proc_state(pid: int) -> str | None:
    """The one-letter state of *pid* from /proc, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_ours(pid: int, state_dir: Path) -> bool:
    """True if *pid* is alive and its command line mentions *state_dir* (guards PID reuse)."""
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return str(state_dir) in cmdline


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pids(pids: dict[str, int], state_dir: Path, grace: float = 10.0) -> list[str]:
    """Stop our PIDs: everything but etcd first, then etcd (so the API server never loses it)."""
    stopped = _stop_group({n: p for n, p in pids.items() if n != "etcd"}, state_dir, grace)
    return stopped + _stop_group({n: p for n, p in pids.items() if n == "etcd"}, state_dir, grace)


def _gone(pid: int) -> bool:
    """True once *pid* has exited (reaping it when it is our child)."""
    _reap(pid)
    return _proc_state(pid) in (None, "Z", "X")


def _stop_group(pids: dict[str, int], state_dir: Path, grace: float) -> list[str]:
    """SIGTERM each of our PIDs, SIGKILL what is left after *grace* seconds.

    Ownership is checked once, before any signal: an exiting process loses its command line
    before it disappears, so later checks only ask whether the PID is gone.
    """
    order = sorted(pids, key=lambda n: START_ORDER.index(n) if n in START_ORDER else -1, reverse=True)
    alive = [(name, pids[name]) for name in order if is_ours(pids[name], state_dir)]
    for _, pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not all(_gone(pid) for _, pid in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _, pid in alive:
        if is_ours(pid, state_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for _, pid in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [name for name, _ in alive]


def _log_tail(state_dir: Path, name: str, lines: int = 8) -> str:
    path = state_dir / "logs" / f"{name}.log"
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join("    " + ln[:300] for ln in text[-lines:])


# --- readiness --------------------------------------------------------------------------

def _wait(
    what: str, check: Callable[[], bool], timeout: float, state_dir: Path, watch: dict[str, int],
    interval: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for name, pid in watch.items():
            _reap(pid)
            if not is_ours(pid, state_dir):
                raise LocalenvError(
                    f"{name} exited while waiting for {what}; log {state_dir / 'logs' / (name + '.log')}:\n"
                    + _log_tail(state_dir, name)
                )
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise LocalenvError(f"timed out after {timeout:.0f} s waiting for {what} (logs in {state_dir / 'logs'})")
        time.sleep(interval)


def _http_ok(url: str, context: ssl.SSLContext | None = None, expect: str | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        body = resp.read().decode(errors="replace")
        return resp.status == 200 and (expect is None or expect in body)


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _client_context(p: pki.ClusterPKI) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(p.ca.cert))
    ctx.load_cert_chain(str(p.admin.cert), str(p.admin.key))
    return ctx


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- component command lines -------------------------------------------------------------

def _etcd_args(bin_dir: Path, state_dir: Path, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        str(bin_dir / "etcd"), "--name=localenv", f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=localenv={peer}", "--initial-cluster-state=new",
        "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=2147483648",
    ]


def _apiserver_args(bin_dir: Path, state_dir: Path, ports: dict[str, int], p: pki.ClusterPKI) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
        f"--cert-dir={state_dir / 'certs' / 'apiserver'}",
        f"--tls-cert-file={p.apiserver.cert}", f"--tls-private-key-file={p.apiserver.key}",
        f"--client-ca-file={p.ca.cert}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={p.service_account_pub}",
        f"--service-account-signing-key-file={p.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--requestheader-client-ca-file={p.ca.cert}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY_NAME}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={p.front_proxy.cert}",
        f"--proxy-client-key-file={p.front_proxy.key}",
        # For a real node's kubelet (logs, exec, port-forward); kwok nodes are never called.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={p.kubelet_client.cert}",
        f"--kubelet-client-key={p.kubelet_client.key}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--event-ttl=30m",
        "--v=1",
    ]


def _component_common(kcfg: Path, port: int, state_dir: Path, name: str) -> list[str]:
    return [
        f"--kubeconfig={kcfg}", f"--authentication-kubeconfig={kcfg}", f"--authorization-kubeconfig={kcfg}",
        "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={state_dir / 'certs' / name}",
        "--leader-elect=false", "--profiling=false", "--v=1",
    ]


def _controller_manager_args(bin_dir: Path, state_dir: Path, ports: dict[str, int], p: pki.ClusterPKI) -> list[str]:
    kcfg = state_dir / "components" / "controller-manager.kubeconfig"
    return [
        str(bin_dir / "kube-controller-manager"),
        *_component_common(kcfg, ports["controller-manager"], state_dir, "controller-manager"),
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p.service_account_key}",
        f"--root-ca-file={p.ca.cert}",
        f"--cluster-signing-cert-file={p.ca.cert}", f"--cluster-signing-key-file={p.ca.key}",
        "--cluster-name=localenv",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
    ]


def _scheduler_args(bin_dir: Path, state_dir: Path, ports: dict[str, int]) -> list[str]:
    kcfg = state_dir / "components" / "scheduler.kubeconfig"
    return [str(bin_dir / "kube-scheduler"), *_component_common(kcfg, ports["scheduler"], state_dir, "scheduler")]


def _kwok_args(bin_dir: Path, state_dir: Path) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--kubeconfig={state_dir / 'components' / 'kwok.kubeconfig'}",
        f"--config={state_dir / 'kwok.yaml'}",
        f"--manage-nodes-with-annotation-selector={kwok.NODE_ANNOTATION}={kwok.NODE_ANNOTATION_VALUE}",
        f"--node-lease-duration-seconds={kwok.NODE_LEASE_SECONDS}",
        "--cidr=10.244.0.1/16",
        "--node-ip=10.0.0.1",
    ]


# --- kubectl ------------------------------------------------------------------------------

def kubectl(bin_dir: Path, kcfg: Path | str, *args: str, input_text: str | None = None,
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(bin_dir / "kubectl"), f"--kubeconfig={kcfg}", *args],
        input=input_text, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if check and proc.returncode != 0:
        raise LocalenvError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _openapi_has(bin_dir: Path, kcfg: Path, group_versions: Sequence[str]) -> bool:
    out = kubectl(bin_dir, kcfg, "get", "--raw", "/openapi/v3", check=False)
    if out.returncode != 0:
        return False
    paths = json.loads(out.stdout).get("paths", {})
    return all(f"apis/{gv}" in paths for gv in group_versions)


def _nodes_ready(bin_dir: Path, kcfg: Path, names: Sequence[str]) -> bool:
    out = kubectl(bin_dir, kcfg, "get", "nodes", "-o", "json", check=False)
    if out.returncode != 0:
        return False
    ready = set()
    for item in json.loads(out.stdout)["items"]:
        conds = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
        taints = item.get("spec", {}).get("taints") or []
        if conds.get("Ready") == "True" and not taints:
            ready.add(item["metadata"]["name"])
    return set(names) <= ready


# --- the W&B emulator -------------------------------------------------------------------

def emulator_available() -> bool:
    try:
        return importlib.util.find_spec(f"{EMULATOR_MODULE}.__main__") is not None
    except ModuleNotFoundError:
        return False


def _emulator_api_key(state_dir: Path) -> str | None:
    """Best effort: the emulator's ready API key from its state file or its log."""
    state_file = state_dir / "wandb-emulator.json"
    with contextlib.suppress(Exception):
        data = json.loads(state_file.read_text())
        for key in ("api_key", "apiKey", "admin_api_key"):
            if isinstance(data.get(key), str):
                return data[key]
        keys = data.get("api_keys") or data.get("apiKeys")
        if isinstance(keys, list) and keys and isinstance(keys[0], str):
            return keys[0]
        if isinstance(keys, dict) and keys:
            return next(iter(keys))
    log = state_dir / "logs" / "wandb-emulator.log"
    with contextlib.suppress(OSError):
        match = re.search(r"api[ _-]?key[\"'=: ]+([A-Za-z0-9_\-]{20,})", log.read_text(), re.IGNORECASE)
        if match:
            return match.group(1)
    return None


# --- up / down / status ---------------------------------------------------------------------

def _prepare_dir(state_dir: Path) -> None:
    existing = State.load(state_dir)
    if existing is not None:
        live = [n for n, pid in existing.pids.items() if is_ours(pid, state_dir)]
        if live:
            raise LocalenvError(
                f"{state_dir} already runs a localenv ({', '.join(live)}); run `python -m localenv down "
                f"--state-dir {state_dir}` first"
            )
        shutil.rmtree(state_dir)
    elif state_dir.exists() and any(state_dir.iterdir()):
        raise LocalenvError(f"{state_dir} exists and is not a localenv state directory; choose an empty --state-dir")
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)


PORT_ATTEMPTS = 3


def up(
    state_dir: Path,
    nodes: int = 1,
    bin_dir: Path | None = None,
    log: Log = print,
    with_emulator: bool = True,
    tie_to_parent: bool = False,
    timeout: float = 180.0,
    apiserver_args: Sequence[str] = (),
) -> State:
    """Start a localenv in *state_dir*; return its recorded state once pods can run.

    Ports are chosen free but only bound by the components a moment later; if another
    process takes one in between, the start is retried with new ports. *apiserver_args* are
    appended to the API server's flags (e.g. a test that needs watches served from etcd).
    """
    if nodes < 1:
        raise LocalenvError(f"--nodes must be at least 1 (got {nodes})")
    state_dir = state_dir.expanduser().resolve()
    bins = bin_dir or tools.bin_dir()
    for attempt in range(1, PORT_ATTEMPTS + 1):
        _prepare_dir(state_dir)
        try:
            return _up_once(state_dir, nodes, bins, log, with_emulator, tie_to_parent, timeout, apiserver_args)
        except LocalenvError as exc:
            # A port taken between choosing and binding shows as "address already in use", or
            # — seen with etcd on a loaded machine — as an exit before it logged anything.
            raced = "address already in use" in str(exc) or re.search(r"exited while waiting for [^;]*; log [^:]*:\s*$",
                                                                      str(exc))
            if not raced or attempt == PORT_ATTEMPTS:
                raise
            log("a chosen port was taken meanwhile; starting again with new ports")
    raise AssertionError("unreachable")


def _up_once(
    state_dir: Path, nodes: int, bins: Path, log: Log, with_emulator: bool, tie_to_parent: bool, timeout: float,
    apiserver_args: Sequence[str] = (),
) -> State:
    t0 = time.monotonic()
    run_emulator = with_emulator and emulator_available()
    port_names = ["etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"]
    if run_emulator:
        port_names.append("wandb-emulator")
    ports = free_ports(port_names)
    server = f"https://127.0.0.1:{ports['apiserver']}"
    admin_kcfg = state_dir / KUBECONFIG_NAME
    state = State(
        state_dir=str(state_dir), server=server, kubeconfig=str(admin_kcfg), bin_dir=str(bins), ports=ports,
        nodes=[f"localenv-node-{i}" for i in range(1, nodes + 1)], started_at=time.time(),
    )
    p = pki.create(state_dir / "pki", service_ip=SERVICE_IP)
    comp = state_dir / "components"
    kubeconfig.write_client_cert(admin_kcfg, server, p.ca.cert, p.admin.cert, p.admin.key, "localenv-admin")
    kubeconfig.write_client_cert(comp / "controller-manager.kubeconfig", server, p.ca.cert,
                                 p.controller_manager.cert, p.controller_manager.key, "kube-controller-manager")
    kubeconfig.write_client_cert(comp / "scheduler.kubeconfig", server, p.ca.cert,
                                 p.scheduler.cert, p.scheduler.key, "kube-scheduler")
    kubeconfig.write_client_cert(comp / "kwok.kubeconfig", server, p.ca.cert, p.kwok.cert, p.kwok.key, "kwok")
    (state_dir / "kwok.yaml").write_text(kwok.config_yaml())
    state.save()

    def start(name: str, args: list[str], env: dict | None = None) -> None:
        state.pids[name] = _spawn(name, args, state_dir, tie_to_parent, env)
        state.save()

    try:
        start("etcd", _etcd_args(bins, state_dir, ports))
        _wait("etcd /health", lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health", expect="true"),
              30, state_dir, state.pids)
        start("kube-apiserver", [*_apiserver_args(bins, state_dir, ports, p), *apiserver_args])
        ctx = _client_context(p)
        _wait("kube-apiserver /readyz", lambda: _http_ok(f"{server}/readyz", ctx), timeout, state_dir, state.pids)
        log(f"kube-apiserver ready at {server} ({time.monotonic() - t0:.1f} s)")
        start("kube-controller-manager", _controller_manager_args(bins, state_dir, ports, p))
        start("kube-scheduler", _scheduler_args(bins, state_dir, ports))
        # kwok reads the OpenAPI of every kind it simulates when it starts: the workload CRDs first.
        kubectl(bins, admin_kcfg, "apply", "-f", "-", input_text=yaml.safe_dump_all(list(crds.ALL)))
        _wait("the workload CRDs to be served",
              lambda: _openapi_has(bins, admin_kcfg, kwok.simulated_group_versions()),
              timeout, state_dir, state.pids, interval=0.3)
        start("kwok", _kwok_args(bins, state_dir))
        if run_emulator:
            start("wandb-emulator", [sys.executable, "-m", EMULATOR_MODULE, "--port", str(ports["wandb-emulator"]),
                                     "--state-file", str(state_dir / "wandb-emulator.json")])
        kubectl(bins, admin_kcfg, "apply", "-f", "-",
                input_text=yaml.safe_dump_all([kwok.node(n) for n in state.nodes]))
        insecure = _insecure_context()
        for name in ("controller-manager", "scheduler"):
            url = f"https://127.0.0.1:{ports[name]}/healthz"
            _wait(f"kube-{name} /healthz", lambda url=url: _http_ok(url, insecure), timeout, state_dir, state.pids)
        _wait("the fake nodes to be Ready", lambda: _nodes_ready(bins, admin_kcfg, state.nodes),
              timeout, state_dir, state.pids, interval=0.5)
        _wait("the default ServiceAccount",
              lambda: kubectl(bins, admin_kcfg, "get", "serviceaccount", "default", "-n", "default",
                              check=False).returncode == 0,
              timeout, state_dir, state.pids, interval=0.5)
        if run_emulator:
            _wait("the W&B emulator", lambda: _tcp_open(ports["wandb-emulator"]), 60, state_dir, state.pids)
            state.emulator_url = f"http://127.0.0.1:{ports['wandb-emulator']}"
            key_deadline = time.monotonic() + 5
            while (key := _emulator_api_key(state_dir)) is None and time.monotonic() < key_deadline:
                time.sleep(0.1)
            state.emulator_api_key = key
        elif with_emulator:
            log(f"note: {EMULATOR_MODULE} is not there yet; the W&B emulator was not started")
    except BaseException:
        stop_pids(state.pids, state_dir, grace=3)
        state.pids = {}
        state.save()
        raise
    state.ready_seconds = round(time.monotonic() - t0, 2)
    state.save()
    return state


def restart(state_dir: Path, name: str, *, down_for: float = 0.0, timeout: float = 120.0,
            tie_to_parent: bool = True) -> int:
    """Stop one component of a running localenv by its PID and start it again with the same command
    line, after *down_for* seconds (fault tests: an API server or etcd restart). Waits until the
    component answers again; returns its new PID."""
    state_dir = state_dir.expanduser().resolve()
    state = State.load(state_dir)
    if state is None or name not in state.pids:
        raise LocalenvError(f"{state_dir}: no {name} recorded")
    pid = state.pids[name]
    if not is_ours(pid, state_dir):
        raise LocalenvError(f"{name} (pid {pid}) is not running in {state_dir}")
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    _stop_group({name: pid}, state_dir, grace=10.0)
    if down_for > 0:
        time.sleep(down_for)
    state.pids[name] = _spawn(name, argv, state_dir, tie_to_parent)
    state.save()
    if name == "etcd":
        _wait("etcd /health", lambda: _http_ok(f"http://127.0.0.1:{state.ports['etcd']}/health", expect="true"),
              timeout, state_dir, {name: state.pids[name]})
    elif name == "kube-apiserver":
        ctx = _client_context(pki.load(state_dir / "pki"))
        _wait("kube-apiserver /readyz", lambda: _http_ok(f"{state.server}/readyz", ctx), timeout, state_dir,
              {name: state.pids[name]})
    return state.pids[name]


def _etcd_call(state: State, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{state.ports['etcd']}{path}",
                                 data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            result: dict = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        result = {"error": exc.read().decode(errors="replace")}
    return result


def compact_etcd(state: State) -> None:
    """Drop etcd's history up to now (as the API server does every few minutes), and wait until a
    read of the old history is refused: a watch resuming from before now then gets 410 Gone.

    etcd keeps the compaction revision itself, so a write outside the API server's keys first
    moves "now" past the last object change; otherwise a watch starting at exactly that change
    would still be served."""
    key = base64.b64encode(b"/localenv/compaction-marker").decode()
    put = _etcd_call(state, "/v3/kv/put", {"key": key, "value": base64.b64encode(b"x").decode()})
    revision = int(put["header"]["revision"])
    for _ in range(50):
        _etcd_call(state, "/v3/kv/compaction", {"revision": revision, "physical": True})
        if "compacted" in str(_etcd_call(state, "/v3/kv/range", {"key": key, "revision": revision - 1})):
            return
        time.sleep(0.1)
    raise LocalenvError(f"etcd did not compact to revision {revision}")


def down(state_dir: Path) -> list[str]:
    """Stop the processes recorded in *state_dir* and remove it. Returns the names stopped."""
    state_dir = state_dir.expanduser().resolve()
    state = State.load(state_dir)
    if state is None:
        if state_dir.exists():
            raise LocalenvError(f"{state_dir} has no {STATE_FILE}; not removing a directory localenv did not make")
        return []
    stopped: list[str] = []
    problem: LocalenvError | None = None
    if state.real_node:
        from localenv.node import lifecycle

        try:
            stopped += lifecycle.detach(state, log=lambda _line: None)
        except LocalenvError as exc:
            problem = exc
    stopped += stop_pids(state.pids, state_dir)
    from localenv.node import host

    if host.mounts_under(state_dir):  # never delete through a mount point
        raise problem or LocalenvError(f"{state_dir} still has mounts; not removing it")
    shutil.rmtree(state_dir, ignore_errors=True)
    if problem:
        raise problem
    return stopped


def status(state_dir: Path) -> dict:
    """Which recorded processes are alive, and whether the API server answers /readyz."""
    state_dir = state_dir.expanduser().resolve()
    state = State.load(state_dir)
    if state is None:
        return {"state_dir": str(state_dir), "running": False, "processes": {}}
    procs = {name: ("running" if is_ours(pid, state_dir) else "stopped") for name, pid in state.pids.items()}
    ready = False
    with contextlib.suppress(Exception):
        ready = _http_ok(f"{state.server}/readyz", _client_context(pki.load(state_dir / "pki")))
    return {
        "state_dir": str(state_dir),
        "running": bool(procs) and all(v == "running" for v in procs.values()),
        "apiserver_ready": ready,
        "server": state.server,
        "kubeconfig": state.kubeconfig,
        "processes": procs,
        "pids": state.pids,
        "emulator_url": state.emulator_url,
    }
