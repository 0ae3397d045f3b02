"""Differential: the same job items launched by the official agent (``wandb launch-agent`` of the
pinned release, unmodified, builder noop) and by ours, on the local control plane.

An image job, a code-artifact job and a git job (made by ``wandb job create``) are pushed by
``wandb launch -j`` once, and the same run specs go onto a Job queue and a PyTorchJob queue of
each agent (the same queue configs but for the namespace; the Job's pod has a sidecar). The created workloads are compared
field by field (tests/workload_diff.py: image, command, args, env, volumes and mounts, init
containers, working dir); a difference must be allowed by a row of the table of deliberate
differences in agent/README.md, and every row that names fields must still describe one.
The official agent's operations go into the operations fixture (scenario "jobs").
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from official_agent import OfficialAgent, wandb_cli
from official_agent import wait_until as official_wait
from operations_fixture import OperationsFixture
from sdk_jobs import create_jobs
from test_agent_e2e import ENTITY, Site, crds, emu, site, wait_for  # noqa: F401
from workload_diff import Difference, allowed, differences, pod_fields, unlisted, unused

from agent.manifest import LABEL_RUN_ID
from localenv.gitserver import GitServer

pytestmark = pytest.mark.e2e
PROJECT = "proj"
KEEP_RUNNING = {"localenv.launch-agent.dev/outcome": "keep-running"}
SOURCE_TYPES = {"image": "image", "code": "artifact", "git": "repo"}
NOOP = {"builder": {"type": "noop"}}
GIT_CREDENTIALS_SECRET = "launch-agent-git-credentials"
# A sidecar with its own image and command: which container gets the job's command shows.
SIDECAR = {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "3600"]}


def job_config(namespace: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace}, "spec": {"template": {
        "metadata": {"annotations": dict(KEEP_RUNNING)},
        "spec": {"containers": [{"image": "${image_uri}", "resources": {"requests": {"cpu": "100m"}}},
                                dict(SIDECAR)]}}}}


def pytorch_config(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "ptj-${run_id}", "namespace": namespace},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {
                "metadata": {"annotations": dict(KEEP_RUNNING)},
                "spec": {"containers": [{"name": "pytorch", "image": "${image_uri}"}]}}}}}}


KINDS = {"Job": ("jobs.batch", job_config), "PyTorchJob": ("pytorchjobs.kubeflow.org", pytorch_config)}


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


def pushed_specs(site: Site, home: Path, git: GitServer) -> dict[str, dict[str, Any]]:  # noqa: F811
    """The run spec `wandb launch -j` pushes for each job, read back from a queue nobody serves."""
    jobs = create_jobs(home, site.emu.url, site.emu.key, ENTITY, PROJECT, git)
    capture = f"capture-{site.release}"
    site.emu.queue(capture, {})
    specs = {}
    for kind, name in jobs.all().items():
        before = {i["id"] for i in site.emu.items(ENTITY, capture)}
        wandb_cli(home, site.emu.url, site.emu.key, "launch", "-j", name, "-q", capture, "-e", ENTITY,
                  "-p", PROJECT)
        (item,) = [i for i in site.emu.items(ENTITY, capture) if i["id"] not in before]
        spec = copy.deepcopy(item["run_spec"])
        assert spec["job"] == name and not (spec.pop("resource_args", None) or {}).get("kubernetes"), spec
        specs[kind] = spec
    return specs


def workloads(site: Site, resource: str, namespace: str, items: dict[str, str],  # noqa: F811
              agent: Any = None) -> dict[str, dict[str, Any]]:
    """job kind -> the workload its item became (found by the run id the item was acked with)."""
    def found() -> dict[str, dict[str, Any]] | None:
        out = {}
        for kind, item_id in items.items():
            item = site.emu.item(item_id)
            assert item["state"] != "FAILED", f"{kind} job item failed: {item['error']}"
            run_id = item["associated_run_id"]
            # The official agent labels Jobs with the run id but not custom resources, which the queue
            # config names ptj-${run_id}.
            objs = [o for o in site.kube.get(resource, namespace=namespace) if run_id and (
                (o["metadata"].get("labels") or {}).get(LABEL_RUN_ID) == run_id
                or o["metadata"]["name"] == f"ptj-{run_id}")]
            if not objs:
                return None
            out[kind] = objs[0]
        return out

    if agent is not None:
        return official_wait(found, 300, f"the official agent's {resource}", agent)
    return wait_for(f"our agent's {resource}", found, 300)


@pytest.mark.cluster
def test_official_and_our_agent_launch_the_same_job_items_alike(
    site: Site, git: GitServer, namespace: Any, tmp_path: Path, operations_fixture: OperationsFixture,  # noqa: F811
) -> None:
    specs = pushed_specs(site, tmp_path / "home", git)
    official_ns = namespace("official")
    queues: dict[tuple[str, str], str] = {}
    items: dict[tuple[str, str], dict[str, str]] = {}
    for who, ns in (("official", official_ns), ("ours", site.jobs_ns)):
        for kind, (_, config) in KINDS.items():
            queue = queues[who, kind] = f"{who}-{kind.lower()}-{site.release}"
            site.emu.queue(queue, config(ns))
            items[who, kind] = {job: site.emu.enqueue(queue, copy.deepcopy(spec)) for job, spec in specs.items()}

    ca = {"GIT_SSL_CAINFO": str(git.ca_file)}
    with OfficialAgent(tmp_path / "official", site.emu.url, site.emu.key, ENTITY,
                       [queues["official", k] for k in KINDS], max_jobs=len(specs) * len(KINDS),
                       kubeconfig=Path(site.kube.kubeconfig), extra_env=ca, launch_config=NOOP) as agent:
        theirs = {kind: workloads(site, resource, official_ns, items["official", kind], agent)
                  for kind, (resource, _) in KINDS.items()}
        ops = site.emu.operations()
    ours_agent = site.agent([queues["ours", k] for k in KINDS], config=(
        f"entity: {ENTITY}\nmax_jobs: 10\nqueues: {[queues['ours', k] for k in KINDS]}\nbuilder: {{type: noop}}\n"),
        env={"LAUNCH_AGENT_IMAGE": "launch-agent:test", **ca,
             "LAUNCH_AGENT_GIT_CREDENTIALS_SECRET": GIT_CREDENTIALS_SECRET})
    ours = {kind: workloads(site, resource, site.jobs_ns, items["ours", kind]) for kind, (resource, _) in KINDS.items()}
    assert ours_agent.terminate() == 0

    diffs: list[Difference] = []
    for kind in KINDS:
        for job in specs:
            diffs += differences(f"{kind}/{SOURCE_TYPES[job]}", theirs[kind][job], ours[kind][job])
    rules = allowed()
    report = "\n".join(str(d) for d in diffs)
    assert not unlisted(diffs, rules), (
        "differences from the official agent not in agent/README.md's table:\n"
        + "\n".join(str(d) for d in unlisted(diffs, rules)) + f"\n\nall differences:\n{report}")
    assert not unused(diffs, rules), (
        "rows of agent/README.md's table that no longer describe a difference: "
        + ", ".join(r.text for r in unused(diffs, rules)) + f"\n\nall differences:\n{report}")
    # The comparison compares something: code and git jobs run the same image in the same directory,
    # with the same code volume.
    for kind in KINDS:
        for job in ("code", "git"):
            official_fields, our_fields = pod_fields(theirs[kind][job]), pod_fields(ours[kind][job])
            for field in ("containers[0].image", "containers[0].workingDir", "volumes[wandb-source-code-volume]"):
                assert official_fields[field] == our_fields[field], (kind, job, field)
    operations_fixture.check("jobs", ops)
