"""Reading a scheduler item and building the run a scheduler pushes (agent.backend.sweep_spec),
against what `wandb launch-sweep` queues and what the official scheduler code computes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args, make_launch_sweep_entrypoint

from agent.backend.sweep_spec import (
    SweepSpecError,
    command_forms,
    entry_point,
    is_scheduler,
    parse_args,
    parse_scheduler,
    run_spec,
    runs_in_agent,
    sweep_problem,
)

# The scheduler item `wandb launch-sweep -q sweeps -p proj -e e2e` queues (wandb 0.31.0), as W&B
# hands it out: the sweep id in place of WANDB_SWEEP_ID, the queue's config merged in.
CLI_ITEM: dict[str, Any] = {
    "overrides": {"run_config": {"scheduler": {"num_workers": 2}},
                  "args": ["--queue", "'sweeps'", "--project", "'proj'", "--author", "'local'",
                           "--image_uri", "busybox:1.36"],
                  "entry_point": ["wandb", "scheduler", "b6kw5ew6"]},
    "uri": "placeholder-uri-scheduler", "entity": "e2e", "project": "proj", "name": "Scheduler.b6kw5ew6",
    "docker": {}, "resource": "local-process", "git": {}, "run_id": "b6kw5ew6",
    "resource_args": {"kubernetes": {"metadata": {"namespace": "default"}}},
}
PARAMS = {"lr": {"value": 0.1}, "flag": {"value": False}, "on": {"value": True}, "n": {"value": {"a": 1}}}


def test_the_cli_item_is_read_without_the_shell_quotes() -> None:
    sched = parse_scheduler(CLI_ITEM, item_id="I1", queue="sweeps")
    assert (sched.entity, sched.project, sched.sweep_id) == ("e2e", "proj", "b6kw5ew6")
    assert (sched.run_queue, sched.author, sched.image_uri, sched.job) == ("sweeps", "local", "busybox:1.36", None)
    assert sched.num_workers == 2 and sched.polling_sleep is None
    assert is_scheduler(CLI_ITEM) and runs_in_agent(CLI_ITEM)
    assert not runs_in_agent({**CLI_ITEM, "job": "e/p/scheduler:latest"}), "a scheduler job is a workload"


def test_arguments() -> None:
    assert parse_args(["--queue", "'my q'", "--num-workers", "4", "--job", '"e/p/j:v1"', "--odd", "'x"]) == {
        "queue": "my q", "num_workers": 4, "job": "e/p/j:v1", "odd": "'x"}
    sched = parse_scheduler({**CLI_ITEM, "overrides": {**CLI_ITEM["overrides"], "args": [
        "--queue", "'q'", "--polling_sleep", "0.5", "--num_workers", "3"]}}, item_id="I", queue="q")
    assert (sched.polling_sleep, sched.num_workers) == (0.5, 3)
    no_workers = copy.deepcopy(CLI_ITEM)
    no_workers["overrides"]["run_config"] = {}
    assert parse_scheduler(no_workers, item_id="I", queue="q").num_workers == 8, "the official default"


@pytest.mark.parametrize(("change", "message"), [
    ({"overrides": {"args": "--queue q"}}, "must be a list of strings"),
    ({"overrides": {"entry_point": ["wandb", "scheduler", "WANDB_SWEEP_ID"]}, "run_id": "WANDB_SWEEP_ID"},
     "names no sweep"),
    ({"entity": ""}, "needs an entity and a project"),
    ({"overrides": {"run_config": {"scheduler": {"num_workers": 0}}, "entry_point": ["wandb", "scheduler", "s"]}},
     "num_workers must be at least 1"),
])
def test_items_that_cannot_be_scheduled(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SweepSpecError, match=message):
        parse_scheduler({**CLI_ITEM, **change}, item_id="I", queue="q")


def test_sweep_problems() -> None:
    sched = parse_scheduler(CLI_ITEM, item_id="I", queue="sweeps")
    grid = {"method": "grid", "image_uri": "busybox"}
    assert sweep_problem(grid, sched, ("sweeps",)) is None
    assert "method 'hyperband' is not one of" in (sweep_problem({"method": "hyperband"}, sched, ("sweeps",)) or "")
    assert "needs a scheduler job" in (sweep_problem({"method": "custom"}, sched, ("sweeps",)) or "")
    assert "does not serve" in (sweep_problem(grid, sched, ("other",)) or "")
    bare = parse_scheduler({**CLI_ITEM, "overrides": {**CLI_ITEM["overrides"], "args": ["--queue", "'sweeps'"]}},
                           item_id="I", queue="sweeps")
    assert "neither job nor image_uri" in (sweep_problem({"method": "grid"}, bare, ("sweeps",)) or "")
    assert "both job and image_uri" in (sweep_problem({**grid, "job": "e/p/j:v0"}, sched, ("sweeps",)) or "")


def test_command_forms_match_the_official_scheduler() -> None:
    assert command_forms(PARAMS) == create_sweep_command_args({"args": PARAMS})


@pytest.mark.parametrize("command", [
    ["python", "train.py", "${args}"],
    ["${env}", "python", "train.py", "${args_json}"],
    ["python", "train.py", "${args_no_boolean_flags}"],
    ["python", "-m", "train", "${args_override_hydra}"],
    ["${args}"],
])
def test_entry_points_match_the_official_scheduler(command: list[str]) -> None:
    forms = command_forms(PARAMS)
    assert entry_point(command, forms, None) == make_launch_sweep_entrypoint(forms, list(command))


def test_program_and_environment_macros() -> None:
    forms = command_forms(PARAMS)
    assert entry_point(["python", "${program}", "${args}"], forms, "train.py")[0] == ["python", "train.py"]
    with pytest.raises(SweepSpecError, match="no program"):
        entry_point(["python", "${program}"], forms, None)
    # the agent's environment is never a macro source
    assert entry_point(["${envvar:WANDB_API_KEY}", "x"], forms, None)[0] == ["${envvar:WANDB_API_KEY}", "x"]


def test_the_pushed_run_is_the_official_schedulers() -> None:
    sched = parse_scheduler(CLI_ITEM, item_id="I1", queue="sweeps")
    spec, priority, template_variables = run_spec(sched, {"method": "grid"}, "r1", {"batch": {"value": 16}})
    # as the official scheduler pushed it against the emulator (pushToRunQueueByName variables)
    assert spec == {"overrides": {"run_config": {"batch": 16}}, "entity": "e2e", "author": "local", "project": "proj",
                    "docker": {"docker_image": "busybox:1.36"}, "sweep_id": "b6kw5ew6", "resource": None,
                    "git": {}, "run_id": "r1"}
    assert (priority, template_variables) == (2, None)


def test_the_launch_section_and_a_job() -> None:
    item = copy.deepcopy(CLI_ITEM)
    item["overrides"]["args"] = ["--queue", "'sweeps'", "--project", "'proj'", "--job", "'e2e/proj/train:v3'"]
    item["overrides"]["run_config"]["launch"] = {
        "priority": 0, "resource": "kubernetes", "template_variables": {"gpus": 2},
        "resource_args": {"kubernetes": {"x": 1}}, "overrides": {"args": ["--epochs", "3"]}}
    sched = parse_scheduler(item, item_id="I1", queue="sweeps")
    config = {"method": "random", "command": ["python", "train.py", "${args}"]}
    spec, priority, template_variables = run_spec(sched, config, "r2", {"lr": {"value": 0.5}})
    assert spec["job"] == "e2e/proj/train:v3" and spec["docker"] == {}
    assert spec["overrides"] == {"args": ["--lr=0.5"], "run_config": {"lr": 0.5},
                                 "entry_point": ["python", "train.py"]}
    assert "resource_args" not in spec, "template variables win over resource_args, as in the official client"
    assert (spec["resource"], priority, template_variables) == ("kubernetes", 0, {"gpus": 2})
