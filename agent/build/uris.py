"""Registry and context-store URIs: which cloud each belongs to, and their parts. The one place
these patterns live; the generator imports them."""

from __future__ import annotations

import re
from dataclasses import dataclass

ECR_RE = re.compile(r"^(?:https://)?(?P<account>[\w-]+)\.dkr\.ecr\.(?P<region>[\w-]+)\.amazonaws\.com/"
                    r"(?P<repository>[./\w-]+)$")
GAR_RE = re.compile(r"^(?:https://)?(?P<region>[\w-]+)-docker\.pkg\.dev/(?P<project>[\w-]+)/"
                    r"(?P<repository>[\w-]+)/(?P<image>[\w-]+)$", re.IGNORECASE)
ACR_RE = re.compile(r"^(?:https://)?(?P<registry>\w+)\.azurecr\.io/(?P<repository>[\w/-]+)$")
S3_RE = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<path>.*))?$")
GCS_RE = re.compile(r"^gs://(?P<bucket>[^/]+)(?:/(?P<path>.*))?$")
AZURE_BLOB_RE = re.compile(r"^https://(?P<account>[^./]+)\.blob\.core\.windows\.net/(?P<container>[^/]+)/?"
                           r"(?P<path>.*)$")

REGISTRY_CLOUD = {"ecr": "aws", "gcr": "gcp", "acr": "azure"}
STORE_CLOUD = {"s3": "aws", "gs": "gcp", "azure": "azure"}


def registry_kind(uri: str) -> str | None:
    """ecr, gcr (Artifact Registry), acr, or None for any other registry (matched on the host)."""
    host = strip_scheme(uri).split("/", 1)[0].lower()
    if re.fullmatch(r"[\w-]+\.dkr\.ecr\.[\w-]+\.amazonaws\.com", host):
        return "ecr"
    if host.endswith("-docker.pkg.dev"):
        return "gcr"
    if host.endswith(".azurecr.io"):
        return "acr"
    return None


def strip_scheme(uri: str) -> str:
    return uri[len("https://"):] if uri.startswith("https://") else uri


def store_kind(uri: str) -> str | None:
    """s3, gs or azure for a build-context-store URI; None when it is none of the three."""
    if S3_RE.match(uri):
        return "s3"
    if GCS_RE.match(uri):
        return "gs"
    if AZURE_BLOB_RE.match(uri):
        return "azure"
    return None


@dataclass(frozen=True)
class ImageRef:
    host: str
    repository: str
    tag: str

    @property
    def repo_uri(self) -> str:
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


def image_ref(repo_uri: str, tag: str) -> ImageRef:
    """``host/path`` + tag; a repository without a host is on Docker Hub, like docker's references."""
    bare = strip_scheme(repo_uri).rstrip("/")
    first, _, rest = bare.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return ImageRef(first, rest, tag)
    path = bare if "/" in bare else f"library/{bare}"
    return ImageRef("registry-1.docker.io", path, tag)
