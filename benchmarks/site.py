"""Where one agent runs: a local control plane (its API server writing an audit log of the
agents' requests) and, per run, a fresh W&B emulator process, fresh namespaces and
ServiceAccounts, and a release name of its own.

Each agent runs as its own ServiceAccount (`ours`, `official`, and `floor` for the direct
creates) in the run's agent namespace, bound to the same Role there and in the run's target
namespace, so the audit log tells apart the requests of each agent and of each run. A `Sites`
pool starts a fresh localenv for every run (`fresh_localenv`, the `full` preset) or keeps one
while the runs, of one scenario or of the next, ask for the same node count (the runs then differ
in everything but the control plane; a scenario whose runs leave workloads running asks for nodes
with room for every run's, so no run waits for another's to be deleted).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks import audit

ENTITY = "bench"
IDENTITIES = ("ours", "official", "floor")


def role_rules() -> list[dict[str, Any]]:
    """What either agent needs in a namespace it launches into (and its own)."""
    verbs = ["create", "get", "list", "watch", "patch", "update", "delete"]
    return [
        {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "events", "secrets", "configmaps", "services"],
         "verbs": verbs},
        {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs", "pytorchjobs/status"], "verbs": verbs},
        {"apiGroups": ["batch.volcano.sh"], "resources": ["jobs", "jobs/status"], "verbs": verbs},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": verbs},
    ]


@dataclass
class Cluster:
    root: Path
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    audit_log: Path
    nodes: int
    runs: int = 0

    def kubectl(self, *args: str, input_text: str | None = None, kubeconfig: Path | None = None) -> str:
        from localenv import cluster

        return cluster.kubectl(self.bin_dir, kubeconfig or self.kubeconfig, *args, input_text=input_text).stdout


@dataclass
class Site:
    cluster: Cluster
    agent_ns: str
    jobs_ns: str
    release: str
    emulator: Any = None  # localenv.wandb_emulator.testing.RunningEmulator
    kubeconfigs: dict[str, Path] = field(default_factory=dict)
    audit_offset: int = 0  # where this run's events begin in the cluster's audit log
    _audit: audit.Tail | None = field(default=None, init=False, repr=False)
    _events: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    @property
    def emu(self) -> Any:
        return self.emulator.client

    @property
    def secret(self) -> str:
        return f"wandb-api-key-{self.release}"

    @property
    def bin_dir(self) -> Path:
        return self.cluster.bin_dir

    def user(self, identity: str) -> str:
        """The audit log's user name of an identity (`ours`, `official`, `floor`) in this run."""
        return f"system:serviceaccount:{self.agent_ns}:{identity}"

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return self.cluster.kubectl(*args, input_text=input_text)

    def apply(self, objs: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objs))

    def list(self, resource: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", resource, "-n", self.jobs_ns, "-o", "json"] + (["-l", selector] if selector else [])
        return list(json.loads(self.kubectl(*args))["items"])

    def audit_events(self) -> list[dict[str, Any]]:
        """This run's events: written since it started, by its identities or on its namespaces
        (a kept cluster's earlier runs used the same run ids, so the same workload names). Read
        as the log grows: a call parses only what was written since the last."""
        if self._audit is None:
            self._audit = audit.Tail(self.cluster.audit_log, self.audit_offset)
        users = {self.user(i) for i in IDENTITIES}
        namespaces = {self.agent_ns, self.jobs_ns}
        self._events += [e for e in self._audit.read() if (e.get("user") or {}).get("username") in users
                         or (e.get("objectRef") or {}).get("namespace") in namespaces]
        return list(self._events)

    def queue(self, name: str, config: dict[str, Any], *, priorities: bool = False) -> None:
        """A queue whose workloads go to this run's target namespace."""
        config = json.loads(json.dumps(config))
        config.setdefault("metadata", {})["namespace"] = self.jobs_ns
        self.emu.create_queue(ENTITY, name, config, prioritization_mode="V0" if priorities else None)

    def objects(self) -> list[dict[str, Any]]:
        objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                                      for ns in (self.agent_ns, self.jobs_ns)]
        objs += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": i, "namespace": self.agent_ns}}
                 for i in IDENTITIES]
        for ns in (self.agent_ns, self.jobs_ns):
            objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                         "metadata": {"name": "launch-agent", "namespace": ns}, "rules": role_rules()})
            objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": "launch-agent", "namespace": ns},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "launch-agent"},
                         "subjects": [{"kind": "ServiceAccount", "name": i, "namespace": self.agent_ns}
                                      for i in IDENTITIES]})
            # The API-key Secret as the official agent leaves it (it reuses one with the same key).
            objs.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                         "metadata": {"name": self.secret, "namespace": ns,
                                      "labels": {"wandb.ai/created-by": "launch-agent"}},
                         "stringData": {"password": self.emulator.api_key}})
        return objs


@contextlib.contextmanager
def cluster(nodes: int) -> Iterator[Cluster]:
    """A fresh localenv with the benchmarks' audit policy; stopped and removed afterwards."""
    from localenv import cluster as localenv_cluster
    from localenv import tools

    root = Path(tempfile.mkdtemp(prefix="bench-site-"))
    state_dir = root / "localenv"
    policy = audit.write_policy(root / "audit-policy.yaml")
    audit_log = root / "audit.log"
    bin_dir = tools.bin_dir()
    try:
        state = localenv_cluster.up(state_dir, nodes=nodes, bin_dir=bin_dir, log=lambda _line: None,
                                    with_emulator=False, tie_to_parent=True,
                                    apiserver_args=audit.apiserver_args(policy, audit_log))
        yield Cluster(root, state_dir, Path(state.kubeconfig), bin_dir, audit_log, nodes)
    finally:
        with contextlib.suppress(Exception):
            localenv_cluster.down(state_dir)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def run_on(c: Cluster) -> Iterator[Site]:
    """One run's namespaces, identities and emulator on `c`."""
    from localenv import kubeconfig
    from localenv.wandb_emulator.testing import start

    c.runs += 1
    s = Site(c, f"bench-agent-{c.runs}", f"bench-jobs-{c.runs}", f"bench{c.runs}",
             audit_offset=audit.size(c.audit_log))
    s.emulator = start(mode="process", entity=ENTITY)
    try:
        s.emulator.client.create_entity(ENTITY)
        s.apply(s.objects())
        for identity in IDENTITIES:
            s.kubeconfigs[identity] = kubeconfig.mint_service_account(
                c.bin_dir / "kubectl", c.kubeconfig, s.agent_ns, identity, c.root / f"{s.agent_ns}.{identity}",
                duration="6h")
        yield s
    finally:
        s.emulator.stop()


class Sites:
    """Clusters for the runs: one per run (`fresh`), or one kept for as long as the runs ask for
    its node count (across scenarios: a run that asks for another count, or that failed with an
    exception, stops it, so no idle control plane runs beside a measured one)."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self._stack = contextlib.ExitStack()
        self._kept: Cluster | None = None

    def __enter__(self) -> Sites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the kept cluster, if any (the next run starts a new one)."""
        self._stack.close()
        self._kept = None

    def _cluster(self, nodes: int) -> Cluster:
        if self._kept is not None and self._kept.nodes != nodes:
            self.stop()
        if self._kept is None:
            self._kept = self._stack.enter_context(cluster(nodes))
        return self._kept

    @contextlib.contextmanager
    def run(self, nodes: int = 2) -> Iterator[Site]:
        if self.fresh:
            with cluster(nodes) as c, run_on(c) as s:
                yield s
            return
        try:
            with run_on(self._cluster(nodes)) as s:
                yield s
        except BaseException:
            self.stop()  # the control plane may be what broke: the next run starts a new one
            raise
        time.sleep(1.0)  # the last writes of the run's pods settle before the next run starts
