"""agent.config: resolution like the official agent, schema validation, one-line errors, exit code 2."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, resolve

KEY = "local-" + "k" * 40
ENV = {"WANDB_API_KEY": KEY}


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "launch-config.yaml"
    p.write_text(text)
    return str(p)


def test_file_env_and_flags(tmp_path):
    path = write(tmp_path, "entity: acme\nqueues: [a]\nmax_jobs: '5'\nsecure_mode: yes\nstopped_run_timeout: 30\n")
    s = resolve(config_path=path, env=ENV)
    assert (s.entity, s.queues, s.max_jobs, s.secure_mode, s.stopped_run_timeout) == ("acme", ("a",), 5, True, 30)
    s = resolve(config_path=path, env={**ENV, "WANDB_ENTITY": "envco", "WANDB_LAUNCH_MAX_JOBS": "7"})
    assert (s.entity, s.max_jobs) == ("envco", 7)
    s = resolve(config_path=path, entity="flagco", queues=["x", "y"], max_jobs=-1, env=ENV)
    assert (s.entity, s.queues, s.max_jobs) == ("flagco", ("x", "y"), math.inf)


def test_default_path_under_home(tmp_path):
    cfg = tmp_path / ".config/wandb"
    cfg.mkdir(parents=True)
    (cfg / "launch-config.yaml").write_text("entity: e\nqueues: [q]\n")
    s = resolve(home=tmp_path, env=ENV)
    assert s.queues == ("q",)
    # no file at all: flags alone are enough
    s = resolve(home=tmp_path / "nowhere", entity="e", queues=["q"], env=ENV)
    assert s.entity == "e"


def test_chart_env_vars(tmp_path):
    path = write(tmp_path, "entity: e\nqueues: [q]\n")
    s = resolve(config_path=path, env={
        **ENV, "WANDB_RELEASE_NAME": "rel", "LAUNCH_AGENT_NAMESPACE": "wandb",
        "LAUNCH_AGENT_TARGET_NAMESPACES": "wandb, ml ,", "LAUNCH_AGENT_SECURITY_LEVEL": "restricted",
        "LAUNCH_AGENT_HEALTH_PORT": "9090", "LAUNCH_AGENT_LEADER_ELECTION": "true",
        "LAUNCH_AGENT_LEASE_NAME": "lease-x", "LAUNCH_AGENT_POD_NAME": "pod-1", "LAUNCH_AGENT_LOG_FORMAT": "json",
        "WANDB_LAUNCH_START_TIMEOUT": "90", "WANDB_BASE_URL": "http://127.0.0.1:9/"})
    assert s.namespace == "wandb" and s.target_namespaces == ("wandb", "ml")
    assert s.api_key_secret == "wandb-api-key-rel" and s.identity == "rel"
    assert s.security_level == "restricted" and s.health_port == 9090 and s.leader_election
    assert (s.lease_name, s.pod_name, s.log_format, s.start_timeout) == ("lease-x", "pod-1", "json", 90.0)
    assert s.base_url == "http://127.0.0.1:9"
    ms = s.manifest_settings()
    assert ms.targets() == ("wandb", "ml") and ms.security_level == "restricted"
    assert KEY not in repr(s)


@pytest.mark.parametrize(("text", "env", "kwargs", "needle"), [
    ("entity: e\nqueues: [q]\nbogus: 1\n", ENV, {}, "bogus"),
    ("entity: e\nqueues: [q]\nmax_jobs: many\n", ENV, {}, "max_jobs"),
    ("entity: e\nqueues: []\n", ENV, {}, "queues"),
    ("entity: e\nqueues: [q]\n", {}, {}, "WANDB_API_KEY"),
    ("entity: e\nqueues: [q]\n", {**ENV, "WANDB_LAUNCH_START_TIMEOUT": "soon"}, {}, "WANDB_LAUNCH_START_TIMEOUT"),
    ("entity: e\nqueues: [q]\n", ENV, {"security_level": "lax"}, "security level"),
    ("entity: e\nqueues: [q]\nmax_jobs: -3\n", ENV, {}, "max_jobs"),
    ("entity: e\nqueues: [q\n", ENV, {}, "YAML"),
    ("- a\n- b\n", ENV, {}, "mapping"),
    ("entity: e\nqueues: [q]\nenvironment: {type: local}\n", ENV, {}, "environment"),
])
def test_bad_input_is_one_clear_error(tmp_path, text, env, kwargs, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        resolve(config_path=path, env=env, **kwargs)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_entity_may_come_from_the_api_key(tmp_path):
    s = resolve(config_path=write(tmp_path, "queues: [q]\n"), env=ENV)
    assert s.entity == ""  # the agent asks W&B for the key's default entity (Viewer)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve(config_path=str(tmp_path / "nope.yaml"), env=ENV)


def test_cli_exit_code_2_without_traceback(tmp_path):
    path = write(tmp_path, "entity: e\nqueues: [q]\nmax_jobs: lots\n")
    proc = subprocess.run([sys.executable, "-m", "agent", "-c", path, "--check-config"], capture_output=True,
                          text=True, env={"WANDB_API_KEY": KEY, "HOME": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "max_jobs" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout


def test_cli_check_config_ok(tmp_path):
    path = write(tmp_path, "entity: e\nqueues: [q]\n")
    proc = subprocess.run([sys.executable, "-m", "agent", "-c", path, "-q", "other", "--check-config"],
                          capture_output=True, text=True, env={"WANDB_API_KEY": KEY, "HOME": str(tmp_path)},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "other" in proc.stdout


def test_cli_bad_kubeconfig_is_one_line(tmp_path):
    path = write(tmp_path, "entity: e\nqueues: [q]\n")
    proc = subprocess.run([sys.executable, "-m", "agent", "-c", path, "--kubeconfig", str(tmp_path / "none"),
                           "--health-port", "0"], capture_output=True, text=True,
                          env={"WANDB_API_KEY": KEY, "HOME": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "cannot load Kubernetes credentials" in proc.stderr
    assert KEY not in proc.stderr
