"""Differential: the build Job of the official agent (wandb 0.31.0 ``KanikoBuilder._create_kaniko_job``)
and ours, for the same builder config and environment. Kaniko's args, the image, the env, the
mounts Kaniko reads and the pod defaults must be the same; ours only adds (security context,
identity labels, deadlines, TTL) — and leaves out the ConfigMap of registry credentials that
Kaniko's own credential helpers make unnecessary (a listed difference)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.build.job import build_job
from agent.build.settings import kaniko_settings
from agent.manifest import ManifestSettings

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/runs"
GAR = "us-central1-docker.pkg.dev/proj/repo/img"
KANIKO_CONFIG = {"spec": {"template": {"spec": {"containers": [{
    "args": ["--cache=false", "--registry-mirror=mirror.example"], "env": [{"name": "S3_FORCE_PATH_STYLE", "value": "true"}],
    "resources": {"limits": {"memory": "4Gi"}}}]}}}}

CASES: dict[str, dict[str, Any]] = {
    "ecr s3": {"cloud": "aws", "destination": ECR, "store": "s3://b/ctx", "env": {}},
    "ecr kaniko-config": {"cloud": "aws", "destination": ECR, "store": "s3://b/ctx", "env": {},
                          "builder": {"kaniko-config": KANIKO_CONFIG}},
    "pvc": {"cloud": "aws", "destination": ECR, "store": "", "env": {"WANDB_LAUNCH_KANIKO_PVC_NAME": "ctx-pvc"}},
    "docker config secret": {"cloud": "aws", "destination": ECR, "store": "s3://b/ctx",
                             "env": {"WANDB_LAUNCH_KANIKO_AUTH_SECRET": "regcred"}},
    "ecr secret-name": {"cloud": "aws", "destination": ECR, "store": "s3://b/ctx", "env": {},
                        "builder": {"secret-name": "aws-creds", "secret-key": "credentials"}},
    "gar secret-name": {"cloud": "gcp", "destination": GAR, "store": "gs://b/ctx", "env": {},
                        "builder": {"secret-name": "gsa", "secret-key": "key.json"}},
}


def _official(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch, image_uri: str, context: str) -> dict[str, Any]:
    from wandb.sdk.launch.builder import kaniko_builder as kb
    from wandb.sdk.launch.registry.elastic_container_registry import ElasticContainerRegistry
    from wandb.sdk.launch.registry.google_artifact_registry import GoogleArtifactRegistry

    env = case["env"]
    pvc = env.get("WANDB_LAUNCH_KANIKO_PVC_NAME")
    monkeypatch.setattr(kb, "PVC_NAME", pvc)
    monkeypatch.setattr(kb, "PVC_MOUNT_PATH", "/kaniko" if pvc else None)
    monkeypatch.setattr(kb, "DOCKER_CONFIG_SECRET", env.get("WANDB_LAUNCH_KANIKO_AUTH_SECRET"))
    monkeypatch.setattr(kb, "SERVICE_ACCOUNT_NAME", "launch-sa")
    monkeypatch.setattr(kb, "NAMESPACE", "wandb")
    if case["destination"] == ECR:
        registry: Any = ElasticContainerRegistry(uri=ECR)
    else:
        registry = object.__new__(GoogleArtifactRegistry)  # its constructor asks Google for credentials
    builder = case.get("builder", {})
    official = kb.KanikoBuilder(environment=None, registry=registry, build_context_store=case["store"],  # type: ignore[arg-type]
                                secret_name=builder.get("secret-name", ""), secret_key=builder.get("secret-key", ""),
                                config=builder.get("kaniko-config"))
    return asyncio.run(official._create_kaniko_job("name", case["destination"], image_uri, context, None, None))


def _ours(case: dict[str, Any], image_uri: str, context: str) -> dict[str, Any]:
    config = {"environment": {"type": case["cloud"], "region": "us-east-1"},
              "builder": {"type": "kaniko", "destination": case["destination"], **case.get("builder", {}),
                          **({"build-context-store": case["store"]} if case["store"] else {})}}
    settings = kaniko_settings(config, {**case["env"], "WANDB_LAUNCH_SERVICE_ACCOUNT_NAME": "launch-sa"})
    assert settings is not None
    return build_job(settings, ManifestSettings(agent_namespace="wandb"), image_uri=image_uri, context_url=context)


def _mounts(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    volumes = {v["name"]: {k: v2 for k, v2 in v.items() if k != "name"} for v in pod.get("volumes") or []}
    return {m["mountPath"].rstrip("/"): volumes[m["name"]] for m in container.get("volumeMounts") or []}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_build_job_matches_the_official_agents(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    image_uri = f"{case['destination']}:abcd1234"
    context = "tar:///context/x.tgz" if not case["store"] else f"{case['store']}/x.tgz"
    theirs, ours = _official(case, monkeypatch, image_uri, context), _ours(case, image_uri, context)
    tpod, opod = theirs["spec"]["template"]["spec"], ours["spec"]["template"]["spec"]
    tc, oc = tpod["containers"][0], opod["containers"][0]
    assert oc["args"] == tc["args"]
    assert (oc["image"], oc["name"], oc.get("resources")) == (tc["image"], tc["name"], tc.get("resources"))
    assert oc["env"] == tc["env"]
    their_mounts, our_mounts = _mounts(tc, tpod), _mounts(oc, opod)
    if case.get("builder", {}).get("secret-name"):  # the official's credentials ConfigMap (not needed: see README)
        assert their_mounts.pop("/kaniko/.docker")["configMap"]["name"] == "docker-config-name"
    assert our_mounts == their_mounts
    for key in ("restartPolicy", "activeDeadlineSeconds", "serviceAccountName"):
        assert opod[key] == tpod[key], key
    assert ours["spec"]["backoffLimit"] == theirs["spec"]["backoffLimit"]
    assert ours["metadata"]["namespace"] == theirs["metadata"]["namespace"]
    assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()
    assert theirs["spec"]["template"]["metadata"]["labels"].items() <= \
        ours["spec"]["template"]["metadata"]["labels"].items()
    # What ours adds on top.
    assert oc["securityContext"]["allowPrivilegeEscalation"] is False and "securityContext" not in tc
    assert opod["automountServiceAccountToken"] is False and "automountServiceAccountToken" not in tpod
