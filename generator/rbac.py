"""The RBAC rules the agent needs beyond the chart's defaults, and why.

The chart always grants, in every target namespace: batch/jobs create/get/list/watch/delete,
pods get/list/watch, pods/log get, events get/list/watch and get on the API-key Secret only.
This module adds only what the queues and the builder need on top: custom resources in every
target namespace (`rbac.extraRules`) and kaniko's extras in the agent namespace
(`rbac.agentNamespaceRules`). Nothing cluster-wide; no list or watch on Secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from generator.agentconfig import AgentFacts
from generator.plurals import plural_for
from generator.queues import QueueInfo

LAUNCH_VERBS = ("create", "get", "list", "watch", "delete")
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
    extra: list[Grant] = field(default_factory=list)  # every target namespace
    agent_ns: list[Grant] = field(default_factory=list)  # the agent's namespace only

    def extra_rules(self) -> list[dict[str, object]]:
        return _rules(self.extra)

    def agent_namespace_rules(self) -> list[dict[str, object]]:
        return _rules(self.agent_ns)


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


def derive_rbac(queues: Sequence[QueueInfo], facts: AgentFacts, plurals: Mapping[str, str], *,
                official_image: bool = False) -> RbacPlan:
    """Rules for the kinds the queues launch and for kaniko builds. PluralError for an unknown kind."""
    plan = RbacPlan()
    for q in queues:
        if q.is_job:
            continue  # batch/jobs is a chart default
        plural = plural_for(q.group, q.kind, plurals)
        if plural is None:
            raise PluralError(q)
        _add(plan.extra, Grant(q.group, plural, LAUNCH_VERBS, reasons=(f"queue {q.file}: {q.kind_label}",)))
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
