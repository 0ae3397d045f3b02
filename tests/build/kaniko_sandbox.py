"""Runs a build Job's Kaniko container contained, fed with exactly what the kubelet would give it.

The Job is the one the agent created on the API server. Its container's args and env
(``secretKeyRef`` values read from the cluster) and its volume mounts (a PVC as a host
directory, Secrets and ConfigMaps as files, ``emptyDir`` as a fresh directory) are resolved here;
init containers whose command is the agent's own (``python -m agent...``) run on the host. The
executor then runs in its own mount and PID namespaces, in a tmpfs root holding only the
executor (``/kaniko/executor``, like the official image), fresh ``/dev`` nodes and ``/proc``,
never the machine's real root filesystem.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localenv import tools

# What the official Kaniko image sets in its environment.
IMAGE_ENV = {"HOME": "/root", "USER": "root", "PATH": "/usr/local/bin:/kaniko", "DOCKER_CONFIG": "/kaniko/.docker/",
             "SSL_CERT_DIR": "/kaniko/ssl/certs"}
SANDBOX = r"""
set -eu
R="$1"; shift
mount -t tmpfs -o size=6g,mode=0755 kaniko-root "$R"
mkdir -p "$R/kaniko/.docker" "$R/dev" "$R/proc" "$R/tmp" "$R/etc" "$R/root"
cp "$EXECUTOR" "$R/kaniko/executor"
for n in null zero random urandom; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
mount -t proc proc "$R/proc"
while [ "$1" != "--" ]; do
  src="$1"; dst="$2"; ro="$3"; shift 3
  if [ -d "$src" ]; then mkdir -p "$R$dst"; else mkdir -p "$(dirname "$R$dst")"; touch "$R$dst"; fi
  mount --bind "$src" "$R$dst"
  if [ "$ro" = ro ]; then mount -o remount,bind,ro "$R$dst"; fi
done
shift
exec chroot "$R" /kaniko/executor "$@"
"""


@dataclass
class Result:
    returncode: int
    log: str
    args: list[str]


def _secret_value(get: Callable[[str, str], dict[str, Any]], ref: Mapping[str, str], kind: str) -> str:
    obj = get(kind, ref["name"])
    data = obj.get("data") or {}
    value = data[ref["key"]]
    return base64.b64decode(value).decode() if kind == "secret" else str(value)


def _env(container: Mapping[str, Any], get: Callable[[str, str], dict[str, Any]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif (src := (item.get("valueFrom") or {})).get("secretKeyRef"):
            env[item["name"]] = _secret_value(get, src["secretKeyRef"], "secret")
        elif src.get("configMapKeyRef"):
            env[item["name"]] = _secret_value(get, src["configMapKeyRef"], "configmap")
    return env


def _volume_dirs(pod: Mapping[str, Any], get: Callable[[str, str], dict[str, Any]], pvcs: Mapping[str, Path],
                 scratch: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for vol in pod.get("volumes") or []:
        name = vol["name"]
        if "persistentVolumeClaim" in vol:
            dirs[name] = pvcs[vol["persistentVolumeClaim"]["claimName"]]
        elif "emptyDir" in vol:
            dirs[name] = scratch / f"empty-{name}"
            dirs[name].mkdir()
        elif "secret" in vol or "configMap" in vol:
            kind, ref = ("secret", vol["secret"]["secretName"]) if "secret" in vol else \
                ("configmap", vol["configMap"]["name"])
            data = get(kind, ref).get("data") or {}
            items = (vol.get("secret") or vol.get("configMap") or {}).get("items") or \
                [{"key": k, "path": k} for k in data]
            target = scratch / f"{kind}-{name}"
            target.mkdir()
            for item in items:
                raw = data[item["key"]]
                (target / item["path"]).write_bytes(base64.b64decode(raw) if kind == "secret" else raw.encode())
            dirs[name] = target
        else:
            raise AssertionError(f"volume {name}: type not handled by the sandbox: {sorted(vol)}")
    return dirs


def _map(path: str, mounts: list[Mapping[str, Any]], dirs: Mapping[str, Path]) -> str:
    for m in mounts:
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/"):
            return str(dirs[m["name"]]) + path[len(m["mountPath"].rstrip("/")):]
    return path


def run_job(job: Mapping[str, Any], get: Callable[[str, str], dict[str, Any]], *,
            pvcs: Mapping[str, Path] | None = None, extra_env: Mapping[str, str] | None = None,
            timeout: float = 900) -> Result:
    """Run the Job's init containers (the agent's own) and Kaniko container; *get(kind, name)* reads the cluster."""
    pod = job["spec"]["template"]["spec"]
    with tempfile.TemporaryDirectory(prefix="kaniko-sandbox-") as tmp:
        scratch = Path(tmp)
        dirs = _volume_dirs(pod, get, pvcs or {}, scratch)
        for init in pod.get("initContainers") or []:
            cmd = list(init.get("command") or [])
            assert cmd[:3] == ["python", "-m", "agent.build.fetch"], f"init container not the agent's: {cmd}"
            host_cmd = [sys.executable, *cmd[1:-1], _map(cmd[-1], init.get("volumeMounts") or [], dirs)]
            env = {**os.environ, **_env(init, get)}
            proc = subprocess.run(host_cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                return Result(proc.returncode, proc.stdout + proc.stderr, host_cmd)
        container = pod["containers"][0]
        binds: list[str] = []
        for m in container.get("volumeMounts") or []:
            binds += [str(dirs[m["name"]]), m["mountPath"].rstrip("/") or "/", "ro" if m.get("readOnly") else "rw"]
        args = [str(a) for a in container.get("args") or []]
        root = scratch / "root"
        root.mkdir()
        env = {**IMAGE_ENV, **_env(container, get), **(extra_env or {}),
               "EXECUTOR": str(tools.binary("executor"))}
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + env["PATH"]  # for the sandbox script; Kaniko's own after
        cmd = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
               "sh", "-c", SANDBOX, "sandbox", str(root), *binds, "--", "--force", *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(proc.returncode, proc.stdout + proc.stderr, args)
