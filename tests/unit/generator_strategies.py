"""Hypothesis strategies for agent configs, queue configs and `values` flags (shared by unit and chart tests)."""

from __future__ import annotations

from typing import Any

import yaml
from generator_helpers import AWS_ROLE, AZURE_ID, GCP_SA
from hypothesis import strategies as st

IDENTITY = {"aws": AWS_ROLE, "gcp": GCP_SA, "azure": AZURE_ID}
STORES = {"aws": "s3://bucket/ctx", "gcp": "gs://bucket/ctx", "azure": "https://acct.blob.core.windows.net/c/x"}
REPOS = {"aws": "123456789012.dkr.ecr.{region}.amazonaws.com/images", "gcp": "{region}-docker.pkg.dev/p/r/img",
         "azure": "reg.azurecr.io/images"}
REGIONS = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}

names = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")
junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.text(max_size=8), st.lists(st.integers(), max_size=2))


@st.composite
def agent_configs(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """A mostly plausible agent config and the flags it needs; sometimes broken on purpose."""
    cloud = draw(st.sampled_from([None, "aws", "gcp", "azure"]))
    builder = draw(st.sampled_from(["noop", "kaniko", None]))
    config: dict[str, Any] = {"queues": draw(st.lists(names, min_size=1, max_size=3))}
    flags: list[str] = []
    if draw(st.booleans()):
        config["entity"] = draw(names)
    if draw(st.booleans()):
        config["max_jobs"] = draw(st.sampled_from([1, 4, -1]))
    if cloud:
        config["environment"] = {"type": cloud, "region": REGIONS[cloud]}
        flags += draw(st.sampled_from([["--identity", IDENTITY[cloud]], ["--no-identity"]]))
    if builder == "kaniko":
        if cloud:
            config["builder"] = {"type": "kaniko", "build-context-store": STORES[cloud],
                                 "destination": REPOS[cloud].format(region=REGIONS[cloud])}
            if cloud == "azure":
                flags += ["--azure-storage-key-env", "AZ_KEY", "--inline-secrets"]
        else:
            config["builder"] = {"type": "kaniko", "destination": "registry.example.com/team/img"}
            flags += ["--kaniko-pvc", "contexts", "--kaniko-docker-config-secret", "push-creds"]
    elif builder:
        config["builder"] = {"type": builder}
    if draw(st.integers(0, 9)) == 0:  # break it
        key = draw(st.sampled_from(["queues", "max_jobs", "builder", "environment", "entity", "bogus"]))
        config[key] = draw(junk)
    return config, flags


@st.composite
def queue_configs(draw: Any) -> dict[str, Any]:
    ns = draw(st.one_of(st.none(), names))
    kind = draw(st.sampled_from(["job", "pytorch", "volcano", "jobset", "wrapped"]))
    meta: dict[str, Any] = {"namespace": ns} if ns else {}
    pod = {"template": {"spec": {"containers": [{"name": "main", "image": "${image_uri}"}]}}}
    if kind == "job":
        body: dict[str, Any] = {"metadata": meta, "spec": {"template": {"spec": {"containers": [{"image": "${image_uri}"}]}}}}
    elif kind == "pytorch":
        body = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta,
                "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, **pod}}}}
    elif kind == "volcano":
        body = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": meta,
                "spec": {"tasks": [{"name": "main", "replicas": 1, **pod}]}}
    elif kind == "jobset":
        body = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
                "spec": {"replicatedJobs": [{"name": "w", "template": {"spec": pod}}]}}
    else:
        body = {"kubernetes": {"metadata": meta}}
    return body


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)
