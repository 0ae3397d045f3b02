"""Scenario 6, footprint: the installed runtime set of each agent (its locked requirements vs
`wandb[launch]`, each into a fresh venv, minus the empty venv), cold start to the first poll,
and the agent idle: W&B requests per minute, peak RSS and CPU seconds of the process tree over a
fixed window (one queue, the same site for both); the agent image's size when it can be built
here.

Install sizes are cached by their inputs (requirements, Python, pip) under the launch-agent
cache. The `wandb[launch]` install has a deadline; past it (or with a deadline of 0) the figure
measured earlier on this kind of machine is used and the notes say so.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import agents
from benchmarks.agents import ROOT
from benchmarks.burst import side_of
from benchmarks.config import Sizes
from benchmarks.report import Scenario
from benchmarks.site import Sites
from localenv.tools import cache_root

REFERENCE_WANDB_LAUNCH_MB = 968.0


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _install_key(requirements: list[str]) -> str:
    """What an install's size depends on: the requirements (a file's contents, not its path), this
    Python and pip."""
    parts = [sys.version, subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                                         text=True, check=False).stdout.split(" from ")[0]]
    for req in requirements:
        path = Path(req)
        parts.append(path.read_text() if path.is_file() else req)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def installed_mb(requirements: list[str], deadline: float) -> float | None:
    """MB that `pip install <requirements>` adds to an empty venv; None past the deadline. A size
    measured before for the same inputs is read from the cache (an install takes minutes)."""
    if deadline <= 0:
        return None
    cached = cache_root() / "bench" / f"installed-{_install_key(requirements)}.json"
    if cached.is_file():
        return float(json.loads(cached.read_text())["mb"])
    mb = _install(requirements, deadline)
    if mb is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"mb": mb, "requirements": requirements}))
    return mb


def _install(requirements: list[str], deadline: float) -> float | None:
    with tempfile.TemporaryDirectory(prefix="bench-venv-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        empty = _dir_bytes(venv)
        try:
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *requirements], check=True, timeout=deadline, stdout=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None
        return (_dir_bytes(venv) - empty) / 1e6


def ours_installed_mb(deadline: float) -> float | None:
    mb = installed_mb(["--no-deps", "-r", str(ROOT / "agent" / "requirements.lock")], deadline and max(deadline, 600.0))
    source = sum(_dir_bytes(ROOT / d) for d in ("agent", "schemas")) / 1e6
    return None if mb is None else mb + source


def wandb_version() -> str:
    from importlib.metadata import version

    return version("wandb")


def image_mb(deadline: float) -> tuple[float | None, str]:
    """Compressed layers of the agent image (base included), when it can be built here."""
    if deadline <= 0:
        return None, "not built (quick run)"
    try:
        from localenv.images import oci, project

        archive = project.agent(log=lambda _line: None)
        return oci.read_archive(archive.path).size / 1e6, ""
    except Exception as exc:  # no image tools on this machine: say so
        return None, f"the agent image could not be built here: {type(exc).__name__}: {str(exc)[:200]}"


def idle(sites: Sites, kind: str, seconds: float, work: Path) -> dict[str, float]:
    with sites.run() as s:
        s.queue("idle", {})
        agent = agents.start(kind, s, ["idle"], 1, work)
        try:
            first_poll = agents.wait_polling(s, agent)
            agents.wait_idle_poll(s, agent)
            time.sleep(5.0)  # past the start-up work that follows the first poll
            s.emu.clear_requests()
            agent.sampler.sample()
            t0, cpu0 = time.time(), agent.sampler.cpu_seconds
            time.sleep(seconds)
            agent.sampler.sample()
            t1 = time.time()
            requests = sum(s.emu.counts().values())
            if not agent.alive():
                raise agents.AgentFailed(f"{kind} exited while idle:\n{agent.log()}")
            return {"first_poll_s": first_poll, "requests_per_min": requests * 60.0 / (t1 - t0),
                    "peak_rss_mb": agent.sampler.peak_rss_between(t0, t1), "cpu_s": agent.sampler.cpu_seconds - cpu0}
        finally:
            agent.stop()


def run(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    sc = Scenario("footprint", "footprint")
    size = sc.figure("installed runtime set", "MB", "<= 0.05x official")
    mine = ours_installed_mb(sizes.install_deadline)
    size.add("ours", mine)
    if any(side_of(k) == "official" for k in sizes.agents):
        theirs = installed_mb([f"wandb[launch]=={wandb_version()}"], sizes.install_deadline)
        if theirs is None:
            theirs = REFERENCE_WANDB_LAUNCH_MB
            sc.notes.append(f"wandb[launch] not installed in this run (deadline {sizes.install_deadline:g} s): "
                            f"{REFERENCE_WANDB_LAUNCH_MB:g} MB measured earlier on this kind of machine")
        size.add("official", theirs)
    mb, why = image_mb(sizes.install_deadline)
    sc.figure("agent image (compressed layers)", "MB").add("ours", mb)
    if why:
        sc.notes.append(why)
    sc.notes.append("the official agent's image is not pulled here (no registry access): no official image figure")
    names = {"first_poll_s": ("cold start to first poll", "s"), "requests_per_min": ("idle W&B requests", "per min"),
             "peak_rss_mb": ("idle peak RSS", "MB"), "cpu_s": (f"idle CPU over {sizes.idle_seconds:g} s", "CPU s")}
    for kind in sizes.agents:
        side = side_of(kind)
        try:
            got = idle(sites, kind, sizes.idle_seconds, work / f"idle-{kind}")
        except agents.AgentFailed as exc:
            for name, unit in names.values():
                sc.figure(name, unit).fail(side, str(exc))
            continue
        for key, (name, unit) in names.items():
            sc.figure(name, unit).add(side, got[key])
    return sc
