"""The official agent image keeps working: the env vars, mounts and names it reads are there."""

from __future__ import annotations

import pytest
from chart_checks import (
    APP_VERSION,
    BASIC,
    CHART,
    OFFICIAL_STYLE,
    agent_container,
    deployment,
    env_of,
    of_kind,
    one,
)

OFFICIAL_ENV = (
    "WANDB_API_KEY", "WANDB_LAUNCH_SERVICE_ACCOUNT_NAME", "WANDB_BASE_URL", "CM_CHECKSUM",
    "WANDB_LAUNCH_START_TIMEOUT", "WANDB_RELEASE_NAME",
)
OUR_ENV = (
    "LAUNCH_AGENT_NAMESPACE", "LAUNCH_AGENT_TARGET_NAMESPACES", "LAUNCH_AGENT_API_KEY_SECRET",
    "LAUNCH_AGENT_SECURITY_LEVEL", "LAUNCH_AGENT_HEALTH_PORT", "LAUNCH_AGENT_LEADER_ELECTION",
    "LAUNCH_AGENT_POD_NAME", "LAUNCH_AGENT_LOG_FORMAT",
)


@pytest.mark.parametrize("image", ["wandb/launch-agent:0.17.3", "docker.io/wandb/launch-agent:latest", f"ghcr.io/launch-agent/agent:{APP_VERSION}"])
def test_env_the_agents_read(render, image: str) -> None:
    objs = render(files=(BASIC,), values={"agent": {"image": image}}, release="prod", namespace="ml")
    env = env_of(agent_container(objs))
    for name in OFFICIAL_ENV + OUR_ENV:
        assert name in env, name
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb-api-key-prod", "key": "password"}
    assert env["WANDB_LAUNCH_SERVICE_ACCOUNT_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    cm_ref = env["WANDB_BASE_URL"]["valueFrom"]["configMapKeyRef"]
    cm = one(objs, "ConfigMap", "config")
    assert cm_ref["name"] == cm["metadata"]["name"] and cm["data"][cm_ref["key"]] == "https://api.wandb.ai"
    assert env["WANDB_RELEASE_NAME"]["value"] == "prod"
    assert env["WANDB_LAUNCH_START_TIMEOUT"]["value"] == "1800"
    assert env["LAUNCH_AGENT_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_official_image_detection(render) -> None:
    official = render(files=(BASIC,), values={"agent": {"image": "wandb/launch-agent:0.17.3"}})
    container = agent_container(official)
    assert "livenessProbe" not in container and "readinessProbe" not in container
    assert container["image"] == "wandb/launch-agent:0.17.3"
    ours = agent_container(render(files=(BASIC,)))
    assert "livenessProbe" in ours
    assert ours["image"] == f"ghcr.io/launch-agent/agent:{APP_VERSION}"  # tag = appVersion
    forced = agent_container(render(files=(BASIC,), values={"agent": {"image": "mirror.local/agent:1", "imageKind": "official"}}))
    assert "livenessProbe" not in forced
    look_alike = agent_container(render(files=(BASIC,), values={"agent": {"image": "evil/launch-agent:1"}}))
    assert "livenessProbe" in look_alike


def test_config_and_credentials_mounts(render) -> None:
    objs = render(files=(CHART / "ci" / "ssh-and-git-values.yaml",))
    container = agent_container(objs)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    spec = deployment(objs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "/home/launch_agent/.config/wandb" in mounts
    assert mounts["/home/launch_agent/.git-credentials"]["subPath"] == ".git-credentials"
    assert mounts["/home/launch_agent/.gitconfig"]["subPath"] == ".gitconfig"
    assert mounts["/home/launch_agent/.ssh/id_repo0"]["subPath"] == "id_repo0"
    assert mounts["/home/launch_agent/.ssh/id_repo1"]["subPath"] == "id_repo1"
    assert volumes["git-ssh-key-secret-1"]["secret"]["secretName"] == "gitlab-deploy-key"
    assert volumes["git-ssh-key-secret-1"]["secret"]["items"] == [{"key": "ssh-privatekey", "path": "id_repo1"}]
    ssh = one(objs, "ConfigMap", "ssh-config")
    assert "Host gitlab.example.com" in ssh["data"]["config"]
    assert "IdentityFile /home/launch_agent/.ssh/id_repo1" in ssh["data"]["config"]
    git = one(objs, "Secret", "git-creds")
    assert set(git["data"]) == {".git-credentials", ".gitconfig"}


def test_kaniko_and_ca_env(render) -> None:
    objs = render(files=(CHART / "ci" / "azure-workload-identity-kaniko-values.yaml",),
                  values={"kanikoPvcName": "launch-build-context"})
    env = env_of(agent_container(objs))
    mounts = {m["mountPath"]: m["name"] for m in agent_container(objs)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment(objs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/home/launch_agent/kaniko"]]["persistentVolumeClaim"] == {"claimName": "launch-build-context"}
    assert not deployment(objs)["spec"]["template"]["spec"].get("initContainers")  # fsGroup instead of a root chown
    assert env["WANDB_LAUNCH_KANIKO_PVC_NAME"]["value"] == "launch-build-context"
    assert env["WANDB_LAUNCH_KANIKO_PVC_MOUNT_PATH"]["value"] == "/home/launch_agent/kaniko"
    assert env["WANDB_LAUNCH_KANIKO_AUTH_SECRET"]["value"] == "acr-docker-config"
    ca = env_of(agent_container(render(files=(CHART / "ci" / "custom-ca-values.yaml",))))
    assert ca["REQUESTS_CA_BUNDLE"]["value"] == ca["SSL_CERT_FILE"]["value"] == "/usr/local/share/ca-certificates/custom-ca.crt"


def test_azure_storage_secret_name_per_image(render) -> None:
    values = {"azureStorageAccessKey": "k"}
    ours = {s["metadata"]["name"] for s in of_kind(render(files=(BASIC,), values=values), "Secret")}
    assert "ci-launch-agent-azure-storage" in ours
    official = render(files=(BASIC,), values={**values, "agent": {"image": "wandb/launch-agent:0.17.3"}})
    assert "azure-storage-access-key" in {s["metadata"]["name"] for s in of_kind(official, "Secret")}


def test_workload_identity(render) -> None:
    gke = render(files=(CHART / "ci" / "gke-workload-identity-values.yaml",))
    assert one(gke, "ServiceAccount")["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "launch-agent@my-project.iam.gserviceaccount.com"}
    eks = render(files=(CHART / "ci" / "eks-irsa-values.yaml",))
    assert one(eks, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    azure = render(files=(CHART / "ci" / "azure-workload-identity-kaniko-values.yaml",))
    assert "azure.workload.identity/client-id" in one(azure, "ServiceAccount")["metadata"]["annotations"]
    assert deployment(azure)["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    for objs in (gke, eks):
        assert "azure.workload.identity/use" not in deployment(objs)["spec"]["template"]["metadata"]["labels"]
    sa = one(azure, "ServiceAccount")["metadata"]["name"]
    assert deployment(azure)["spec"]["template"]["spec"]["serviceAccountName"] == sa


def test_official_style_values_render_like_the_official_chart(render) -> None:
    """Every official key keeps its meaning (namespace, targets, image, resources, volcano...)."""
    objs = render(files=(OFFICIAL_STYLE,), namespace="somewhere")
    dep = deployment(objs)
    assert dep["metadata"]["namespace"] == "wandb"
    container = agent_container(objs)
    assert container["image"] == "wandb/launch-agent:latest"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "1Gi"}
    assert {b["metadata"]["namespace"] for b in of_kind(objs, "RoleBinding")} == {"wandb", "default"}
    assert {s["metadata"]["namespace"] for s in of_kind(objs, "Secret") if s["metadata"]["name"] == "wandb-api-key-ci"} == {"wandb", "default"}
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objs, "Role")}
    assert any("batch.volcano.sh" in r.get("apiGroups", []) for r in roles["default"]["rules"])
    assert "annotations" not in one(objs, "ServiceAccount")["metadata"]  # the empty GKE key is dropped
    assert not of_kind(objs, "PodDisruptionBudget")  # minAvailable 1 with one replica: no budget


@pytest.mark.parametrize(
    ("image", "rendered"),
    [
        ("ghcr.io/launch-agent/agent", f"ghcr.io/launch-agent/agent:{APP_VERSION}"),
        ("localhost:5000/agent", f"localhost:5000/agent:{APP_VERSION}"),
        ("localhost:5000/agent:dev", "localhost:5000/agent:dev"),
        ("ghcr.io/launch-agent/agent@sha256:" + "a" * 64, "ghcr.io/launch-agent/agent@sha256:" + "a" * 64),
        ("wandb/launch-agent", "wandb/launch-agent"),
    ],
)
def test_image_reference(render, image: str, rendered: str) -> None:
    assert agent_container(render(files=(BASIC,), values={"agent": {"image": image}}))["image"] == rendered
