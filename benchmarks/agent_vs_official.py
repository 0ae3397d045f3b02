"""Our agent against the official `wandb launch-agent`, on this machine, in the same run.

Printed as ratios (ours / official; lower is better):
- installed size of the agent's locked runtime set vs `wandb[launch]` (each into a fresh venv,
  minus the empty venv);
- over the same fixed idle window, one queue, each agent against its own W&B emulator:
  requests per minute, peak resident memory of the process tree, CPU seconds of the tree.

Bounded in time: the idle window is fixed; the `wandb[launch]` install has a deadline, past
which the table says so and uses the figure measured earlier on this kind of machine (968 MB).
Our agent needs a Kubernetes API to list its objects: a localenv control plane is started for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.procs import Sampler

ROOT = Path(__file__).resolve().parents[1]
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "90"))
INSTALL_DEADLINE = float(os.environ.get("BENCH_INSTALL_DEADLINE", "1200"))
REFERENCE_WANDB_LAUNCH_MB = 968.0
ENTITY = "bench"
QUEUE = "idle"


def _dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def _fresh_venv(where: Path) -> tuple[Path, int]:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    return where / "bin" / "python", _dir_bytes(where)


def installed_mb(requirements: list[str], deadline: float) -> float | None:
    """MB that `pip install <requirements>` adds to an empty venv; None past the deadline."""
    with tempfile.TemporaryDirectory(prefix="bench-venv-") as tmp:
        python, empty = _fresh_venv(Path(tmp) / "venv")
        try:
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *requirements], check=True, timeout=deadline, stdout=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None
        return (_dir_bytes(Path(tmp) / "venv") - empty) / 1e6


def ours_installed_mb() -> float:
    mb = installed_mb(["--no-deps", "-r", str(ROOT / "agent" / "requirements.lock")], INSTALL_DEADLINE)
    assert mb is not None
    source = sum(_dir_bytes(ROOT / d) for d in ("agent", "schemas")) / 1e6
    return mb + source


def wandb_version() -> str:
    from importlib.metadata import version

    return version("wandb")


# --- one idle agent ---------------------------------------------------------------------------------


def _emulator() -> tuple[object, str]:
    from localenv.wandb_emulator import start_emulator

    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    httpx.post(f"{server.url}/_emulator/queues", json={"entity": ENTITY, "name": QUEUE}, timeout=10)
    return server, key


def idle_profile(argv: list[str], env: dict[str, str], server: object, warmup: float) -> dict[str, float]:
    """Start an agent, let it settle, then measure a fixed idle window."""
    url = server.url  # type: ignore[attr-defined]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            time.sleep(warmup)
            httpx.delete(f"{url}/_emulator/requests", timeout=10)
            cpu_start = sampler.cpu_seconds
            time.sleep(IDLE_SECONDS)
            counts = httpx.get(f"{url}/_emulator/counts", timeout=10).json()
            cpu = sampler.cpu_seconds - cpu_start
            alive = proc.poll() is None
        finally:
            sampler.done.set()
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
            sampler.join(5)
        if not alive:
            log.seek(0)
            raise RuntimeError(f"{argv[:3]} exited during the idle window:\n{log.read().decode()[-2000:]}")
    requests = sum(int(v) for v in counts.values())
    return {"requests_per_min": requests * 60.0 / IDLE_SECONDS, "rss_mb": sampler.peak_rss_mb, "cpu_s": cpu}


def ours(kubeconfig: str, namespace: str) -> dict[str, float]:
    server, key = _emulator()
    try:
        with tempfile.TemporaryDirectory() as home:
            cfg = Path(home) / "launch-config.yaml"
            cfg.write_text(f"entity: {ENTITY}\nqueues: [{QUEUE}]\n")
            env = {"PATH": os.environ["PATH"], "HOME": home, "WANDB_API_KEY": key,
                   "WANDB_BASE_URL": server.url, "LAUNCH_AGENT_NAMESPACE": namespace,  # type: ignore[attr-defined]
                   "PYTHONPATH": str(ROOT)}
            argv = [sys.executable, "-m", "agent", "-c", str(cfg), "--kubeconfig", kubeconfig,
                    "--health-port", "0"]
            return idle_profile(argv, env, server, warmup=10)
    finally:
        server.stop()  # type: ignore[attr-defined]


def official() -> dict[str, float]:
    server, key = _emulator()
    try:
        with tempfile.TemporaryDirectory() as home:
            env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": home,
                   "WANDB_API_KEY": key, "WANDB_BASE_URL": server.url,  # type: ignore[attr-defined]
                   "WANDB_ERROR_REPORTING": "false", "WANDB_SILENT": "true", "WANDB_DIR": home}
            wandb_cli = str(Path(sys.executable).parent / "wandb")
            argv = [wandb_cli, "launch-agent", "-q", QUEUE, "-e", ENTITY]
            return idle_profile(argv, env, server, warmup=30)
    finally:
        server.stop()  # type: ignore[attr-defined]


def _cluster() -> tuple[Path, str]:
    from localenv import cluster, tools

    state_dir = Path(tempfile.mkdtemp(prefix="bench-localenv-"))
    state = cluster.up(state_dir, nodes=1, bin_dir=tools.bin_dir(), log=lambda _line: None,
                       with_emulator=False, tie_to_parent=True)
    return state_dir, state.kubeconfig


def main() -> None:
    from localenv import cluster

    started = time.monotonic()
    print(f"agent vs official wandb {wandb_version()} launch-agent (ratio = ours / official; lower is better)")
    our_mb = ours_installed_mb()
    their_mb = installed_mb([f"wandb[launch]=={wandb_version()}"], INSTALL_DEADLINE)
    size_note = ""
    if their_mb is None:
        their_mb, size_note = REFERENCE_WANDB_LAUNCH_MB, " (install past deadline: earlier measurement)"
    state_dir, kubeconfig = _cluster()
    try:
        mine = ours(kubeconfig, "default")
    finally:
        cluster.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    theirs = official()
    rows = [
        ("installed runtime set (MB)", our_mb, their_mb, size_note),
        ("idle requests / min", mine["requests_per_min"], theirs["requests_per_min"], ""),
        ("peak RSS of process tree (MB)", mine["rss_mb"], theirs["rss_mb"], ""),
        (f"CPU seconds over {IDLE_SECONDS:g} s idle", mine["cpu_s"], theirs["cpu_s"], ""),
    ]
    print(f"{'metric':<34} {'ours':>10} {'official':>10} {'ratio':>8}")
    for name, a, b, note in rows:
        ratio = a / b if b else float("inf")
        print(f"{name:<34} {a:>10.2f} {b:>10.2f} {ratio:>8.3f}{note}")
    print(f"target: installed size ratio <= 0.05 -> {'met' if our_mb / their_mb <= 0.05 else 'NOT met'}")
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
