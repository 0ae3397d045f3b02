"""Turns a popped run spec (queue config merged with the run's own arguments) into Kubernetes objects.

Pure: no I/O, no environment reads. The agent and `python -m generator queue` both call
`build_workload`, so what a preview shows is exactly what the agent submits.

What it guarantees:
- only the six documented macros are expanded; the agent's environment never is (`macros`);
- object names are deterministic per run-queue item, DNS-1123 safe and at most 63 characters;
- every object (and every pod template inside a custom resource) carries labels that tie it to
  the agent identity, queue, run-queue item and run (`names`);
- the W&B API key reaches containers only through a `secretKeyRef` (`env`);
- Job `backoffLimit`/`ttlSecondsAfterFinished` and per-container `securityContext` defaults are
  written where Kubernetes reads them, only when the queue config left them unset (`podpolicy`);
- a namespace outside the agent's targets, a pod that breaks the Pod Security Standards level
  exactly as the API server's PodSecurity admission judges it (`pss`), a reference to a Secret
  that is neither the API key's nor allowlisted (`secretrefs`), or an additional service of a kind
  other than Deployment, Service or Pod (`services`) raises `ManifestError` before anything is
  created.
"""

from agent.manifest.env import run_env
from agent.manifest.errors import ManifestError
from agent.manifest.macros import MACROS, RunInfo, expand_macros, kubernetes_args, run_info
from agent.manifest.names import (
    ANN_ENTITY,
    ANN_ITEM_ID,
    ANN_PROJECT,
    ANN_QUEUE,
    ANN_RUN_ID,
    ANN_RUN_NAME,
    LABEL_AGENT,
    LABEL_ITEM,
    LABEL_MANAGED_BY,
    LABEL_MONITOR,
    LABEL_QUEUE,
    LABEL_ROLE,
    LABEL_RUN_ID,
    MANAGED_BY,
    dns_name,
    identity_labels,
    item_label,
    label_value,
    selector,
    short_hash,
    workload_name,
)
from agent.manifest.podpolicy import apply_security_defaults, check_pod_spec, check_shape, pod_templates
from agent.manifest.pss import violations as pss_violations
from agent.manifest.secretrefs import secret_refs
from agent.manifest.services import AUXILIARY_KINDS
from agent.manifest.settings import SECURITY_LEVELS, ManifestSettings
from agent.manifest.workload import JOB_API_VERSIONS, build_workload, resolve_namespace, workload_of

__all__ = [
    "ANN_ENTITY", "ANN_ITEM_ID", "ANN_PROJECT", "ANN_QUEUE", "ANN_RUN_ID", "ANN_RUN_NAME", "AUXILIARY_KINDS",
    "JOB_API_VERSIONS",
    "LABEL_AGENT", "LABEL_ITEM", "LABEL_MANAGED_BY", "LABEL_MONITOR", "LABEL_QUEUE", "LABEL_ROLE",
    "LABEL_RUN_ID", "MACROS", "MANAGED_BY", "SECURITY_LEVELS", "ManifestError", "ManifestSettings", "RunInfo",
    "apply_security_defaults", "build_workload", "check_pod_spec", "check_shape", "dns_name", "expand_macros",
    "identity_labels", "item_label", "kubernetes_args", "label_value", "pod_templates", "pss_violations",
    "resolve_namespace", "run_env", "run_info", "secret_refs", "selector", "short_hash", "workload_name", "workload_of",
]
