"""Workloads of resolved jobs (agent.manifest): image jobs run their image; code and git jobs run on
a base image with the code volume at /mnt/wandb filled by the agent's own image (or a code PVC),
the working directory set and, on a base image the agent chose, the requirements installed first."""

from __future__ import annotations

import pytest

from agent.jobspec import ArtifactRef, GitSource, ResolvedJob
from agent.manifest import ManifestError, ManifestSettings, build_workload
from agent.manifest.codemount import DEFAULT_BASE_IMAGE, INIT_CONTAINER, VOLUME

JOB = ArtifactRef(id="QXJ0aWZhY3Q6Mw==", entity="acme", project="train", collection="code-job", version=2,
                  digest="d")
CODE = ArtifactRef(id="QXJ0aWZhY3Q6MQ==", entity="acme", project="train", collection="code-train.py", version=0,
                   digest="c", size=10, file_count=2)
FILES = ("requirements.frozen.txt", "wandb-job.json")
SETTINGS = ManifestSettings(agent_namespace="jobs", api_key_secret="wandb-api-key-r", base_url="http://w",
                            agent_identity="r", source_image="launch-agent:dev", git_credentials_secret="git-creds-r")


def image_job(**kw) -> ResolvedJob:
    return ResolvedJob(name="acme/train/image-job:latest", job=JOB, source_type="image", image="trainer:1",
                       job_files=FILES, **kw)


def code_job(**kw) -> ResolvedJob:
    return ResolvedJob(name="acme/train/code-job:latest", job=JOB, source_type="artifact", code=CODE,
                       entrypoint=("python", "train.py"), job_files=FILES, **kw)


def git_job(**kw) -> ResolvedJob:
    return ResolvedJob(name="acme/train/git-job:latest", job=JOB, source_type="repo",
                       git=GitSource("https://git.example/r.git", "a" * 40), entrypoint=("python", "train.py"),
                       job_files=FILES, **kw)


def spec(**extra) -> dict:
    return {"entity": "acme", "project": "train", "run_id": "r1", "job": "acme/train/x:latest", **extra}


def pod(objs: list[dict]) -> dict:
    return objs[-1]["spec"]["template"]["spec"]


def env_names(container: dict) -> list[str]:
    return [e["name"] for e in container.get("env") or []]


def test_an_image_job_runs_its_image_with_its_entrypoint():
    objs = build_workload(spec(), item_id="i1", queue="q", settings=SETTINGS,
                          job=image_job(entrypoint=("python", "serve.py")))
    (main,) = pod(objs)["containers"]
    assert main["image"] == "trainer:1" and main["command"] == ["python", "serve.py"]
    assert {"name": "WANDB_DOCKER", "value": "trainer:1"} in main["env"]
    assert "initContainers" not in pod(objs) and "volumes" not in pod(objs)
    artifacts = next(e["value"] for e in main["env"] if e["name"] == "WANDB_ARTIFACTS")
    assert artifacts == '{"_wandb_job": "acme/train/x:latest"}'


def test_the_queue_config_and_overrides_keep_their_precedence_over_the_job_entrypoint():
    queue_cmd = {"resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [
        {"command": ["from-queue"]}]}}}}}}
    objs = build_workload(spec(**queue_cmd), item_id="i1", queue="q", settings=SETTINGS,
                          job=image_job(entrypoint=("python", "serve.py")))
    assert pod(objs)["containers"][0]["command"] == ["from-queue"]
    objs = build_workload(spec(**queue_cmd, overrides={"entry_point": ["override"], "args": ["--x"]}),
                          item_id="i1", queue="q", settings=SETTINGS, job=image_job(entrypoint=("python", "s.py")))
    main = pod(objs)["containers"][0]
    assert (main["command"], main["args"]) == (["override"], ["--x"])


def test_a_code_job_runs_on_the_default_base_image_with_its_code_fetched_by_the_agent_image():
    objs = build_workload(spec(overrides={"args": ["--epochs", "2"]}), item_id="i1", queue="q", settings=SETTINGS,
                          job=code_job())
    p = pod(objs)
    (main,) = p["containers"]
    assert main["image"] == DEFAULT_BASE_IMAGE and main["workingDir"] == "/mnt/wandb"
    assert "WANDB_DOCKER" not in env_names(main)
    assert main["command"] == ["/bin/sh", "-c"]
    script = main["args"][0]
    assert script.endswith("&& exec python train.py --epochs 2")
    assert "pip install -r /mnt/wandb/.job/requirements.frozen.txt" in script
    assert {"name": VOLUME, "mountPath": "/mnt/wandb"} in main["volumeMounts"]
    assert p["volumes"] == [{"name": VOLUME, "emptyDir": {}}]
    (init,) = p["initContainers"]
    assert init["name"] == INIT_CONTAINER and init["image"] == "launch-agent:dev"
    assert init["command"] == ["python", "-m", "agent", "fetch-source"]
    args = init["args"]
    assert args[args.index("--artifact") + 1] == "acme/train/code-train.py:v0"
    assert args[args.index("--artifact-id") + 1] == CODE.id
    assert args[args.index("--job") + 1] == "acme/train/code-job:v2"
    key = next(e for e in init["env"] if e["name"] == "WANDB_API_KEY")
    assert key == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb-api-key-r",
                                                                           "key": "password"}}}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert "LAUNCH_AGENT_GIT_CREDENTIALS" not in env_names(init)


def test_a_git_job_fetches_the_commit_with_the_git_credentials_secret():
    objs = build_workload(spec(overrides={"working_dir": "src"}), item_id="i1", queue="q", settings=SETTINGS,
                          job=git_job())
    p = pod(objs)
    (init,) = p["initContainers"]
    args = init["args"]
    assert args[args.index("--git-remote") + 1] == "https://git.example/r.git"
    assert args[args.index("--git-commit") + 1] == "a" * 40
    creds = next(e for e in init["env"] if e["name"] == "LAUNCH_AGENT_GIT_CREDENTIALS")
    assert creds["valueFrom"]["secretKeyRef"] == {"name": "git-creds-r", "key": ".git-credentials", "optional": True}
    assert p["containers"][0]["workingDir"] == "/mnt/wandb/src"


def test_the_jobs_own_base_image_gets_no_install_and_the_builder_base_image_does():
    objs = build_workload(spec(), item_id="i1", queue="q", settings=SETTINGS, job=code_job(base_image="mine:2"))
    main = pod(objs)["containers"][0]
    assert (main["image"], main["command"]) == ("mine:2", ["python", "train.py"])
    assert "--job" not in pod(objs)["initContainers"][0]["args"]
    builder = {"resource_args": {"kubernetes": {"builder": {"base_image": "py:gpu"}}}}
    objs = build_workload(spec(**builder), item_id="i1", queue="q", settings=SETTINGS, job=code_job())
    main = pod(objs)["containers"][0]
    assert main["image"] == "py:gpu" and main["command"] == ["/bin/sh", "-c"]
    assert "builder" not in objs[-1]["spec"]


def test_pvc_mode_mounts_the_job_version_directory_and_adds_no_init_container():
    settings = ManifestSettings(agent_namespace="jobs", api_key_secret="k", code_pvc_name="code",
                                code_pvc_mount_path="/home/launch_agent/code")
    objs = build_workload(spec(), item_id="i1", queue="q", settings=settings, job=code_job())
    p = pod(objs)
    assert p["volumes"] == [{"name": VOLUME, "persistentVolumeClaim": {"claimName": "code"}}]
    assert {"name": VOLUME, "mountPath": "/mnt/wandb", "subPath": "code-job:v2"} in p["containers"][0]["volumeMounts"]
    assert "initContainers" not in p


def test_a_custom_resource_gets_the_code_in_every_pod_template():
    config = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ptj-${run_id}"},
              "spec": {"pytorchReplicaSpecs": {
                  role: {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch",
                                                                              "image": "${image_uri}"}]}}}
                  for role in ("Master", "Worker")}}}
    objs = build_workload(spec(resource_args={"kubernetes": config}), item_id="i1", queue="q", settings=SETTINGS,
                          job=git_job())
    for role in ("Master", "Worker"):
        tmpl = objs[-1]["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]
        assert tmpl["containers"][0]["image"] == DEFAULT_BASE_IMAGE
        assert tmpl["initContainers"][0]["name"] == INIT_CONTAINER
        assert tmpl["containers"][0]["args"][0].endswith("exec python train.py")


def test_a_code_job_without_the_agent_image_is_refused():
    with pytest.raises(ManifestError, match="LAUNCH_AGENT_IMAGE"):
        build_workload(spec(), item_id="i1", queue="q", settings=ManifestSettings(agent_namespace="jobs"),
                       job=code_job())


def test_a_container_that_already_uses_the_code_path_is_refused():
    taken = {"resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [
        {"volumeMounts": [{"name": "x", "mountPath": "/mnt/wandb"}]}], "volumes": [{"name": "x", "emptyDir": {}}]}}}}}}
    with pytest.raises(ManifestError, match="already mounts /mnt/wandb"):
        build_workload(spec(**taken), item_id="i1", queue="q", settings=SETTINGS, job=code_job())


def test_an_unresolved_job_is_refused():
    with pytest.raises(ManifestError, match="not resolved"):
        build_workload(spec(), item_id="i1", queue="q", settings=SETTINGS)


def test_a_per_user_key_gets_a_secret_of_its_own_only_when_turned_on():
    user = spec(_wandb_api_key="local-" + "k" * 40, author="someone")
    with pytest.raises(ManifestError, match=r"agent\.perUserApiKeys=true"):
        build_workload(user, item_id="i1", queue="q", settings=SETTINGS, job=image_job())
    on = ManifestSettings(agent_namespace="jobs", api_key_secret="k", per_user_keys=True)
    objs = build_workload(user, item_id="i1", queue="q", settings=on, job=image_job())
    secret, workload = objs
    assert secret["kind"] == "Secret" and secret["stringData"] == {"password": "local-" + "k" * 40}
    assert secret["metadata"]["namespace"] == "jobs"
    main = workload["spec"]["template"]["spec"]["containers"][0]
    key = next(e for e in main["env"] if e["name"] == "WANDB_API_KEY")
    assert key["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert "WANDB_USERNAME" not in env_names(main)
    assert "local-" + "k" * 40 not in str(workload)
