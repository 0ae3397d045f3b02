"""Resolvers: the W&B launch API's queries and mutations on top of `EmulatorState`.

Objects are returned as dicts; a field whose value needs arguments or is costly is a
callable ``(info, **args)``, which graphql-core's default resolver calls. A refused request
raises `StateError`, which graphql-core reports in the response's ``errors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from graphql import GraphQLResolveInfo

from localenv.wandb_emulator import artifact_resolvers, sweeps
from localenv.wandb_emulator.state import (
    LAUNCH_PROJECT,
    Agent,
    EmulatorState,
    Entity,
    Item,
    Project,
    Queue,
    ResourceConfig,
    Run,
    StateError,
    User,
    iso,
)


@dataclass
class RequestContext:
    state: EmulatorState
    user: User
    base_url: str


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    ctx: RequestContext = info.context
    return ctx


def _json_arg(value: Any, what: str) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise StateError(f"{what} is not valid JSON: {exc.msg}") from exc


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


# --- object views ---------------------------------------------------------------------------


def entity_view(state: EmulatorState, entity: Entity) -> dict[str, Any]:
    def default_resource_config(info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
        rc = state.resource_configs.get(id)
        return resource_config_view(rc) if rc is not None and rc.entity == entity.name else None

    return {
        "id": entity.id,
        "name": entity.name,
        "isTeam": entity.is_team,
        "organization": None,
        "xxhashDigestsEnabled": False,
        "defaultResourceConfig": default_resource_config,
    }


def resource_config_view(rc: ResourceConfig) -> dict[str, Any]:
    return {
        "id": rc.id,
        "resource": rc.resource,
        "config": _dumps(rc.config),
        "templateVariables": [
            {"name": name, "schema": _dumps(schema), "description": schema.get("description")}
            for name, schema in sorted(rc.template_variables.items())
        ],
    }


def item_view(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "state": item.state,
        "runSpec": item.run_spec,
        "priority": item.priority,
        "createdAt": iso(item.created_at),
        "associatedRunId": item.associated_run_id,
        "launchAgentId": item.claimed_by_agent,
        "error": item.error,
        "warnings": item.warnings,
    }


def queue_view(state: EmulatorState, queue: Queue) -> dict[str, Any]:
    def items(info: GraphQLResolveInfo, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        listed = state.queue_items(queue.id)
        if after is not None:
            ids = [i.id for i in listed]
            listed = listed[ids.index(after) + 1 :] if after in ids else []
        if first is not None:
            listed = listed[:first]
        return {"edges": [{"node": item_view(i)} for i in listed]}

    def item(info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
        found = state.get_item(id)
        return item_view(found) if found is not None and found.queue_id == queue.id else None

    def default_resource_config(info: GraphQLResolveInfo) -> dict[str, Any] | None:
        rc = state.resource_configs.get(queue.resource_config_id or "")
        return resource_config_view(rc) if rc is not None else None

    return {
        "id": queue.id,
        "name": queue.name,
        "entityName": queue.entity,
        "projectName": queue.project,
        "createdBy": queue.created_by,
        "access": queue.access,
        "prioritizationMode": queue.prioritization_mode,
        "defaultResourceConfigID": queue.resource_config_id,
        "defaultResourceConfig": default_resource_config,
        "externalLinks": _dumps(queue.external_links),
        "runQueueItems": items,
        "runQueueItem": item,
    }


def run_view(state: EmulatorState, run: Run) -> dict[str, Any]:
    def project(info: GraphQLResolveInfo) -> dict[str, Any] | None:
        found = state.get_project(run.entity, run.project)
        return project_view(state, found) if found is not None else None

    return {
        **artifact_resolvers.run_fields(state, run),
        "id": run.id,
        "name": run.name,
        "displayName": run.display_name or run.name,
        "description": None,
        "notes": None,
        "state": run.state,
        "stopped": run.stopped,
        "config": _dumps(run.config or {}),
        "summaryMetrics": "{}",
        "sweepName": None,
        "jobType": run.job_type,
        "tags": run.tags,
        "project": project,
        "historyLineCount": 0,
        "logLineCount": 0,
        "eventsLineCount": 0,
        "historyTail": "[]",
        "eventsTail": "[]",
        "wandbConfig": lambda info, keys=None: "{}",
        **sweeps.run_fields(state, run),
    }


def project_view(state: EmulatorState, project: Project) -> dict[str, Any]:
    def run(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        found = state.get_run(project.entity, project.name, name)
        return run_view(state, found) if found is not None else None

    def bucket(info: GraphQLResolveInfo, name: str, missingOk: bool | None = None) -> dict[str, Any] | None:
        return run(info, name)

    def run_queue(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        queue = state.find_queue(project.entity, project.name, name)
        return queue_view(state, queue) if queue is not None else None

    def entity(info: GraphQLResolveInfo) -> dict[str, Any]:
        return entity_view(state, state.entities[project.entity])

    return {
        **artifact_resolvers.project_fields(state, project),
        "id": project.id,
        "name": project.name,
        "entityName": project.entity,
        "description": None,
        "access": "PRIVATE",
        "views": "{}",
        "readOnly": False,
        "entity": entity,
        "runQueues": lambda info: [queue_view(state, q) for q in state.project_queues(project.entity, project.name)],
        "runQueue": run_queue,
        "run": run,
        "bucket": bucket,
        **sweeps.project_fields(state, project),
    }


def agent_view(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "entityName": agent.entity,
        "projectName": agent.project,
        "runQueues": agent.queue_ids,
        "hostname": agent.hostname,
        "agentStatus": agent.status,
        "agentConfig": _dumps(agent.config),
        "version": agent.version,
        "stopPolling": agent.stop_polling,
        "heartbeatAt": iso(agent.heartbeat_at),
        "createdAt": iso(agent.created_at),
    }


# --- queries --------------------------------------------------------------------------------


def q_viewer(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    ctx = _ctx(info)
    user = ctx.user
    teams = [e for e in list(ctx.state.entities.values()) if e.is_team]
    return {
        "id": f"user-{user.username}",
        "name": user.username,
        "username": user.username,
        "email": user.email,
        "admin": False,
        "flags": "{}",
        "entity": user.entity,
        "deletedAt": None,
        "teams": {"edges": [{"node": entity_view(ctx.state, e)} for e in teams]},
        "apiKeys": {"edges": []},
    }


def q_entity(_root: Any, info: GraphQLResolveInfo, name: str | None = None, login: bool | None = None) -> Any:
    state = _ctx(info).state
    entity = state.get_entity(name)
    return entity_view(state, entity) if entity is not None else None


def q_project(_root: Any, info: GraphQLResolveInfo, name: str | None = None, entityName: str | None = None) -> Any:
    state = _ctx(info).state
    project = state.get_project(entityName or _ctx(info).user.entity, name)
    return project_view(state, project) if project is not None else None


def q_launch_agent(_root: Any, info: GraphQLResolveInfo, id: str) -> Any:
    state = _ctx(info).state
    agent = state.get_agent(id)
    if agent is None:
        return None
    state.touch_agent(id)
    return agent_view(agent)


def q_server_info(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    return {"features": []}


def q_organization(_root: Any, info: GraphQLResolveInfo, name: str | None = None) -> None:
    return None


# --- mutations ------------------------------------------------------------------------------


def m_upsert_model(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    entity = input.get("entityName") or ctx.user.entity
    name = input.get("name")
    if not name:
        raise StateError("upsertModel needs a project name")
    inserted = ctx.state.get_project(entity, name) is None
    view = project_view(ctx.state, ctx.state.ensure_project(entity, name))
    return {"project": view, "model": view, "inserted": inserted}


def m_upsert_bucket(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    entity = input.get("entityName") or ctx.user.entity
    project = input.get("modelName") or "uncategorized"
    name = input.get("name")
    if not name:
        raise StateError("upsertBucket needs a run name")
    config = _json_arg(input.get("config"), "config")
    run, inserted = ctx.state.upsert_run(
        entity,
        project,
        name,
        state=input.get("state"),
        display_name=input.get("displayName"),
        job_type=input.get("jobType"),
        config=config if isinstance(config, dict) else None,
        tags=input.get("tags"),
        sweep=input.get("sweep"),
    )
    return {"bucket": run_view(ctx.state, run), "inserted": inserted}


def m_create_run_files(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    entity, project, name = input["entityName"], input["projectName"], input["runName"]
    run = ctx.state.get_run(entity, project, name)
    if run is None:
        raise StateError(f"run {entity}/{project}/{name} not found")
    prefix = f"{ctx.base_url}/_emulator/uploads/{quote(entity)}/{quote(project)}/{quote(name)}/"
    return {
        "runID": run.id,
        "uploadHeaders": [],
        "files": [{"name": f, "uploadUrl": prefix + quote(f)} for f in input["files"]],
    }


def m_mark_run_files_uploaded(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    return {"success": True}


def m_stop_run(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    return {"success": _ctx(info).state.stop_run_by_id(input["id"])}


def m_create_run_queue(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    queue = ctx.state.create_queue(
        input["entityName"],
        input["projectName"],
        input["queueName"],
        access=input["access"],
        created_by=ctx.user.username,
        prioritization_mode=input.get("prioritizationMode"),
        resource_config_id=input.get("defaultResourceConfigID"),
    )
    return {"success": True, "queueID": queue.id}


def m_upsert_run_queue(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    config = _json_arg(input["resourceConfig"], "resourceConfig")
    if not isinstance(config, dict):
        raise StateError("resourceConfig must be a JSON object")
    resource = input["resourceType"]
    ctx.state.upsert_queue(
        input["entityName"],
        input["projectName"],
        input["queueName"],
        resource,
        config if "resource_args" in config else {"resource_args": {resource: config}},
        _json_arg(input.get("templateVariables"), "templateVariables"),
        input.get("prioritizationMode"),
        _json_arg(input.get("externalLinks"), "externalLinks"),
        created_by=ctx.user.username,
    )
    return {"success": True, "configSchemaValidationErrors": []}


def m_delete_run_queues(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    return {"success": _ctx(info).state.delete_queues(list(input["queueIDs"]))}


def m_create_default_resource_config(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    config = _json_arg(input["config"], "config")
    if not isinstance(config, dict):
        raise StateError("config must be a JSON object")
    template_variables = _json_arg(input.get("templateVariables"), "templateVariables") or {}
    if not isinstance(template_variables, dict):
        raise StateError("templateVariables must be a JSON object of variable schemas")
    rc = ctx.state.create_resource_config(input["entityName"], input["resource"], config, template_variables)
    return {"defaultResourceConfigID": rc.id, "success": True}


def m_create_launch_agent(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    config = _json_arg(input.get("agentConfig"), "agentConfig")
    agent = ctx.state.create_agent(
        input["entityName"],
        input["projectName"],
        list(input["runQueues"]),
        input["hostname"],
        config if isinstance(config, dict) else None,
        input.get("version"),
    )
    return {"launchAgentId": agent.id, "name": agent.name}


def m_update_launch_agent(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    return {"success": _ctx(info).state.update_agent(input["launchAgentId"], input.get("agentStatus"))}


def _push(ctx: RequestContext, queue: Queue | None, input: dict[str, Any]) -> Item:
    if queue is None:
        raise StateError("run queue not found")
    run_spec = _json_arg(input["runSpec"], "runSpec")
    if not isinstance(run_spec, dict):
        raise StateError("runSpec must be a JSON object")
    values = _json_arg(input.get("templateVariableValues"), "templateVariableValues")
    if values is not None and not isinstance(values, dict):
        raise StateError("templateVariableValues must be a JSON object")
    return ctx.state.push(queue, run_spec, priority=input.get("priority"), template_values=values)


def m_push_to_run_queue_by_name(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    queue = ctx.state.find_queue(input["entityName"], input["projectName"], input["queueName"])
    item = _push(ctx, queue, input)
    return {"runQueueItemId": item.id, "runSpec": json.dumps(item.run_spec)}


def m_push_to_run_queue(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    item = _push(ctx, ctx.state.queues.get(input["queueID"]), input)
    return {"runQueueItemId": item.id}


def m_pop_from_run_queue(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any] | None:
    ctx = _ctx(info)
    queue = ctx.state.find_queue(input["entityName"], input["projectName"], input["queueName"])
    if queue is None:
        raise StateError(f"run queue {input['queueName']} not found")
    item = ctx.state.pop(queue, ctx.user, input.get("launchAgentId"))
    if item is None:
        return None
    return {"runQueueItemId": item.id, "runSpec": item.run_spec}


def m_ack_run_queue_item(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    return {"success": ctx.state.ack(input["runQueueItemId"], ctx.user, input["runName"])}


def m_fail_run_queue_item(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ok = _ctx(info).state.fail(input["runQueueItemId"], input["message"], input["stage"], input.get("filePaths"))
    return {"success": ok}


def m_update_run_queue_item_warning(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ok = _ctx(info).state.warn(input["runQueueItemId"], input["message"], input["stage"], input.get("filePaths"))
    return {"success": ok}


def m_delete_from_run_queue(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    return {"success": _ctx(info).state.delete_item(input["queueID"], input["runQueueItemId"])}


QUERY_RESOLVERS = {
    **artifact_resolvers.QUERY_RESOLVERS,
    "viewer": q_viewer,
    "entity": q_entity,
    "project": q_project,
    "model": q_project,
    "launchAgent": q_launch_agent,
    "serverInfo": q_server_info,
    "organization": q_organization,
}

MUTATION_RESOLVERS = {
    **artifact_resolvers.MUTATION_RESOLVERS,
    "upsertModel": m_upsert_model,
    "upsertBucket": m_upsert_bucket,
    "createRunFiles": m_create_run_files,
    "markRunFilesUploaded": m_mark_run_files_uploaded,
    "stopRun": m_stop_run,
    "createRunQueue": m_create_run_queue,
    "upsertRunQueue": m_upsert_run_queue,
    "deleteRunQueues": m_delete_run_queues,
    "createDefaultResourceConfig": m_create_default_resource_config,
    "createLaunchAgent": m_create_launch_agent,
    "updateLaunchAgent": m_update_launch_agent,
    "pushToRunQueueByName": m_push_to_run_queue_by_name,
    "pushToRunQueue": m_push_to_run_queue,
    "popFromRunQueue": m_pop_from_run_queue,
    "ackRunQueueItem": m_ack_run_queue_item,
    "failRunQueueItem": m_fail_run_queue_item,
    "updateRunQueueItemWarning": m_update_run_queue_item_warning,
    "deleteFromRunQueue": m_delete_from_run_queue,
    **sweeps.MUTATION_RESOLVERS,
}

__all__ = ["LAUNCH_PROJECT", "MUTATION_RESOLVERS", "QUERY_RESOLVERS", "RequestContext"]
