"""Workload identity of the agent's ServiceAccount, from environment.type and --identity."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ANNOTATIONS = {
    "aws": "eks.amazonaws.com/role-arn",
    "gcp": "iam.gke.io/gcp-service-account",
    "azure": "azure.workload.identity/client-id",
}
AZURE_POD_LABEL = ("azure.workload.identity/use", "true")
_FORMATS = {
    "aws": (re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"),
            "an IAM role ARN, arn:aws:iam::<12-digit account>:role/<role> (IRSA)"),
    "gcp": (re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9.:]*[a-z0-9]\.iam\.gserviceaccount\.com$"),
            "a Google service account email, <name>@<project>.iam.gserviceaccount.com (GKE Workload Identity)"),
    "azure": (re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"),
              "the client id (a GUID) of a managed identity or app registration (Azure Workload Identity)"),
}


@dataclass(frozen=True)
class Identity:
    annotations: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)
    why: str = ""


class IdentityError(ValueError):
    """A missing or malformed identity; the message names the flag that supplies it."""


def expected(cloud: str) -> str:
    return _FORMATS[cloud][1]


def derive_identity(cloud: str | None, value: str | None, *, opt_out: bool) -> Identity:
    if opt_out:
        return Identity(why="--no-identity: cloud credentials come from secrets or the node")
    if cloud is None:
        if value:
            raise IdentityError("--identity needs environment.type (aws, gcp or azure) in the agent config")
        return Identity()
    if not value:
        raise IdentityError(f"environment.type is {cloud}: pass --identity with {expected(cloud)}, "
                            "or --no-identity to use static credentials from secrets")
    pattern, what = _FORMATS[cloud]
    if not pattern.match(value):
        raise IdentityError(f"--identity {value!r} is not {what}")
    labels = dict([AZURE_POD_LABEL]) if cloud == "azure" else {}
    return Identity({ANNOTATIONS[cloud]: value}, labels, f"{cloud} workload identity")
