"""wandb-job.json documents made by the installed W&B SDK's own job builder (never hand-written),
for the three source types: ``image``, ``artifact`` (code) and ``repo`` (git)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def job_document(source_type: str, *, image: str = "busybox:1.36", entrypoint: str = "python train.py",
                 remote: str = "https://git.example/acme/repo.git", commit: str = "0" * 40,
                 code_artifact_id: str = "QXJ0aWZhY3Q6MQ==", code_artifact_name: str = "code-train.py:v0",
                 runtime: str = "3.11", config: dict[str, Any] | None = None, base_image: str | None = None,
                 dockerfile: str | None = None, build_context: str | None = None,
                 requirements: str = "wandb\n") -> dict[str, dict[str, Any] | str]:
    """``{"wandb-job.json": <dict>, "requirements.frozen.txt": <text>}`` as the SDK writes them."""
    import wandb
    from wandb.sdk.internal.job_builder import JobBuilder

    with tempfile.TemporaryDirectory() as tmp:
        metadata: dict[str, Any] = {"python": runtime}
        if source_type == "image":
            metadata["docker"] = image
        elif source_type == "repo":
            metadata.update(git={"remote": remote, "commit": commit}, entrypoint=entrypoint.split(" "),
                            notebook=False)
        elif source_type == "artifact":
            metadata.update(codePath=entrypoint.split(" ")[-1], entrypoint=entrypoint.split(" "))
        with open(os.path.join(tmp, "wandb-metadata.json"), "w") as fh:
            json.dump(metadata, fh)
        with open(os.path.join(tmp, "requirements.txt"), "w") as fh:
            fh.write(requirements)
        builder = JobBuilder(settings=wandb.Settings(job_source=source_type, job_name="job"),  # type: ignore[arg-type]
                             verbose=False, files_dir=tmp)
        builder._partial = True
        builder._is_notebook_run = False
        builder.set_config(config or {})
        builder.set_summary({})
        if source_type == "artifact":
            builder._logged_code_artifact = {"id": code_artifact_id, "name": code_artifact_name}  # type: ignore[assignment]
        artifact = builder.build(None, dockerfile=dockerfile, build_context=build_context,  # type: ignore[arg-type]
                                 base_image=base_image)
        assert artifact is not None, f"the SDK built no {source_type} job"
        entries = artifact.manifest.entries
        with open(entries["wandb-job.json"].local_path) as fh:  # type: ignore[arg-type]
            doc = json.load(fh)
        with open(entries["requirements.frozen.txt"].local_path) as fh:  # type: ignore[arg-type]
            frozen = fh.read()
    return {"wandb-job.json": doc, "requirements.frozen.txt": frozen}
