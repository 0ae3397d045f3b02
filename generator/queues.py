"""What the generator needs to know about one queue config: where its runs go and what kind they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from generator.problems import Problem
from generator.yamlfile import Document

JOB_API_VERSIONS = ("batch/v1", "batch/v1beta1")


@dataclass(frozen=True)
class QueueInfo:
    """A validated queue config, reduced to the facts RBAC and namespaces depend on."""

    file: str
    body: dict[str, Any]
    prefix: tuple[str, ...]  # ("kubernetes",) when the file wraps the body, else ()
    namespace: str | None  # None: the agent's own namespace
    namespace_path: tuple[str, ...] | None
    api_version: str
    group: str
    version: str
    kind: str
    doc: Document | None = field(default=None, compare=False, repr=False)

    def problem(self, key: str, message: str) -> Problem:
        if self.doc is None:
            return Problem(self.file, message)
        return self.doc.problem((*self.prefix, key), message)

    @property
    def is_job(self) -> bool:
        return self.api_version in JOB_API_VERSIONS

    @property
    def kind_label(self) -> str:
        return f"{self.kind} ({self.group}/{self.version})" if self.group else f"{self.kind} ({self.version})"


def body_of(data: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    if isinstance(data, dict) and isinstance(data.get("kubernetes"), dict):
        return data["kubernetes"], ("kubernetes",)
    return (data if isinstance(data, dict) else {}), ()


def queue_info(doc: Document) -> tuple[QueueInfo, list[Problem]]:
    """Namespace, group, version, kind of a schema-valid queue config, plus semantic problems."""
    body, prefix = body_of(doc.data)
    problems: list[Problem] = []
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    namespace: str | None = None
    ns_path: tuple[str, ...] | None = None
    if meta.get("namespace"):
        namespace, ns_path = str(meta["namespace"]), (*prefix, "metadata", "namespace")
    elif body.get("namespace"):
        namespace, ns_path = str(body["namespace"]), (*prefix, "namespace")
    if namespace is not None and ns_path is not None and ("${" in namespace or "{{" in namespace):
        what = "macro" if "${" in namespace else "template variable"
        problems.append(doc.problem(ns_path, f"a namespace chosen by a {what} cannot be granted ahead of "
                                             "time; write the namespace name"))
    api_version = str(body.get("apiVersion") or "batch/v1")
    group, _, version = api_version.rpartition("/")
    group = str(body.get("group") or group)
    version = str(body.get("version") or version)
    is_job = api_version in JOB_API_VERSIONS
    kind = str(body.get("kind") or ("Job" if is_job else ""))
    info = QueueInfo(doc.file, body, prefix, namespace, ns_path, api_version, group, version, kind, doc)
    return info, problems
