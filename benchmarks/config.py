"""Sizes of the scenarios. `default` takes about 24 minutes on 2 cores shared with other work (load 5-9; the burst
is a third of it, mostly waiting for the job controller to end each run's 200 Jobs);
`full` is the sizes of the issue's scenario list with more repetitions (about an hour); `quick`
is the harness smoke test's (seconds per scenario, our agent and the floor only).

Any size can be overridden from the environment: `BENCH_<FIELD>` (e.g. `BENCH_BURST_RUNS=50`,
`BENCH_AGENTS=ours,official-nodocker`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

OFFICIAL = "official-nodocker"  # the official agent as its image runs it: no docker binary on PATH
OFFICIAL_DOCKER = "official"  # with this machine's docker on its PATH (`docker --version` per job)


@dataclass(frozen=True)
class Sizes:
    agents: tuple[str, ...] = ("ours", OFFICIAL)
    official_docker_variant: bool = True  # the burst at 0 ms also with docker on the official agent's PATH
    reps_ours: int = 2
    reps_official: int = 1
    burst_runs: int = 200
    latencies_ms: tuple[float, ...] = (0.0, 50.0)
    queues: int = 20
    runs_per_queue: int = 10
    priority_low: int = 30
    priority_high: int = 10
    priority_max_jobs: int = 5
    trickle_seconds: float = 60.0
    trickle_interval: float = 0.5
    trickle_max_jobs: int = 10
    trickle_run_seconds: int = 3
    steady_small: int = 50
    steady_workloads: int = 500
    steady_window: float = 60.0
    steady_kinds: tuple[str, ...] = ("Job", "PyTorchJob")
    job_runs: int = 200
    idle_seconds: float = 60.0
    install_deadline: float = 1200.0
    fresh_localenv: bool = True  # a new control plane for every run (else one per scenario and node count)


PRESETS = {
    "default": Sizes(burst_runs=200, reps_ours=1, fresh_localenv=False, steady_workloads=300, steady_window=30.0,
                     steady_kinds=("Job",), trickle_seconds=16.0, runs_per_queue=5, job_runs=50, idle_seconds=20.0,
                     priority_low=12, priority_high=4, official_docker_variant=False),
    "full": Sizes(reps_ours=3, reps_official=2),
    "quick": Sizes(agents=("ours",), official_docker_variant=False, reps_ours=1, reps_official=1, burst_runs=6,
                   latencies_ms=(0.0,), queues=3, runs_per_queue=2, priority_low=4, priority_high=2,
                   priority_max_jobs=2, trickle_seconds=4.0, trickle_max_jobs=3, trickle_run_seconds=1,
                   steady_small=3, steady_workloads=6, steady_window=5.0, steady_kinds=("Job",), job_runs=4,
                   idle_seconds=5.0, install_deadline=0.0, fresh_localenv=False),
}


def _parse(field: dataclasses.Field[object], text: str) -> object:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind.startswith("tuple"):
        items = [t.strip() for t in text.split(",") if t.strip()]
        return tuple(float(t) for t in items) if "float" in kind else tuple(items)
    if kind == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def sizes(preset: str = "default", env: dict[str, str] | None = None) -> Sizes:
    env = dict(os.environ if env is None else env)
    base = PRESETS[preset]
    changes = {f.name: _parse(f, env[f"BENCH_{f.name.upper()}"]) for f in dataclasses.fields(Sizes)
               if f"BENCH_{f.name.upper()}" in env}
    return dataclasses.replace(base, **changes) if changes else base
