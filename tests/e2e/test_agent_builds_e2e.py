"""Kaniko builds through the queue, for real: `wandb launch -j` queues a code-artifact job and a git
job (made by `wandb job create`); `python -m agent` with `builder: kaniko` resolves each, uploads
its build context to the S3 server, and the build Job really runs Kaniko on the real kubelet node,
which pushes to the local registry; the run then really runs on the built image (pulled by the
node from that registry) and prints its line. The same job queued again launches without a
build; a job whose Dockerfile's RUN fails fails its item at stage `build` with the build's log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from official_agent import wandb_cli
from test_agent_e2e import ENTITY, condition, crds, emu, job_queue, site, wait_for  # noqa: F401

from agent.build.job import ROLE_BUILD
from agent.manifest import LABEL_ROLE, LABEL_RUN_ID
from localenv import node as realnode
from localenv.buildservers import baseimage, servers
from localenv.buildservers.on_node import kaniko_image, trust_registry
from localenv.gitserver import GitServer

# Three Kaniko builds share the node's two cores with the runs they make; on a loaded machine they
# take longer than the suite's default timeout, so this module has a budget of its own: the sum of
# its waits below.
BUILDS_BUDGET, FAILING_BUDGET, AGAIN_BUDGET = 1500, 600, 300
pytestmark = [pytest.mark.e2e, pytest.mark.buildservers,
              pytest.mark.timeout(BUILDS_BUDGET + FAILING_BUDGET + AGAIN_BUDGET + 300)]
PROJECT = "builds"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
HELLO = {"train.py": "import os\nprint('hello from', os.environ.get('WANDB_RUN_ID'), 'in a built image')\n",
         "requirements.txt": "# nothing to install\n"}
FAILING = {"train.py": "print(1)\n", "requirements.txt": "# none\n",
           "Dockerfile.wandb": "FROM python:3.11\nRUN echo this build step fails && exit 3\n"}


@pytest.fixture(scope="module")
def node_env(kube: Any, real_node: realnode.RealNode, buildservers: servers.BuildServers) -> dict[str, Any]:
    import boto3

    baseimage.push_python(buildservers["registry"].url)
    registry = real_node.expose(buildservers["registry"].port)
    trust_registry(real_node, registry)
    boto3.client("s3", endpoint_url=buildservers["s3"].url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="e2e-contexts")
    return {"registry": registry, "s3_pod": real_node.pod_url(buildservers["s3"].url),
            "kaniko": real_node.load(kaniko_image())[0], "servers": buildservers}


def _create(home: Path, site: Any, name: str, files: dict[str, str], git: GitServer | None = None) -> str:  # noqa: F811
    common = ("job", "create", "--entity", ENTITY, "--project", PROJECT, "--name", name, "-E", "python train.py")
    if git is None:
        code = home / f"src-{name}"
        for rel, text in files.items():
            (code / rel).parent.mkdir(parents=True, exist_ok=True)
            (code / rel).write_text(text)
        wandb_cli(home, site.emu.url, site.emu.key, *common, "code", str(code))
    else:
        repo = git.create_repo(name, files)
        wandb_cli(home, site.emu.url, site.emu.key, *common, "-g", repo.commit, "git", repo.url,
                  GIT_SSL_CAINFO=str(git.ca_file))
    return f"{ENTITY}/{PROJECT}/{name}:latest"


def _launch(site: Any, home: Path, job: str, queue: str) -> str:  # noqa: F811
    before = {i["id"] for i in site.emu.items(ENTITY, queue)}
    wandb_cli(home, site.emu.url, site.emu.key, "launch", "-j", job, "-q", queue, "-e", ENTITY, "-p", PROJECT)
    (new,) = [i for i in site.emu.items(ENTITY, queue) if i["id"] not in before]
    return str(new["id"])


def _agent_config(e: dict[str, Any], queue: str) -> str:
    placement = realnode.placement()
    env = [{"name": k, "value": v} for k, v in AWS.items()] + [
        {"name": "S3_ENDPOINT", "value": e["s3_pod"]}, {"name": "S3_FORCE_PATH_STYLE", "value": "true"}]
    config = {"entity": ENTITY, "queues": [queue], "max_jobs": 4,
              "environment": {"type": "aws", "region": "us-east-1"},
              "builder": {"type": "kaniko", "build-context-store": "s3://e2e-contexts/builds",
                          "destination": f"{e['registry']}/runs/e2e", "kaniko-image": e["kaniko"],
                          "kaniko-config": {"spec": {"template": {"spec": {**placement, "containers": [{
                              "imagePullPolicy": "Never", "env": env,
                              "args": ["--insecure=true", "--insecure-pull=true",
                                       f"--registry-mirror={e['registry']}"]}]}}}}}}
    return json.dumps(config)


def _allow_launch_records(site: Any) -> None:  # noqa: F811
    sa = f"wandb-launch-serviceaccount-{site.release}"
    name = f"launch-agent-records-{site.release}"
    site.kube.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name,
                                                                                   "namespace": site.agent_ns},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["create", "get", "list", "watch", "patch", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": site.agent_ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": site.agent_ns}]}])


def _run_log(site: Any, run_id: str) -> str:  # noqa: F811
    pods = site.kube.get("pods", namespace=site.jobs_ns, selector=f"{LABEL_RUN_ID}={run_id}")
    return site.kube.kubectl("logs", pods[0]["metadata"]["name"], "-n", site.jobs_ns).stdout if pods else ""


def test_code_and_git_jobs_are_built_by_kaniko_and_run_on_the_real_node(
        site: Any, real_node: realnode.RealNode, node_env: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    with GitServer(tmp_path / "git") as git:
        _allow_launch_records(site)
        queue = job_queue(site, "builds", pod_spec=realnode.placement())
        jobs = {"code": _create(tmp_path, site, "hello-code", HELLO), "git": _create(tmp_path, site, "hello-git",
                                                                                  HELLO, git),
                "failing": _create(tmp_path, site, "failing-code", FAILING)}
        agent = site.agent([queue], config=_agent_config(node_env, queue), env={
            **AWS, "AWS_ENDPOINT_URL_S3": node_env["servers"]["s3"].url, "GIT_SSL_CAINFO": str(git.ca_file),
            "LAUNCH_AGENT_IMAGE": "localenv.local/launch-agent:unused"})
        items = {kind: _launch(site, tmp_path, job, queue) for kind, job in jobs.items()}

        def finished(kind: str) -> bool:
            run = site.emu.item(items[kind]).get("associated_run_id")
            jobs_of_run = site.jobs(f"{LABEL_RUN_ID}={run}") if run else []
            return bool(jobs_of_run) and condition(jobs_of_run[0], "Complete")

        wait_for("the code and git runs to complete on their built images",
                 lambda: finished("code") and finished("git"), BUILDS_BUDGET)
        wait_for("the failing build to fail its item", lambda: site.emu.item(items["failing"])["state"] == "FAILED",
                 FAILING_BUDGET)
        images = {}
        for kind in ("code", "git"):
            run = site.emu.item(items[kind])["associated_run_id"]
            (job,) = site.jobs(f"{LABEL_RUN_ID}={run}")
            pod = job["spec"]["template"]["spec"]
            images[kind] = pod["containers"][0]["image"]
            assert images[kind].startswith(f"{node_env['registry']}/runs/e2e:") and "initContainers" not in pod
            assert _run_log(site, run).strip() == f"hello from {run} in a built image"
        error = site.emu.item(items["failing"])["error"]
        assert error["stage"] == "build" and "exit status 3" in error["message"], error
        assert "this build step fails" in error["message"]
        # The same job version again: found in the registry, no second build.
        builds_before = agent.text().count("build Job")
        again = _launch(site, tmp_path, jobs["code"], queue)
        wait_for("the second run of the code job to complete", lambda: (
            (run := site.emu.item(again).get("associated_run_id")) is not None
            and bool(site.jobs(f"{LABEL_RUN_ID}={run}"))
            and condition(site.jobs(f"{LABEL_RUN_ID}={run}")[0], "Complete")), AGAIN_BUDGET)
        run = site.emu.item(again)["associated_run_id"]
        assert site.jobs(f"{LABEL_RUN_ID}={run}")[0]["spec"]["template"]["spec"]["containers"][0]["image"] == \
            images["code"]
        assert agent.text().count("build Job") == builds_before and f"image {images['code']} exists" in agent.text()
        assert not site.kube.get("jobs", namespace=site.agent_ns, selector=f"{LABEL_ROLE}={ROLE_BUILD}")
        assert agent.terminate() == 0
