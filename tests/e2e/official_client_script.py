"""Run by tests/e2e/test_official_agent.py in a fresh process (WANDB_BASE_URL and
WANDB_API_KEY point at an emulator): use the official wandb client to create a queue,
push to it and read everything back; print one JSON document with what it saw."""

from __future__ import annotations

import json
import sys

import wandb
from wandb.sdk.launch._launch_add import launch_add


def main(entity: str) -> None:
    api = wandb.Api()
    queue = api.create_run_queue(
        name="client-q",
        type="kubernetes",
        entity=entity,
        prioritization_mode="V0",
        config={"metadata": {"namespace": "{{ns}}"}, "spec": {"parallelism": "{{workers}}"}},
        template_variables={"ns": {"type": "string", "default": "jobs"}, "workers": {"type": "integer"}},
    )
    low = launch_add(docker_image="busybox:1.36", queue_name="client-q", entity=entity, project="demo",
                     resource="kubernetes", template_variables={"workers": 2}, priority=3)
    high = launch_add(docker_image="busybox:1.36", queue_name="client-q", entity=entity, project="demo",
                      resource="kubernetes", template_variables={"workers": 4}, priority=0)
    read = api.run_queue(entity, "client-q")
    print(json.dumps({
        "queue_id": queue.id,
        "type": read.type,
        "prioritization_mode": read.prioritization_mode,
        "default_resource_config": read.default_resource_config,
        "template_variables": read.template_variables,
        "items": [item.id for item in read.items],
        "pushed": [low.id, high.id],
        "states": [low.state, high.state],
    }))


if __name__ == "__main__":
    main(sys.argv[1])
