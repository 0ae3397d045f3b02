"""Run the official W&B launch agent (``wandb launch-agent`` from the pinned ``wandb``
package, unmodified) as a process against a W&B emulator, with its own temporary HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WANDB_CLI = Path(sys.executable).with_name("wandb")


def official_env(home: Path, base_url: str, api_key: str, **extra: str) -> dict[str, str]:
    """The environment of an official W&B client process: a private HOME, the emulator's URL and key."""
    for sub in ("wandb", ".config/wandb", ".cache/wandb"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "KUBECONFIG"}
    env.update(
        HOME=str(home),
        WANDB_DIR=str(home / "wandb"),
        WANDB_CONFIG_DIR=str(home / ".config" / "wandb"),
        WANDB_CACHE_DIR=str(home / ".cache" / "wandb"),
        WANDB_DATA_DIR=str(home / ".cache" / "wandb-data"),
        WANDB_ERROR_REPORTING="false",
        WANDB_BASE_URL=base_url,
        WANDB_API_KEY=api_key,
        # The official agent starts sweep schedulers as `wandb scheduler ...` processes.
        PATH=f"{WANDB_CLI.parent}:{os.environ.get('PATH', '')}",
    )
    env.update(extra)  # the caller's word wins (the benchmarks' PATH without docker)
    return env


def wandb_cli(home: Path, base_url: str, api_key: str, *args: str, timeout: float = 300,
              **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the official `wandb` CLI against an emulator; fails with its output when it exits non-zero."""
    proc = subprocess.run([str(WANDB_CLI), *args], env=official_env(home, base_url, api_key, **extra), cwd=home,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"wandb {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


class OfficialAgent:
    def __init__(
        self,
        workdir: Path,
        base_url: str,
        api_key: str,
        entity: str,
        queues: list[str],
        *,
        max_jobs: int = 1,
        kubeconfig: Path | None = None,
        extra_env: dict[str, str] | None = None,
        launch_config: dict[str, Any] | None = None,
    ) -> None:
        self.home = workdir / "home"
        self.log_path = workdir / "official-agent.log"
        if kubeconfig is not None:
            # The official agent reads ~/.kube/config only (KUBECONFIG is not consulted).
            (self.home / ".kube").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kubeconfig, self.home / ".kube" / "config")
        env = official_env(self.home, base_url, api_key, **(extra_env or {}))
        if launch_config is not None:  # ~/.config/wandb/launch-config.yaml, where the agent reads it
            (self.home / ".config" / "wandb" / "launch-config.yaml").write_text(json.dumps(launch_config))
        args = [str(WANDB_CLI), "launch-agent", "-e", entity, "-j", str(max_jobs), "-v"]
        for queue in queues:
            args += ["-q", queue]
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(args, env=env, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            if self.wait(15) is None:
                self.proc.kill()
                self.proc.wait(15)
        self._log.close()

    def __enter__(self) -> OfficialAgent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float, what: str, agent: OfficialAgent | None = None,
               interval: float = 0.5) -> Any:
    """Poll ``predicate`` until truthy; on timeout fail with ``what`` and the agent's log tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if agent is not None and not agent.alive():
            raise AssertionError(f"the official agent exited ({agent.proc.returncode}) while waiting for {what}:\n"
                                 f"{agent.log()[-3000:]}")
        if time.monotonic() > deadline:
            tail = agent.log()[-3000:] if agent is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(interval)
