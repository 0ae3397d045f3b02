"""Builds on the real kubelet node: the agent's Builder creates the build Job, the node really runs
Kaniko (the pinned executor image) with the context from the S3 server, Kaniko pushes to the local
registry, the agent reads the outcome from the watched Job and the real pod log, and a pod on the
built image (pulled by the node's containerd from that registry) prints its line. The same job
version again needs no build; a failing RUN fails with the build's log lines."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from agent.build import status
from agent.build.builder import Builder, Prepared
from agent.build.settings import kaniko_settings
from agent.build.source import BuildSource
from agent.build.stores import Clouds
from agent.kube.client import Kube
from agent.manifest import ManifestSettings
from localenv import node as realnode
from localenv.buildservers import baseimage, servers
from localenv.buildservers.on_node import kaniko_image, trust_registry
from localenv.pytest_plugin import Kube as LocalKube

pytestmark = [pytest.mark.cluster, pytest.mark.buildservers]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
LOG = logging.getLogger("test.kaniko-node")


@pytest.fixture(scope="module")
def node_env(kube: LocalKube, real_node: realnode.RealNode, buildservers: servers.BuildServers) -> dict[str, Any]:
    import boto3

    baseimage.push_python(buildservers["registry"].url)
    kaniko_ref = real_node.load(kaniko_image())[0]
    registry = real_node.expose(buildservers["registry"].port)
    trust_registry(real_node, registry)
    s3_pod = real_node.pod_url(buildservers["s3"].url)
    s3 = boto3.client("s3", endpoint_url=buildservers["s3"].url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    if "node-contexts" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="node-contexts")
    return {"registry": registry, "s3_pod": s3_pod, "kaniko": kaniko_ref, "servers": buildservers}


def _config(e: dict[str, Any]) -> dict[str, Any]:
    placement = realnode.placement()
    env = [{"name": k, "value": v} for k, v in AWS.items()] + [
        {"name": "S3_ENDPOINT", "value": e["s3_pod"]}, {"name": "S3_FORCE_PATH_STYLE", "value": "true"}]
    return {"environment": {"type": "aws", "region": "us-east-1"},
            "builder": {"type": "kaniko", "build-context-store": "s3://node-contexts/builds",
                        "destination": f"{e['registry']}/runs/app", "kaniko-image": e["kaniko"],
                        "kaniko-config": {"spec": {"template": {"spec": {
                            **placement, "containers": [{
                                "imagePullPolicy": "Never", "env": env,
                                "args": ["--insecure=true", "--insecure-pull=true",
                                         f"--registry-mirror={e['registry']}"]}]}}}}}}


async def _builder(e: dict[str, Any], kube: LocalKube, ns: str, workdir: Path, fn: Any) -> Any:
    agent_env = {**AWS, "AWS_ENDPOINT_URL_S3": e["servers"]["s3"].url}
    settings = kaniko_settings(_config(e), agent_env)
    assert settings is not None
    client = Kube.connect(str(kube.kubeconfig))
    async with httpx2.AsyncClient(timeout=60.0) as http:
        builder = Builder(settings, ManifestSettings(agent_namespace=ns, agent_identity="rel"), client,
                          Clouds.create(http, agent_env), workdir, LOG)
        try:
            return await fn(builder)
        finally:
            await client.aclose()


def _source(workdir: Path, files: dict[str, str], version: str, **kw: Any) -> BuildSource:
    code = workdir / f"code-{version}-{time.monotonic_ns()}"
    for name, text in files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    return BuildSource(source_string=f"node-job:v{version}", directory=code, entrypoint=("python", "train.py"),
                       python_version="3.11", **kw)


async def _build(builder: Builder, source: BuildSource) -> tuple[Prepared, Any, str, list[str]]:
    prepared = await builder.prepare(source)
    assert prepared.job, "expected a build"
    finished = await asyncio.wait_for(builder.wait(prepared.job), 900)
    assert finished is not None
    state, message, packages = await builder.outcome(finished)
    await builder.finish(prepared.job)
    return prepared, state, message, packages


def test_a_build_really_runs_on_the_node_and_its_image_runs(kube: LocalKube, real_node: realnode.RealNode,
                                                             node_env: dict[str, Any], namespace: Any,
                                                             tmp_path: Path) -> None:
    ns = namespace("kaniko-node")
    files = {"train.py": "print('hello from a kaniko image on the real node')\n"}

    async def scenario(builder: Builder) -> tuple[Prepared, Any, str, Prepared]:
        prepared, state, message, _ = await _build(builder, _source(tmp_path, files, "1"))
        again = await builder.prepare(_source(tmp_path, files, "1"))
        return prepared, state, message, again

    prepared, state, message, again = asyncio.run(_builder(node_env, kube, ns, tmp_path / "ctx", scenario))
    assert state.state == status.BUILT, message
    assert again.ready and again.image_uri == prepared.image_uri  # no second build
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run"},
           "spec": real_node.place({"restartPolicy": "Never", "containers": [
               {"name": "main", "image": prepared.image_uri, "imagePullPolicy": "IfNotPresent"}]})}
    kube.apply(pod, ns)
    kube.wait_for("the run pod to finish", lambda: kube.get("pod", "run", namespace=ns)["status"].get("phase")
                  in ("Succeeded", "Failed"), timeout=300)
    out = kube.kubectl("logs", "run", "-n", ns).stdout
    assert kube.get("pod", "run", namespace=ns)["status"]["phase"] == "Succeeded", out
    assert out.strip() == "hello from a kaniko image on the real node"


def test_a_failing_run_step_fails_with_the_real_build_log(kube: LocalKube, real_node: realnode.RealNode,
                                                          node_env: dict[str, Any], namespace: Any,
                                                          tmp_path: Path) -> None:
    ns = namespace("kaniko-node")
    files = {"train.py": "print(1)\n", "Dockerfile": "FROM python:3.11\nRUN echo about to fail && exit 3\n"}

    async def scenario(builder: Builder) -> tuple[Any, str]:
        _, state, message, _ = await _build(builder, _source(tmp_path, files, "2", dockerfile="Dockerfile"))
        return state, message

    state, message = asyncio.run(_builder(node_env, kube, ns, tmp_path / "ctx", scenario))
    assert state.state == status.FAILED
    assert "about to fail" in message and "exit status 3" in message, message
