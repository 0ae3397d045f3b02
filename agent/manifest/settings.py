"""What the agent knows about itself: everything the builder needs besides the run spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SECURITY_LEVELS = ("privileged", "baseline", "restricted")


@dataclass(frozen=True)
class ManifestSettings:
    """What the agent knows about itself; everything `build_workload` needs besides the spec."""

    agent_namespace: str = "default"
    target_namespaces: tuple[str, ...] = ()  # the agent namespace is always a target
    api_key_secret: str = "wandb-api-key"  # Secret (key `password`) present in every target namespace
    base_url: str = "https://api.wandb.ai"
    agent_identity: str = "launch-agent"  # stable across restarts: the release name
    queue_entity: str = ""
    security_level: str = "baseline"
    secure_mode: bool = False
    # Service accounts a workload may name under baseline/restricted ("default" is always allowed).
    allowed_service_accounts: tuple[str, ...] = ()
    # Secrets, besides api_key_secret, that a launched pod may reference (env, envFrom, volumes).
    allowed_secrets: tuple[str, ...] = ()
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    # Code and git jobs: the agent's own image runs the init container that fetches the code; with
    # a code PVC (the official agent's PVC mode) the agent writes the code there instead.
    source_image: str = ""
    code_pvc_name: str = ""
    code_pvc_mount_path: str = ""
    git_credentials_secret: str = ""  # Secret (key .git-credentials) in every target namespace
    max_code_bytes: int = 1 << 30
    # Runs that carry their own W&B key (runSpec._wandb_api_key) get a Secret of their own.
    per_user_keys: bool = False

    def targets(self) -> tuple[str, ...]:
        seen = [self.agent_namespace]
        seen.extend(ns for ns in self.target_namespaces if ns and ns not in seen)
        return tuple(seen)
