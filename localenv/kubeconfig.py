"""Kubeconfig files: client-certificate ones for the local control plane, and token ones for
a ServiceAccount, minted through the TokenRequest API (``kubectl create token``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import yaml

CLUSTER = "localenv"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _document(cluster: dict, user_name: str, user: dict, namespace: str | None = None) -> dict:
    context: dict = {"cluster": CLUSTER, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": user_name, "context": context}],
        "current-context": user_name,
        "preferences": {},
    }


def _write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(doc, handle, sort_keys=False)
    return path


def write_client_cert(path: Path, server: str, ca: Path, cert: Path, key: Path, user_name: str) -> Path:
    """A self-contained kubeconfig (data embedded) authenticating with a client certificate."""
    cluster = {"server": server, "certificate-authority-data": _b64(ca)}
    user = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    return _write(path, _document(cluster, user_name, user))


class TokenError(RuntimeError):
    """Minting a ServiceAccount token failed (message carries kubectl's error)."""


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if proc.returncode != 0:
        raise TokenError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()}")
    return proc.stdout


def mint_service_account(
    kubectl: Path,
    admin_kubeconfig: Path,
    namespace: str,
    service_account: str,
    out: Path,
    duration: str = "2h",
    audiences: tuple[str, ...] = (),
) -> Path:
    """Write *out*: a kubeconfig whose only credential is a fresh token of the ServiceAccount.

    The token comes from the TokenRequest API, so the bearer has exactly the RBAC the
    ServiceAccount has; the cluster entry (server, CA) is copied from the admin kubeconfig.
    """
    args = ["create", "token", service_account, "-n", namespace, f"--duration={duration}"]
    for audience in audiences:
        args.append(f"--audience={audience}")
    token = _kubectl(kubectl, admin_kubeconfig, *args).strip()
    if not token:
        raise TokenError(f"kubectl create token {service_account} -n {namespace}: empty token")
    view = json.loads(_kubectl(kubectl, admin_kubeconfig, "config", "view", "--raw", "--minify", "--flatten", "-o", "json"))
    cluster = dict(view["clusters"][0]["cluster"])
    user_name = f"system:serviceaccount:{namespace}:{service_account}"
    return _write(out, _document(cluster, user_name, {"token": token}, namespace=namespace))
