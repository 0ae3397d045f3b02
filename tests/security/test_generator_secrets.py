"""The generator derives `agent.allowedSecrets` from the Secrets the reviewed queue configs name, and
the chart passes it to the agent; without it those queues would be refused for every run."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from generator.cli import main

QUEUE = """\
metadata:
  namespace: ml
spec:
  template:
    spec:
      containers:
        - image: ${image_uri}
          env:
            - name: HF_TOKEN
              valueFrom:
                secretKeyRef: {name: hf-token, key: token}
      volumes:
        - name: data-creds
          secret: {secretName: data-creds}
"""


def _values(tmp_path: Path, queue: str) -> tuple[int, str, str]:
    (tmp_path / "launch-config.yaml").write_text("queues: [q]\n")
    (tmp_path / "queue.yaml").write_text(queue)
    out, err = io.StringIO(), io.StringIO()
    code = main(["values", "-c", str(tmp_path / "launch-config.yaml"), "-q", str(tmp_path / "queue.yaml"),
                 "-o", str(tmp_path / "values.yaml"), "--namespace", "wandb"], environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_values_allow_the_secrets_the_queue_configs_name(tmp_path: Path) -> None:
    code, _, err = _values(tmp_path, QUEUE)
    assert code == 0, err
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert values["agent"]["allowedSecrets"] == ["data-creds", "hf-token"]


def test_queue_preview_builds_a_queue_that_names_secrets(tmp_path: Path) -> None:
    (tmp_path / "queue.yaml").write_text(QUEUE)
    out, err = io.StringIO(), io.StringIO()
    code = main(["queue", "-q", str(tmp_path / "queue.yaml"), "--namespace", "ml"], environ={}, stdout=out,
                stderr=err)
    assert code == 0, err.getvalue()
    assert "hf-token" in out.getvalue()


def test_values_without_secret_references_set_no_allowlist(tmp_path: Path) -> None:
    code, _, err = _values(tmp_path, "spec:\n  template:\n    spec:\n      containers: [{image: x}]\n")
    assert code == 0, err
    assert "allowedSecrets" not in (yaml.safe_load((tmp_path / "values.yaml").read_text()).get("agent") or {})
