"""The image's runtime set: install exactly agent/requirements.lock into a fresh virtualenv, copy
the agent and schema sources as the Dockerfile does, and run the agent from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "agent" / "requirements.lock"
KEY = "local-" + "f" * 40


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    pip = [str(root / "venv/bin/python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "-r", str(LOCK)], check=True, timeout=900)
    app = root / "app"
    shutil.copytree(ROOT / "agent", app / "agent", ignore=shutil.ignore_patterns("__pycache__", "Dockerfile"))
    shutil.copytree(ROOT / "schemas", app / "schemas", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run_in_image(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ["PATH"], "HOME": str(root), "PYTHONPATH": str(root / "app"),
                "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run([str(root / "venv/bin/python"), *args], capture_output=True, text=True,
                          env=full_env, timeout=120, cwd=str(root))


def test_lock_is_complete_and_consistent(image_root):
    proc = subprocess.run([str(image_root / "venv/bin/python"), "-m", "pip", "check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([str(image_root / "venv/bin/python"), "-m", "pip", "list", "--format=freeze",
                           "--exclude", "pip", "--exclude", "setuptools"], capture_output=True, text=True,
                          timeout=120)
    installed = {n.lower().replace("_", "-"): v for n, _, v in
                 (line.partition("==") for line in proc.stdout.split())}
    assert installed == locked()


def test_agent_runs_from_the_locked_set(image_root):
    modules = "agent.__main__, agent.controller.agent, agent.kube.client, agent.kube.watch, agent.kube.lease, agent.health, agent.config"
    proc = run_in_image(image_root, "-c", f"import {modules}; import sys; "
                        "assert 'wandb' not in sys.modules and 'kubernetes' not in sys.modules")
    assert proc.returncode == 0, proc.stderr
    cfg = image_root / "launch-config.yaml"
    cfg.write_text("entity: acme\nqueues: [jobs]\nmax_jobs: 4\n")
    proc = run_in_image(image_root, "-m", "agent", "-c", str(cfg), "--check-config", env={"WANDB_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert "configuration OK" in proc.stdout
    cfg.write_text("entity: acme\nqueues: [jobs]\nbuilder: {type: podman}\n")
    proc = run_in_image(image_root, "-m", "agent", "-c", str(cfg), "--check-config", env={"WANDB_API_KEY": KEY})
    assert proc.returncode == 2 and "builder" in proc.stderr and "Traceback" not in proc.stderr


def test_dockerfile_installs_the_lock_as_non_root():
    text = (ROOT / "agent" / "Dockerfile").read_text()
    assert "requirements.lock" in text and "--no-deps" in text
    assert "USER 1000" in text
    assert 'ENTRYPOINT ["python", "-m", "agent"]' in text
    assert text.count("FROM ") >= 2  # multi-stage
