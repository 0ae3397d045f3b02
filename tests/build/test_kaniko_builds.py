"""Builds that really happen: the agent's Builder creates the build Job on the real API server and
uploads the context to a real store; the Job's Kaniko container runs (contained, see
``kaniko_sandbox``) with exactly that Job's args, env and mounts, reads the context back and
pushes to the real registry. The built image then runs under buildah and prints its line, and
every generated context also builds with buildah.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import kaniko_sandbox
import pytest

from agent.build import status
from agent.build.builder import SECRETS, Builder, Prepared
from agent.build.settings import kaniko_settings
from agent.build.source import BuildSource
from agent.build.stores import Clouds
from agent.kube.client import JOBS, Kube
from agent.manifest import ManifestSettings
from localenv.buildservers import baseimage, servers
from localenv.pytest_plugin import Kube as LocalKube

pytestmark = [pytest.mark.cluster, pytest.mark.buildservers]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
LOG = logging.getLogger("test.kaniko")


@pytest.fixture(scope="module")
def python_base(buildservers: servers.BuildServers) -> list[str]:
    return baseimage.push_python(buildservers["registry"].url)


@dataclass
class Env:
    kube: LocalKube
    servers: servers.BuildServers
    namespace: str
    registry: str  # host:port
    workdir: Path

    def config(self, store: str, cloud: str, extra_env: list[dict[str, str]] | None = None,
               **builder: Any) -> dict[str, Any]:
        args = ["--insecure=true", "--insecure-pull=true", f"--registry-mirror={self.registry}"]
        env = [{"name": k, "value": v} for k, v in AWS.items()] + [
            {"name": "S3_ENDPOINT", "value": self.servers["s3"].url}, {"name": "S3_FORCE_PATH_STYLE", "value": "true"},
            {"name": "STORAGE_EMULATOR_HOST", "value": self.servers["gcs"].url}] + (extra_env or [])
        return {"environment": {"type": cloud, "region": "us-east-1"},
                "builder": {"type": "kaniko", "build-context-store": store, "destination": f"{self.registry}/runs/app",
                            "kaniko-image": "localenv.local/kaniko-executor:v1.24.0",
                            "kaniko-config": {"spec": {"template": {"spec": {"containers": [
                                {"args": args, "env": env}]}}}}, **builder}}

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.kube.get(kind, name, namespace=self.namespace)


@pytest.fixture
def env(kube: LocalKube, namespace: Any, buildservers: servers.BuildServers, python_base: list[str],
        tmp_path: Path) -> Iterator[Env]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=buildservers["s3"].url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    if "contexts" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="contexts")
    yield Env(kube, buildservers, namespace("build"), buildservers["registry"].url.removeprefix("http://"),
              tmp_path)


def _code(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _source(e: Env, files: dict[str, str], version: str, **kw: Any) -> BuildSource:
    code = _code(e.workdir / f"code-{version}-{time.monotonic_ns()}", files)
    return BuildSource(source_string=f"hello-job:v{version}", directory=code, entrypoint=("python", "train.py"),
                       python_version="3.11", **kw)


async def _with_builder(e: Env, config: dict[str, Any], agent_env: dict[str, str], fn: Any) -> Any:
    settings = kaniko_settings(config, agent_env)
    assert settings is not None
    kube = Kube.connect(str(e.kube.kubeconfig))
    verify: Any = True
    if "SSL_CERT_FILE" in agent_env:
        verify = ssl.create_default_context(cafile=agent_env["SSL_CERT_FILE"])
    async with httpx2.AsyncClient(timeout=60.0, verify=verify) as http:
        clouds = Clouds.create(http, agent_env)
        builder = Builder(settings, ManifestSettings(agent_namespace=e.namespace, agent_identity="rel"), kube,
                          clouds, e.workdir / "contexts", LOG, fetch_image="localenv.local/launch-agent:dev")
        try:
            return await fn(builder, clouds)
        finally:
            await kube.aclose()


def _agent_env(e: Env) -> dict[str, str]:
    return {**AWS, "AWS_ENDPOINT_URL_S3": e.servers["s3"].url, "STORAGE_EMULATOR_HOST": e.servers["gcs"].url}


def _image_config(e: Env, image_uri: str) -> dict[str, Any]:
    repo, tag = image_uri.split("/", 1)[1].rsplit(":", 1)
    base = f"http://{e.registry}/v2/{repo}"
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    manifest = httpx.get(f"{base}/manifests/{tag}", headers={"Accept": accept}).json()
    return httpx.get(f"{base}/blobs/{manifest['config']['digest']}").json()


def _build(e: Env, prepared: Prepared, **kw: Any) -> kaniko_sandbox.Result:
    assert prepared.job, "expected a build Job"
    job = e.get("job", prepared.job)
    return kaniko_sandbox.run_job(job, e.get, **kw)


def _buildah(e: Env, context_dir: Path, tag: str) -> subprocess.CompletedProcess[str]:
    conf = e.workdir / "registries.conf"
    conf.write_text(f'unqualified-search-registries = ["docker.io"]\n[[registry]]\nprefix = "docker.io"\n'
                    f'location = "docker.io"\n[[registry.mirror]]\nlocation = "{e.registry}"\ninsecure = true\n'
                    f'[[registry]]\nlocation = "{e.registry}"\ninsecure = true\n')
    storage = ["--storage-driver", "vfs", "--root", str(e.workdir / "buildah-root"), "--runroot",
               str(e.workdir / "buildah-run")]
    return subprocess.run(["buildah", *storage, "--registries-conf", str(conf), "bud", "--isolation", "chroot",
                           "--pull", "-f", "Dockerfile.wandb", "-t", tag, str(context_dir)],
                          capture_output=True, text=True, timeout=900, check=False)


def _buildah_run(e: Env, image: str) -> subprocess.CompletedProcess[str]:
    """Run *image* (pulled from the local registry) with buildah: its entrypoint's output."""
    conf = e.workdir / "registries.conf"
    storage = ["--storage-driver", "vfs", "--root", str(e.workdir / "buildah-root"), "--runroot",
               str(e.workdir / "buildah-run")]
    cid = subprocess.run(["buildah", *storage, "--registries-conf", str(conf), "from", "--tls-verify=false", image],
                         capture_output=True, text=True, timeout=600, check=True).stdout.strip()
    config = json.loads(subprocess.run(["buildah", *storage, "inspect", cid], capture_output=True, text=True,
                                       check=True).stdout)["OCIv1"]["config"]
    return subprocess.run(["buildah", *storage, "run", "--isolation", "chroot", "--user", config.get("User") or "0",
                           cid, "--", *config["Entrypoint"]], capture_output=True, text=True, timeout=300,
                          check=False)


def _unpack(archive: bytes, target: Path) -> Path:
    import io

    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(target, filter="tar")
    return target


HELLO = {"train.py": "print('hello from the built image')\n"}


def test_s3_context_builds_pushes_runs_and_is_not_rebuilt(env: Env) -> None:
    import boto3

    config = env.config("s3://contexts/builds", "aws")

    async def scenario(builder: Builder, clouds: Clouds) -> tuple[Prepared, kaniko_sandbox.Result, Prepared]:
        first = await builder.prepare(_source(env, HELLO, "1"))
        result = _build(env, first)
        again = await builder.prepare(_source(env, HELLO, "1"))
        return first, result, again

    first, result, again = asyncio.run(_with_builder(env, config, _agent_env(env), scenario))
    assert result.returncode == 0, result.log[-3000:]
    assert first.started and again.ready and again.image_uri == first.image_uri  # built once, then found
    image = _image_config(env, first.image_uri)
    assert image["config"]["Entrypoint"] == ["python", "train.py"] and image["config"]["User"] == "1000"
    job = env.get("job", first.job)
    context = next(a for a in job["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--context="))
    key = context.removeprefix("--context=s3://contexts/")
    s3 = boto3.client("s3", endpoint_url=env.servers["s3"].url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    archive = s3.get_object(Bucket="contexts", Key=key)["Body"].read()
    # The same generated context builds with a second builder, and the image Kaniko pushed runs.
    built = _buildah(env, _unpack(archive, env.workdir / "ctx"), "localhost/hello:buildah")
    assert built.returncode == 0, built.stderr[-3000:]
    ran = _buildah_run(env, f"docker://{first.image_uri}")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "hello from the built image"


def test_concurrent_runs_of_one_job_version_share_one_build(env: Env) -> None:
    config = env.config("s3://contexts/builds", "aws")

    async def scenario(builder: Builder, clouds: Clouds) -> list[Prepared]:
        return list(await asyncio.gather(*(builder.prepare(_source(env, HELLO, "7")) for _ in range(3))))

    results = asyncio.run(_with_builder(env, config, _agent_env(env), scenario))
    assert len({p.job for p in results}) == 1 and all(p.job for p in results)
    assert sum(p.started for p in results) == 1
    jobs = env.kube.get("jobs", namespace=env.namespace, selector="launch-agent.wandb.ai/role=build")
    assert len(jobs) == 1


def test_a_failing_run_step_fails_with_the_build_log(env: Env) -> None:
    files = {"train.py": "print(1)\n", "Dockerfile": "FROM python:3.11\nRUN echo about to fail && exit 3\n"}
    config = env.config("s3://contexts/builds", "aws")

    async def scenario(builder: Builder, clouds: Clouds) -> tuple[Prepared, kaniko_sandbox.Result]:
        prepared = await builder.prepare(_source(env, files, "2", dockerfile="Dockerfile"))
        return prepared, _build(env, prepared)

    prepared, result = asyncio.run(_with_builder(env, config, _agent_env(env), scenario))
    assert result.returncode != 0
    message = status.failure_message(prepared.image_uri, prepared.job, env.namespace, "BackoffLimitExceeded",
                                     result.log)
    assert "exit status 3" in message and "about to fail" in message


def test_pvc_context(env: Env) -> None:
    pvc_dir = env.workdir / "pvc"
    pvc_dir.mkdir()
    config = env.config("", "aws")
    config["builder"].pop("build-context-store")
    agent_env = {**_agent_env(env), "WANDB_LAUNCH_KANIKO_PVC_NAME": "contexts",
                 "WANDB_LAUNCH_KANIKO_PVC_MOUNT_PATH": str(pvc_dir)}

    async def scenario(builder: Builder, clouds: Clouds) -> tuple[Prepared, kaniko_sandbox.Result]:
        prepared = await builder.prepare(_source(env, {"train.py": "print('pvc')\n"}, "3"))
        return prepared, _build(env, prepared, pvcs={"contexts": pvc_dir})

    prepared, result = asyncio.run(_with_builder(env, config, agent_env, scenario))
    assert result.returncode == 0, result.log[-3000:]
    assert "--context=tar:///context/" in " ".join(result.args)
    assert list(pvc_dir.glob("*.tgz"))
    assert _image_config(env, prepared.image_uri)["config"]["Entrypoint"] == ["python", "train.py"]


def test_gcs_context_is_read_by_kaniko(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env.servers["gcs"].url)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    if client.lookup_bucket("gcs-builds") is None:
        client.create_bucket("gcs-builds")
    config = env.config("gs://gcs-builds/ctx", "gcp")

    async def scenario(builder: Builder, clouds: Clouds) -> tuple[Prepared, kaniko_sandbox.Result]:
        prepared = await builder.prepare(_source(env, {"train.py": "print('gcs')\n"}, "4"))
        return prepared, _build(env, prepared)

    prepared, result = asyncio.run(_with_builder(env, config, _agent_env(env), scenario))
    assert result.returncode == 0, result.log[-3000:]
    assert "--context=gs://gcs-builds/ctx/" in " ".join(result.args)
    assert _image_config(env, prepared.image_uri)["config"]["User"] == "1000"


def test_azure_without_a_storage_key_goes_through_a_sas_url(env: Env) -> None:
    from azure.storage.blob import BlobServiceClient
    from test_stores_and_registry import _unsigned_jwt

    server = env.servers["azure"]
    BlobServiceClient(server.url, credential={"account_name": servers.AZURITE_ACCOUNT,
                                              "account_key": servers.AZURITE_KEY},
                      connection_verify=server.extra["ca"]).get_container_client("builds").create_container()
    config = env.config("https://acct.blob.core.windows.net/builds/ctx", "azure")
    agent_env = {"LAUNCH_AGENT_AZURE_BLOB_ENDPOINT": server.url, "SSL_CERT_FILE": server.extra["ca"]}

    async def scenario(builder: Builder, clouds: Clouds) -> tuple[Prepared, kaniko_sandbox.Result]:
        clouds.azure._token, clouds.azure._expires = _unsigned_jwt(), time.time() + 3600  # Entra's exchange
        prepared = await builder.prepare(_source(env, {"train.py": "print('azure')\n"}, "5"))
        return prepared, _build(env, prepared, extra_env={})

    import os

    os.environ["SSL_CERT_FILE"] = server.extra["ca"]  # the fetch step (on the host) trusts Azurite's CA
    try:
        prepared, result = asyncio.run(_with_builder(env, config, agent_env, scenario))
    finally:
        os.environ.pop("SSL_CERT_FILE", None)
    assert result.returncode == 0, result.log[-3000:]
    job = env.get("job", prepared.job)
    pod = job["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "localenv.local/launch-agent:dev"
    assert not any(e["name"] == "AZURE_STORAGE_ACCESS_KEY" for e in pod["containers"][0]["env"])
    secret = env.get("secret", f"{prepared.job[:55]}-context")
    url = base64.b64decode(secret["data"]["context-url"]).decode()
    assert "sp=r" in url and "sig=" in url and url not in json.dumps(job)
    assert secret["metadata"]["ownerReferences"][0]["name"] == prepared.job
    assert SECRETS.plural == "secrets" and JOBS.plural == "jobs"
    shutil.rmtree(env.workdir / "contexts", ignore_errors=True)
