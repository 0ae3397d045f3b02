"""Scenario 5, jobs by name: N runs of the same image job artifact (`runSpec.job` =
`entity/project/name:v0`, no image in the run spec), enqueued at once. Figures: W&B requests per
launched run, and how often the job's files were fetched (`wandb-job.json` downloads) for its
one version; plus total and drain as in the burst.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from benchmarks import launches
from benchmarks.agents import ROOT
from benchmarks.burst import _kinds, one_run, record
from benchmarks.config import Sizes
from benchmarks.launches import Batch
from benchmarks.report import Scenario
from benchmarks.site import ENTITY, Sites

JOB = "image-job"
PROJECT = "bench"


def job_files() -> dict[str, str]:
    """An image job's files as the official SDK writes them (its own JobBuilder)."""
    path = ROOT / "tests" / "job_documents.py"
    spec = importlib.util.spec_from_file_location("bench_job_documents", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs = module.job_document("image", image="busybox:1.36")
    return {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in docs.items()}


def seed(s: Any) -> None:
    s.emu.call("POST", "/_emulator/artifacts", {"entity": ENTITY, "project": PROJECT, "type": "job", "name": JOB,
                                                "aliases": ["latest"], "files": job_files()})


def run_spec(run_id: str) -> dict[str, Any]:
    spec = launches.run_spec(run_id, job=f"{ENTITY}/{PROJECT}/{JOB}:v0")
    spec.pop("docker")
    return spec


FIGURES = (("wandb_requests_per_run", "requests"), ("job_fetches", "wandb-job.json downloads for 1 version"),
           ("total_s", "s"), ("drain_s", "s"))


def run(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    n = sizes.job_runs
    sc = Scenario("jobs_by_name", f"{n} runs of one job")
    batch = Batch([("jobs", run_spec(f"j{i:04d}"), None) for i in range(n)])
    for kind, reps in _kinds(sizes):
        for rep in range(reps):
            out, _ = one_run(sites, kind, batch, 0.0, work / f"jobs-{kind}-{rep}", max_jobs=n, prepare=seed)
            if out.ok:
                out.figures["job_fetches"] = out.figures["wandb_breakdown"].get("artifact_download", 0.0) * n
            record(sc, kind, "jobs", out, figures=FIGURES,
                   targets={"job_fetches": "1 per job version", "wandb_requests_per_run": "<= official"})
    sc.figure("job_fetches", FIGURES[1][1]).add("floor", 1.0)
    return sc
