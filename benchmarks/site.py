"""One measurement site: a fresh localenv (its API server writing an audit log of the agents'
requests), a W&B emulator process, the namespaces and ServiceAccounts the agents run as.

Each agent runs as its own ServiceAccount (`ours`, `official`, and `floor` for the direct
creates), bound to the same Role in the agent and target namespaces, so the audit log tells the
requests of each apart; the job controller's status writes are logged too (when a workload
finished). Nothing here is shared between two sites: each run starts from an empty cluster.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks import audit

ENTITY = "bench"
AGENT_NS = "bench-agent"
JOBS_NS = "bench-jobs"
RELEASE = "bench"
SECRET = f"wandb-api-key-{RELEASE}"
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


def user_of(identity: str) -> str:
    return f"system:serviceaccount:{AGENT_NS}:{identity}"


@dataclass
class Site:
    root: Path
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    audit_log: Path
    emulator: Any  # localenv.wandb_emulator.testing.RunningEmulator
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    @property
    def emu(self) -> Any:
        return self.emulator.client

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        from localenv import cluster

        return cluster.kubectl(self.bin_dir, self.kubeconfig, *args, input_text=input_text).stdout

    def apply(self, objs: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objs))

    def list(self, resource: str, namespace: str = JOBS_NS, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", resource, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
        return list(json.loads(self.kubectl(*args))["items"])

    def audit_events(self) -> list[dict[str, Any]]:
        return audit.read(self.audit_log)

    def queue(self, name: str, config: dict[str, Any], *, priorities: bool = False) -> None:
        self.emu.create_queue(ENTITY, name, config, prioritization_mode="V0" if priorities else None)


def _objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                                  for ns in (AGENT_NS, JOBS_NS)]
    objs += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": i, "namespace": AGENT_NS}}
             for i in IDENTITIES]
    for ns in (AGENT_NS, JOBS_NS):
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": "launch-agent", "namespace": ns}, "rules": role_rules()})
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "launch-agent", "namespace": ns},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "launch-agent"},
                     "subjects": [{"kind": "ServiceAccount", "name": i, "namespace": AGENT_NS}
                                  for i in IDENTITIES]})
    return objs


@contextlib.contextmanager
def site(nodes: int = 2) -> Iterator[Site]:
    """A fresh localenv + emulator for one run; everything is stopped and removed afterwards."""
    from localenv import cluster, kubeconfig, tools
    from localenv.wandb_emulator.testing import start

    root = Path(tempfile.mkdtemp(prefix="bench-site-"))
    state_dir = root / "localenv"
    policy = audit.write_policy(root / "audit-policy.yaml", [user_of(i) for i in IDENTITIES])
    audit_log = root / "audit.log"
    bin_dir = tools.bin_dir()
    emulator = None
    try:
        state = cluster.up(state_dir, nodes=nodes, bin_dir=bin_dir, log=lambda _line: None, with_emulator=False,
                           tie_to_parent=True, apiserver_args=audit.apiserver_args(policy, audit_log))
        s = Site(root, state_dir, Path(state.kubeconfig), bin_dir, audit_log, None)
        s.apply(_objects())
        kubectl = bin_dir / "kubectl"
        for identity in IDENTITIES:
            s.kubeconfigs[identity] = kubeconfig.mint_service_account(
                kubectl, s.kubeconfig, AGENT_NS, identity, root / f"{identity}.kubeconfig", duration="6h")
        emulator = start(mode="process", entity=ENTITY)
        s.emulator = emulator
        emulator.client.create_entity(ENTITY)
        # The API-key Secret as the official agent leaves it (it reuses one with the same key).
        s.apply([{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                  "metadata": {"name": SECRET, "namespace": ns, "labels": {"wandb.ai/created-by": "launch-agent"}},
                  "stringData": {"password": emulator.api_key}} for ns in (AGENT_NS, JOBS_NS)])
        yield s
    finally:
        if emulator is not None:
            emulator.stop()
        with contextlib.suppress(Exception):
            cluster.down(state_dir)
        shutil.rmtree(root, ignore_errors=True)
