"""`make demo`: the whole product on this machine, from agent config to finished runs.

1. bring up the local control plane, the W&B emulator and the real node (``python -m localenv up``);
2. build the agent image (agent/Dockerfile) and the trainer image (the ``wandb`` SDK) and load
   them into the node; create the demo queues on the emulator from ``examples/demo/``;
3. generate values.yaml with the generator and ``helm install`` the chart with that image;
4. the agent runs as the chart's pod on the real node, in an ``enforce=restricted`` namespace,
   with its in-cluster ServiceAccount;
5. enqueue two runs of the trainer on the Job queue (they really run: ``wandb.init``, a few
   logged steps, exit 0 or 1), a third launched by job name (``wandb job create image`` of the
   trainer, then ``wandb launch -j``: the agent resolves the job artifact) and one on the
   PyTorchJob queue (no training operator here: kwok plays it, and the demo plays that run's W&B
   client);
6. print a table and the runs' own log lines, and how to look around and tear down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localenv import cluster, crds, images, kubeconfig, tools
from localenv.images import project
from localenv.node import NODE_NAME, RealNode, exposed_url, lifecycle, lock, placement
from localenv.wandb_emulator.client import AdminCallError, EmulatorClient

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "demo"
CHART = REPO / "charts" / "launch-agent"
RELEASE = "demo"
AGENT_NAMESPACE = "launch-agent"
ENTITY = "local"
PROJECT = "demo"
QUEUES = {"demo-jobs": "queue-job.yaml", "demo-pytorch": "queue-pytorchjob.yaml"}
RUNS = [
    # (queue, run name, trainer steps or pod seconds, outcome)
    ("demo-jobs", "train-small", 5, "succeed"),
    ("demo-jobs", "train-broken", 2, "fail"),
    ("demo-pytorch", "ddp-resnet", 3, "succeed"),
    ("demo-jobs", "train-by-job", 3, "succeed"),
]
BY_JOB = "train-by-job"  # pushed by `wandb launch -j` of the job artifact JOB (the official CLI)
JOB = "trainer"
REAL_QUEUE = "demo-jobs"  # its runs execute on the real node; the run's own wandb reports their state
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
NODE_WAIT = 1800.0
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


_STARTED = time.monotonic()


def step(n: int, msg: str) -> None:
    say(f"\n[{n}/6] {msg}  (at {time.monotonic() - _STARTED:.0f} s)")


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
    """The demo's localenv with the real node: reused when it runs, else started (waiting for the
    machine's real node when another localenv has it)."""
    current = cluster.status(state_dir)
    state = cluster.State.load(state_dir)
    if current.get("running") and current.get("apiserver_ready") and state and state.emulator_url and state.real_node:
        say(f"reusing the local environment in {state_dir}")
        return state
    if state is not None:
        cluster.down(state_dir)
    say(f"starting kube-apiserver, etcd, controller-manager, scheduler, kwok, the W&B emulator and the real node "
        f"(kubelet, containerd, kube-proxy, CoreDNS) in {state_dir}")
    lifecycle.check_host()
    machine_lock = lifecycle.acquire_lock(state_dir, NODE_WAIT, lambda line: say(f"  {line}"))
    try:
        state = cluster.up(state_dir, log=lambda line: say(f"  {line}"))
        lifecycle.attach(state, machine_lock, log=lambda line: say(f"  {line}"))
    except BaseException:
        with contextlib.suppress(cluster.LocalenvError):
            cluster.down(state_dir)
        machine_lock.release()
        raise
    return state


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


def local_values(image: str, base_url: str, out: Path) -> Path:
    """What this machine adds to the generated values: the image built here, the emulator's
    address as pods see it, and the real node for the agent's pod."""
    place = placement()
    out.write_text(yaml.safe_dump({
        "agent": {"image": image, "imagePullPolicy": "Never", "nodeSelector": place["nodeSelector"],
                  "tolerations": place["tolerations"]},
        "baseUrl": base_url,
    }, sort_keys=False))
    return out


def helm_install(bin_dir: Path, kcfg: Path, values: list[Path], home: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(kcfg), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    args = [str(bin_dir / "helm"), "upgrade", "--install", RELEASE, str(CHART), "-n", AGENT_NAMESPACE,
            *[a for v in values for a in ("-f", str(v))], "--wait", "--timeout", "3m"]
    say(f"  $ helm upgrade --install {RELEASE} charts/launch-agent -n {AGENT_NAMESPACE} "
        + " ".join(f"-f {v.name}" for v in values) + " --wait")
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DemoError(f"helm install failed: {proc.stderr.strip()}")


def agent_pod(kubectl: Kubectl) -> dict[str, Any]:
    pods = kubectl.json("get", "pods", "-n", AGENT_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    if len(pods) != 1:
        raise DemoError(f"expected one agent pod in {AGENT_NAMESPACE}, found {len(pods)}")
    return pods[0]


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


def follow(client: EmulatorClient, kubectl: Kubectl, runs: list[Tracked]) -> None:
    t0 = time.monotonic()

    def note(run: Tracked, what: str) -> None:
        run.history.append(what)
        say(f"  {time.monotonic() - t0:6.1f}s  {run.queue:<13} {run.name:<13} {what}")

    while time.monotonic() - t0 < TIMEOUT:
        status = (agent_pod(kubectl).get("status") or {}).get("containerStatuses") or [{}]
        if status[0].get("restartCount"):
            raise DemoError(f"the agent's container restarted; see kubectl logs -n {AGENT_NAMESPACE} "
                            f"-l app.kubernetes.io/instance={RELEASE} --previous")
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
            if run.queue == REAL_QUEUE:
                observe_run(client, run, note)
            else:
                report_run(client, run, note)
            if run.ended is None and run.item_state in ("FINISHED", "FAILED") and run.run_state in (
                    "finished", "failed", "crashed") and run.workload_state in ("Succeeded", "Failed"):
                run.ended = time.monotonic()
        if all(r.ended is not None for r in runs):
            return
        time.sleep(0.5)
    raise DemoError(f"runs did not finish within {TIMEOUT:.0f} s; see kubectl logs -n {AGENT_NAMESPACE} "
                    f"-l app.kubernetes.io/instance={RELEASE}")


def observe_run(client: EmulatorClient, run: Tracked, note: Callable[[Tracked, str], None]) -> None:
    """The state of a run that reports itself (the trainer's wandb), as the emulator holds it."""
    if not run.run_id:
        return
    with contextlib.suppress(AdminCallError):
        state = str(client.run(ENTITY, PROJECT, run.run_id).get("state") or "")
        if state and state != run.run_state:
            run.run_state = state
            note(run, f"W&B run {state} (reported by the run itself)")


def report_run(client: EmulatorClient, run: Tracked, note: Callable[[Tracked, str], None]) -> None:
    """Stand in for the W&B client of a run kwok plays (the PyTorchJob): running when its
    workload runs, then its final state."""
    target = {"Running": "running", "Succeeded": "finished", "Failed": "failed"}.get(run.workload_state)
    if target and target != run.run_state:
        if target != "running" and run.run_state == "":
            client.set_run(ENTITY, PROJECT, run.run_id, state="running")
        client.set_run(ENTITY, PROJECT, run.run_id, state=target)
        run.run_state = target
        note(run, f"W&B run {target}")


def run_spec(queue: str, name: str, amount: int, outcome: str, trainer: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"entity": ENTITY, "project": PROJECT, "name": name}
    if queue == REAL_QUEUE:
        spec["docker"] = {"docker_image": trainer}
        spec["overrides"] = {"args": ["--steps", str(amount), "--exit-code", "1" if outcome == "fail" else "0"],
                             "run_config": {"lr": 0.01}}
    else:  # kwok plays it for the time the queue config's annotation says
        spec["docker"] = {"docker_image": "ghcr.io/example/train:1.0"}
    return spec


def wandb_cli(home: Path, state: cluster.State, *args: str) -> str:
    """The official ``wandb`` CLI (the venv's, unmodified) against the emulator, with its own HOME."""
    for sub in ("wandb", ".config/wandb", ".cache/wandb"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "KUBECONFIG"}
    env.update(HOME=str(home), WANDB_DIR=str(home / "wandb"), WANDB_CONFIG_DIR=str(home / ".config" / "wandb"),
               WANDB_CACHE_DIR=str(home / ".cache" / "wandb"), WANDB_BASE_URL=str(state.emulator_url),
               WANDB_API_KEY=str(state.emulator_api_key), WANDB_ERROR_REPORTING="false", WANDB_SILENT="true")
    say("  $ wandb " + " ".join(args))
    proc = subprocess.run([str(Path(sys.executable).with_name("wandb")), *args], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise DemoError(f"wandb {args[0]} {args[1]} exited {proc.returncode}: {tail[0]}")
    return proc.stdout


def push_by_job(client: EmulatorClient, state: cluster.State, home: Path, queue: str, amount: int,
                outcome: str, trainer: str) -> str:
    """The trainer image as a W&B job artifact, launched by name: the item names the job only."""
    wandb_cli(home, state, "job", "create", "--entity", ENTITY, "--project", PROJECT, "--name", JOB,
              "-E", "python /app/train.py", "image", trainer)
    before = {i["id"] for i in client.items(ENTITY, queue)}
    config = {"overrides": {"args": ["--steps", str(amount), "--exit-code", "1" if outcome == "fail" else "0"]}}
    wandb_cli(home, state, "launch", "-j", f"{ENTITY}/{PROJECT}/{JOB}:latest", "-q", queue, "-e", ENTITY,
              "-p", PROJECT, "-c", json.dumps(config))
    new = [i for i in client.items(ENTITY, queue) if i["id"] not in before]
    if len(new) != 1:
        raise DemoError(f"wandb launch -j pushed {len(new)} items to {queue}, not one")
    return str(new[0]["id"])


def run_logs(kubectl: Kubectl, runs: list[Tracked]) -> list[str]:
    """The last line each real run printed (its own container's log)."""
    lines = []
    for run in runs:
        if run.queue != REAL_QUEUE or not run.workload:
            continue
        job = run.workload.split("/", 1)[1]
        out = kubectl("logs", "-n", REAL_QUEUE, f"job/{job}", "--tail=1", check=False).strip()
        lines.append(f"  {run.name}: {out or '(no log)'}")
    return lines


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
    try:
        step(1, "local control plane, W&B emulator and the real node")
        bin_dir = tools.bin_dir()
        state = ensure_cluster(state_dir)
        kcfg = Path(state.kubeconfig)
        kubectl = Kubectl(bin_dir, kcfg)
        if not state.emulator_url or not state.emulator_api_key:
            raise DemoError("the W&B emulator did not start; see the logs in " + str(state_dir / "logs"))
        client = EmulatorClient(state.emulator_url, state.emulator_api_key)
        pod_base_url = exposed_url(state, state.emulator_url)
        say(f"  kube-apiserver {state.server}, W&B emulator {state.emulator_url} (pods: {pod_base_url}), "
            f"real node {NODE_NAME}")

        step(2, "images built here and loaded into the node; queues, namespaces, the PyTorchJob CRD")
        node = RealNode(state, lifecycle.NodeState.load(state_dir))  # type: ignore[arg-type]
        agent_image, trainer = (node.load(build(log=lambda line: say(f"  {line}")), log=lambda line: say(f"  {line}"))[0]
                                for build in (project.agent, project.trainer))
        say(f"  agent image {agent_image} (agent/Dockerfile), trainer image {trainer} (tests/images/trainer)")
        kubectl.apply([crds.PYTORCHJOB])
        kubectl("wait", "--for=condition=Established", f"crd/{crds.PYTORCHJOB['metadata']['name']}",
                "--timeout=60s")
        kubectl.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
                       for ns, labels in ((AGENT_NAMESPACE, RESTRICTED),
                                          ("demo-jobs", {"pod-security.kubernetes.io/enforce": "baseline"}),
                                          ("demo-distributed", {"pod-security.kubernetes.io/enforce": "baseline"}))])
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
        local = local_values(agent_image, pod_base_url, work / "values-local.yaml")
        helm_install(bin_dir, kcfg, [values, local], work / "helm")

        step(4, "the agent, as the chart's pod on the real node")
        pod = agent_pod(kubectl)
        sc = pod["spec"]["containers"][0].get("securityContext") or {}
        say(f"  pod {AGENT_NAMESPACE}/{pod['metadata']['name']} on {pod['spec'].get('nodeName')}: Ready, "
            f"image {pod['spec']['containers'][0]['image']}, runAsNonRoot={sc.get('runAsNonRoot')}, "
            f"readOnlyRootFilesystem={sc.get('readOnlyRootFilesystem')}, namespace enforce=restricted, "
            f"ServiceAccount {pod['spec'].get('serviceAccountName')} (in-cluster)")

        step(5, f"{len(RUNS)} runs enqueued; following them")
        runs = []
        for queue, name, amount, outcome in RUNS:
            if name == BY_JOB:
                item_id = push_by_job(client, state, work / "wandb-home", queue, amount, outcome, trainer)
            else:
                item_id = str(client.push(ENTITY, queue, run_spec(queue, name, amount, outcome, trainer))["id"])
            runs.append(Tracked(queue, name, item_id, ""))
        follow(client, kubectl, runs)

        step(6, "done")
        say(table(runs))
        say("\nthe runs' own log lines (kubectl logs):")
        for line in run_logs(kubectl, runs):
            say(line)
        if args.teardown:
            cluster.down(state_dir)
            say(f"\nfinished in {time.monotonic() - t0:.0f} s; the local environment is stopped.")
            return 0
        say(f"\nfinished in {time.monotonic() - t0:.0f} s. Look around:\n"
            f"  export KUBECONFIG={kcfg}\n"
            f"  {bin_dir}/kubectl get jobs,pytorchjobs -A -l wandb.ai/run-id\n"
            f"  {bin_dir}/kubectl get all -n {AGENT_NAMESPACE}\n"
            f"  {bin_dir}/kubectl logs -n {AGENT_NAMESPACE} -l app.kubernetes.io/instance={RELEASE}\n"
            f"Tear down:\n  {sys.executable} -m localenv down --state-dir {state_dir}")
        return 0
    except (DemoError, cluster.LocalenvError, kubeconfig.TokenError, tools.BuildError, lock.NodeBusy,
            images.ImageError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
