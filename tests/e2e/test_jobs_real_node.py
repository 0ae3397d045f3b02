"""Code jobs on the real node: the init container really runs. Our agent (a local process) launches
a code-artifact job made by `wandb job create code`; on the node the agent's own image runs
`python -m agent fetch-source` against the emulator (through the node's relay), writes the code
into the emptyDir, and the job's command runs on a Python base image from it. A git job whose
remote the agent reaches but the pods cannot fails its item with the init container's own line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from official_agent import wandb_cli
from sdk_jobs import FILES
from test_agent_e2e import ENTITY, condition, crds, emu, job_queue, site, wait_for  # noqa: F401

from agent.manifest import LABEL_RUN_ID
from agent.manifest.codemount import INIT_CONTAINER
from localenv import node as realnode
from localenv.gitserver import GitServer
from localenv.pytest_plugin import NodeImages

pytestmark = pytest.mark.e2e
PROJECT = "onnode"
TRAIN = ("import os, pkg.helper\n"
         "print('trained in', os.getcwd(), 'helper', pkg.helper.VALUE)\n")


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as server:  # on loopback: pods cannot reach it
        yield server


def launch(site, name: str, queue: str, home: Path) -> str:  # noqa: F811
    before = {i["id"] for i in site.emu.items(ENTITY, queue)}
    wandb_cli(home, site.emu.url, site.emu.key, "launch", "-j", name, "-q", queue, "-e", ENTITY, "-p", PROJECT)
    (new,) = [i for i in site.emu.items(ENTITY, queue) if i["id"] not in before]
    return str(new["id"])


def pod_of(site, run_id: str) -> dict:  # noqa: F811
    job = wait_for(f"the Job of {run_id}", lambda: site.jobs(f"{LABEL_RUN_ID}={run_id}"))[0]
    return wait_for(f"the pod of {run_id}", lambda: site.kube.get(
        "pods", namespace=site.jobs_ns, selector=f"job-name={job['metadata']['name']}"))[0]


def test_the_init_container_fetches_the_code_and_the_job_runs_from_it(
        site, real_node: realnode.RealNode, node_images: NodeImages, git: GitServer, tmp_path: Path) -> None:  # noqa: F811
    base = node_images.python  # no python:3.12-slim without a registry: the job names its own base
    code = tmp_path / "src"
    for rel, text in {**FILES, "train.py": TRAIN}.items():
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        (code / rel).write_text(text)
    common = ("job", "create", "--entity", ENTITY, "--project", PROJECT)
    wandb_cli(tmp_path, site.emu.url, site.emu.key, *common, "--name", "node-code", "-E", "python train.py",
              "-B", base, "code", str(code))
    repo = git.create_repo("unreachable", FILES)
    wandb_cli(tmp_path, site.emu.url, site.emu.key, *common, "--name", "node-git", "-E", "python train.py",
              "-B", base, "-g", repo.commit, "git", repo.url, GIT_SSL_CAINFO=str(git.ca_file))

    q = job_queue(site, "node", pod_spec=realnode.placement())
    code_item = launch(site, f"{ENTITY}/{PROJECT}/node-code:latest", q, tmp_path)
    git_item = launch(site, f"{ENTITY}/{PROJECT}/node-git:latest", q, tmp_path)
    # The runs' pods reach the emulator on the node's gateway; so does the agent (one base URL).
    agent = site.agent([q], env={"WANDB_BASE_URL": real_node.pod_url(site.emu.url),
                                 "LAUNCH_AGENT_IMAGE": node_images.agent, "GIT_SSL_CAINFO": str(git.ca_file)})

    run = wait_for("the code job acked", lambda: site.emu.item(code_item)["associated_run_id"])
    wait_for("the code job's Job complete", lambda: condition(
        (site.jobs(f"{LABEL_RUN_ID}={run}") or [None])[0], "Complete"), timeout=300)
    pod = pod_of(site, run)
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["name"] == INIT_CONTAINER and init["state"]["terminated"]["exitCode"] == 0
    fetched = site.kube.kubectl("logs", pod["metadata"]["name"], "-n", site.jobs_ns, "-c", INIT_CONTAINER).stdout
    log = site.kube.kubectl("logs", pod["metadata"]["name"], "-n", site.jobs_ns).stdout
    assert "trained in /mnt/wandb helper 42" in log, (fetched, log)
    wait_for("the code run finished", lambda: agent.metric(
        f'launch_agent_items_finished_total{{queue="{q}",state="finished"}}') == 1)

    wait_for("the git job failed", lambda: site.emu.item(git_item)["state"] == "FAILED", timeout=300)
    error = site.emu.item(git_item)["error"]
    assert f"init container {INIT_CONTAINER} exited" in error["message"], error
    assert repo.url.split("//", 1)[1].split("/", 1)[0] in error["message"], error  # the fetcher's line: where
    assert agent.terminate() == 0
