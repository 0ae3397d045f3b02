"""The ``/_emulator/`` admin API used by tests and the demo.

Routes (JSON in, JSON out; identifiers in paths are URL-quoted):

  GET    /_emulator/health                          liveness
  GET    /_emulator/state                           everything, as JSON
  POST   /_emulator/reset                           forget all data (API keys stay)
  PUT    /_emulator/settings                        {claimTimeout?, autoInitOnAck?, sweepSeed?}
  POST   /_emulator/users                           {username, entity?, apiKey?} -> {apiKey, ...}
  POST   /_emulator/entities                        {name, isTeam?}
  GET    /_emulator/queues                          all queues
  POST   /_emulator/queues                          {entity, name, resource?, config?, project?,
                                                     templateVariables?, prioritizationMode?}
  GET    /_emulator/queues/<entity>/<queue>/items   items of a queue
  POST   /_emulator/queues/<entity>/<queue>/items   {runSpec, priority?, templateVariables?}
                                                     or {items: [{runSpec, priority?, ...}, ...]}
  GET    /_emulator/items/<id>                      one item
  GET    /_emulator/agents                          launch agents
  POST   /_emulator/agents/<id>/stop-polling        {stop?: true}
  GET    /_emulator/runs/<entity>/<project>/<run>   one run
  POST   /_emulator/runs/<entity>/<project>/<run>   {state?, stopped?}  (creates the run)
  GET    /_emulator/requests?operation=X            request log
  DELETE /_emulator/requests                        clear log and counts
  GET    /_emulator/counts                          requests per operation
  GET    /_emulator/operations                      distinct operations seen
  GET    /_emulator/faults | POST {rule} | DELETE   fault injection rules
  GET    /_emulator/files?prefix=P                  uploaded file paths
  GET    /_emulator/artifacts                       artifact versions
  POST   /_emulator/artifacts                       {entity, project, type, name, files, aliases?,
                                                     metadata?} seeds a committed version
  GET    /_emulator/sweeps                          sweeps, each with its runs and sweep agents
  GET    /_emulator/sweeps/<entity>/<project>/<name> one sweep; POST {state} sets its state
  GET    /_emulator/uploads/<e>/<p>/<run>/<name>    an uploaded file's bytes
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from localenv.wandb_emulator import artifact_store, sweeps
from localenv.wandb_emulator.faults import FaultInjector, FaultSpecError
from localenv.wandb_emulator.request_log import RequestLog
from localenv.wandb_emulator.state import LAUNCH_PROJECT, EmulatorState, Item, StateError, new_api_key


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def item_json(state: EmulatorState, item: Item) -> dict[str, Any]:
    queue = state.queues.get(item.queue_id)
    doc = asdict(item)
    doc["queue"] = queue.name if queue else None
    doc["entity"] = queue.entity if queue else None
    return doc


def _require(body: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or value == "":
        raise AdminError(400, f"field {key!r} is required")
    return value


class AdminApi:
    def __init__(self, state: EmulatorState, log: RequestLog, faults: FaultInjector) -> None:
        self.state = state
        self.log = log
        self.faults = faults

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")[1:]]
        try:
            return 200, self._route(method, parts, query, body if isinstance(body, dict) else {})
        except AdminError as exc:
            return exc.status, {"error": str(exc)}
        except (StateError, FaultSpecError) as exc:
            return 400, {"error": str(exc)}

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]) -> Any:
        state = self.state
        head = parts[0] if parts else ""
        if head == "health":
            return {"ok": True}
        if head == "state" and method == "GET":
            return self._snapshot()
        if head == "reset" and method == "POST":
            state.reset()
            self.log.clear()
            self.faults.clear()
            return {"ok": True}
        if head == "settings" and method == "PUT":
            with state.lock:
                if "claimTimeout" in body:
                    state.claim_timeout = float(body["claimTimeout"])
                if "autoInitOnAck" in body:
                    state.auto_init_on_ack = bool(body["autoInitOnAck"])
                if "sweepSeed" in body:
                    state.sweeps.seed = None if body["sweepSeed"] is None else int(body["sweepSeed"])
            return {"claimTimeout": state.claim_timeout, "autoInitOnAck": state.auto_init_on_ack,
                    "sweepSeed": state.sweeps.seed}
        if head == "users" and method == "POST":
            username = _require(body, "username")
            key = body.get("apiKey") or new_api_key()
            user = state.add_user(key, username, body.get("entity"))
            return {"apiKey": key, **asdict(user)}
        if head == "entities" and method == "POST":
            entity = state.ensure_entity(_require(body, "name"), bool(body.get("isTeam", False)))
            return asdict(entity)
        if head == "queues":
            return self._queues(method, parts[1:], body)
        if head == "items" and len(parts) == 2 and method == "GET":
            item = state.get_item(parts[1])
            if item is None:
                raise AdminError(404, f"item {parts[1]} not found")
            return item_json(state, item)
        if head == "agents":
            return self._agents(method, parts[1:], body)
        if head == "runs" and len(parts) == 4:
            return self._run(method, parts[1], parts[2], parts[3], body)
        if head == "requests":
            if method == "DELETE":
                self.log.clear()
                return {"ok": True}
            return self.log.entries(query.get("operation"))
        if head == "counts":
            return self.log.counts()
        if head == "operations":
            return self.log.operations()
        if head == "faults":
            if method == "POST":
                return asdict(self.faults.add(body))
            if method == "DELETE":
                self.faults.clear()
                return {"ok": True}
            return self.faults.rules()
        if head == "files":
            return state.list_files(query.get("prefix", ""))
        if head == "artifacts":
            with state.lock:
                if method == "POST" and isinstance(body.get("entity"), str) and body["entity"]:
                    state.ensure_entity(body["entity"], state.entities[body["entity"]].is_team
                                        if body["entity"] in state.entities else False)
                    if isinstance(body.get("project"), str) and body["project"]:
                        state.ensure_project(body["entity"], body["project"])
                return artifact_store.admin(state.artifacts, method, parts[1:], body)
        if head == "sweeps":
            return sweeps.admin(state, method, parts[1:], body)
        raise AdminError(404, f"no admin route {method} /_emulator/{'/'.join(parts)}")

    def _snapshot(self) -> dict[str, Any]:
        state = self.state
        with state.lock:
            return {
                "entities": [asdict(e) for e in state.entities.values()],
                "queues": [asdict(q) for q in state.queues.values()],
                "resourceConfigs": [asdict(c) for c in state.resource_configs.values()],
                "items": [item_json(state, i) for i in state.items.values()],
                "agents": [asdict(a) for a in state.agents.values()],
                "runs": [asdict(r) for r in state.runs.values()],
                "files": sorted(state.files),
                "claimTimeout": state.claim_timeout,
            }

    def _queues(self, method: str, rest: list[str], body: dict[str, Any]) -> Any:
        state = self.state
        if not rest:
            if method == "POST":
                entity = _require(body, "entity")
                resource = body.get("resource", "kubernetes")
                config = body.get("config") or {}
                if not isinstance(config, dict):
                    raise AdminError(400, "field 'config' must be an object (the resource config)")
                if state.get_entity(entity) is None:
                    state.ensure_entity(entity)
                queue = state.upsert_queue(
                    entity,
                    body.get("project", LAUNCH_PROJECT),
                    _require(body, "name"),
                    resource,
                    {"resource_args": {resource: config}},
                    body.get("templateVariables"),
                    body.get("prioritizationMode"),
                )
                return asdict(queue)
            return [asdict(q) for q in state.queues.values()]
        if len(rest) == 3 and rest[2] == "items":
            entity, name = rest[0], rest[1]
            queue = state.find_queue(entity, LAUNCH_PROJECT, name)
            if queue is None:
                raise AdminError(404, f"queue {entity}/{name} not found")
            if method == "POST" and "items" in body:
                return [item_json(state, i) for i in self._push_many(queue, body["items"])]
            if method == "POST":
                run_spec = _require(body, "runSpec", dict)
                item = state.push(
                    queue,
                    run_spec,
                    priority=body.get("priority"),
                    template_values=body.get("templateVariables"),
                )
                return item_json(state, item)
            return [item_json(state, i) for i in state.queue_items(queue.id)]
        raise AdminError(404, "no such queue route")

    def _push_many(self, queue: Any, entries: Any) -> list[Item]:
        """Several items in one call (a burst enqueued at once), in the order given."""
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("runSpec"), dict)
                                                    for e in entries):
            raise AdminError(400, "field 'items' must be a list of objects with a 'runSpec' object")
        return [self.state.push(queue, e["runSpec"], priority=e.get("priority"),
                                template_values=e.get("templateVariables")) for e in entries]

    def _agents(self, method: str, rest: list[str], body: dict[str, Any]) -> Any:
        if not rest:
            return [asdict(a) for a in self.state.agents.values()]
        if len(rest) == 2 and rest[1] == "stop-polling" and method == "POST":
            return asdict(self.state.set_stop_polling(rest[0], bool(body.get("stop", True))))
        if len(rest) == 1:
            agent = self.state.get_agent(rest[0])
            if agent is None:
                raise AdminError(404, f"agent {rest[0]} not found")
            return asdict(agent)
        raise AdminError(404, "no such agent route")

    def _run(self, method: str, entity: str, project: str, name: str, body: dict[str, Any]) -> Any:
        state = self.state
        if method == "POST":
            if "state" in body or state.get_run(entity, project, name) is None:
                state.upsert_run(entity, project, name, state=body.get("state"))
            if "stopped" in body:
                state.set_run_stopped(entity, project, name, bool(body["stopped"]))
        run = state.get_run(entity, project, name)
        if run is None:
            raise AdminError(404, f"run {entity}/{project}/{name} not found")
        return asdict(run)
