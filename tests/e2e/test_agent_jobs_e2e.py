"""Jobs launched by name through our agent: `wandb launch -j` pushes an image job, a code-artifact
job and a git job (all three made by `wandb job create`), `python -m agent` resolves each and
launches it on the local control plane; a job that cannot launch fails its item with one line
while the agent goes on with the next."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from official_agent import wandb_cli
from sdk_jobs import TRAIN, SdkJobs, create_jobs
from test_agent_e2e import ENTITY, condition, crds, emu, job_queue, site, wait_for  # noqa: F401

from agent.manifest import LABEL_RUN_ID
from agent.manifest.codemount import DEFAULT_BASE_IMAGE, INIT_CONTAINER
from localenv.gitserver import GitServer

pytestmark = pytest.mark.e2e
PROJECT = "proj"


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture(scope="module")
def sdk_jobs(emu, git, tmp_path_factory: pytest.TempPathFactory) -> SdkJobs:  # noqa: F811
    return create_jobs(tmp_path_factory.mktemp("sdk"), emu.url, emu.key, ENTITY, PROJECT, git)


def launch(site, name: str, queue: str, home: Path) -> str:  # noqa: F811
    before = {i["id"] for i in site.emu.items(ENTITY, queue)}
    wandb_cli(home, site.emu.url, site.emu.key, "launch", "-j", name, "-q", queue, "-e", ENTITY, "-p", PROJECT)
    (new,) = [i for i in site.emu.items(ENTITY, queue) if i["id"] not in before]
    return str(new["id"])


def test_image_code_and_git_jobs_run_from_wandb_launch(site, sdk_jobs, git, tmp_path):  # noqa: F811
    q = job_queue(site, "jobs", annotations={"localenv.launch-agent.dev/run-seconds": "1"})
    items = {kind: launch(site, name, q, tmp_path) for kind, name in sdk_jobs.all().items()}
    # `wandb launch` refuses a job it cannot find, so the one whose version is gone (deleted after
    # the push) is pushed directly.
    missing = site.emu.enqueue(q, {"entity": ENTITY, "project": PROJECT, "resource": "kubernetes",
                                   "job": f"{ENTITY}/{PROJECT}/image-job:v9"})
    agent = site.agent([q], env={"LAUNCH_AGENT_IMAGE": "launch-agent:test", "GIT_SSL_CAINFO": str(git.ca_file)})
    wait_for("the three items acked", lambda: all(site.emu.item(i)["associated_run_id"] for i in items.values()))
    runs = {kind: site.emu.item(i)["associated_run_id"] for kind, i in items.items()}
    wait_for("the three Jobs complete", lambda: all(
        condition(site.jobs(f"{LABEL_RUN_ID}={r}")[0] if site.jobs(f"{LABEL_RUN_ID}={r}") else None, "Complete")
        for r in runs.values()))
    wait_for("the job with no such version failed", lambda: site.emu.item(missing)["state"] == "FAILED")
    error = site.emu.item(missing)["error"]
    assert error["stage"] == "agent" and "has no version 'v9'" in error["message"], error
    for item_id in items.values():
        got = site.emu.item(item_id)
        assert got["state"] == "LEASED", got
    image = site.jobs(f"{LABEL_RUN_ID}={runs['image']}")[0]["spec"]["template"]["spec"]
    assert image["containers"][0]["image"] == "busybox:1.36" and "initContainers" not in image
    for kind in ("code", "git"):
        pod = site.jobs(f"{LABEL_RUN_ID}={runs[kind]}")[0]["spec"]["template"]["spec"]
        main, (init,) = pod["containers"][0], pod["initContainers"]
        assert main["image"] == DEFAULT_BASE_IMAGE and main["workingDir"] == "/mnt/wandb"
        assert main["args"][0].endswith("exec python train.py")
        assert (init["name"], init["image"]) == (INIT_CONTAINER, "launch-agent:test")
        assert init["command"] == ["python", "-m", "agent", "fetch-source"]
        assert ("--git-remote" in init["args"]) == (kind == "git")
    wait_for("three runs finished", lambda: agent.metric(
        f'launch_agent_items_finished_total{{queue="{q}",state="finished"}}') == 3)
    assert agent.terminate() == 0


def test_code_pvc_mode_writes_each_job_version_once_where_the_runs_mount_it(site, sdk_jobs, git, tmp_path):  # noqa: F811
    """The official PVC mode: the agent writes the source to <mount path>/<job>:v<N> and the runs
    mount that sub-path of the claim (here the mount path is a local directory: the agent runs as a
    local process)."""
    q = job_queue(site, "pvc", annotations={"localenv.launch-agent.dev/run-seconds": "1"})
    code = tmp_path / "code-pvc"
    code.mkdir()
    items = [launch(site, sdk_jobs.code, q, tmp_path), launch(site, sdk_jobs.git, q, tmp_path),
             launch(site, sdk_jobs.code, q, tmp_path)]
    agent = site.agent([q], env={"LAUNCH_AGENT_IMAGE": "launch-agent:test", "GIT_SSL_CAINFO": str(git.ca_file),
                                 "WANDB_LAUNCH_CODE_PVC_NAME": "job-code",
                                 "WANDB_LAUNCH_CODE_PVC_MOUNT_PATH": str(code)})
    wait_for("the three items acked", lambda: all(site.emu.item(i)["associated_run_id"] for i in items))
    assert sorted(p.name for p in code.iterdir()) == ["code-job:v0", "git-job:v0"], "one tree per job version"
    for version in ("code-job:v0", "git-job:v0"):
        assert (code / version / "train.py").read_text() == TRAIN
        assert (code / version / "pkg" / "helper.py").is_file()
        assert (code / version / ".job" / "requirements.frozen.txt").is_file()
    for item_id in items:
        run = site.emu.item(item_id)["associated_run_id"]
        pod = wait_for(f"the Job of {run}", lambda run=run: site.jobs(f"{LABEL_RUN_ID}={run}"))[0]["spec"]["template"]
        spec = pod["spec"]
        assert "initContainers" not in spec
        assert {"name": "wandb-source-code-volume", "persistentVolumeClaim": {"claimName": "job-code"}} in spec["volumes"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "wandb-source-code-volume"]
        assert mount["mountPath"] == "/mnt/wandb" and mount["subPath"] in ("code-job:v0", "git-job:v0")
    assert agent.terminate() == 0
