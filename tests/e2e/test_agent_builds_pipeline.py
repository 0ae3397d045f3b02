"""The build step inside the agent's launch pipeline, on the local control plane (kwok plays the
build pod and the run): a code job queued with `builder: kaniko` gets a launch record, its context
in the S3 server, a build Job in the agent's namespace, and then a run Job on the image the build
named; the build Job is gone afterwards. A build that fails fails its item at stage `build`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from official_agent import wandb_cli
from test_agent_e2e import ENTITY, condition, crds, emu, job_queue, site, wait_for  # noqa: F401

from agent.build.job import ROLE_BUILD
from agent.manifest import LABEL_ROLE, LABEL_RUN_ID
from localenv.buildservers import servers

pytestmark = [pytest.mark.e2e, pytest.mark.buildservers]
PROJECT = "builds"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _config(buildservers: servers.BuildServers, queue: str, bucket: str, outcome: str) -> str:
    registry = buildservers["registry"].url.removeprefix("http://")
    return json.dumps({
        "entity": ENTITY, "queues": [queue], "environment": {"type": "aws", "region": "us-east-1"},
        "builder": {"type": "kaniko", "build-context-store": f"s3://{bucket}/ctx", "destination": f"{registry}/runs/kw",
                    "kaniko-config": {"spec": {"template": {
                        "metadata": {"annotations": {"localenv.launch-agent.dev/outcome": outcome}},
                        "spec": {"containers": [{"args": ["--insecure=true"]}]}}}}}})


def _records_rbac(site: Any) -> None:  # noqa: F811
    sa, name = f"wandb-launch-serviceaccount-{site.release}", f"launch-agent-records-{site.release}"
    site.kube.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": site.agent_ns},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["create", "get", "list", "watch", "patch", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": site.agent_ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": site.agent_ns}]}])


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_a_code_job_goes_through_the_build_step(site, buildservers: servers.BuildServers, tmp_path: Path,  # noqa: F811
                                                outcome: str) -> None:
    import boto3

    bucket = f"kw-{site.release}"
    boto3.client("s3", endpoint_url=buildservers["s3"].url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    _records_rbac(site)
    code = tmp_path / "src"
    code.mkdir()
    (code / "train.py").write_text("print('built')\n")
    (code / "requirements.txt").write_text("# none\n")
    wandb_cli(tmp_path, site.emu.url, site.emu.key, "job", "create", "--entity", ENTITY, "--project", PROJECT,
              "--name", "kw-code", "-E", "python train.py", "code", str(code))
    queue = job_queue(site, "kw")
    agent = site.agent([queue], config=_config(buildservers, queue, bucket, outcome),
                       env={**AWS, "AWS_ENDPOINT_URL_S3": buildservers["s3"].url})
    before = {i["id"] for i in site.emu.items(ENTITY, queue)}
    wandb_cli(tmp_path, site.emu.url, site.emu.key, "launch", "-j", f"{ENTITY}/{PROJECT}/kw-code:latest", "-q", queue,
              "-e", ENTITY, "-p", PROJECT)
    (item,) = [i["id"] for i in site.emu.items(ENTITY, queue) if i["id"] not in before]
    registry = buildservers["registry"].url.removeprefix("http://")
    if outcome == "fail":
        wait_for("the item failed at stage build", lambda: site.emu.item(item)["state"] == "FAILED", 300)
        assert site.emu.item(item)["error"]["stage"] == "build"
        assert site.emu.item(item)["error"]["message"].startswith(f"building {registry}/runs/kw:")
    else:
        def run_job() -> dict[str, Any] | None:
            run = site.emu.item(item).get("associated_run_id")
            got = site.jobs(f"{LABEL_RUN_ID}={run}") if run else []
            return got[0] if got else None

        wait_for("the run Job to complete", lambda: condition(run_job(), "Complete"), 300)
        pod = run_job()["spec"]["template"]["spec"]  # type: ignore[index]
        assert pod["containers"][0]["image"].startswith(f"{registry}/runs/kw:") and "initContainers" not in pod
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=buildservers["s3"].url, region_name="us-east-1",
                                               aws_access_key_id="testing", aws_secret_access_key="testing")
                .list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith("ctx/")
    wait_for("the build Job and the launch record to go", lambda: not site.kube.get(
        "jobs", namespace=site.agent_ns, selector=f"{LABEL_ROLE}={ROLE_BUILD}") and not site.kube.get(
        "configmaps", namespace=site.agent_ns, selector=f"{LABEL_ROLE}=launch-record"), 120)
    assert agent.terminate() == 0
