"""`make demo`: the whole product on this machine, from agent config to finished runs.

1. bring up the local control plane and the W&B emulator (``python -m localenv up``);
2. create the demo queues on the emulator from ``examples/demo/``;
3. generate values.yaml with the generator and ``helm install`` the chart;
4. run the agent as a local process with exactly the identity the chart gives it: a token
   minted for the chart's ServiceAccount and the environment of the chart's Deployment;
5. enqueue runs on a Job queue and a PyTorchJob queue and follow them to the end;
6. print a table, and how to look around and tear down.

The demo plays the part of the runs' own W&B client: when a workload's pods run it marks the
run ``running`` (what ``wandb.init`` does), and when the workload ends it marks the run
``finished`` or ``failed``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localenv import cluster, crds, kubeconfig, tools
from localenv.wandb_emulator.client import EmulatorClient

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "demo"
CHART = REPO / "charts" / "launch-agent"
RELEASE = "demo"
AGENT_NAMESPACE = "launch-agent"
ENTITY = "local"
PROJECT = "demo"
QUEUES = {"demo-jobs": "queue-job.yaml", "demo-pytorch": "queue-pytorchjob.yaml"}
RUNS = [
    # (queue, run name, pod seconds, outcome)
    ("demo-jobs", "train-small", 3, "succeed"),
    ("demo-jobs", "train-medium", 6, "succeed"),
    ("demo-jobs", "train-broken", 2, "fail"),
    ("demo-pytorch", "ddp-resnet", 0, "succeed"),
]
RUN_ANNOTATION_SECONDS = "localenv.launch-agent.dev/run-seconds"
RUN_ANNOTATION_OUTCOME = "localenv.launch-agent.dev/outcome"
TIMEOUT = 240.0


class DemoError(RuntimeError):
    pass


@dataclass
class Tracked:
    queue: str
    name: str
    item_id: str
    run_id: str
    started: float = field(default_factory=time.monotonic)
    item_state: str = "PENDING"
    workload: str = ""
    workload_state: str = ""
    run_state: str = ""
    ended: float | None = None
    history: list[str] = field(default_factory=list)


def say(msg: str) -> None:
    print(msg, flush=True)


def step(n: int, msg: str) -> None:
    say(f"\n[{n}/6] {msg}")


class Kubectl:
    def __init__(self, bin_dir: Path, kcfg: Path) -> None:
        self.bin_dir, self.kcfg = bin_dir, kcfg

    def __call__(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return cluster.kubectl(self.bin_dir, self.kcfg, *args, input_text=input_text, check=check).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def apply(self, objs: list[dict[str, Any]]) -> None:
        self("apply", "-f", "-", input_text=yaml.safe_dump_all(objs))


def ensure_cluster(state_dir: Path) -> cluster.State:
    current = cluster.status(state_dir)
    state = cluster.State.load(state_dir)
    if current.get("running") and current.get("apiserver_ready") and state and state.emulator_url:
        say(f"reusing the local environment in {state_dir}")
        return state
    if state is not None:
        cluster.down(state_dir)
    say(f"starting kube-apiserver, etcd, controller-manager, scheduler, kwok and the W&B emulator in {state_dir}")
    return cluster.up(state_dir, log=lambda line: say(f"  {line}"))


def load_yaml(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise DemoError(f"{path}: expected a mapping")
    return doc


def generate_values(state: cluster.State, api_key: str, out: Path) -> None:
    cmd = [
        sys.executable, "-m", "generator", "values",
        "-c", str(EXAMPLES / "launch-config.yaml"),
        *[arg for q in QUEUES.values() for arg in ("-q", str(EXAMPLES / q))],
        "--namespace", AGENT_NAMESPACE, "--release", RELEASE,
        "--api-key-env", "DEMO_WANDB_API_KEY", "--inline-secrets",
        "--base-url", str(state.emulator_url), "--no-identity", "-o", str(out),
    ]
    say("  $ python -m generator values -c examples/demo/launch-config.yaml "
        + " ".join(f"-q examples/demo/{q}" for q in QUEUES.values())
        + f" --namespace {AGENT_NAMESPACE} --release {RELEASE} ... -o {out}")
    proc = subprocess.run(cmd, env={**os.environ, "DEMO_WANDB_API_KEY": api_key},
                          capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise DemoError(f"the generator failed: {proc.stderr.strip()}")


def helm_install(bin_dir: Path, kcfg: Path, values: Path, home: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(kcfg), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    args = [str(bin_dir / "helm"), "upgrade", "--install", RELEASE, str(CHART), "-n", AGENT_NAMESPACE,
            "--create-namespace", "-f", str(values), "--wait", "--timeout", "3m"]
    say(f"  $ helm upgrade --install {RELEASE} charts/launch-agent -n {AGENT_NAMESPACE} -f {values.name} --wait")
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DemoError(f"helm install failed: {proc.stderr.strip()}")


def agent_environment(kubectl: Kubectl, deployment: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The env of the chart's agent container, resolved as the kubelet would, and the SA name."""
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] in ("agent", "launch-agent")) \
        if any(c["name"] in ("agent", "launch-agent") for c in pod["containers"]) else pod["containers"][0]
    sa = pod.get("serviceAccountName", "default")
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        src = var.get("valueFrom", {})
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            secret = kubectl.json("get", "secret", ref["name"], "-n", AGENT_NAMESPACE)
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            env[var["name"]] = kubectl.json("get", "configmap", ref["name"], "-n", AGENT_NAMESPACE)["data"][ref["key"]]
        elif "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            env[var["name"]] = {"metadata.namespace": AGENT_NAMESPACE, "spec.serviceAccountName": sa,
                                "metadata.name": "demo-agent-local"}.get(path, "")
    return env, sa


def launch_config(kubectl: Kubectl, deployment: dict[str, Any], out: Path) -> Path:
    pod = deployment["spec"]["template"]["spec"]
    for vol in pod.get("volumes", []):
        cm = vol.get("configMap")
        if not cm:
            continue
        data = kubectl.json("get", "configmap", cm["name"], "-n", AGENT_NAMESPACE).get("data", {})
        if "launch-config.yaml" in data:
            out.write_text(data["launch-config.yaml"])
            return out
    raise DemoError("the chart's Deployment mounts no config map with launch-config.yaml")


def workloads(kubectl: Kubectl) -> dict[str, tuple[str, str]]:
    """run id -> (kind/name, state) of every workload the agent created."""
    found: dict[str, tuple[str, str]] = {}
    for resource, ns in (("jobs.batch", "demo-jobs"), ("pytorchjobs.kubeflow.org", "demo-distributed")):
        doc = kubectl.json("get", resource, "-n", ns, "-l", "wandb.ai/run-id")
        for obj in doc.get("items", []):
            run_id = obj["metadata"]["labels"]["wandb.ai/run-id"]
            found[run_id] = (f"{obj['kind']}/{obj['metadata']['name']}", workload_state(obj))
    return found


def workload_state(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    for ctype, label in (("Complete", "Succeeded"), ("Succeeded", "Succeeded"), ("Failed", "Failed"),
                         ("Running", "Running")):
        if conditions.get(ctype) == "True":
            return label
    if status.get("active") or status.get("ready"):
        return "Running"
    return "Created"


def follow(client: EmulatorClient, kubectl: Kubectl, runs: list[Tracked], agent: subprocess.Popen[bytes],
           log_path: Path) -> None:
    t0 = time.monotonic()

    def note(run: Tracked, what: str) -> None:
        run.history.append(what)
        say(f"  {time.monotonic() - t0:6.1f}s  {run.queue:<13} {run.name:<13} {what}")

    while time.monotonic() - t0 < TIMEOUT:
        if agent.poll() is not None:
            raise DemoError(f"the agent exited with code {agent.returncode}; see {log_path}")
        objs = workloads(kubectl)
        for run in runs:
            item = client.item(run.item_id)
            run.run_id = run.run_id or str(item.get("associated_run_id") or "")
            if item["state"] != run.item_state:
                run.item_state = item["state"]
                extra = f" ({item['error']['stage']}: {item['error']['message']})" if item.get("error") else ""
                note(run, f"queue item {run.item_state}{extra}")
            if run.run_id in objs:
                name, wstate = objs[run.run_id]
                if name != run.workload:
                    run.workload = name
                    note(run, f"created {name}")
                if wstate != run.workload_state:
                    run.workload_state = wstate
                    note(run, f"{name.split('/')[0]} {wstate}")
            report_run(client, run, note)
            if run.ended is None and run.item_state in ("FINISHED", "FAILED"):
                run.ended = time.monotonic()
        if all(r.ended is not None for r in runs):
            return
        time.sleep(0.5)
    raise DemoError(f"runs did not finish within {TIMEOUT:.0f} s; see {log_path}")


def report_run(client: EmulatorClient, run: Tracked, note: Callable[[Tracked, str], None]) -> None:
    """Stand in for the run's own wandb client: running when pods run, then its final state.

    A failed workload is the agent's to report first (it fails the queue item with the reason);
    the run's own "failed" follows, as a crashed training script's would, so the outcome shown
    does not depend on who is faster."""
    target = {"Running": "running", "Succeeded": "finished", "Failed": "failed"}.get(run.workload_state)
    if target == "failed" and run.item_state not in ("FAILED", "FINISHED"):
        return
    if target and target != run.run_state:
        if target != "running" and run.run_state == "":
            client.set_run(ENTITY, PROJECT, run.run_id, state="running")
        client.set_run(ENTITY, PROJECT, run.run_id, state=target)
        run.run_state = target
        note(run, f"W&B run {target}")


def run_spec(queue: str, name: str, seconds: int, outcome: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "entity": ENTITY, "project": PROJECT, "name": name,
        "docker": {"docker_image": "ghcr.io/example/train:1.0"},
        "overrides": {"args": ["--epochs", "3"], "run_config": {"lr": 0.01}},
    }
    if queue == "demo-jobs":
        spec["resource_args"] = {"kubernetes": {"spec": {"template": {"metadata": {"annotations": {
            RUN_ANNOTATION_SECONDS: str(seconds), RUN_ANNOTATION_OUTCOME: outcome}}}}}}
    return spec


def table(runs: list[Tracked]) -> str:
    rows = [("queue", "run", "queue item", "workload", "k8s state", "W&B run", "seconds")]
    for r in runs:
        took = f"{(r.ended or time.monotonic()) - r.started:.1f}"
        rows.append((r.queue, r.name, r.item_state, r.workload or "-", r.workload_state or "-",
                     r.run_state or "-", took))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localenv.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=cluster.default_state_dir().parent / "demo",
                        help="state directory of the demo's local environment")
    parser.add_argument("--teardown", action="store_true",
                        help="stop the local environment at the end instead of leaving it to look around")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.expanduser().resolve()
    t0 = time.monotonic()
    agent: subprocess.Popen[bytes] | None = None
    try:
        step(1, "local control plane and W&B emulator")
        bin_dir = tools.bin_dir()
        state = ensure_cluster(state_dir)
        kcfg = Path(state.kubeconfig)
        kubectl = Kubectl(bin_dir, kcfg)
        if not state.emulator_url or not state.emulator_api_key:
            raise DemoError("the W&B emulator did not start; see the logs in " + str(state_dir / "logs"))
        client = EmulatorClient(state.emulator_url, state.emulator_api_key)
        say(f"  kube-apiserver {state.server}, W&B emulator {state.emulator_url}")

        step(2, "queues on the W&B emulator, namespaces and the PyTorchJob CRD on the cluster")
        kubectl.apply([crds.PYTORCHJOB])
        kubectl("wait", "--for=condition=Established", f"crd/{crds.PYTORCHJOB['metadata']['name']}",
                "--timeout=60s")
        kubectl.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": "baseline"}}} for ns in ("demo-jobs", "demo-distributed")])
        client.create_entity(ENTITY)
        for queue, file in QUEUES.items():
            existing = {q["name"] for q in client.queues()}
            if queue not in existing:
                client.create_queue(ENTITY, queue, load_yaml(EXAMPLES / file))
            say(f"  queue {ENTITY}/{queue}: examples/demo/{file}")

        step(3, "values.yaml from the agent config, then helm install")
        work = state_dir / "demo"
        work.mkdir(exist_ok=True)
        values = work / "values.yaml"
        generate_values(state, state.emulator_api_key, values)
        helm_install(bin_dir, kcfg, values, work / "helm")
        deployment = kubectl.json("get", "deployment", "-n", AGENT_NAMESPACE, "-l",
                                  f"app.kubernetes.io/instance={RELEASE}")["items"][0]
        say(f"  installed: Deployment {deployment['metadata']['name']} in {AGENT_NAMESPACE} "
            f"(pod on a kwok node), RBAC in {AGENT_NAMESPACE}, demo-jobs, demo-distributed")

        step(4, "the agent, as a local process with the chart's ServiceAccount identity")
        env, sa = agent_environment(kubectl, deployment)
        sa_kcfg = kubeconfig.mint_service_account(bin_dir / "kubectl", kcfg, AGENT_NAMESPACE, sa,
                                                  work / "agent-sa.kubeconfig")
        cfg = launch_config(kubectl, deployment, work / "launch-config.yaml")
        env.update({"LAUNCH_AGENT_HEALTH_PORT": "0", "LAUNCH_AGENT_POLL_INTERVAL": "1",
                    "HOME": str(work), "PATH": os.environ.get("PATH", "")})
        log_path = work / "agent.log"
        cmd = [sys.executable, "-m", "agent", "-c", str(cfg), "--kubeconfig", str(sa_kcfg)]
        say(f"  $ python -m agent -c {cfg.name} --kubeconfig {sa_kcfg.name}   "
            f"(token of system:serviceaccount:{AGENT_NAMESPACE}:{sa}; log: {log_path})")
        with log_path.open("wb") as log:
            agent = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

        step(5, f"{len(RUNS)} runs enqueued; following them")
        runs = []
        for queue, name, seconds, outcome in RUNS:
            pushed = client.push(ENTITY, queue, run_spec(queue, name, seconds, outcome))
            runs.append(Tracked(queue, name, str(pushed["id"]), ""))
        follow(client, kubectl, runs, agent, log_path)

        step(6, "done")
        say(table(runs))
        if args.teardown:
            cluster.down(state_dir)
            say(f"\nfinished in {time.monotonic() - t0:.0f} s; the local environment is stopped.")
            return 0
        say(f"\nfinished in {time.monotonic() - t0:.0f} s. Look around:\n"
            f"  export KUBECONFIG={kcfg}\n"
            f"  {bin_dir}/kubectl get jobs,pytorchjobs -A -l wandb.ai/run-id\n"
            f"  {bin_dir}/kubectl get all -n {AGENT_NAMESPACE}\n"
            f"  agent log: {log_path}\n"
            f"Tear down:\n  {sys.executable} -m localenv down --state-dir {state_dir}")
        return 0
    except (DemoError, cluster.LocalenvError, kubeconfig.TokenError, tools.BuildError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()


if __name__ == "__main__":
    sys.exit(main())
