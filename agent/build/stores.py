"""Where build contexts go and how Kaniko reads them back: S3, GCS, Azure blob or a shared PVC.

``upload`` returns what the build Job needs: Kaniko's ``--context`` and, for Azure without a
static storage key, an init container that fetches the context through a short-lived read-only
SAS URL into an ``emptyDir`` (the pinned Kaniko reads Azure blobs only with
``AZURE_STORAGE_ACCESS_KEY``; a ``tar://`` context needs no key).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from agent.build import aws, azure, gcp
from agent.build.job import PVC_CONTEXT_DIR, KanikoSettings
from agent.build.source import BuildError
from agent.build.uris import AZURE_BLOB_RE, GCS_RE, S3_RE

FETCH_DIR = "/workspace-context"
FETCH_VOLUME = "build-context"


@dataclass
class Uploaded:
    context_url: str  # Kaniko --context
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    secret_data: dict[str, str] = field(default_factory=dict)  # for the Job's own Secret (SAS URL)


def _key(prefix: str | None, name: str) -> str:
    prefix = (prefix or "").strip("/")
    return f"{prefix}/{name}" if prefix else name


@dataclass
class Clouds:
    """The agent's identities, created once and reused by every build."""

    http: httpx.AsyncClient
    aws: aws.CredentialChain
    gcp: gcp.TokenSource
    azure: azure.AzureIdentity

    @classmethod
    def create(cls, http: httpx.AsyncClient, env: dict[str, str] | None = None) -> Clouds:
        return cls(http, aws.CredentialChain(http, env), gcp.TokenSource(http, env), azure.AzureIdentity(http, env))


async def upload(clouds: Clouds, settings: KanikoSettings, archive: Path, sha256: str, name: str,
                 fetch_image: str = "") -> Uploaded:
    """Put the context archive where the build Job reads it; *name* is the object's base name."""
    file = f"{name}.tgz"
    if settings.pvc_name:
        target = Path(settings.pvc_mount_path) / file
        try:
            shutil.copyfile(archive, target.with_suffix(".partial"))
            target.with_suffix(".partial").replace(target)
        except OSError as exc:
            raise BuildError(f"copying the build context to the PVC mounted at {settings.pvc_mount_path} failed: "
                             f"{exc.strerror or exc}", stage="agent") from None
        return Uploaded(f"tar://{PVC_CONTEXT_DIR}/{file}")
    store = settings.context_store
    if match := S3_RE.match(store):
        key = _key(match.group("path"), file)
        await aws.s3_put(clouds.http, clouds.aws, match.group("bucket"), key, archive, sha256, settings.region)
        return Uploaded(f"s3://{match.group('bucket')}/{key}")
    if match := GCS_RE.match(store):
        key = _key(match.group("path"), file)
        await gcp.gcs_upload(clouds.http, clouds.gcp, match.group("bucket"), key, archive)
        return Uploaded(f"gs://{match.group('bucket')}/{key}")
    if match := AZURE_BLOB_RE.match(store):
        account, container = match.group("account"), match.group("container")
        blob = _key(match.group("path"), file)
        await azure.put_blob(clouds.http, clouds.azure, account, container, blob, archive)
        if settings.azure_key_secret:
            return Uploaded(f"https://{account}.blob.core.windows.net/{container}/{blob}")
        if not fetch_image:
            raise BuildError("Azure contexts without a storage key need the agent's image for the fetch step "
                             "(LAUNCH_AGENT_IMAGE)", stage="agent")
        sas = await azure.read_sas_url(clouds.http, clouds.azure, account, container, blob)
        return _fetched(file, sas, fetch_image, secret_name(name))
    raise BuildError(f"builder.build-context-store {store!r} is not a supported store", stage="agent")


def secret_name(build: str) -> str:
    """The Secret holding a build's context URL (owned by its Job)."""
    return f"{build[:55]}-context"


def _fetched(file: str, url: str, image: str, secret: str) -> Uploaded:
    """An init container (the agent's image) that downloads the context from a URL kept in a Secret."""
    init = {
        "name": "fetch-context",
        "image": image,
        "command": ["python", "-m", "agent.build.fetch", f"{FETCH_DIR}/{file}"],
        "env": [{"name": "LAUNCH_AGENT_CONTEXT_URL", "valueFrom": {"secretKeyRef": {
            "name": secret, "key": "context-url"}}}],
        "volumeMounts": [{"name": FETCH_VOLUME, "mountPath": FETCH_DIR}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    return Uploaded(f"tar://{FETCH_DIR}/{file}", [init], [{"name": FETCH_VOLUME, "emptyDir": {}}],
                    [{"name": FETCH_VOLUME, "mountPath": FETCH_DIR}], {"context-url": url})
