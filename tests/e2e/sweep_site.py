"""Helpers of the sweep tests: an install of our agent with the sweep RBAC, the official CLI
(`wandb launch-sweep`, `wandb sweep --stop/--cancel`), the official scheduler run from its queue
item, and the run player that stands in for the training code of each sweep run."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import yaml
from official_agent import official_env
from official_agent import wandb_cli as official_wandb_cli
from test_agent_e2e import Site, role_rules, wait_for

from localenv.wandb_emulator.testing import EmulatorClient

RUN_SECONDS = "localenv.launch-agent.dev/run-seconds"
OUTCOME = "localenv.launch-agent.dev/outcome"
SWEEP_ENV = {"LAUNCH_AGENT_SWEEP_INTERVAL": "1", "LAUNCH_AGENT_POLL_INTERVAL": "0.5"}
# The two sweeps the tests run through both agents: a grid of 4 and a random sweep of 5.
GRID = {"method": "grid", "image_uri": "busybox:1.36",
        "parameters": {"lr": {"values": [0.1, 0.01]}, "batch": {"values": [16, 32]}},
        "scheduler": {"num_workers": 2}}
RANDOM = {"method": "random", "image_uri": "busybox:1.36", "run_cap": 5,
          "parameters": {"lr": {"min": 0.0001, "max": 0.1, "distribution": "log_uniform_values"},
                         "opt": {"values": ["adam", "sgd"]}, "layers": {"min": 1, "max": 8}},
          "scheduler": {"num_workers": 3}}

__all__ = ["Site", "wait_for"]


def install(kube: Any, namespace: Any, emu: Any, workdir: Path, *, sweep_rbac: bool = True) -> Site:
    """Namespaces, the API-key Secret, a ServiceAccount with the chart's RBAC (with the ConfigMaps
    of sweep schedulers in the agent's namespace unless ``sweep_rbac`` is false), like
    test_agent_e2e's site."""
    release = f"s{uuid.uuid4().hex[:6]}"
    agent_ns, jobs_ns = namespace("sagent"), namespace("sjobs")
    secret, sa = f"wandb-api-key-{release}", f"wandb-launch-serviceaccount-{release}"
    objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": sa, "namespace": agent_ns}}]

    def role(name: str, ns: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                 "metadata": {"name": name, "namespace": ns}, "rules": rules},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": name, "namespace": ns},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                 "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": agent_ns}]}]

    for ns in (agent_ns, jobs_ns):
        objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": ns},
                     "type": "kubernetes.io/basic-auth", "stringData": {"password": emu.api_key}})
        objs += role(f"launch-agent-{release}", ns, role_rules(secret))
    own = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    if sweep_rbac:
        own.append({"apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["create", "get", "list", "patch", "delete"]})
    objs += role(f"launch-agent-own-{release}", agent_ns, own)
    kube.apply(objs)
    return Site(kube, emu, agent_ns, jobs_ns, release, kube.sa_kubeconfig(agent_ns, sa), workdir)


def job_queue(site: Site, name: str, *, seconds: int = 2, outcome: str = "succeed") -> str:
    queue = f"{name}-{site.release}"
    site.emu.queue(queue, {"metadata": {"namespace": site.jobs_ns}, "spec": {"template": {
        "metadata": {"annotations": {RUN_SECONDS: str(seconds), OUTCOME: outcome}},
        "spec": {"containers": [{"resources": {"requests": {"cpu": "10m"}}}]}}}})
    return queue


# --- the official CLI and scheduler ---------------------------------------------------------


def wandb_env(emu: EmulatorClient, home: Path) -> dict[str, str]:
    return official_env(home, emu.url, emu.api_key)


def wandb_cli(emu: EmulatorClient, home: Path, *args: str) -> str:
    """The official `wandb` CLI against the emulator; its output without colours."""
    proc = official_wandb_cli(home, emu.url, emu.api_key, *args)
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


def launch_sweep(emu: EmulatorClient, home: Path, config: dict[str, Any], *, queue: str, project: str,
                 entity: str) -> str:
    """`wandb launch-sweep` with this sweep config; the sweep's id."""
    path = home / f"sweep-{uuid.uuid4().hex[:6]}.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    out = wandb_cli(emu, home, "launch-sweep", str(path), "-q", queue, "-p", project, "-e", entity)
    found = re.search(r"Created sweep with ID: (\w+)", out)
    assert found, out
    return found.group(1)


class OfficialScheduler:
    """The official scheduler of a scheduler item, started the way the official agent's local-process
    runner starts it (its command and environment), with one exception: the arguments are passed
    through a shell unquoted, as the runner of earlier releases did. wandb 0.31.0's runner quotes
    them again, so its scheduler receives ``'proj'`` (quotes included) as the project and stops with
    "Sweep e2e/'proj'/... not found" (test_official_agent_fails_the_default_scheduler_of_its_own_cli)."""

    def __init__(self, emu: EmulatorClient, home: Path, item_id: str, queue: str, spec: dict[str, Any]) -> None:
        env = wandb_env(emu, home)
        overrides = spec["overrides"]
        env.update(WANDB_PROJECT=spec["project"], WANDB_ENTITY=spec["entity"], WANDB_LAUNCH="True",
                   WANDB_RUN_ID=spec["run_id"], WANDB_NAME=spec["name"], WANDB_LAUNCH_QUEUE_NAME=queue,
                   WANDB_LAUNCH_QUEUE_ENTITY=spec["entity"], WANDB_LAUNCH_TRACE_ID=item_id,
                   WANDB_CONFIG=json.dumps(overrides.get("run_config") or {}),
                   WANDB_LAUNCH_FILE_OVERRIDES="{}", WANDB_ARTIFACTS="{}")
        self.log_path = home / "official-scheduler.log"
        self._log = self.log_path.open("w")
        command = " ".join(str(a) for a in overrides["entry_point"] + overrides["args"])
        self.proc = subprocess.Popen(["bash", "-c", command], env=env, cwd=home, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self._log.close()


# --- the runs' own W&B reporting --------------------------------------------------------------


class RunPlayer(threading.Thread):
    """Stands in for the training code of each launched run: a run whose Job has a running pod
    calls ``wandb.init`` (the run becomes running), a Job that completes finishes its run and one
    that fails fails it. kwok pods run no code, so the test tells W&B what the run's own wandb
    client would. Runs of other projects are left alone."""

    def __init__(self, kube: Any, emu: EmulatorClient, namespace: str, entity: str, project: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.emu, self.namespace, self.entity, self.project = kube, emu, namespace, entity, project
        self._halt = threading.Event()
        self.told: dict[str, str] = {}

    def run(self) -> None:
        while not self._halt.wait(0.5):
            try:
                self._pass()
            except Exception:  # the API server or the emulator briefly away: try again
                continue

    def _pass(self) -> None:
        for job in self.kube.get("jobs", namespace=self.namespace, selector="wandb.ai/run-id"):
            run_id = job["metadata"]["labels"]["wandb.ai/run-id"]
            status = job.get("status") or {}
            conds = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
            state = ("finished" if "Complete" in conds else "failed" if "Failed" in conds
                     else "running" if status.get("active") else None)
            if state is None or self.told.get(run_id) == state or self.told.get(run_id) in ("finished", "failed"):
                continue
            if state != "running" and run_id not in self.told:
                self.emu.set_run(self.entity, self.project, run_id, state="running")
            self.emu.set_run(self.entity, self.project, run_id, state=state)
            self.told[run_id] = state

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def pushed_runs(emu: EmulatorClient, entity: str, queue: str, sweep: str) -> list[dict[str, Any]]:
    """The run specs pushed onto the queue for this sweep, in order."""
    return [i["run_spec"] for i in emu.items(entity, queue) if i["run_spec"].get("sweep_id") == sweep]


def parameter_sets(specs: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(s["overrides"]["run_config"], sort_keys=True) for s in specs)
