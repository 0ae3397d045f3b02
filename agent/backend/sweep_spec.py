"""Pure: what a sweep scheduler item asks for, and the run spec a scheduler pushes for one parameter set.

`wandb launch-sweep` puts a scheduler item on the queue (``uri: placeholder-uri-scheduler``): the
default scheduler (``entry_point: [wandb, scheduler, <sweep id>]``, its arguments ``--queue``,
``--project``, ``--author``, ``--job``/``--image_uri`` as ``args``, the sweep config's
``scheduler``/``launch``/``settings`` sections in ``overrides.run_config``), or a custom scheduler
that is itself a job (``job`` set). For each parameter set W&B hands out, the scheduler pushes one
run of the sweep's job or image with the parameters as ``overrides.run_config`` — the same spec
the official scheduler builds, field for field.

Two deliberate differences from the official scheduler: the argument values lose the Python
quotes the CLI wraps them in (``'q'`` is the queue ``q``; wandb 0.31.0's local-process runner
passes the quotes through, so its scheduler looks for project ``'p'`` and fails), and
``${envvar:NAME}`` in the sweep's ``command`` is left as it is (the agent's environment is never
a macro source: it holds the API key).
"""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEDULER_URI = "placeholder-uri-scheduler"
LAUNCH_PROJECT = "model-registry"
DEFAULT_WORKERS = 8  # the official scheduler's default
METHODS = ("grid", "random", "bayes")


class SweepSpecError(Exception):
    """A scheduler item or sweep config this agent cannot run; the message goes on the item."""


def is_scheduler(spec: Mapping[str, Any]) -> bool:
    return spec.get("uri") == SCHEDULER_URI


def runs_in_agent(spec: Mapping[str, Any]) -> bool:
    """The default scheduler runs inside the agent; a scheduler job is an ordinary workload."""
    return is_scheduler(spec) and not spec.get("job")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        if isinstance(parsed, str):
            return parsed
    return value


def parse_args(args: Any) -> dict[str, Any]:
    """``--key value`` pairs as the scheduler command reads them (hyphens become underscores,
    digit strings integers), without the shell quotes the CLI adds."""
    if args in (None, ""):
        return {}
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise SweepSpecError("overrides.args of the scheduler item must be a list of strings")
    out: dict[str, Any] = {}
    for i, arg in enumerate(args):
        if isinstance(arg, str) and arg.startswith("--") and i + 1 < len(args):
            value: Any = _unquote(str(args[i + 1]))
            out[arg[2:].replace("-", "_")] = int(value) if value.isdigit() else value
    return out


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class SchedulerSpec:
    """One default-scheduler item, read."""

    item_id: str
    queue: str  # the queue the item came from
    entity: str
    project: str
    sweep_id: str
    run_queue: str  # where the sweep's runs go
    run_queue_project: str
    author: str | None
    job: str | None
    image_uri: str | None
    num_workers: int
    polling_sleep: float | None
    launch: dict[str, Any] = field(default_factory=dict)  # the sweep config's launch section
    run_config: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.entity, self.project, self.sweep_id)


def parse_scheduler(spec: Mapping[str, Any], *, item_id: str, queue: str) -> SchedulerSpec:
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise SweepSpecError("overrides of the scheduler item must be an object")
    kwargs = parse_args(overrides.get("args"))
    entry = overrides.get("entry_point") or []
    sweep_id = ""
    if isinstance(entry, list) and len(entry) >= 3 and entry[:2] == ["wandb", "scheduler"]:
        sweep_id = str(entry[2])
    sweep_id = sweep_id or str(spec.get("run_id") or "")
    if not sweep_id or sweep_id == "WANDB_SWEEP_ID":
        raise SweepSpecError("the scheduler item names no sweep (entry_point wandb scheduler <sweep id>)")
    entity = str(spec.get("entity") or "")
    project = str(kwargs.get("project") or spec.get("project") or "")
    if not entity or not project:
        raise SweepSpecError("the scheduler item needs an entity and a project")
    run_config = overrides.get("run_config") or {}
    if not isinstance(run_config, Mapping):
        raise SweepSpecError("overrides.run_config of the scheduler item must be an object")
    scheduler = run_config.get("scheduler") or {}
    workers = kwargs.get("num_workers") or (scheduler.get("num_workers") if isinstance(scheduler, Mapping) else None)
    num_workers = int(workers) if str(workers).isdigit() else DEFAULT_WORKERS
    if num_workers < 1:
        raise SweepSpecError("scheduler.num_workers must be at least 1")
    launch = run_config.get("launch") or {}
    if not isinstance(launch, Mapping):
        raise SweepSpecError("the sweep config's launch section must be a mapping")
    return SchedulerSpec(
        item_id=item_id, queue=queue, entity=entity, project=project, sweep_id=sweep_id,
        run_queue=str(kwargs.get("queue") or queue),
        run_queue_project=str(kwargs.get("project_queue") or LAUNCH_PROJECT),
        author=str(kwargs["author"]) if kwargs.get("author") else None,
        job=str(kwargs["job"]) if kwargs.get("job") else None,
        image_uri=str(kwargs["image_uri"]) if kwargs.get("image_uri") else None,
        num_workers=num_workers,
        polling_sleep=_seconds(kwargs.get("polling_sleep")),
        launch=copy.deepcopy(dict(launch)), run_config=copy.deepcopy(dict(run_config)))


def sweep_problem(config: Mapping[str, Any], sched: SchedulerSpec, served: tuple[str, ...]) -> str | None:
    """Why this agent will not schedule the sweep, as one line for the item; None when it will."""
    method = config.get("method")
    if method == "custom":
        return ("the sweep's method is custom, which needs a scheduler job (scheduler.job in the sweep "
                "config); the default scheduler runs grid, random and bayes")
    if method not in METHODS:
        return f"the sweep config's method {method!r} is not one of {', '.join(METHODS)}"
    job = sched.job or config.get("job")
    image = sched.image_uri or config.get("image_uri")
    if not job and not image:
        return "the sweep config has neither job nor image_uri: the sweep's runs have nothing to run"
    if job and image:
        return "the sweep config has both job and image_uri; a launch sweep uses exactly one"
    if sched.run_queue_project != LAUNCH_PROJECT or sched.run_queue not in served:
        return (f"the sweep's runs go to queue {sched.run_queue}, which this agent does not serve "
                f"(it serves {', '.join(served)}); run the sweep on a queue this agent polls")
    return None


# --- the run pushed for one parameter set ---------------------------------------------------


def command_forms(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ways a sweep ``command`` can pass a parameter set (``${args}``, ``${args_json}``, ...)."""
    values = {k: (v.get("value") if isinstance(v, Mapping) else v) for k, v in params.items()}
    flags = [f"--{k}={v}" for k, v in values.items()]
    return {
        "args": flags,
        "args_no_equals": [x for k, v in values.items() for x in (f"--{k}", str(v))],
        "args_no_hyphens": [f"{k}={v}" for k, v in values.items()],
        "args_no_boolean_flags": [f"--{k}" if v is True else f"--{k}={v}" for k, v in values.items()
                                  if v is not False],
        "args_json": [json.dumps(values)],
        "args_dict": values,
        "args_append_hydra": [f"+{k}={v}" for k, v in values.items()],
        "args_override_hydra": [f"++{k}={v}" for k, v in values.items()],
    }


def entry_point(command: Any, forms: Mapping[str, Any], program: Any) -> tuple[list[str] | None, Any]:
    """The sweep ``command`` as the run's entry point, and the arguments its ``${args...}`` macro takes."""
    if not command or not isinstance(command, list):
        return None, None
    entry = [str(c) for c in command]
    macro_args: Any = None
    for name, value in forms.items():
        token = "${" + name + "}"
        if token in entry:
            entry.remove(token)
            macro_args = value
    if "${program}" in entry:
        if not program:
            raise SweepSpecError("the sweep command uses ${program} but the sweep config has no program")
        entry[entry.index("${program}")] = str(program)
    return (entry or None), macro_args


def run_spec(sched: SchedulerSpec, config: Mapping[str, Any], run_id: str,
             params: Mapping[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any] | None]:
    """The run spec, priority and template variable values of one sweep run."""
    forms = command_forms(params)
    entry, macro_args = entry_point(config.get("command"), forms, config.get("program"))
    spec: dict[str, Any] = copy.deepcopy(sched.launch)
    overrides = spec.setdefault("overrides", {"run_config": {}})
    overrides.setdefault("run_config", {}).update(forms["args_dict"])
    if macro_args:
        overrides["args"] = macro_args
    priority = int(spec.get("priority", 2))
    job_launch = copy.deepcopy(sched.launch)
    if "resource_args" in job_launch and "template_variables" in job_launch:
        job_launch.pop("resource_args")
    job = sched.job or config.get("job")
    image = sched.image_uri or config.get("image_uri")
    if job:
        spec["job"] = job
    spec["entity"] = sched.entity
    if sched.author:
        spec["author"] = sched.author
    spec["project"] = sched.project
    spec.setdefault("docker", {})
    if image:
        spec["docker"]["docker_image"] = image
    spec["sweep_id"] = sched.sweep_id
    spec.setdefault("resource", job_launch.get("resource") or None)
    spec.setdefault("git", {})
    if job_launch.get("resource_args"):
        spec["resource_args"] = job_launch["resource_args"]
    if entry:
        overrides["entry_point"] = entry
    spec["run_id"] = run_id
    if "resource_args" in spec and "template_variables" in spec:
        spec.pop("resource_args")
    template_variables = job_launch.get("template_variables")
    from_spec = spec.pop("template_variables", None)
    if isinstance(from_spec, dict):
        template_variables = {**from_spec, **(template_variables or {})}
    return spec, priority, template_variables
