"""Bring the real node up beside a running localenv control plane, and take it down again.

``attach``: record the machine, make the bridge, the guard table and the cgroup roots, start
containerd (with the pause image imported), the kubelet (registered tainted and labelled),
kube-proxy (nftables, its own table), CoreDNS on the gateway and the relay that lets pods reach
the API server and the W&B emulator; publish the ``kubernetes`` and ``kube-dns`` endpoints.

``detach``: delete the node's pods, stop everything by PID, kill what is left in our cgroups
and our shims, unmount everything under the node's directory, restore the machine, remove
the node's directory, release the machine lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from localenv import cluster, images, kubeconfig, pki
from localenv.node import config, host, lock, runtime
from localenv.node.config import Paths

Log = Callable[[str], None]
CNI_BIN_DIR = "/usr/lib/cni"
NODE_FILE = "node.json"
# Stop order: what uses the node first, containerd last.
PROCESSES = ("relay", "coredns", "kube-proxy", "kubelet", "containerd")
REQUIRED_COMMANDS = ("containerd", "ctr", "runc", "nft", "ip", "buildah")


class NodeError(cluster.LocalenvError):
    pass


@dataclass
class NodeState:
    name: str
    host_ip: str
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    exposed: dict[str, str] = field(default_factory=dict)  # "127.0.0.1:P" -> "GATEWAY:P"
    ready_seconds: float = 0.0

    def save(self, state_dir: Path) -> None:
        path = Paths.of(state_dir).root / NODE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> NodeState | None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            return cls(**json.loads((Paths.of(state_dir).root / NODE_FILE).read_text()))
        return None


def check_host() -> None:
    """One line naming what is missing for a real node (packages, root, cgroups)."""
    if os.geteuid() != 0:
        raise NodeError("a real node needs root (containerd, runc, the bridge and cgroups)")
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if not Path(CNI_BIN_DIR, "bridge").exists():
        missing.append(f"{CNI_BIN_DIR}/bridge")
    if missing:
        raise NodeError(f"a real node needs {', '.join(missing)}: run `python -m localenv install-packages` "
                        "(Debian packages in localenv/node/packages.txt)")


def _wait(what: str, check: Callable[[], bool], timeout: float, state_dir: Path, watch: dict[str, int]) -> None:
    cluster._wait(what, check, timeout, state_dir, watch, interval=0.3)


def _spawn(ns: NodeState, state: cluster.State, name: str, args: list[str], machine_lock: lock.MachineLock,
           tie_to_parent: bool) -> None:
    state_dir = Path(state.state_dir)
    pid = cluster._spawn(name, args, state_dir, tie_to_parent, pass_fds=(machine_lock.fd,))
    ns.pids[name] = pid
    state.pids[name] = pid
    ns.save(state_dir)
    state.save()


def _kubectl(state: cluster.State, *args: str, input_text: str | None = None, check: bool = True):
    return cluster.kubectl(Path(state.bin_dir), state.kubeconfig, *args, input_text=input_text, check=check)


def _apply(state: cluster.State, objs: list[dict]) -> None:
    _kubectl(state, "apply", "-f", "-", input_text=yaml.safe_dump_all(objs))


def _node_ready(state: cluster.State) -> bool:
    out = _kubectl(state, "get", "node", config.NODE_NAME, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conds = {c["type"]: c["status"] for c in json.loads(out.stdout).get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def attach(state: cluster.State, machine_lock: lock.MachineLock, log: Log = print,
           tie_to_parent: bool = False, timeout: float = 180.0) -> NodeState:
    """Start the real node for the localenv *state*; the caller holds *machine_lock*."""
    check_host()
    t0 = time.monotonic()
    state_dir = Path(state.state_dir)
    paths = Paths.of(state_dir)
    bins = Path(state.bin_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    ns = NodeState(name=config.NODE_NAME, host_ip=host.GATEWAY)
    ns.save(state_dir)
    state.real_node = True
    state.save()
    rec = host.record(paths.host_record)
    try:
        pause = images.pause(log=log)
        host.make_bridge(rec, paths.host_record)
        host.make_guard(rec, paths.host_record)
        host.make_cgroups()
        ns.ports = cluster.free_ports(["kubelet-healthz", "proxy-healthz", "proxy-metrics", "dns-health",
                                       "dns-ready"])
        _write_configs(state, paths, ns, pause.ref)
        _spawn(ns, state, "containerd", ["containerd", "--config", str(paths.containerd_config)],
               machine_lock, tie_to_parent)
        _wait("containerd", lambda: runtime.ctr(paths, "version", check=False, timeout=10).returncode == 0,
              60, state_dir, ns.pids)
        runtime.import_archive(paths, pause)
        _apply(state, config.rbac_objects(pki.KUBELET_CLIENT_NAME, f"{config.NODE_NAME}-coredns"))
        _spawn(ns, state, "kubelet", [
            str(bins / "kubelet"), f"--config={paths.kubelet_config}",
            f"--kubeconfig={paths.pki / 'kubelet.kubeconfig'}", f"--hostname-override={config.NODE_NAME}",
            f"--node-ip={host.GATEWAY}", f"--root-dir={paths.kubelet}", f"--cert-dir={paths.pki / 'kubelet'}",
            f"--node-labels={config.LABEL}=true", "--v=1",
        ], machine_lock, tie_to_parent)
        _wait(f"node {config.NODE_NAME} to be Ready", lambda: _node_ready(state), timeout, state_dir, ns.pids)
        log(f"real node {config.NODE_NAME} Ready ({time.monotonic() - t0:.1f} s)")
        _spawn(ns, state, "kube-proxy", [str(bins / "kube-proxy"), f"--config={paths.kube_proxy_config}", "--v=1"],
               machine_lock, tie_to_parent)
        _spawn(ns, state, "coredns", [str(bins / "coredns"), "-conf", str(paths.corefile), "-quiet"],
               machine_lock, tie_to_parent)
        _start_relay(state, ns, machine_lock, tie_to_parent)
        api_port = state.ports["apiserver"]
        _apply(state, [*config.dns_objects(),
                       config.endpoint_slice("default", "kubernetes", [("https", api_port, "TCP")],
                                             name="kubernetes")])
        _wait("kube-proxy /healthz", lambda: cluster._http_ok(f"http://127.0.0.1:{ns.ports['proxy-healthz']}/healthz"),
              timeout, state_dir, ns.pids)
        _wait("CoreDNS /ready", lambda: cluster._http_ok(f"http://127.0.0.1:{ns.ports['dns-ready']}/ready"),
              timeout, state_dir, ns.pids)
    except BaseException:
        log("the real node did not come up; taking it down again")
        detach(state, log=lambda _line: None)
        raise
    ns.ready_seconds = round(time.monotonic() - t0, 2)
    ns.save(state_dir)
    return ns


def _write_configs(state: cluster.State, paths: Paths, ns: NodeState, pause_ref: str) -> None:
    cluster_pki = Path(state.state_dir) / "pki"
    ca = cluster_pki / "ca.crt"
    for d in (paths.containerd, paths.cni_conf_dir, paths.cni_ipam_dir, paths.kubelet, paths.pki, paths.runc_root,
              paths.containerd_socket.parent):
        d.mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(config.containerd_toml(paths, CNI_BIN_DIR).replace(
        config.PAUSE_IMAGE, pause_ref))
    (paths.cni_conf_dir / "10-localenv.conflist").write_text(config.cni_conflist(paths))
    paths.kubelet_config.write_text(config.kubelet_config(paths, ca, ns.ports["kubelet-healthz"]))
    identities = {
        "kubelet": (f"system:node:{config.NODE_NAME}", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", None),
        "coredns": (f"{config.NODE_NAME}-coredns", None),
    }
    for stem, (cn, org) in identities.items():
        pair = pki.issue(cluster_pki, paths.pki, stem, cn, org)
        kubeconfig.write_client_cert(paths.pki / f"{stem}.kubeconfig", state.server, ca, pair.cert, pair.key, cn)
    paths.kube_proxy_config.write_text(config.kube_proxy_config(
        paths.pki / "kube-proxy.kubeconfig", ns.ports["proxy-healthz"], ns.ports["proxy-metrics"]))
    paths.corefile.write_text(config.corefile(paths.pki / "coredns.kubeconfig", ns.ports["dns-health"],
                                              ns.ports["dns-ready"]))


def _start_relay(state: cluster.State, ns: NodeState, machine_lock: lock.MachineLock, tie_to_parent: bool) -> None:
    """The API server and the W&B emulator (both on loopback) at the same ports on the gateway."""
    targets = [state.ports["apiserver"]]
    if state.emulator_url:
        targets.append(state.ports["wandb-emulator"])
    for port in targets:
        ns.exposed[f"127.0.0.1:{port}"] = f"{host.GATEWAY}:{port}"
    pairs = [f"{there}={here}" for here, there in ns.exposed.items()]
    _spawn(ns, state, "relay", [sys.executable, "-m", "localenv.relay", "--owner", state.state_dir, *pairs],
           machine_lock, tie_to_parent)
    for there in ns.exposed.values():
        ip, port = there.rsplit(":", 1)
        _wait(f"the relay on {there}", lambda ip=ip, port=int(port): _tcp_open(ip, port), 30,
              Path(state.state_dir), ns.pids)


def _tcp_open(ip: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


def _delete_pods(state: cluster.State, timeout: float = 20.0) -> None:
    """Ask the kubelet to stop the node's pods, briefly (containers are killed afterwards anyway)."""
    selector = f"spec.nodeName={config.NODE_NAME}"
    _kubectl(state, "delete", "pods", "--all-namespaces", f"--field-selector={selector}", "--grace-period=1",
             "--wait=false", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _kubectl(state, "get", "pods", "--all-namespaces", f"--field-selector={selector}", "-o", "name",
                       check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return
        time.sleep(0.5)


def detach(state: cluster.State, log: Log = print, machine_lock: lock.MachineLock | None = None) -> list[str]:
    """Take the real node of *state* down and put the machine back; returns the names stopped."""
    state_dir = Path(state.state_dir)
    paths = Paths.of(state_dir)
    ns = NodeState.load(state_dir)
    stopped: list[str] = []
    apiserver_up = cluster.is_ours(state.pids.get("kube-apiserver", -1), state_dir)
    if ns is not None and apiserver_up and cluster.is_ours(ns.pids.get("kubelet", -1), state_dir):
        _delete_pods(state)
    pids = dict(ns.pids) if ns else {n: p for n, p in state.pids.items() if _is_node_process(n)}
    for name in _stop_order(pids):
        if name == "containerd" and paths.containerd_socket.exists():
            runtime.remove_containers(paths)
        stopped += cluster._stop_group({name: pids[name]}, state_dir, grace=10)
    problems = [f"process {pid} of the node's pods or shims is still alive"
                for pid in runtime.kill_leftovers(paths)]
    if apiserver_up:
        _kubectl(state, "delete", "node", config.NODE_NAME, "--ignore-not-found", "--wait=false", check=False)
        _kubectl(state, "delete", "endpointslice", "kubernetes", "-n", "default", "--ignore-not-found", check=False)
    problems += [f"still mounted: {m}" for m in host.unmount_all(paths.root) + host.unmount_all(Path(host.NODE_DIR))]
    rec = host.HostRecord.load(paths.host_record)
    if rec is not None:
        problems += host.restore(rec)
    if not problems:
        shutil.rmtree(paths.root, ignore_errors=True)
    for name in [n for n in state.pids if _is_node_process(n)]:
        state.pids.pop(name)
    state.real_node = False
    state.save()
    _release(state_dir, machine_lock)
    if problems:
        raise NodeError("the real node left things behind: " + "; ".join(problems[:5]))
    return stopped


def _is_node_process(name: str) -> bool:
    return name in PROCESSES or name.startswith("relay-")


def _stop_order(pids: dict[str, int]) -> list[str]:
    """Relays and the extra ones first, then in PROCESSES order (containerd last)."""
    return sorted(pids, key=lambda n: PROCESSES.index(n) if n in PROCESSES else -1)


def expose(state: cluster.State, port: int, machine_lock: lock.MachineLock, tie_to_parent: bool = True) -> str:
    """Make 127.0.0.1:*port* reachable from pods at GATEWAY:*port* (a relay process of the node)."""
    ns = NodeState.load(Path(state.state_dir))
    if ns is None:
        raise NodeError(f"no real node in {state.state_dir}")
    here, there = f"127.0.0.1:{port}", f"{host.GATEWAY}:{port}"
    if here in ns.exposed:
        return there
    ns.exposed[here] = there
    _spawn(ns, state, f"relay-{port}", [sys.executable, "-m", "localenv.relay", "--owner", state.state_dir,
                                        f"{there}={here}"], machine_lock, tie_to_parent)
    _wait(f"the relay on {there}", lambda: _tcp_open(host.GATEWAY, port), 30, Path(state.state_dir), ns.pids)
    return there


def _release(state_dir: Path, machine_lock: lock.MachineLock | None) -> None:
    """Remove the lock file if it is still ours (its processes are gone, so it is free)."""
    if machine_lock is not None:
        machine_lock.release()
        return
    if lock.read_holder().state_dir != str(state_dir):
        return
    taken = lock.try_acquire(state_dir)
    if taken is not None:
        taken.release()


def recover(previous_state_dir: Path, log: Log = print) -> None:
    """Clean up after a real node whose localenv died without ``down`` (found via the lock file)."""
    paths = Paths.of(previous_state_dir)
    # The state dir may be gone (a removed temporary dir): the machine's copy of the record remains.
    rec = host.HostRecord.load(paths.host_record) or host.HostRecord.load(host.MACHINE_RECORD)
    if rec is None and not runtime.shim_pids(paths):
        return
    log(f"cleaning up after the real node of {previous_state_dir}, which was not taken down")
    ns = NodeState.load(previous_state_dir)
    for name in _stop_order(ns.pids if ns else {}):
        cluster._stop_group({name: ns.pids[name]}, previous_state_dir, grace=5)  # type: ignore[union-attr]
    runtime.kill_leftovers(paths)
    host.unmount_all(paths.root)
    host.unmount_all(Path(host.NODE_DIR))
    if rec is not None:
        host.restore(rec)
    shutil.rmtree(paths.root, ignore_errors=True)


def reclaim(holder: lock.Holder) -> bool:
    """When the lock's holder has no kubelet, containerd or relay left (its localenv died without
    ``down``), clean up what is left of its node — the shims that still hold the lock among it."""
    if not holder.state_dir:
        return False
    state_dir = Path(holder.state_dir)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            cmd = runtime._cmdline(int(entry.name))
            if holder.state_dir in cmd and "containerd-shim" not in cmd:
                return False  # a process of that localenv still runs: the node is in use
    recover(state_dir, print)
    return True


def acquire_lock(state_dir: Path, wait: float, log: Log) -> lock.MachineLock:
    """The machine lock, reclaiming it from a node whose localenv is gone; whatever such a node
    left on the machine (its bridge, tables, cgroups, sysctls, paths) is undone before this returns,
    so the holder starts from the machine as it was."""
    machine_lock = lock.acquire(state_dir, wait=wait, log=log, reclaim=reclaim)
    previous = machine_lock.previous.state_dir
    if previous and Path(previous) != Path(state_dir):
        recover(Path(previous), log)
    elif host.MACHINE_RECORD.exists():
        recover(Path(state_dir), log)
    return machine_lock
