"""The comparison behind the differential test of jobs (tests/workload_diff.py): it finds a
difference in each compared field, and the README's table allows exactly the rows' fields."""

from __future__ import annotations

import copy

from workload_diff import Difference, allowed, differences, pod_fields, unlisted, unused

INIT = "wandb-source-code-init"


def job(**main: object) -> dict:
    container = {"name": "launch0", "image": "python:3.12-slim", "command": ["python", "train.py"],
                 "workingDir": "/mnt/wandb",
                 "env": [{"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "password"}}},
                         {"name": "WANDB_RUN_ID", "value": "r1"}],
                 "volumeMounts": [{"name": "wandb-source-code-volume", "mountPath": "/mnt/wandb"}], **main}
    init = {"name": INIT, "image": "launch-agent:1", "command": ["python", "-m", "agent", "fetch-source"]}
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
        "containers": [container], "initContainers": [init],
        "volumes": [{"name": "wandb-source-code-volume", "emptyDir": {}}]}}}}


def test_the_same_workload_has_no_difference_and_run_values_of_env_are_not_compared():
    other = job()
    other["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "r2"
    assert differences("Job/artifact", job(), other) == []
    assert pod_fields(job())["containers[0].env[WANDB_API_KEY]"] == "secretKeyRef"


def test_each_compared_field_differs_on_its_own():
    base = job()
    changes = {
        "containers[0].image": lambda s: s["containers"][0].update(image="python:3.11"),
        "containers[0].command": lambda s: s["containers"][0].update(command=["sh"]),
        "containers[0].args": lambda s: s["containers"][0].update(args=["-c", "x"]),
        "containers[0].workingDir": lambda s: s["containers"][0].update(workingDir="/"),
        "containers[0].env[WANDB_API_KEY]": lambda s: s["containers"][0]["env"].__setitem__(
            0, {"name": "WANDB_API_KEY", "value": "k"}),
        "containers[0].env[EXTRA]": lambda s: s["containers"][0]["env"].append({"name": "EXTRA", "value": "1"}),
        "containers[0].volumeMounts[wandb-source-code-volume]": lambda s: s["containers"][0]["volumeMounts"][0]
        .update(subPath="x"),
        f"initContainers[{INIT}].image": lambda s: s["initContainers"][0].update(image="wandb/launch-agent:0.25.1"),
        "volumes[wandb-source-code-volume]": lambda s: s["volumes"][0].update(emptyDir={"medium": "Memory"}),
    }
    for field, change in changes.items():
        other = copy.deepcopy(base)
        change(other["spec"]["template"]["spec"])
        assert [d.field for d in differences("Job/artifact", base, other)] == [field], field


def test_the_readme_table_allows_its_rows_fields_and_nothing_else():
    rules = allowed()
    assert rules, "the README table names no fields"
    init_image = Difference("Job/artifact", f"initContainers[{INIT}].image", "wandb/launch-agent:0.25.1", "a:1")
    key_on_job = Difference("Job/image", "containers[0].env[WANDB_API_KEY]", "value", "secretKeyRef")
    key_on_cr = Difference("PyTorchJob/image", "containers[0].env[WANDB_API_KEY]", "value", "secretKeyRef")
    image_init = Difference("Job/image", f"initContainers[{INIT}].image", None, "a:1")
    assert unlisted([init_image, key_on_cr], rules) == []
    assert unlisted([key_on_job, image_init], rules) == [key_on_job, image_init]
    assert {r.row for r in unused([init_image], rules)} >= {"init container command"}
    assert not any(r.row == "init container image" for r in unused([init_image], rules))
