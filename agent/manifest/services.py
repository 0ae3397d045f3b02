"""`additional_services`: the auxiliary objects a run spec asks for, created before the workload.

The official runner hands each entry's `config` to kubernetes_asyncio's `create_from_dict`, which
creates any built-in kind (cluster-scoped ones too), and it knows how to wait for exactly three:
Deployment, Service and Pod. Those three are the kinds we create; anything else is refused, so a
queue pusher cannot make a Role, a RoleBinding, a Secret or a cluster-scoped object through the
agent. Every pod template inside them is prepared and checked like the workload's own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from agent.manifest.errors import ManifestError
from agent.manifest.labels import metadata_of, stamp
from agent.manifest.macros import expand_macros
from agent.manifest.names import object_name
from agent.manifest.podpolicy import check_shape, pod_templates
from agent.manifest.pods import PodPlan, prepare_pods
from agent.manifest.settings import ManifestSettings

AUXILIARY_KINDS = (("v1", "Service"), ("v1", "Pod"), ("apps/v1", "Deployment"))
_WITH_PODS = ("Pod", "Deployment")


def auxiliary_objects(services: Any, *, macros: Mapping[str, str], namespace: str, base_name: str,
                      item_id: str, labels: Mapping[str, str], annotations: Mapping[str, str],
                      pods: PodPlan, settings: ManifestSettings) -> list[dict[str, Any]]:
    """The objects of `additional_services`, in order; ManifestError for any entry refused."""
    if services is None:
        return []
    if not isinstance(services, list):
        raise ManifestError("additional-services", "additional_services must be a list")
    objs = []
    for i, service in enumerate(services):
        where = f"additional_services[{i}]"
        config = service.get("config") if isinstance(service, Mapping) else None
        if not config:  # like the official agent: an entry without a config is skipped
            if isinstance(service, Mapping) or service is None:
                continue
            raise ManifestError("additional-services", f"{where} must be an object with a config")
        aux = expand_macros(copy.deepcopy(config), macros)
        if not isinstance(aux, dict):
            raise ManifestError("additional-services", f"{where}.config must be an object")
        kind, api_version = aux.get("kind"), aux.get("apiVersion")
        if (api_version, kind) not in AUXILIARY_KINDS:
            allowed = ", ".join(f"{k} ({v})" for v, k in AUXILIARY_KINDS)
            raise ManifestError("additional-services", f"{where}: {kind or 'no kind'} ({api_version or 'no apiVersion'}) "
                                                       f"is not a kind the agent creates (allowed: {allowed})")
        where = f"{where} {kind}"
        meta = metadata_of(aux, where)
        check_shape(aux, where)
        ns = meta.get("namespace") or namespace
        if ns != namespace:
            raise ManifestError("namespace", f"{where} must be in the run's namespace {namespace}, not {ns}")
        meta.pop("generateName", None)
        meta["namespace"] = namespace
        meta["name"] = object_name(kind, meta.get("name"), f"{base_name}-aux{i}", salt=item_id)
        stamp(meta, labels, annotations, where)
        if kind == "Pod" and not isinstance(aux.get("spec"), dict):
            raise ManifestError("additional-services", f"{where} needs a spec with containers")
        if kind in _WITH_PODS or any(True for _ in pod_templates(aux)):  # any pod template, any kind
            prepare_pods(aux, pods, settings, where)
        objs.append(aux)
    return objs
