"""The fault suite's rig: one local control plane of its own (watches served from etcd, an audit
log of every workload created), the W&B emulator in this process, and agents as separate
processes that reach the API server through a proxy the test can cut.

What each test proves is counted the same way (`Tally`): every run-queue item pushed must reach
its expected end (else it is *lost*), have at most one workload ever created for it (the API
server's audit log, so a workload created, deleted and created again is seen) and at most one
failure report and one ack sent (the emulator records every call, not only the first)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from agentproc import agent_command, agent_env
from apiproxy import TcpProxy

from agent.manifest import run_info, workload_name
from localenv import cluster, kubeconfig, kwok
from localenv.wandb_emulator.testing import EntityAdmin

ENTITY = "acme"
TIMEOUT = 180.0
RUN_SECONDS = kwok.RUN_SECONDS
OUTCOME = kwok.OUTCOME

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "delete", "patch"], "resources": [
            {"group": "batch", "resources": ["jobs"]}, {"group": "kubeflow.org"}, {"group": "batch.volcano.sh"},
            {"group": "", "resources": ["pods/eviction"]}]},
        {"level": "None"},
    ],
}


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT, interval: float = 0.3,
             agents: list[AgentProc] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- agent {a.n} ---\n{a.text()[-3000:]}" for a in agents or [])
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{tails}")
        time.sleep(interval)


class Env:
    """The suite's localenv + emulator."""

    def __init__(self, state: cluster.State, emu: EntityAdmin, stop_emulator: Callable[[], None], workdir: Path):
        self.state = state
        self.state_dir = Path(state.state_dir)
        self.bin_dir = Path(state.bin_dir)
        self.kubeconfig = Path(state.kubeconfig)
        self.emu = emu
        self._stop_emulator = stop_emulator
        self.workdir = workdir
        self.audit_log = self.state_dir / "audit.log"

    @property
    def apiserver_port(self) -> int:
        return int(self.state.ports["apiserver"])

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return cluster.kubectl(self.bin_dir, self.kubeconfig, *args, input_text=input_text, check=check).stdout

    def apply(self, objs: list[dict[str, Any]] | dict[str, Any]) -> None:
        docs = objs if isinstance(objs, list) else [objs]
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(docs))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None,
            selector: str | None = None) -> Any:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        args += ["-n", namespace] if namespace else []
        args += ["-l", selector] if selector else []
        proc = cluster.kubectl(self.bin_dir, self.kubeconfig, *args, check=False)
        if proc.returncode != 0:
            if name and "NotFound" in proc.stderr:
                return None
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        data = json.loads(proc.stdout)
        return data if name else data["items"]

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        wait_for(f"ServiceAccount default in {name}",
                 lambda: cluster.kubectl(self.bin_dir, self.kubeconfig, "get", "sa", "default", "-n", name,
                                         check=False).returncode == 0, 60)
        return name

    def restart(self, component: str, down_for: float = 0.0) -> None:
        cluster.restart(self.state_dir, component, down_for=down_for)

    def compact_etcd(self) -> None:
        """Drop etcd's history up to now: a watch resuming from an older resourceVersion gets 410."""
        cluster.compact_etcd(self.state)

    def creations(self) -> Counter[tuple[str, str, str]]:
        """Successful creates of workloads per (resource, namespace, name), from the audit log."""
        found: Counter[tuple[str, str, str]] = Counter()
        if not self.audit_log.exists():
            return found
        for line in self.audit_log.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ref = ev.get("objectRef") or {}
            if ev.get("verb") == "create" and (ev.get("responseStatus") or {}).get("code") == 201 \
                    and not ref.get("subresource"):
                found[(str(ref.get("resource")), str(ref.get("namespace")), str(ref.get("name")))] += 1
        return found

    def evictions(self) -> int:
        if not self.audit_log.exists():
            return 0
        return sum(1 for line in self.audit_log.read_text(errors="replace").splitlines()
                   if '"subresource":"eviction"' in line and '"code":201' in line)

    def close(self) -> None:
        self._stop_emulator()


def agent_rules(secret: str) -> list[dict[str, Any]]:
    verbs = ["create", "get", "list", "watch", "patch", "delete"]
    return [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [secret]},
        {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": verbs},
        {"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": verbs},
    ]


@dataclass
class Site:
    """One install: agent namespace, jobs namespace, ServiceAccount bound to the chart's rules."""

    env: Env
    agent_ns: str
    jobs_ns: str
    release: str
    workdir: Path
    procs: list[AgentProc] = field(default_factory=list)
    proxies: list[TcpProxy] = field(default_factory=list)

    @property
    def emu(self) -> EntityAdmin:
        return self.env.emu

    def kubeconfig_via(self, proxy: TcpProxy) -> Path:
        sa = f"launch-agent-{self.release}"
        out = self.workdir / f"sa-{proxy.port}.kubeconfig"
        kubeconfig.mint_service_account(self.env.bin_dir / "kubectl", self.env.kubeconfig, self.agent_ns, sa, out)
        doc = yaml.safe_load(out.read_text())
        doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        out.write_text(yaml.safe_dump(doc))
        return out

    def agent(self, queues: list[str], *, env: dict[str, str] | None = None, config: str = "",
              max_jobs: int = 10) -> AgentProc:
        proxy = TcpProxy(self.env.apiserver_port)
        self.proxies.append(proxy)
        proc = AgentProc(self, len(self.procs), queues, proxy, env or {}, config, max_jobs)
        self.procs.append(proc)
        return proc.start()

    def queue(self, name: str, *, annotations: dict[str, str] | None = None, spec: dict[str, Any] | None = None,
              pod_spec: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> str:
        queue = f"{name}-{self.release}"
        template = {"metadata": {"annotations": annotations or {}},
                    "spec": {"containers": [{"resources": {"requests": {"cpu": "10m"}}}], **(pod_spec or {})}}
        self.emu.queue(queue, {"metadata": {"namespace": self.jobs_ns, **(metadata or {})},
                               "spec": {"template": template, **(spec or {})}})
        return queue

    def jobs(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return self.env.get("jobs.batch", namespace=self.jobs_ns,
                            selector=f"wandb.ai/run-id={run_id}" if run_id else f"wandb.ai/agent={self.release}")

    def job(self, run_id: str) -> dict[str, Any] | None:
        found = self.jobs(run_id)
        return found[0] if found else None

    def pods(self, run_id: str) -> list[dict[str, Any]]:
        return self.env.get("pods", namespace=self.jobs_ns, selector=f"wandb.ai/run-id={run_id}")

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proxy in self.proxies:
            proxy.close()


def make_site(env: Env, workdir: Path) -> Site:
    release = f"r{uuid.uuid4().hex[:6]}"
    agent_ns, jobs_ns = env.namespace("ag"), env.namespace("jobs")
    secret = f"wandb-api-key-{release}"
    sa = f"launch-agent-{release}"
    objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": sa, "namespace": agent_ns}}]
    for ns in (agent_ns, jobs_ns):
        rules = agent_rules(secret)
        if ns == agent_ns:
            rules.append({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                          "verbs": ["get", "create", "update"]})
            # launch records of durable prepare steps (the chart grants these with builder kaniko)
            rules.append({"apiGroups": [""], "resources": ["configmaps"],
                          "verbs": ["create", "get", "list", "patch", "delete"]})
        objs += [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": ns},
             "type": "kubernetes.io/basic-auth", "stringData": {"password": env.emu.key}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": sa, "namespace": ns}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": sa, "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
             "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": agent_ns}]},
        ]
    env.apply(objs)
    workdir.mkdir(parents=True, exist_ok=True)
    return Site(env, agent_ns, jobs_ns, release, workdir)


class AgentProc:
    def __init__(self, site: Site, n: int, queues: list[str], proxy: TcpProxy, env: dict[str, str], config: str,
                 max_jobs: int) -> None:
        self.site = site
        self.n = n
        self.queues = queues
        self.proxy = proxy
        self.env = env
        self.cfg = site.workdir / f"launch-config-{n}.yaml"
        self.cfg.write_text(config or f"entity: {ENTITY}\nqueues: {json.dumps(queues)}\nmax_jobs: {max_jobs}\n"
                                      "stopped_run_timeout: 0\n")
        self.log = site.workdir / f"agent-{n}.log"
        self.kubeconfig = site.kubeconfig_via(proxy)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    def start(self) -> AgentProc:
        other_checkout = os.environ.get("RELIABILITY_AGENT_PATH") or None  # the suite against another agent
        env = agent_env(
            home=self.site.workdir, api_key=self.site.emu.key, base_url=self.site.emu.url,
            release=self.site.release, agent_ns=self.site.agent_ns, jobs_ns=self.site.jobs_ns,
            pod_name=f"agent-{self.n}", poll_interval="0.3",
            settings={"LAUNCH_AGENT_RESYNC_INTERVAL": "20", "LAUNCH_AGENT_SHUTDOWN_GRACE": "10",
                      "WANDB_HTTP_TIMEOUT": "5", "LAUNCH_AGENT_MUTATION_TIMEOUT": "60"},
            overrides=self.env, pythonpath=other_checkout)
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"==== start {self.starts} ====\n".encode())
            self.proc = subprocess.Popen(agent_command(self.cfg, self.kubeconfig), stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=other_checkout)
        self.port = int(wait_for(f"agent {self.n} health port", self._port, 60))
        return self

    def _port(self) -> str | None:
        text = self.text().split(f"==== start {self.starts} ====")[-1]
        found = re.findall(r"health endpoints on port (\d+)", text)
        if found:
            return found[-1]
        assert self.proc is not None and self.proc.poll() is None, f"agent exited:\n{self.text()[-3000:]}"
        return None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def current(self) -> str:
        """The log of the current start only."""
        return self.text().split(f"==== start {self.starts} ====")[-1]

    def metric(self, line_start: str) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def healthz(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).status_code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def run_spec(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"entity": ENTITY, "project": "proj", "run_id": run_id, "resource": "kubernetes",
            "docker": {"docker_image": "busybox:1.36"}, **extra}


def condition(obj: dict[str, Any] | None, ctype: str) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conds)


# ------------------------------------------------------------------------------------------- tally

FINISHED, FAILED, REQUEUED = "finished", "failed", "requeued"


@dataclass
class Tally:
    """What one test proved, in the suite's figures."""

    test: str
    faults: int = 0
    runs: int = 0
    launched: int = 0  # runs meant to be launched
    launched_once: int = 0  # of those, runs whose workload was created exactly once
    lost: int = 0
    duplicates: int = 0
    double_reports: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)

    def fault(self, what: str, count: int = 1) -> None:
        self.faults += count
        self.notes.append(what)


def check_runs(site: Site, tally: Tally, expected: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Count lost runs, duplicate workloads and double reports: `expected` maps each item id to its
    expected outcome and its run spec (the workload's name follows from it)."""
    env = site.env
    creations = env.creations()
    problems = []
    for item_id, (outcome, spec) in expected.items():
        tally.runs += 1
        item = env.emu.item(item_id)
        fails = item.get("reports") or []
        acks = item.get("acks") or []
        ns, name = site.jobs_ns, workload_name(run_info(spec), item_id)
        made = sum(n for (res, cns, cname), n in creations.items()
                   if cns == ns and cname == name and res in ("jobs", "pytorchjobs"))
        if outcome in (FINISHED, REQUEUED):
            tally.launched += 1
            tally.launched_once += made == 1
        if made > 1:
            tally.duplicates += made - 1
            problems.append(f"{item_id}: {made} workloads created")
        first_ok = next((i for i, a in enumerate(acks) if a["accepted"]), len(acks))
        doubles = max(0, len(fails) - 1) + len(acks[first_ok + 1:])
        if doubles:
            tally.double_reports += doubles
            problems.append(f"{item_id}: {len(fails)} failure reports, {len(acks)} acks: {fails} {acks}")
        ok = {
            FINISHED: item["state"] in ("LEASED", "FINISHED") and not fails and made == 1,
            FAILED: item["state"] == "FAILED" and len(fails) >= 1 and fails[0]["accepted"],
            REQUEUED: item["state"] in ("LEASED", "FINISHED") and not fails and made == 1,
        }[outcome]
        if not ok:
            tally.lost += 1
            problems.append(f"{item_id}: expected {outcome}, W&B holds {item['state']} (fails {fails}, "
                            f"{made} workloads)")
    assert not problems, "; ".join(problems)
