"""The builder settings from the agent config (``builder``, ``registry``, ``environment``) and the
environment the chart gives the agent; a config that cannot build is refused here, at start-up,
in one line each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.build.job import DEFAULT_JOB_NAME, DEFAULT_KANIKO_IMAGE, KanikoSettings
from agent.build.uris import ACR_RE, ECR_RE, GAR_RE, REGISTRY_CLOUD, STORE_CLOUD, registry_kind, store_kind

_URI_PATTERNS = {"ecr": ECR_RE, "gcr": GAR_RE, "acr": ACR_RE}
_URI_SHAPES = {"ecr": "<account>.dkr.ecr.<region>.amazonaws.com/<repository>",
               "gcr": "<region>-docker.pkg.dev/<project>/<repository>/<image>",
               "acr": "<registry>.azurecr.io/<repository>"}


class BuildConfigError(ValueError):
    """A builder config that cannot build: one line naming the key and what is allowed."""


def _section(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key)
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def kaniko_settings(config: Mapping[str, Any], env: Mapping[str, str], where: str = "launch-config"
                    ) -> KanikoSettings | None:
    """The Kaniko settings, or None when the builder is not kaniko (noop: prebuilt images only)."""
    builder, registry, environment = (_section(config, k) for k in ("builder", "registry", "environment"))
    if _str(builder.get("type")) != "kaniko":
        return None
    cloud = _str(environment.get("type"))
    region = _str(environment.get("region"))
    store = _str(builder.get("build-context-store")).rstrip("/")
    pvc = env.get("WANDB_LAUNCH_KANIKO_PVC_NAME", "").strip()
    if not store and not pvc:
        raise BuildConfigError(f"{where}: key builder.build-context-store: a kaniko builder needs a build context "
                               "store (s3://bucket/path, gs://bucket/path or https://<account>.blob.core.windows.net/"
                               "<container>/path) or a PVC (chart value kanikoPvcName)")
    if store and not pvc:
        kind = store_kind(store)
        if kind is None:
            raise BuildConfigError(f"{where}: key builder.build-context-store: {store!r} is not an s3://, gs:// or "
                                   "https://<account>.blob.core.windows.net/<container> URI")
        if cloud != STORE_CLOUD[kind]:
            raise BuildConfigError(f"{where}: key builder.build-context-store: {store!r} needs environment.type "
                                   f"{STORE_CLOUD[kind]}, not {cloud or 'none'}")
    declared = _str(registry.get("type"))
    destination = _str(builder.get("destination")) or _str(registry.get("uri"))
    key = "builder.destination" if _str(builder.get("destination")) else "registry.uri"
    if not destination:
        raise BuildConfigError(f"{where}: key builder.destination: a kaniko builder needs the image repository "
                               "it pushes to (builder.destination, or registry.uri)")
    kind = registry_kind(destination)
    if key == "registry.uri" and declared and declared != kind:
        raise BuildConfigError(f"{where}: key registry.uri: {destination!r} is not a {declared} URI "
                               f"({_URI_SHAPES.get(declared, '?')})")
    registry_region = ""
    if kind:
        match = _URI_PATTERNS[kind].match(destination)
        if not match:
            raise BuildConfigError(f"{where}: key {key}: {destination!r} is not a valid {kind} repository "
                                   f"({_URI_SHAPES[kind]}, no tag)")
        if cloud and REGISTRY_CLOUD[kind] != cloud:
            raise BuildConfigError(f"{where}: key {key}: a {kind} registry needs environment.type "
                                   f"{REGISTRY_CLOUD[kind]}, not {cloud}")
        registry_region = match.groupdict().get("region") or ""
    elif ":" in destination.rsplit("/", 1)[-1]:
        raise BuildConfigError(f"{where}: key {key}: {destination!r} has a tag; give the repository only")
    secret_name, secret_key = _str(builder.get("secret-name")), _str(builder.get("secret-key"))
    if bool(secret_name) != bool(secret_key):
        raise BuildConfigError(f"{where}: key builder.secret-name: secret-name and secret-key go together")
    kaniko_config = builder.get("kaniko-config") or {}
    if not isinstance(kaniko_config, Mapping):
        raise BuildConfigError(f"{where}: key builder.kaniko-config: must be a partial Job manifest (a mapping)")
    return KanikoSettings(
        destination=destination.removeprefix("https://"),
        registry_kind=kind,
        registry_region=registry_region,
        context_store=store,
        environment=cloud,
        region=region,
        build_job_name=_str(builder.get("build-job-name")) or DEFAULT_JOB_NAME,
        kaniko_image=_str(builder.get("kaniko-image")) or DEFAULT_KANIKO_IMAGE,
        kaniko_config=dict(kaniko_config),
        secret_name=secret_name,
        secret_key=secret_key,
        pvc_name=pvc,
        pvc_mount_path=(env.get("WANDB_LAUNCH_KANIKO_PVC_MOUNT_PATH") or "/kaniko").rstrip("/"),
        docker_config_secret=env.get("WANDB_LAUNCH_KANIKO_AUTH_SECRET", "").strip(),
        azure_key_secret=env.get("LAUNCH_AGENT_AZURE_STORAGE_SECRET", "").strip(),
        service_account=env.get("WANDB_LAUNCH_SERVICE_ACCOUNT_NAME", "").strip() or "default",
    )
