"""The RBAC rules the agent needs beyond the chart's defaults, and why.

The chart always grants, in every target namespace: batch/jobs create/get/list/watch/patch/delete
(patch: our agent records what W&B was told on the workload; not with the official image),
pods get/list/watch, pods/log get, events get/list/watch and get on the API-key Secret only.
This module adds only what the queues and the builder need on top, in the namespace that needs
it: each custom-resource kind where a queue launches it (`rbac.namespaces.<ns>.rules`, or
`rbac.agentNamespaceRules` for queues that launch into the agent's namespace) and kaniko's extras
in the agent namespace. Nothing cluster-wide; no list or watch on Secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from generator.agentconfig import AgentFacts
from generator.plurals import plural_for
from generator.queues import QueueInfo

# patch: our agent writes its bookkeeping (annotations, its finalizer) on the workloads it launched.
LAUNCH_VERBS = ("create", "get", "list", "watch", "patch", "delete")
OFFICIAL_LAUNCH_VERBS = ("create", "get", "list", "watch", "delete")
CHART_DEFAULTS = (
    ("batch", "jobs", LAUNCH_VERBS, "launch, watch and cancel Jobs"),
    ("", "pods", ("get", "list", "watch"), "follow the pods of runs"),
    ("", "pods/log", ("get",), "read run logs"),
    ("", "events", ("get", "list", "watch"), "explain pending pods"),
    ("", "secrets", ("get",), "check the API-key Secret (resourceNames: that Secret only)"),
)
OFFICIAL_AZURE_SECRET = "azure-storage-access-key"


@dataclass(frozen=True)
class Grant:
    """One resource with its verbs, and the reasons (queue files, builder) it is needed."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass
class RbacPlan:
    namespaces: dict[str, list[Grant]] = field(default_factory=dict)  # one target namespace each
    agent_ns: list[Grant] = field(default_factory=list)  # the agent's namespace only

    def agent_namespace_rules(self) -> list[dict[str, object]]:
        return _rules(self.agent_ns)

    def namespace_rules(self) -> dict[str, dict[str, list[dict[str, object]]]]:
        """`rbac.namespaces`: {namespace: {rules: [...]}}."""
        return {ns: {"rules": _rules(grants)} for ns, grants in sorted(self.namespaces.items())}

    def grants_in(self, namespace: str | None) -> list[Grant]:
        """What the plan adds in `namespace` (None: the agent's namespace)."""
        return list(self.agent_ns) if namespace is None else list(self.namespaces.get(namespace, []))


class PluralError(ValueError):
    """A custom resource kind whose plural the generator does not know."""

    def __init__(self, queue: QueueInfo) -> None:
        self.queue = queue
        super().__init__(
            f"no known resource plural for {queue.kind} in API group {queue.group or 'core'}; pass "
            f"--plural {queue.kind}=<plural> (kubectl api-resources --api-group={queue.group} lists it)")


def _rules(grants: Sequence[Grant]) -> list[dict[str, object]]:
    merged: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for g in grants:
        merged.setdefault((g.group, g.verbs, g.resource_names), []).append(g.resource)
    out: list[dict[str, object]] = []
    for (group, verbs, names), resources in sorted(merged.items()):
        rule: dict[str, object] = {"apiGroups": [group], "resources": sorted(set(resources))}
        if names:
            rule["resourceNames"] = list(names)
        rule["verbs"] = list(verbs)
        out.append(rule)
    return out


def _add(grants: list[Grant], new: Grant) -> None:
    for i, g in enumerate(grants):
        if (g.group, g.resource, g.verbs, g.resource_names) == (new.group, new.resource, new.verbs,
                                                                 new.resource_names):
            grants[i] = Grant(g.group, g.resource, g.verbs, g.resource_names,
                              tuple(dict.fromkeys((*g.reasons, *new.reasons))))
            return
    grants.append(new)


def queue_namespace(q: QueueInfo, agent_namespace: str | None, official_image: bool) -> str | None:
    """Where the queue's runs go; None for the agent's own namespace. The official agent sends
    runs of a queue without namespace to `default`."""
    ns = q.namespace or ("default" if official_image else None)
    return None if ns == agent_namespace else ns


def derive_rbac(queues: Sequence[QueueInfo], facts: AgentFacts, plurals: Mapping[str, str], *,
                official_image: bool = False, agent_namespace: str | None = None) -> RbacPlan:
    """Rules for the kinds the queues launch, where they launch them, and for kaniko builds.
    PluralError for an unknown kind."""
    plan = RbacPlan()
    for q in queues:
        if q.is_job:
            continue  # batch/jobs is a chart default
        plural = plural_for(q.group, q.kind, plurals)
        if plural is None:
            raise PluralError(q)
        ns = queue_namespace(q, agent_namespace, official_image)
        target = plan.agent_ns if ns is None else plan.namespaces.setdefault(ns, [])
        verbs = OFFICIAL_LAUNCH_VERBS if official_image else LAUNCH_VERBS
        _add(target, Grant(q.group, plural, verbs, reasons=(f"queue {q.file}: {q.kind_label}",)))
    if facts.builder == "kaniko":
        why = ("builder kaniko: build Jobs in the agent namespace",)
        _add(plan.agent_ns, Grant("batch", "jobs/status", ("get",), reasons=why))
        needs_docker_config = facts.push_registry == "acr" or bool(facts.secret_name)
        if needs_docker_config:
            _add(plan.agent_ns, Grant("", "configmaps", ("create", "get", "delete"),
                                      reasons=("builder kaniko: registry config for the build Job",)))
        if facts.cloud == "azure" and official_image:
            _add(plan.agent_ns, Grant("", "secrets", ("get",), (OFFICIAL_AZURE_SECRET,),
                                      reasons=("builder kaniko on azure: the agent checks the storage key",)))
    return plan
