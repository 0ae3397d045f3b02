"""Creating one item's objects: the workload first, then its auxiliary objects (additional_services)
with an ownerReference to it, so Kubernetes deletes them with it and none leak.

`409 AlreadyExists` for an object of the same item means "launched already" (an earlier attempt,
a restart, another replica): it is adopted, never created twice. A refusal by the API server
becomes a `Refused` with the reason in plain words; anything else (the API server unreachable)
is a `KubeUnavailable`: nothing is reported and the launch is tried again.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from agent.kube.client import Kube, KubeError, ResourceType
from agent.manifest import ANN_ITEM_ID


class Refused(Exception):
    """The API server refused an object for a reason a user must fix."""


class KubeUnavailable(Exception):
    """The API server could not be asked (connection, 5xx, timeout); try again later."""


@dataclass
class Created:
    rt: ResourceType
    workload: dict[str, Any]  # as the API server holds it
    new: bool  # False: it existed already (adopted)


def plain_words(exc: KubeError, what: str, namespace: str) -> str:
    """A refusal as a user reads it: what was refused, why, and what to do."""
    msg = exc.message or exc.reason
    if exc.status == 403 and "exceeded quota" in msg:
        why = f"a ResourceQuota in namespace {namespace} is used up ({msg})"
    elif exc.status == 403:
        why = (f"the agent is not allowed to create it ({msg}); check that namespace {namespace} exists and that "
               "the agent's ServiceAccount may create this kind there (the chart's Role in each target "
               "namespace; rbac.extraRules for custom resources)")
    elif exc.status == 404 and re.search(r'namespaces? "?' + re.escape(namespace), msg):
        why = f"namespace {namespace} does not exist"
    elif exc.status == 404:
        why = f"the cluster does not serve it ({msg})"
    elif exc.status == 422:
        why = f"the API server says the object is invalid: {msg}"
    elif exc.status == 409:
        why = msg
    else:
        why = msg
    return f"{exc.status}: cannot create {what} in {namespace}: {why}"


async def create_objects(kube: Kube, objs: list[dict[str, Any]], item_id: str) -> Created:
    """Create the workload (the last of `objs`) and then the others. Raises Refused or KubeUnavailable;
    on a refusal, what this call created is deleted again."""
    workload = objs[-1]
    ns = workload["metadata"]["namespace"]
    name = workload["metadata"]["name"]
    created: Created | None = None
    for obj in [workload, *objs[:-1]]:
        what = f"{obj.get('kind')} {obj['metadata'].get('name')}"
        try:
            rt = await kube.resolve(obj["apiVersion"], obj["kind"])
            if created is not None:
                obj["metadata"]["ownerReferences"] = [{
                    "apiVersion": workload["apiVersion"], "kind": workload["kind"], "name": name,
                    "uid": created.workload["metadata"]["uid"]}]
            # The agent may create Secrets (a run's own key) but not read them: an existing one is the
            # run's when its workload was adopted too (it is created only after the workload, with an
            # ownerReference to it), and someone else's when the workload is new.
            blind = created is not None and obj["apiVersion"] == "v1" and obj["kind"] == "Secret"
            got, new = await kube.create(obj, read_existing=not blind)
            owner_item = ((got.get("metadata") or {}).get("annotations") or {}).get(ANN_ITEM_ID)
            if blind and not new and created is not None and created.new:
                raise KubeError(409, "AlreadyExists", f"{what} already exists and did not come with this run's "
                                f"{workload['kind']}; delete it or give the queue config's metadata.name a "
                                "${run_id} macro")
            if not new and owner_item != item_id:
                # The name is taken by something this item did not create: never adopt it.
                owner = f"run-queue item {owner_item}" if owner_item else "something else"
                raise KubeError(409, "AlreadyExists", f"{what} already exists and belongs to {owner}; give the "
                                "queue config's metadata.name a ${run_id} macro")
        except KubeError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise KubeUnavailable(f"{what}: {exc}") from None
            if created is not None and created.new:  # undo only what this call created
                with contextlib.suppress(Exception):
                    await kube.patch(created.rt, ns, name, {"metadata": {"finalizers": None}})
                    await kube.delete(created.rt, ns, name)
            raise Refused(plain_words(exc, what if created is None else f"{what} (for {workload['kind']} {name})",
                                      ns)) from None
        except Exception as exc:  # the API server unreachable, TLS problems...
            raise KubeUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None
        if created is None:
            created = Created(rt, got, new)
    assert created is not None
    return created
