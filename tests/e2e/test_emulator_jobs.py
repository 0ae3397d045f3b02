"""The emulator stores jobs the way W&B does: the official SDK creates one job of each source
type (`wandb job create image|code|git`, the real upload path), resolves them unmodified
(`wandb.Api().job(name)`, files downloaded from direct URLs) and pushes them by name
(`wandb launch -j ... -q ...`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from official_agent import official_env, wandb_cli
from sdk_jobs import FILES, create_jobs

from localenv.gitserver import GitServer
from localenv.wandb_emulator.testing import EmulatorClient, running_emulator

pytestmark = pytest.mark.e2e
ENTITY = "jobs-e2e"

RESOLVE = """
import json, sys, wandb
out = {}
for name in sys.argv[1:]:
    job = wandb.Api().job(name, path=f"dl/{name.replace('/', '_')}")
    out[name] = {"info": job._job_info, "version": job._job_artifact.version, "path": job._fpath}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorClient, object, Path]]:
    root = tmp_path_factory.mktemp("jobs")
    with running_emulator() as emu, GitServer(root / "git") as git:
        emu.client.create_entity(ENTITY)
        jobs = create_jobs(root / "home", emu.url, emu.api_key, ENTITY, "train", git)
        yield emu.client, jobs, root


def test_sdk_creates_and_resolves_each_job_type(setup) -> None:
    emu, jobs, root = setup
    home = root / "home"
    proc = subprocess.run([sys.executable, "-c", RESOLVE, *jobs.all().values()], capture_output=True, text=True,
                          env=official_env(home, emu.url, emu.api_key), cwd=home, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    image, code, git = (got[n] for n in (jobs.image, jobs.code, jobs.git))
    assert image["info"]["source_type"] == "image" and image["info"]["source"]["image"] == "busybox:1.36"
    assert code["info"]["source_type"] == "artifact"
    assert code["info"]["source"]["artifact"].startswith("wandb-artifact://_id/")
    assert code["info"]["source"]["entrypoint"] == ["python", "train.py"]
    assert git["info"]["source_type"] == "repo"
    assert git["info"]["source"]["git"] == {"remote": jobs.repo.url, "commit": jobs.repo.commit}
    for found in got.values():
        assert found["version"] == "v0"
        files = sorted(p.name for p in (home / found["path"]).iterdir())
        assert files == ["requirements.frozen.txt", "wandb-job.json"], files
    versions = emu.call("GET", "/_emulator/artifacts")
    code_artifacts = [v for v in versions if v["type"] == "code"]
    assert len(code_artifacts) == 1 and sorted(code_artifacts[0]["files"]) == sorted(FILES)
    assert code["info"]["source"]["artifact"].endswith(code_artifacts[0]["id"])
    assert {v["state"] for v in versions} == {"COMMITTED"}
    errors = [e for e in emu.requests() if e["error"]]
    assert not errors, errors


def test_same_files_again_make_no_new_version_and_changed_files_do(setup) -> None:
    emu, _, root = setup
    home = root / "home"
    common = ("job", "create", "--entity", ENTITY, "--project", "train")
    wandb_cli(home, emu.url, emu.api_key, *common, "--name", "image-job", "image", "busybox:1.36")
    image_versions = [v for v in emu.call("GET", "/_emulator/artifacts") if v["collection"] == "image-job"]
    assert [v["version_index"] for v in image_versions] == [0]
    wandb_cli(home, emu.url, emu.api_key, *common, "--name", "image-job", "image", "busybox:1.37")
    image_versions = [v for v in emu.call("GET", "/_emulator/artifacts") if v["collection"] == "image-job"]
    latest = {v["version_index"]: v["aliases"] for v in image_versions}
    assert sorted(latest) == [0, 1] and "latest" in latest[1] and "latest" not in latest[0]


def test_wandb_launch_pushes_a_job_by_name(setup) -> None:
    emu, jobs, root = setup
    emu.create_queue(ENTITY, "by-name", {"metadata": {"namespace": "default"}})
    wandb_cli(root / "home", emu.url, emu.api_key, "launch", "-j", jobs.code, "-q", "by-name", "-e", ENTITY,
              "-p", "train")
    (item,) = emu.items(ENTITY, "by-name")
    assert item["run_spec"]["job"] == jobs.code
    assert item["run_spec"]["resource"] == "kubernetes"
