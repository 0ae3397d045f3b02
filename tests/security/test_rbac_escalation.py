"""The agent's RBAC cannot escalate, asked of the real authorizer with the chart's ServiceAccount token
(`kubectl auth can-i`, i.e. a SelfSubjectAccessReview) for every ci value set and the official-style
values: no escalate, bind or impersonate, no RBAC objects, no tokens, pods/exec or node proxy, and
no Secret readable beyond the API-key Secret (cluster-wide: none at all)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from security_helpers import ROOT, write_figures

from localenv import helm
from localenv.pytest_plugin import Kube

CHART = ROOT / "charts" / "launch-agent"
OFFICIAL_STYLE = ROOT / "tests" / "fixtures" / "official-style-values.yaml"
VALUE_SETS = [*sorted((CHART / "ci").glob("*.yaml")), OFFICIAL_STYLE]
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
RBAC = "rbac.authorization.k8s.io"

# (verb, resource, subresource) that no agent identity may hold, in any namespace or cluster-wide.
FORBIDDEN: list[tuple[str, str, str | None]] = [
    *[(v, f"{r}.{RBAC}", None) for r in ("roles", "clusterroles") for v in ("create", "update", "patch", "escalate",
                                                                           "bind")],
    *[(v, f"{r}.{RBAC}", None) for r in ("rolebindings", "clusterrolebindings") for v in ("create", "update",
                                                                                         "patch")],
    *[("impersonate", r, None) for r in ("users", "groups", "serviceaccounts", "userextras.authentication.k8s.io",
                                         "uids.authentication.k8s.io")],
    ("create", "serviceaccounts", "token"),
    ("create", "pods", "exec"),
    ("create", "pods", "attach"),
    ("create", "pods", "portforward"),
    ("create", "pods", "ephemeralcontainers"),
    ("get", "nodes", "proxy"),
    ("create", "certificatesigningrequests.certificates.k8s.io", None),
    ("update", "certificatesigningrequests.certificates.k8s.io", "approval"),
    ("create", "namespaces", None),
    ("update", "namespaces", None),
    ("list", "secrets", None),
    ("watch", "secrets", None),
    ("update", "secrets", None),
    ("patch", "secrets", None),
    ("create", "pods", None),
    ("*", "*", None),
]
# The official agent creates and reads its per-run API-key Secret itself: with the official image
# the chart grants get/create/delete on Secrets of the target namespaces (never list, never
# cluster-wide); our agent only gets the API-key Secret by name. `create` on Secrets (official
# image, agent.perUserApiKeys, keyless Azure kaniko contexts) reads nothing back, so it is not
# checked here; what a created Secret could expose to a pod is the agent's Secret allowlist's job.
OFFICIAL_SECRET_VERBS = {"get", "create", "delete"}
CHECKED: dict[str, int] = {}


def _render(values_file: Path, release: str, namespace: str) -> list[dict[str, Any]]:
    objs = helm.template(CHART, values_files=(values_file,), release=release, namespace=namespace)
    return [o for o in objs if o.get("kind") in RBAC_KINDS]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=[p.stem for p in VALUE_SETS])
def test_agent_identity_cannot_escalate(kube: Kube, values_file: Path) -> None:
    release = f"esc-{uuid.uuid4().hex[:6]}"
    objs = _render(values_file, release, f"{release}-ns")
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    sa_ns = sa["metadata"]["namespace"]
    targets = sorted({o["metadata"]["namespace"] for o in objs if o["kind"] == "Role"})
    created = []
    for ns in sorted({sa_ns, *targets}):
        if kube.kubectl("get", "namespace", ns, check=False).returncode != 0:
            created.append(kube.create_namespace(ns))
    try:
        kube.apply(objs)
        identity = kube.sa_kubeconfig(sa_ns, sa["metadata"]["name"])
        official = values_file == OFFICIAL_STYLE
        # The grants are in force (so a "no" below is the authorizer's, not a missing binding).
        for ns in targets:
            assert kube.can_i(identity, "create", "jobs.batch", ns), f"create jobs in {ns}"
        checks = 0
        for where in [None, *targets]:
            for verb, resource, sub in FORBIDDEN:
                if official and where and resource == "secrets" and verb in OFFICIAL_SECRET_VERBS:
                    continue
                assert not kube.can_i(identity, verb, resource, where, subresource=sub), \
                    f"{values_file.name}: the agent may {verb} {resource}{'/' + sub if sub else ''} " \
                    f"{'in ' + where if where else 'cluster-wide'}"
                checks += 1
            for verb in ("get", "delete"):
                if official and where:
                    continue
                assert not kube.can_i(identity, verb, "secrets", where), \
                    f"{values_file.name}: {verb} any Secret {'in ' + where if where else 'cluster-wide'}"
                checks += 1
        CHECKED[values_file.stem] = checks
    finally:
        for o in reversed(objs):
            ns_args = ["-n", o["metadata"]["namespace"]] if o["metadata"].get("namespace") else []
            kube.kubectl("delete", o["kind"].lower(), o["metadata"]["name"], *ns_args, "--ignore-not-found",
                         "--wait=false", check=False)
        for ns in created:
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    if len(CHECKED) == len(VALUE_SETS):
        write_figures("rbac", {"value_sets": len(CHECKED), "denials_checked": sum(CHECKED.values()),
                               "by_value_set": CHECKED})


def test_the_escalation_check_can_fail(kube: Kube, namespace) -> None:
    """A Role granting `bind` is reported: the authorizer answers yes for it."""
    ns = namespace("esc")
    kube.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bad", "namespace": ns}},
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": "bad", "namespace": ns},
         "rules": [{"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["bind", "escalate"]}]},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "bad", "namespace": ns},
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "bad"},
         "subjects": [{"kind": "ServiceAccount", "name": "bad", "namespace": ns}]},
    ])
    identity = kube.sa_kubeconfig(ns, "bad")
    assert kube.can_i(identity, "bind", f"roles.{RBAC}", ns)
    assert not kube.can_i(identity, "bind", f"roles.{RBAC}", None)
