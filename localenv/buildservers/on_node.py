"""What image builds need on the real node: the Kaniko executor image, and containerd trusting the
local registry.

``kaniko_image()`` is the pinned static executor at ``/kaniko/executor`` with the directories and
environment of the official image (``DOCKER_CONFIG=/kaniko/.docker/``, ``SSL_CERT_DIR=/kaniko/ssl/certs``
holding the machine's CA bundle), built without a registry and cached by content hash
(``localenv.images``). ``trust_registry(node, "host:port")`` lets the node's containerd pull from a
plain-HTTP registry (a ``hosts.toml`` under its ``registry.config_path``), so runs pull the images
Kaniko pushed the way a cluster does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from localenv import images, tools
from localenv.images.oci import Archive, ImageConfig

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENV = {"HOME": "/root", "USER": "root", "PATH": "/usr/local/bin:/kaniko", "DOCKER_CONFIG": "/kaniko/.docker/",
       "SSL_CERT_DIR": "/kaniko/ssl/certs"}


def kaniko_image(log: images.Log = images._default_log) -> Archive:
    images.cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images.cache_dir()) as tmp:
        root = Path(tmp) / "kaniko-rootfs"
        for d in ("kaniko/.docker", "kaniko/ssl/certs", "workspace", "etc", "tmp", "root"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(tools.binary("executor"), root / "kaniko" / "executor")
        if CA_BUNDLE.is_file():
            shutil.copyfile(CA_BUNDLE, root / "kaniko" / "ssl" / "certs" / "ca-certificates.crt")
        (root / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
        config = ImageConfig(entrypoint=["/kaniko/executor"], env=ENV, workdir="/workspace")
        return images.from_rootfs("kaniko-executor", root, config, log)


def trust_registry(node: Any, host_port: str) -> None:
    """Let the real node's containerd pull from the plain-HTTP registry at *host_port*."""
    hosts = node.paths.containerd / "certs.d" / host_port / "hosts.toml"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(f'server = "http://{host_port}"\n\n[host."http://{host_port}"]\n'
                     '  capabilities = ["pull", "resolve"]\n')
