"""What the real node changes on the machine, made and undone here, and a snapshot to check it.

Every change is recorded before it is made (``HostRecord`` in the node's state) so ``down``
— or the next ``up`` after a crash — puts back exactly what was there: the bridge and its
address, the nftables table that keeps pod traffic on the machine, the sysctls the kubelet and
the bridge set, the fixed paths the kubelet, containerd and CNI create, the cgroups, and every
mount under the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BRIDGE = "lenv0"
POD_CIDR = "10.234.0.0/24"
GATEWAY = "10.234.0.1"  # the node's IP and the address pods reach host-side services at
PREFIX = 24
GUARD_TABLE = "launch-agent-localenv"  # family inet
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
CGROUP_ROOT = "launch-agent-localenv"  # the kubelet's --cgroup-root, in every hierarchy
CGROUP_FS = Path("/sys/fs/cgroup")
# Sysctls the kubelet (kernel tunables), the CNI bridge (forwarding) or kube-proxy may set.
SYSCTLS = (
    "kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Short fixed paths of our own (socket paths must stay under 104 characters, whatever the state
# directory): containerd's sockets, and the kubelet's root dir.
SOCKET_DIR = "/run/launch-agent-localenv-node"
NODE_DIR = "/var/lib/launch-agent-localenv-node"
# A copy of the current node's HostRecord at a fixed place of the machine (tmpfs, like the
# changes it undoes): a node whose localenv died and whose state dir is gone can still be undone.
MACHINE_RECORD = Path("/run/launch-agent-localenv/host-record.json")
# Paths outside the state directory that the kubelet, containerd or CNI create (not configurable),
# and ours.
FIXED_PATHS = (
    SOCKET_DIR, NODE_DIR,
    "/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods",
    "/run/containerd", "/var/lib/cni", "/etc/cni", "/opt/cni", "/opt/containerd",
    "/usr/libexec/kubernetes", "/var/lib/containerd",
)
# Addresses that must never be sent out of the machine: kwok's made-up pod and node addresses
# (a Service whose endpoints are kwok pods) and the Service range when kube-proxy has no rule.
NEVER_OUT = ("10.244.0.0/16", "10.0.0.1", "10.96.0.0/16")


class HostError(RuntimeError):
    pass


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = sysctl_path(name).read_text().strip()
    return values


def _run(*args: str, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), input=input_text, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


@dataclass
class HostRecord:
    """The machine as it was before the node changed it."""

    sysctls: dict[str, str] = field(default_factory=dict)
    absent_paths: list[str] = field(default_factory=list)
    bridge_made: bool = False
    guard_made: bool = False

    def save(self, path: Path, machine_copy: Path | None = None) -> None:
        text = json.dumps(asdict(self), indent=2)
        path.write_text(text)
        copy = MACHINE_RECORD if machine_copy is None else machine_copy
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)

    @classmethod
    def load(cls, path: Path) -> HostRecord | None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            return cls(**json.loads(path.read_text()))
        return None


def record(path: Path) -> HostRecord:
    rec = HostRecord(sysctls=read_sysctls(), absent_paths=[p for p in FIXED_PATHS if not os.path.lexists(p)])
    rec.save(path)
    return rec


# --- the bridge and the guard table -------------------------------------------------------

def link_exists(name: str = BRIDGE) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def make_bridge(rec: HostRecord, rec_path: Path) -> None:
    """The bridge pods attach to, with the gateway address the node and host services use."""
    if link_exists():
        raise HostError(f"a network interface named {BRIDGE} already exists; it is not ours to take over")
    rec.bridge_made = True
    rec.save(rec_path)
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def guard_rules() -> str:
    """nftables script of the guard table: pod traffic stays on the bridge, and nothing meant for
    kwok's made-up addresses or the Service range leaves through another interface."""
    never = ", ".join(NEVER_OUT)
    return f"""table inet {GUARD_TABLE} {{
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname "{BRIDGE}" oifname != "{BRIDGE}" counter drop
    oifname "{BRIDGE}" iifname != "{BRIDGE}" counter drop
  }}
  chain output {{
    type filter hook output priority filter - 5; policy accept;
    oifname != {{ "lo", "{BRIDGE}" }} ip daddr {{ {never} }} counter drop
  }}
}}
"""


def make_guard(rec: HostRecord, rec_path: Path) -> None:
    rec.guard_made = True
    rec.save(rec_path)
    _run("nft", "-f", "-", input_text=guard_rules())


def _nft_tables() -> set[tuple[str, str]]:
    proc = _run("nft", "-j", "list", "tables", check=False)
    if proc.returncode != 0:
        return set()
    out = set()
    for item in json.loads(proc.stdout).get("nftables", []):
        table = item.get("table")
        if table:
            out.add((table["family"], table["name"]))
    return out


# --- undo -------------------------------------------------------------------------------

def mounts_under(root: Path) -> list[str]:
    """Mount points at or below *root*, deepest first."""
    prefix = str(root).rstrip("/")
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(root: Path) -> list[str]:
    """Unmount everything under *root* (a bind mount onto itself included); returns what is left."""
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return []
        for point in points:
            if _run("umount", point, check=False).returncode != 0:
                _run("umount", "-l", point, check=False)
        time.sleep(0.1)
    return mounts_under(root)


def cgroup_dirs() -> list[Path]:
    """Our cgroup root in each mounted hierarchy (v1 controllers, name=systemd, unified)."""
    if not CGROUP_FS.is_dir():
        return []
    return [h / CGROUP_ROOT for h in sorted(CGROUP_FS.iterdir()) if (h / "cgroup.procs").exists()]


def make_cgroups() -> None:
    for path in cgroup_dirs():
        path.mkdir(exist_ok=True)


def remove_cgroups() -> list[str]:
    """rmdir our cgroup trees, deepest first; returns those still there (with processes)."""
    left = []
    for top in cgroup_dirs():
        if not top.exists():
            continue
        dirs = sorted((p for p, _, _ in os.walk(top)), key=lambda p: -p.count("/"))
        for d in dirs:
            for _ in range(20):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        if top.exists():
            left.append(str(top))
    return left


def restore(rec: HostRecord) -> list[str]:
    """Put the machine back as *rec* found it; returns what could not be restored."""
    problems = []
    tables = _nft_tables()
    for family, name in KUBE_PROXY_TABLES:
        if (family, name) in tables:
            _run("nft", "delete", "table", family, name, check=False)
    if rec.guard_made and ("inet", GUARD_TABLE) in tables:
        _run("nft", "delete", "table", "inet", GUARD_TABLE, check=False)
    if rec.bridge_made and link_exists():
        _run("ip", "link", "delete", BRIDGE, check=False)
    # Veth ends the CNI plugin made go with their pods' network namespaces; a leftover one is ours
    # only if it is still enslaved to our bridge, which is gone now.
    problems += remove_cgroups()
    current = read_sysctls(tuple(rec.sysctls))
    for name, value in rec.sysctls.items():
        if current.get(name) != value:
            try:
                sysctl_path(name).write_text(value)
            except OSError as exc:
                problems.append(f"sysctl {name}: {exc}")
    for path in rec.absent_paths:  # deepest first: /var/lib/kubelet/device-plugins before /var/lib/kubelet
        if mounts_under(Path(path)):
            problems.append(f"{path} still has mounts; not removed")
            continue
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if os.path.lexists(path):
                problems.append(f"could not remove {path}")
    if not problems:
        with contextlib.suppress(FileNotFoundError):
            MACHINE_RECORD.unlink()
    return problems


# --- a snapshot, to check that down leaves the machine as it was -------------------------

def snapshot() -> dict[str, object]:
    links = sorted(p.name for p in Path("/sys/class/net").iterdir())
    return {
        "sysctls": read_sysctls(),
        "links": links,
        "nft_tables": sorted(f"{f} {n}" for f, n in _nft_tables()),
        "fixed_paths": sorted(p for p in FIXED_PATHS if os.path.lexists(p)),
        "cgroups": sorted(str(p) for p in cgroup_dirs() if p.exists()),
    }
