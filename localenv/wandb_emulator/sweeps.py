"""Sweeps as W&B serves them to the CLI, launch schedulers and sweep agents (sweeps.graphql).

- ``upsertSweep`` creates a sweep (state ``PENDING`` unless given) or updates one by id (state
  changes: ``wandb sweep --stop/--cancel/--pause/--resume`` and schedulers). With a
  ``launchScheduler`` (``{queue, run_queue_project, run_spec}``) the server pushes the
  scheduler's run spec onto that queue, every ``WANDB_SWEEP_ID`` in it replaced by the sweep's
  name, with the given ``templateVariableValues``. Config problems come back as
  ``configValidationWarnings``; the sweep is still created.
- ``createAgent`` registers a sweep agent (a launch scheduler registers one per worker); the
  first one moves a ``PENDING`` sweep to ``RUNNING``.
- ``agentHeartbeat`` hands a ``RUNNING`` sweep's next parameter set to the agent, as one
  ``run`` command with a new run id; the run is created at once in state ``pending``, in the
  sweep, with the parameters as its config. Nothing is handed out while the sweep is
  ``PENDING``/``PAUSED``/``FINISHED``, or once a grid is exhausted or ``run_cap`` runs exist;
  ``CANCELED``/``CRASHED`` answer ``exit``.
- A sweep whose grid is exhausted (or which has ``run_cap`` runs) becomes ``FINISHED`` once
  every one of its runs has ended (a run whose queue item failed counts as ended).
- ``project.sweep(sweepName)`` reads a sweep with its runs (``SweepWithRuns``,
  ``GetSweepState``).
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import yaml
from graphql import GraphQLResolveInfo

from localenv.wandb_emulator import sweep_search
from localenv.wandb_emulator.state import TERMINAL_RUN_STATES, EmulatorState, Project, Run, StateError, iso
from localenv.wandb_emulator.sweep_store import SWEEP_STATES, Sweep, SweepAgent

if TYPE_CHECKING:
    from localenv.wandb_emulator.resolvers import RequestContext

SWEEP_ID_PLACEHOLDER = "WANDB_SWEEP_ID"
_ALPHABET = string.ascii_lowercase + string.digits


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    ctx: RequestContext = info.context
    return ctx


def parse_config(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise StateError("the sweep config must be a YAML (or JSON) document")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StateError(f"the sweep config is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise StateError("the sweep config must be a mapping")
    return doc


def _json(value: Any, what: str) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise StateError(f"{what} is not valid JSON: {exc.msg}") from None


def _replace_placeholder(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return value.replace(SWEEP_ID_PLACEHOLDER, name)
    if isinstance(value, list):
        return [_replace_placeholder(v, name) for v in value]
    if isinstance(value, dict):
        return {k: _replace_placeholder(v, name) for k, v in value.items()}
    return value


def _new_name(taken: set[str]) -> str:
    while True:
        name = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        if name not in taken:
            return name


def _new_run_id(state: EmulatorState, entity: str, project: str) -> str:
    while True:
        name = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        if state.get_run(entity, project, name) is None:
            return name


# --- the operations -------------------------------------------------------------------------


def upsert_sweep(state: EmulatorState, user_entity: str, inp: dict[str, Any]) -> tuple[Sweep, bool, list[str]]:
    """Create or update a sweep (and push its launch scheduler); all checks come before any change."""
    with state.lock:
        store = state.sweeps
        sweep = store.sweeps.get(inp["id"]) if inp.get("id") else None
        if inp.get("id") and sweep is None:
            raise StateError(f"sweep {inp['id']} not found")
        entity = inp.get("entityName") or (sweep.entity if sweep else user_entity)
        project = inp.get("projectName") or (sweep.project if sweep else "uncategorized")
        if sweep is None and state.get_entity(entity) is None:
            raise StateError(f"entity {entity} not found")
        text = inp.get("config")
        if sweep is None and not text:
            raise StateError("a new sweep needs a config")
        config = parse_config(text) if text else parse_config(sweep.config if sweep else "")
        new_state = inp.get("state")
        if new_state is not None and new_state not in SWEEP_STATES:
            raise StateError(f"sweep state {new_state!r} is not one of {', '.join(SWEEP_STATES)}")
        launch = _json(inp.get("launchScheduler"), "launchScheduler")
        values = _json(inp.get("templateVariableValues"), "templateVariableValues")
        if values is not None and not isinstance(values, dict):
            raise StateError("templateVariableValues must be a JSON object")
        name = sweep.name if sweep else _new_name(store.names())
        if launch is not None:
            _push_scheduler(state, entity, name, launch, values)
        now = state.now()
        inserted = sweep is None
        if sweep is None:
            sweep = Sweep(id=store.next_id("Sweep"), name=name, entity=entity, project=project, config=text,
                          seed=secrets.randbits(31) if store.seed is None else store.seed,
                          created_at=now, updated_at=now)
            sweep.state_history.append(sweep.state)
            store.sweeps[sweep.id] = sweep
            state.ensure_project(entity, project)
        elif text:
            sweep.config = text
        if new_state is not None:
            store.set_state(sweep, new_state)
        for key, attr in (("description", "description"), ("displayName", "display_name"),
                          ("controller", "controller")):
            if inp.get(key) is not None:
                setattr(sweep, attr, inp[key])
        if launch is not None:
            sweep.scheduler = inp["launchScheduler"]
        sweep.updated_at = now
        store.save()
        return sweep, inserted, sweep_search.warnings(config)


def _push_scheduler(state: EmulatorState, entity: str, name: str, launch: Any, values: Any) -> None:
    if not isinstance(launch, dict) or not isinstance(launch.get("queue"), str):
        raise StateError("launchScheduler must be a JSON object with queue and run_spec")
    queue_project = launch.get("run_queue_project") or "model-registry"
    queue = state.find_queue(entity, queue_project, launch["queue"])
    if queue is None:
        raise StateError(f"run queue {launch['queue']} not found in {entity}/{queue_project}")
    spec = _json(launch.get("run_spec"), "launchScheduler.run_spec")
    if not isinstance(spec, dict):
        raise StateError("launchScheduler.run_spec must be a JSON object")
    state.push(queue, _replace_placeholder(spec, name), template_values=values)


def find_sweep(state: EmulatorState, entity: str, project: str | None, name: str) -> Sweep | None:
    with state.lock:
        if project:
            return state.sweeps.find(entity, project, name)
        found = [s for s in state.sweeps.sweeps.values() if (s.entity, s.name) == (entity, name)]
        return found[0] if len(found) == 1 else None


def create_agent(state: EmulatorState, user_entity: str, inp: dict[str, Any]) -> SweepAgent:
    with state.lock:
        entity = inp.get("entityName") or user_entity
        sweep = find_sweep(state, entity, inp.get("projectName"), inp["sweep"])
        if sweep is None:
            raise StateError(f"sweep {entity}/{inp.get('projectName') or '?'}/{inp['sweep']} not found")
        store = state.sweeps
        now = state.now()
        agent = SweepAgent(id=store.next_id("Agent"), sweep_id=sweep.id, host=inp["host"], created_at=now,
                           heartbeat_at=now)
        store.agents[agent.id] = agent
        if sweep.state == "PENDING":
            store.set_state(sweep, "RUNNING")
        sweep.heartbeat_at = now
        store.save()
        return agent


def _run_done(state: EmulatorState, sweep: Sweep, run_name: str) -> bool:
    run = state.get_run(sweep.entity, sweep.project, run_name)
    if run is not None and run.state in TERMINAL_RUN_STATES:
        return True
    return any(item.state == "FAILED" and item.run_spec.get("run_id") == run_name
               and item.run_spec.get("sweep_id") == sweep.name for item in state.items.values())


def settle(state: EmulatorState, sweep: Sweep) -> None:
    """A running sweep with every run handed out and ended becomes FINISHED."""
    with state.lock:
        if sweep.state != "RUNNING":
            return
        expected = sweep_search.expected_runs(parse_config(sweep.config))
        if expected is None or len(sweep.issued) < expected:
            return
        if all(_run_done(state, sweep, entry["run"]) for entry in sweep.issued):
            state.sweeps.set_state(sweep, "FINISHED")
            state.sweeps.save()


def heartbeat(state: EmulatorState, inp: dict[str, Any]) -> tuple[SweepAgent, list[dict[str, Any]]]:
    with state.lock:
        store = state.sweeps
        agent = store.agents.get(inp["id"])
        if agent is None:
            raise StateError(f"sweep agent {inp['id']} not found")
        run_state = _json(inp.get("runState"), "runState") or {}
        if not isinstance(run_state, dict):
            raise StateError("runState must be a JSON object of run ids")
        sweep = store.sweeps[agent.sweep_id]
        now = state.now()
        agent.heartbeat_at = sweep.heartbeat_at = now
        agent.heartbeats += 1
        settle(state, sweep)
        commands: list[dict[str, Any]] = []
        if sweep.state in ("CANCELED", "CRASHED"):
            commands = [{"type": "exit"}]
        elif sweep.state == "RUNNING":
            suggested = _next_run(state, sweep, agent)
            if suggested is not None:
                commands = [suggested]
        store.save()
        return agent, commands


def _next_run(state: EmulatorState, sweep: Sweep, agent: SweepAgent) -> dict[str, Any] | None:
    config = parse_config(sweep.config)
    cap = sweep_search.run_cap(config)
    if cap is not None and len(sweep.issued) >= cap:
        return None
    try:
        args = next(iter(sweep_search.suggestions(config, sweep.seed, len(sweep.issued))), None)
    except sweep_search.SearchError as exc:
        raise StateError(f"sweep {sweep.name}: {exc}") from None
    if args is None:
        return None
    run_id = _new_run_id(state, sweep.entity, sweep.project)
    state.upsert_run(sweep.entity, sweep.project, run_id, state="pending", config=args, sweep=sweep.name)
    sweep.issued.append({"run": run_id, "agent": agent.id, "args": args})
    return {"type": "run", "run_id": run_id, "args": args, "program": config.get("program"), "logs": []}


# --- views and resolvers --------------------------------------------------------------------


def sweep_view(state: EmulatorState, sweep: Sweep) -> dict[str, Any]:
    settle(state, sweep)
    config = parse_config(sweep.config)

    def runs(info: GraphQLResolveInfo, first: int | None = None, after: str | None = None,
             order: str | None = None) -> dict[str, Any]:
        from localenv.wandb_emulator.resolvers import run_view

        found = [state.get_run(sweep.entity, sweep.project, e["run"]) for e in sweep.issued]
        found += [r for r in state.runs.values() if r.sweep == sweep.name and r.name not in
                  {e["run"] for e in sweep.issued}]
        return {"edges": [{"node": run_view(state, r)} for r in found if r is not None]}

    def project(info: GraphQLResolveInfo) -> dict[str, Any] | None:
        from localenv.wandb_emulator.resolvers import project_view

        found = state.get_project(sweep.entity, sweep.project)
        return project_view(state, found) if found is not None else None

    return {
        "id": sweep.id,
        "name": sweep.name,
        "displayName": sweep.display_name,
        "method": sweep_search.method_of(config),
        "state": sweep.state,
        "description": sweep.description,
        "config": sweep.config,
        "createdAt": iso(sweep.created_at),
        "updatedAt": iso(sweep.updated_at),
        "heartbeatAt": iso(sweep.heartbeat_at),
        "earlyStopJobRunning": False,
        "bestLoss": None,
        "controller": sweep.controller,
        "scheduler": sweep.scheduler,
        "runCount": len(sweep.issued),
        "runCountExpected": sweep_search.expected_runs(config),
        "runs": runs,
        "project": project,
    }


def project_fields(state: EmulatorState, project: Project) -> dict[str, Any]:
    def sweep(info: GraphQLResolveInfo, sweepName: str) -> dict[str, Any] | None:
        found = state.sweeps.find(project.entity, project.name, sweepName)
        return sweep_view(state, found) if found is not None else None

    return {"sweep": sweep}


def run_fields(state: EmulatorState, run: Run) -> dict[str, Any]:
    return {
        "sweepName": run.sweep,
        "exitcode": run.exit_code,
        "shouldStop": False,
        "failed": run.state in ("failed", "crashed"),
        "running": run.state == "running",
        "sampledHistory": lambda info, specs, packVersion=None: [[] for _ in specs],
    }


def _agent_view(agent: SweepAgent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.id, "host": agent.host, "createdAt": iso(agent.created_at),
            "heartbeatAt": iso(agent.heartbeat_at)}


def m_upsert_sweep(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    sweep, inserted, problems = upsert_sweep(ctx.state, ctx.user.entity, input)
    return {"sweep": sweep_view(ctx.state, sweep), "inserted": inserted, "configValidationWarnings": problems}


def m_create_agent(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    return {"agent": _agent_view(create_agent(ctx.state, ctx.user.entity, input))}


def m_agent_heartbeat(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    agent, commands = heartbeat(_ctx(info).state, input)
    return {"agent": _agent_view(agent), "commands": json.dumps(commands)}


MUTATION_RESOLVERS = {
    "upsertSweep": m_upsert_sweep,
    "createAgent": m_create_agent,
    "agentHeartbeat": m_agent_heartbeat,
}


# --- admin ----------------------------------------------------------------------------------


def sweep_json(state: EmulatorState, sweep: Sweep) -> dict[str, Any]:
    settle(state, sweep)
    doc = asdict(sweep)
    doc["parsed_config"] = parse_config(sweep.config)
    doc["runs"] = []
    for entry in sweep.issued:
        run = state.get_run(sweep.entity, sweep.project, entry["run"])
        doc["runs"].append({**entry, "state": run.state if run else None})
    doc["agents"] = [asdict(a) for a in state.sweeps.agents.values() if a.sweep_id == sweep.id]
    return doc


def admin(state: EmulatorState, method: str, rest: list[str], body: dict[str, Any]) -> Any:
    """``GET sweeps``, ``GET sweeps/<entity>/<project>/<name>``, ``POST`` the same with ``{state}``."""
    with state.lock:
        if not rest:
            return [sweep_json(state, s) for s in state.sweeps.sweeps.values()]
        if len(rest) != 3:
            raise StateError("sweep routes are sweeps/<entity>/<project>/<name>")
        sweep = state.sweeps.find(*rest)
        if sweep is None:
            raise StateError(f"sweep {'/'.join(rest)} not found")
        if method == "POST" and "state" in body:
            if body["state"] not in SWEEP_STATES:
                raise StateError(f"sweep state {body['state']!r} is not one of {', '.join(SWEEP_STATES)}")
            state.sweeps.set_state(sweep, body["state"])
            state.sweeps.save()
        return sweep_json(state, sweep)
