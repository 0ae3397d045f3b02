"""A real kubelet node beside localenv's kwok nodes: containerd, runc, a CNI bridge,
kube-proxy (nftables) and CoreDNS, for the pods that must really run.

One per machine (its kubelet and containerd use fixed paths): a machine-wide lock
(:mod:`localenv.node.lock`) guards it. The node is tainted and labelled
``localenv.launch-agent.dev/real-node=true``; a pod lands there only when it asks
(:func:`placement`). Images get onto it without a registry: build them with
:mod:`localenv.images` and :meth:`RealNode.load` them. Pods reach host-side services through
the gateway address of the node's bridge (:attr:`RealNode.host_ip`, :meth:`RealNode.expose`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from localenv import cluster
from localenv.images.oci import Archive
from localenv.node import config, host, lifecycle, lock, runtime
from localenv.node.config import LABEL, NODE_NAME, Paths, placement

__all__ = ["LABEL", "NODE_NAME", "RealNode", "placement", "start"]


@dataclass
class RealNode:
    """The real node attached to a running localenv (what ``start`` returns)."""

    state: cluster.State
    node: lifecycle.NodeState
    machine_lock: lock.MachineLock | None = None
    tie_to_parent: bool = False
    loaded: set[str] = field(default_factory=set)

    name: str = NODE_NAME
    host_ip: str = host.GATEWAY  # pods reach host-side services at this address

    @property
    def paths(self) -> Paths:
        return Paths.of(Path(self.state.state_dir))

    def place(self, pod_spec: dict[str, Any]) -> dict[str, Any]:
        """A copy of *pod_spec* with the node selector and toleration of the real node added."""
        spec = copy.deepcopy(pod_spec)
        extra = placement()
        spec.setdefault("nodeSelector", {}).update(extra["nodeSelector"])
        spec["tolerations"] = [*spec.get("tolerations", []), *extra["tolerations"]]
        return spec

    def load(self, *archives: Archive, log: Callable[[str], None] = print) -> list[str]:
        """Import image archives into the node's containerd (skipping those it has); their refs."""
        refs = []
        for archive in archives:
            if archive.ref not in self.loaded and runtime.import_archive(self.paths, archive):
                log(f"loaded {archive.ref} into {self.name} ({archive.size / 1e6:.0f} MB)")
            self.loaded.add(archive.ref)
            refs.append(archive.ref)
        return refs

    def expose(self, port: int) -> str:
        """``host:port`` at which pods reach a service listening on 127.0.0.1:*port*."""
        if self.machine_lock is None:
            raise lifecycle.NodeError("expose() needs the node's lock (a node started by this process)")
        return lifecycle.expose(self.state, port, self.machine_lock, self.tie_to_parent)

    def pod_url(self, url: str) -> str:
        """*url* of a host-side service on 127.0.0.1, as pods must write it (exposing it first)."""
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
            raise ValueError(f"{url}: only http(s)://127.0.0.1:PORT services can be exposed to pods")
        return urlunsplit(parts._replace(netloc=self.expose(parts.port)))

    def stop(self) -> list[str]:
        return lifecycle.detach(self.state, machine_lock=self.machine_lock)


def start(state: cluster.State, wait: float = 0.0, log: Callable[[str], None] = print,
          tie_to_parent: bool = False) -> RealNode:
    """Take the machine lock (waiting up to *wait* seconds) and attach the real node to *state*."""
    lifecycle.check_host()
    machine_lock = lifecycle.acquire_lock(Path(state.state_dir), wait, log)
    try:
        ns = lifecycle.attach(state, machine_lock, log=log, tie_to_parent=tie_to_parent)
    except BaseException:
        machine_lock.release()
        raise
    node = RealNode(state, ns, machine_lock, tie_to_parent)
    return node


def exposed_url(state: cluster.State, url: str) -> str:
    """The pod-side form of a host URL already exposed by the node's relay (the emulator's)."""
    ns = lifecycle.NodeState.load(Path(state.state_dir))
    parts = urlsplit(url)
    there = ns.exposed.get(f"127.0.0.1:{parts.port}") if ns else None
    if there is None:
        raise lifecycle.NodeError(f"{url} is not exposed to the real node's pods")
    return urlunsplit(parts._replace(netloc=there))


_ = config  # re-exported names above come from config
