"""`python -m agent fetch-source` for real, as a local process: jobs made by the official SDK on
the emulator, a public repository and one behind basic auth on the loopback git server, the
arguments exactly those of the init container the agent builds. And the agent's own check of a
git job before it launches anything."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_jobs import FILES, create_jobs, create_run_job_with_patch

from agent.backend.jobs import DirectUrls, JobError, JobResolver
from agent.backend.transport import GraphQLClient
from agent.jobspec import GitSource, ResolvedJob
from agent.manifest import ManifestSettings
from agent.manifest.codemount import fetch_args, plan_source
from agent.source.git import git_checker
from localenv.gitserver import GitServer
from localenv.wandb_emulator.testing import running_emulator

pytestmark = pytest.mark.e2e
ENTITY = "fetch"
SETTINGS = ManifestSettings(agent_namespace="jobs", source_image="launch-agent:dev", max_code_bytes=1 << 20)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fetch")
    with running_emulator() as emu, GitServer(root / "git") as git:
        emu.client.create_entity(ENTITY)
        jobs = create_jobs(root / "home", emu.url, emu.api_key, ENTITY, "train", git)
        patched, changed = create_run_job_with_patch(root / "home", emu.url, emu.api_key, ENTITY, "train", git)
        private = git.create_repo("private", {"secret_train.py": "print('private')\n", "run.sh": "#!/bin/sh\n"})
        git.require_auth("private", "ci-bot", "s3cret-token")

        async def resolve() -> dict[str, ResolvedJob]:
            client, downloads = GraphQLClient(emu.url, emu.api_key, timeout=10), DirectUrls()
            try:
                resolver = JobResolver(client, downloads)
                return {k: await resolver.resolve(v) for k, v in {**jobs.all(), "patched": patched}.items()}
            finally:
                await client.aclose()
                await downloads.aclose()

        yield {"emu": emu, "git": git, "jobs": jobs, "resolved": asyncio.run(resolve()), "private": private,
               "root": root, "changed": changed}


def fetch(world: dict[str, Any], args: list[str], dest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    args = [a if a != "/mnt/wandb" else str(dest) for a in args]
    full_env = {"PATH": os.environ["PATH"], "HOME": str(dest.parent), "WANDB_BASE_URL": world["emu"].url,
                "WANDB_API_KEY": world["emu"].api_key, "GIT_SSL_CAINFO": str(world["git"].ca_file), **env}
    return subprocess.run([sys.executable, "-m", "agent", "fetch-source", *args], env=full_env, capture_output=True,
                          text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])


def init_args(job: ResolvedJob) -> list[str]:
    return fetch_args(plan_source(job, {}, {}, SETTINGS), SETTINGS)


@pytest.mark.parametrize("kind", ["code", "git"])
def test_the_init_container_command_writes_the_jobs_files(world, tmp_path, kind):
    dest = tmp_path / "mnt"
    proc = fetch(world, init_args(world["resolved"][kind]), dest)
    assert proc.returncode == 0, proc.stderr
    for rel, text in FILES.items():
        assert (dest / rel).read_text() == text
    assert (dest / ".job" / "requirements.frozen.txt").is_file()
    assert not (dest / ".git").exists()
    assert (dest / "train.py").stat().st_mode & 0o666 == 0o666


def test_a_git_job_made_by_a_run_gets_the_runs_uncommitted_changes(world, tmp_path):
    """The SDK saved the run's `diff.patch` with the job; the init container applies it on the commit
    (also on a base image of the user's, where nothing is installed)."""
    job = dataclasses.replace(world["resolved"]["patched"], base_image="python:3.11")  # the job's own image
    assert job.source_type == "repo" and job.has_patch
    plan = plan_source(job, {}, {}, SETTINGS)
    assert not plan.install_requirements
    dest = tmp_path / "mnt"
    proc = fetch(world, fetch_args(plan, SETTINGS), dest)
    assert proc.returncode == 0, proc.stderr
    for rel, text in world["changed"].items():
        assert (dest / rel).read_text() == text
    assert not (dest / "gone.txt").exists()
    assert (dest / "train.py").is_file() and (dest / ".job" / "diff.patch").is_file()


def test_a_private_repository_is_fetched_with_the_chart_git_credentials(world, tmp_path):
    repo = world["private"]
    args = ["--dest", str(tmp_path / "mnt"), "--git-remote", repo.url, "--git-commit", repo.commit]
    creds = f"https://ci-bot:s3cret-token@127.0.0.1:{repo.url.split(':')[2].split('/')[0]}\n"
    proc = fetch(world, args, tmp_path / "mnt", LAUNCH_AGENT_GIT_CREDENTIALS=creds)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mnt" / "secret_train.py").read_text() == "print('private')\n"
    assert (tmp_path / "mnt" / "run.sh").stat().st_mode & 0o111
    denied = fetch(world, args, tmp_path / "other")
    assert denied.returncode == 1 and "needs credentials (chart value gitCreds)" in denied.stderr
    wrong = fetch(world, args, tmp_path / "third", LAUNCH_AGENT_GIT_CREDENTIALS=creds.replace("s3cret", "bad"))
    assert wrong.returncode == 1 and "credentials for it were refused" in wrong.stderr
    assert "s3cret" not in denied.stderr + wrong.stderr


@pytest.mark.parametrize(("change", "message"), [
    ("missing-commit", "is not in"),
    ("unreachable", "is unreachable"),
    ("no-repo", "no such repository"),
    ("too-big", "over the limit of 10"),
    ("ssh", "only https:// remotes"),
])
def test_a_source_that_cannot_be_fetched_is_one_line(world, tmp_path, change, message):
    repo, code = world["jobs"].repo, world["resolved"]["code"]
    args = ["--dest", str(tmp_path / "mnt"), "--git-remote", repo.url, "--git-commit", repo.commit]
    if change == "missing-commit":
        args[-1] = "1" * 40
    elif change == "unreachable":
        args[3] = "https://127.0.0.1:9/nothing.git"
    elif change == "no-repo":
        args[3] = repo.url.replace("train.git", "absent.git")
    elif change == "too-big":
        args = [*init_args(code), "--max-bytes", "10"]
    elif change == "ssh":
        args[3] = "git@github.com:acme/repo.git"
    proc = fetch(world, args, tmp_path / "mnt")
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("fetch-source: ") and message in line, line


def test_bad_arguments_exit_2(world, tmp_path):
    assert fetch(world, ["--dest", str(tmp_path)], tmp_path).returncode == 2
    assert fetch(world, ["--dest", str(tmp_path), "--git-remote", "https://x"], tmp_path).returncode == 2


def test_the_agent_checks_a_git_job_before_launching(world, tmp_path):
    repo = world["jobs"].repo
    check = git_checker("", str(world["git"].ca_file))
    asyncio.run(check(GitSource(repo.url, repo.commit)))
    with pytest.raises(JobError, match="is not in"):
        asyncio.run(check(GitSource(repo.url, "2" * 40)))
    with pytest.raises(JobError, match="needs credentials"):
        asyncio.run(check(GitSource(world["private"].url, world["private"].commit)))
    creds = tmp_path / "git-credentials"
    port = world["private"].url.split(":")[2].split("/")[0]
    creds.write_text(f"https://ci-bot:s3cret-token@127.0.0.1:{port}\n")
    asyncio.run(git_checker(str(creds), str(world["git"].ca_file))(GitSource(world["private"].url,
                                                                               world["private"].commit)))
