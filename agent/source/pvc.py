"""The code PVC of the official agent's PVC mode (`WANDB_LAUNCH_CODE_PVC_NAME` and
`WANDB_LAUNCH_CODE_PVC_MOUNT_PATH`): the agent writes each job version's source to
``<mount path>/<job name>:v<N>`` (with the job artifact's files under ``.job/``), and the runs mount
that sub-path. A version is written once: into a directory of its own first, then renamed into
place, so a run never sees half a tree and two runs of one version do not write it twice."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from agent.backend.jobs.document import JobError
from agent.backend.jobs.prepare import Materialize
from agent.jobspec import ResolvedJob
from agent.source.git import read_credentials
from agent.source.materialize import SourceError, materialize


def pvc_materializer(mount_path: str, client: Any, downloads: Any, *, credentials_file: str = "",
                     verify: Any = True, max_bytes: int = 1 << 30) -> Materialize:
    """A `Materialize` for `prepare_job`: the job's source in the code PVC, or JobError."""
    root = Path(mount_path)

    async def write(job: ResolvedJob) -> None:
        dest = root / job.image_source
        if dest.is_dir():
            return
        staging = root / f".{job.image_source}.{uuid.uuid4().hex[:8]}"
        path = Path(credentials_file) if credentials_file else None
        creds = read_credentials(path.read_text()) if path is not None and path.is_file() else []
        try:
            await materialize(staging, client=client, downloads=downloads, code=job.code, git=job.git, job=job.job,
                              max_bytes=max_bytes, credentials=creds, verify=verify)
            try:
                os.rename(staging, dest)
            except OSError:
                if not dest.is_dir():  # not "another run of this version was first"
                    raise
        except SourceError as exc:
            raise JobError(f"writing the source of job {job.name} to the code PVC failed: {exc}") from None
        except OSError as exc:
            raise JobError(f"writing the source of job {job.name} to the code PVC at {mount_path} failed: "
                           f"{exc.strerror or exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return write
