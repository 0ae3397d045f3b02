"""Facts the generator reads from a schema-valid agent config, and the checks the schema cannot express."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from generator.problems import Problem
from generator.yamlfile import Document

# The registries the official agent recognises (wandb/sdk/launch/utils.py), repository part included.
ECR_RE = re.compile(r"^(?:https://)?[\w-]+\.dkr\.ecr\.(?P<region>[\w-]+)\.amazonaws\.com/[./\w-]")
GAR_RE = re.compile(r"^(?:https://)?(?P<region>[\w-]+)-docker\.pkg\.dev/[\w-]+/[\w-]+", re.IGNORECASE)
ACR_RE = re.compile(r"^(?:https://)?\w+\.azurecr\.io/[\w-]")
STORE_CLOUD = (("s3://", "aws", "an S3"), ("gs://", "gcp", "a GCS"), ("https://", "azure", "an Azure blob"))
BUILDER_KEYS = ("type", "destination", "platform", "build-context-store", "build-job-name", "secret-name",
                "secret-key", "kaniko-image", "kaniko-config", "accelerator")
REGISTRY_CLOUD = {"ecr": "aws", "gcr": "gcp", "acr": "azure"}
REGISTRY_NAMES = {"ecr": "an ECR URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>)",
                  "gcr": "an Artifact Registry URI (<region>-docker.pkg.dev/<project>/<repository>/<image>)",
                  "acr": "an ACR URI (<registry>.azurecr.io/<repository>)"}
REGISTRY_TITLES = {"ecr": "ECR", "gcr": "Artifact Registry", "acr": "ACR"}


def registry_kind(uri: str) -> str | None:
    """ecr, gcr (Artifact Registry), acr, or None for any other registry."""
    if ECR_RE.match(uri):
        return "ecr"
    if GAR_RE.match(uri):
        return "gcr"
    if ACR_RE.match(uri):
        return "acr"
    return None


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class AgentFacts:
    cloud: str | None
    region: str | None
    builder: str  # kaniko, noop or docker; an empty builder is noop in a cluster (no docker CLI)
    context_store: str | None
    destination: str | None
    registry_type: str | None
    registry_uri: str | None
    secret_name: str | None
    secret_key: str | None
    secure_mode: bool

    @property
    def image_repo(self) -> str | None:
        return self.destination or self.registry_uri

    @property
    def push_registry(self) -> str | None:
        """ecr/gcr/acr of the repository kaniko pushes to, or None."""
        if self.destination:
            return registry_kind(self.destination)
        return self.registry_type or (registry_kind(self.registry_uri) if self.registry_uri else None)


def agent_facts(data: dict[str, Any]) -> AgentFacts:
    env, builder, registry = _section(data, "environment"), _section(data, "builder"), _section(data, "registry")
    secure = data.get("secure_mode")
    return AgentFacts(
        cloud=_str(env.get("type")),
        region=_str(env.get("region")),
        builder=_str(builder.get("type")) or "noop",
        context_store=_str(builder.get("build-context-store")),
        destination=_str(builder.get("destination")),
        registry_type=_str(registry.get("type")),
        registry_uri=_str(registry.get("uri")),
        secret_name=_str(builder.get("secret-name")),
        secret_key=_str(builder.get("secret-key")),
        secure_mode=secure is True or (isinstance(secure, str) and secure.lower() in ("1", "on", "t", "true", "y", "yes")),
    )


def _uri_problems(doc: Document, path: tuple[str, ...], uri: str, declared: str | None,
                  facts: AgentFacts) -> list[Problem]:
    out = []
    kind = registry_kind(uri)
    if declared and kind != declared:
        out.append(doc.problem(path, f"{uri!r} is not {REGISTRY_NAMES[declared]}, which "
                                     f"registry.type {declared} needs"))
        return out
    if kind is None:
        out.append(doc.problem(path, f"{uri} is not an ECR, Artifact Registry or ACR repository; the agent "
                                     "cannot check it, and pushing there needs credentials you provide").as_warning())
        return out
    if facts.cloud and REGISTRY_CLOUD[kind] != facts.cloud:
        out.append(doc.problem(path, f"{REGISTRY_TITLES[kind]} registries are reached with {REGISTRY_CLOUD[kind]} "
                                     f"credentials, but environment.type is {facts.cloud}").as_warning())
        return out
    region = None
    if kind == "ecr":
        m = ECR_RE.match(uri)
        region = m.group("region") if m else None
    elif kind == "gcr":
        m = GAR_RE.match(uri)
        location = m.group("region").lower() if m else ""
        region = location if any(c.isdigit() for c in location) else None  # multi-regions (us, europe) fit any
    if region and facts.region and region != facts.region:
        out.append(doc.problem(path, f"registry region {region} differs from environment.region "
                                     f"{facts.region}").as_warning())
    return out


def _as_int(value: Any) -> int | None:
    """The integer the official agent makes of a schema-valid max_jobs / max_schedulers (int(value))."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def is_placeholder(name: Any) -> bool:
    """A docs or chart placeholder such as `<queue-name>` or `<YOUR QUEUE NAME>`."""
    return isinstance(name, str) and ("<" in name or ">" in name)


def agent_problems(doc: Document, *, kaniko_pvc: bool = False) -> list[Problem]:
    """Checks beyond the schema: errors for configs every run of which would fail, warnings for
    configs that work but probably not as meant (and where the official agent warns)."""
    data = doc.data
    facts = agent_facts(data)
    out: list[Problem] = []
    for i, name in enumerate(data.get("queues") or []):
        if is_placeholder(name):
            out.append(doc.problem(("queues", i), f"{name!r} is a placeholder; write the name of your launch "
                                                  "queue"))
    for key, what in (("max_jobs", "launches no run"), ("max_schedulers", "runs no sweep scheduler")):
        if data.get(key) is not None and _as_int(data[key]) == 0:
            out.append(doc.problem((key,), f"{data[key]!r} means 0: the agent {what}; -1 means no limit")
                       .as_warning())
    env = _section(data, "environment")
    if env and not facts.cloud:
        out.append(doc.problem(("environment",), "environment needs a type (aws, gcp or azure); without one "
                                                 "every run fails (the agent cannot create the environment)"))
    if facts.cloud in ("aws", "gcp") and not facts.region:
        out.append(doc.problem(("environment", "region"), f"environment.type {facts.cloud} needs a region"))
    builder = _section(data, "builder")
    if builder and not _str(builder.get("type")):
        out.append(doc.problem(("builder",), "builder needs a type (kaniko, noop or docker); without one every "
                                             "run fails (the agent cannot create the builder)"))
    if facts.builder == "docker":
        out.append(doc.problem(("builder", "type"), "the docker builder needs a docker daemon, which an agent in "
                                                    "Kubernetes does not have: runs of image jobs work, builds "
                                                    "fail; use kaniko to build in the cluster").as_warning())
    if facts.builder == "kaniko":
        if not facts.context_store and not kaniko_pvc:
            hint = (" (build_context_store is ignored by the agent: the key is spelled build-context-store)"
                    if "build_context_store" in builder else "")
            out.append(doc.problem(("builder",), "a kaniko builder needs builder.build-context-store "
                                                 "(s3://, gs:// or an Azure blob URL) or --kaniko-pvc NAME" + hint))
        if not facts.image_repo:
            out.append(doc.problem(("builder",), "a kaniko builder needs builder.destination, the image "
                                                 "repository built images are pushed to"))
        if facts.context_store and not facts.cloud:
            out.append(doc.problem(("builder", "build-context-store"),
                                   "uploading a build context needs environment.type (aws, gcp or azure)"))
        if bool(facts.secret_name) != bool(facts.secret_key):
            out.append(doc.problem(("builder",), "secret-name and secret-key must be given together"))
    if facts.context_store and facts.cloud:
        want, what = next((cloud, what) for prefix, cloud, what in STORE_CLOUD
                          if facts.context_store.startswith(prefix))
        if want != facts.cloud:
            out.append(doc.problem(("builder", "build-context-store"),
                                   f"{facts.context_store!r} is {what} store, which needs environment.type {want}, "
                                   f"not {facts.cloud}"))
    if facts.destination:
        out.extend(_uri_problems(doc, ("builder", "destination"), facts.destination, None, facts))
    if facts.registry_uri:
        out.extend(_uri_problems(doc, ("registry", "uri"), facts.registry_uri, facts.registry_type, facts))
    for key in builder:
        if key not in BUILDER_KEYS:
            close = difflib.get_close_matches(str(key).replace("_", "-"), BUILDER_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(BUILDER_KEYS)}"
            out.append(doc.problem(("builder", key), f"unknown key; the agent ignores it; {hint}", key=True)
                       .as_warning())
    for key in env:
        if key not in ("type", "region"):
            out.append(doc.problem(("environment", key), "unknown key; the agent ignores it (it knows type and "
                                                         "region)", key=True).as_warning())
    return out
