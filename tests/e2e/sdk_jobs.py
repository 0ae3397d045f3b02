"""Job artifacts of the three source types, created by the official SDK itself
(`wandb job create image|code|git`) against an emulator, with a code directory and a git
repository (on the loopback git server) holding the same small training script."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from official_agent import wandb_cli

from localenv.gitserver import GitServer, Repo

TRAIN = "import os\nprint('trained in', os.getcwd())\n"
FILES = {"train.py": TRAIN, "requirements.txt": "wandb\n", "pkg/helper.py": "VALUE = 42\n"}


@dataclass(frozen=True)
class SdkJobs:
    entity: str
    project: str
    image: str  # entity/project/name:alias
    code: str
    git: str
    repo: Repo

    def all(self) -> dict[str, str]:
        return {"image": self.image, "code": self.code, "git": self.git}


def create_jobs(home: Path, base_url: str, api_key: str, entity: str, project: str, git: GitServer,
                *, image: str = "busybox:1.36", repo_name: str = "train") -> SdkJobs:
    code_dir = home / "code-src"
    for rel, text in FILES.items():
        (code_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (code_dir / rel).write_text(text)
    repo = git.create_repo(repo_name, FILES, commits=2)
    common = ("job", "create", "--entity", entity, "--project", project)
    ca = {"GIT_SSL_CAINFO": str(git.ca_file)}
    wandb_cli(home, base_url, api_key, *common, "--name", "image-job", "image", image)
    wandb_cli(home, base_url, api_key, *common, "--name", "code-job", "-E", "python train.py", "code", str(code_dir))
    wandb_cli(home, base_url, api_key, *common, "--name", "git-job", "-E", "python train.py", "-g", repo.commit,
              "git", repo.url, **ca)
    base = f"{entity}/{project}"
    return SdkJobs(entity, project, f"{base}/image-job:latest", f"{base}/code-job:latest",
                   f"{base}/git-job:latest", repo)


RUN_SCRIPT = """import wandb
run = wandb.init(settings=wandb.Settings(disable_job_creation=False, save_code=True))
run.log({"loss": 1.0})
run.finish()
"""


def create_run_job_with_patch(home: Path, base_url: str, api_key: str, entity: str, project: str, git: GitServer,
                              *, repo_name: str = "patched") -> tuple[str, dict[str, str]]:
    """A git job the SDK makes from a run (`wandb.init` in a clone with uncommitted changes, job
    creation and code saving on), so the job carries the run's `diff.patch`. Returns the job's name
    (entity/project/name:latest) and the changed files as the run saw them."""
    import subprocess
    import sys

    from official_agent import official_env

    repo = git.create_repo(repo_name, {**FILES, "train.py": RUN_SCRIPT, "gone.txt": "deleted by the run\n"})
    work = home / f"clone-{repo_name}"
    env = official_env(home, base_url, api_key, GIT_SSL_CAINFO=str(git.ca_file), WANDB_ENTITY=entity,
                       WANDB_PROJECT=project)
    subprocess.run(["git", "clone", "-q", "-b", "main", repo.url, str(work)], env=env, check=True, timeout=120)
    changed = {"pkg/helper.py": "VALUE = 43  # not committed\n", "notes.md": "a new file\n"}
    for rel, text in changed.items():
        (work / rel).write_text(text)
    (work / "gone.txt").unlink()
    subprocess.run(["git", "add", "-A"], cwd=work, env=env, check=True, timeout=60)
    proc = subprocess.run([sys.executable, "train.py"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"the run exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    safe = repo.url.replace(":", "_").replace("/", "_")
    return f"{entity}/{project}/job-{safe}_train.py:latest", changed
