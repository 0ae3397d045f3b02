"""The two agents under test, each started as a process against one site: ours (`python -m agent`)
and the official one (`wandb launch-agent` of the pinned wandb release, unmodified, as the e2e
tests run it). Both poll every 10 s when idle, run as their own ServiceAccount, and are told the
Helm release name, as the chart does.

`docker=False` starts the official agent with no `docker` on its PATH (as in its published image);
with one there, it runs `docker --version` for every job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.procs import Sampler
from benchmarks.site import ENTITY, Site

ROOT = Path(__file__).resolve().parents[1]
POLL_INTERVAL = 10.0
OFFICIAL_DRIVER = ROOT / "tests" / "e2e" / "official_agent.py"


def _official_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_official_agent", OFFICIAL_DRIVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def path_without_docker(path: str) -> str:
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and not (Path(d) / "docker").exists())


class Running:
    """One agent process and its resource sampler."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path, stop: Any = None) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log
        self.started = time.time()
        self._stop = stop
        self.sampler = Sampler(proc.pid)
        self.sampler.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def stop(self) -> None:
        self.sampler.stop()
        if self._stop is not None:
            self._stop()
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


FIXED_BY_BENCH = ("LAUNCH_AGENT_NAMESPACE", "LAUNCH_AGENT_TARGET_NAMESPACES", "LAUNCH_AGENT_POLL_INTERVAL",
                  "LAUNCH_AGENT_POD_NAME")


def tuning_env(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Our agent's settings given to `make bench` (e.g. `LAUNCH_AGENT_POP_WIDTH=1`), passed to our agent;
    the ones the benchmark fixes for both agents are not."""
    return {k: v for k, v in env.items() if k.startswith("LAUNCH_AGENT_") and k not in FIXED_BY_BENCH}


def start_ours(site: Site, queues: list[str], max_jobs: int, workdir: Path,
               extra_env: dict[str, str] | None = None) -> Running:
    cfg = workdir / "launch-config.yaml"
    cfg.write_text(f"entity: {ENTITY}\nqueues: {json.dumps(queues)}\nmax_jobs: {max_jobs}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "PYTHONPATH": str(ROOT),
           "WANDB_API_KEY": site.emulator.api_key, "WANDB_BASE_URL": site.emulator.url,
           "WANDB_RELEASE_NAME": site.release, "LAUNCH_AGENT_NAMESPACE": site.agent_ns,
           "LAUNCH_AGENT_TARGET_NAMESPACES": f"{site.agent_ns},{site.jobs_ns}",
           "LAUNCH_AGENT_POLL_INTERVAL": f"{POLL_INTERVAL:g}", "LAUNCH_AGENT_POD_NAME": "bench-ours",
           **tuning_env(os.environ), **(extra_env or {})}
    log = workdir / "ours.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "-c", str(cfg), "--kubeconfig",
                                 str(site.kubeconfigs["ours"]), "--health-port", "0"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir)
    return Running("ours", proc, log)


def start_official(site: Site, queues: list[str], max_jobs: int, workdir: Path, *, docker: bool) -> Running:
    driver = _official_driver()
    extra = {"WANDB_RELEASE_NAME": site.release}
    if not docker:
        extra["PATH"] = path_without_docker(os.environ["PATH"])
    agent = driver.OfficialAgent(workdir, site.emulator.url, site.emulator.api_key, ENTITY, queues,
                                 max_jobs=max_jobs, kubeconfig=site.kubeconfigs["official"], extra_env=extra)
    return Running("official" if docker else "official-nodocker", agent.proc, agent.log_path, stop=agent.stop)


def start(kind: str, site: Site, queues: list[str], max_jobs: int, workdir: Path) -> Running:
    """`ours`, `official` (docker on PATH) or `official-nodocker`."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "ours":
        return start_ours(site, queues, max_jobs, workdir)
    if kind in ("official", "official-nodocker"):
        return start_official(site, queues, max_jobs, workdir, docker=kind == "official")
    raise ValueError(f"unknown agent {kind!r}")


class AgentFailed(RuntimeError):
    """The agent exited or never got ready: the run counts as failed, with this reason."""


def pops(site: Site) -> list[dict[str, Any]]:
    return list(site.emu.requests("popFromRunQueue"))


def wait_polling(site: Site, agent: Running, timeout: float = 180.0) -> float:
    """Wait for the agent's first pop; returns when it was seen (seconds since the process started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pops(site)
        if got:
            return float(got[0]["time"]) - agent.started
        if not agent.alive():
            raise AgentFailed(f"{agent.name} exited before its first poll:\n{agent.log()}")
        time.sleep(0.2)
    raise AgentFailed(f"{agent.name} did not poll within {timeout:.0f} s:\n{agent.log()}")


def pop_count(site: Site) -> int:
    return int(site.emu.counts().get("popFromRunQueue", 0))


def wait_idle_poll(site: Site, agent: Running, timeout: float = 60.0) -> float:
    """Block until the agent sends its next pop (an idle poll just happened); returns the time."""
    seen = pop_count(site)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pop_count(site) > seen:
            return time.time()
        if not agent.alive():
            raise AgentFailed(f"{agent.name} exited while idle:\n{agent.log()}")
        time.sleep(0.02)
    raise AgentFailed(f"{agent.name} sent no poll within {timeout:.0f} s")
