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
