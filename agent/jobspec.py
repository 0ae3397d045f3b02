"""What a W&B job artifact says, once resolved: the pure value the launch pipeline passes from
job resolution (`agent.backend.jobs`) to the manifest (`agent.manifest`), the source fetcher
(`agent.source`) and image builds. No I/O here.

`source_type` is that of `wandb-job.json`: ``image`` (run `image`), ``artifact`` (a code
artifact, `code`) or ``repo`` (a git remote and commit, `git`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CODE_MOUNT_DIR = "/mnt/wandb"  # where the official agent mounts a job's code
JOB_FILES_DIR = ".job"  # the job artifact's own files (requirements.frozen.txt), under the code dir
FROZEN_REQUIREMENTS = "requirements.frozen.txt"
DIFF_PATCH = "diff.patch"
SOURCE_TYPES = ("image", "artifact", "repo")


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact version: the job itself or the code artifact it points at."""

    id: str
    entity: str
    project: str
    collection: str
    version: int
    digest: str
    size: int = 0
    file_count: int = 0

    @property
    def qualified_name(self) -> str:
        return f"{self.entity}/{self.project}/{self.collection}:v{self.version}"


@dataclass(frozen=True)
class GitSource:
    remote: str
    commit: str


@dataclass(frozen=True)
class ResolvedJob:
    """A job artifact version and what its `wandb-job.json` asks for."""

    name: str  # as the run spec gave it: entity/project/name:alias
    job: ArtifactRef
    source_type: str
    image: str | None = None  # image jobs
    code: ArtifactRef | None = None  # code-artifact jobs
    git: GitSource | None = None  # repo jobs
    entrypoint: tuple[str, ...] = ()
    runtime: str | None = None  # python version, e.g. "3.11"
    base_image: str | None = None  # the job's own base image (no build, no install)
    dockerfile: str | None = None
    build_context: str | None = None
    notebook: bool = False
    job_files: tuple[str, ...] = field(default=())  # files of the job artifact (requirements, diff.patch)

    @property
    def has_code(self) -> bool:
        return self.source_type in ("artifact", "repo")

    @property
    def image_source(self) -> str:
        """The job version as the official agent names it in code PVC paths: ``<name>:v<N>``."""
        return f"{self.job.collection}:v{self.job.version}"

    @property
    def has_requirements(self) -> bool:
        return FROZEN_REQUIREMENTS in self.job_files

    @property
    def has_patch(self) -> bool:
        """A git job whose run had uncommitted changes: they are in the job's diff.patch."""
        return DIFF_PATCH in self.job_files
