"""The emulator's data: entities, queues, items, launch agents, runs and uploaded files.

One `EmulatorState` holds everything behind one re-entrant lock; every public method takes
the lock, so GraphQL resolvers and admin handlers running on different threads see a
consistent view. When a state file is given, every change is written to it (atomically) and
read back at start, so an emulator restart keeps queues, items, agents and runs.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localenv.wandb_emulator.artifact_store import ArtifactStore
from localenv.wandb_emulator.errors import StateError
from localenv.wandb_emulator.queue_config import QueueConfigError, merge_run_spec
from localenv.wandb_emulator.sweep_store import SweepStore, storage_id_path

LAUNCH_PROJECT = "model-registry"
ITEM_STATES = ("PENDING", "CLAIMED", "LEASED", "FAILED", "FINISHED")
TERMINAL_RUN_STATES = frozenset({"finished", "failed", "crashed", "killed"})
DEFAULT_PRIORITY = 2
STATE_FILE_VERSION = 1


def encode_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}:{number}".encode()).decode()


def new_api_key() -> str:
    """A key in the format the W&B SDK accepts: a prefix, a dash and 40+ word characters."""
    return "local-" + secrets.token_hex(20)


@dataclass
class User:
    username: str
    entity: str
    email: str = ""


@dataclass
class Entity:
    name: str
    is_team: bool = False
    id: str = ""


@dataclass
class Project:
    entity: str
    name: str
    id: str = ""


@dataclass
class ResourceConfig:
    id: str
    entity: str
    resource: str
    config: dict[str, Any]
    template_variables: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Queue:
    id: str
    entity: str
    project: str
    name: str
    access: str = "PROJECT"
    created_by: str = ""
    prioritization_mode: str | None = None
    resource_config_id: str | None = None
    external_links: dict[str, Any] | None = None


@dataclass
class Item:
    id: str
    queue_id: str
    run_spec: dict[str, Any]
    seq: int
    priority: int = DEFAULT_PRIORITY
    created_at: float = 0.0
    state: str = "PENDING"
    claimed_by_user: str | None = None
    claimed_by_agent: str | None = None
    claimed_at: float | None = None
    claim_count: int = 0
    acked_at: float | None = None
    associated_run_id: str | None = None
    error: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # Every failRunQueueItem and ackRunQueueItem call for this item, accepted or not, so tests
    # can count a second report instead of reading only the first one's effect.
    reports: list[dict[str, Any]] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Agent:
    id: str
    name: str
    entity: str
    project: str
    queue_ids: list[str]
    hostname: str
    version: str | None = None
    config: dict[str, Any] | None = None
    status: str = "POLLING"
    stop_polling: bool = False
    created_at: float = 0.0
    heartbeat_at: float = 0.0
    status_history: list[str] = field(default_factory=list)


@dataclass
class Run:
    id: str
    entity: str
    project: str
    name: str
    state: str = "pending"
    stopped: bool = False
    display_name: str | None = None
    job_type: str | None = None
    config: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    exit_code: int | None = None
    sweep: str | None = None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


class EmulatorState:
    """All emulator data, guarded by one lock and optionally persisted to a JSON file."""

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        claim_timeout: float = 60.0,
        auto_init_on_ack: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.RLock()
        self._state_file = state_file
        self._clock = clock
        self.claim_timeout = claim_timeout
        self.auto_init_on_ack = auto_init_on_ack
        self._clear()
        if state_file is not None and state_file.exists():
            self._load(state_file)

    # --- bookkeeping ---------------------------------------------------------------------

    def _clear(self) -> None:
        self._counter = 0
        self.users: dict[str, User] = {}
        self.entities: dict[str, Entity] = {}
        self.projects: dict[tuple[str, str], Project] = {}
        self.resource_configs: dict[str, ResourceConfig] = {}
        self.queues: dict[str, Queue] = {}
        self.items: dict[str, Item] = {}
        self.agents: dict[str, Agent] = {}
        self.runs: dict[tuple[str, str, str], Run] = {}
        self.files: dict[str, bytes] = {}
        self.artifacts = ArtifactStore(self._next, self.now, self._save)
        self.sweeps = SweepStore(self._next, self.now, self._save)
        # Indexes, so that pops and claim expiry do not scan every item ever pushed.
        self._pending: dict[str, dict[str, None]] = {}
        self._claimed: dict[str, None] = {}

    def _reindex(self) -> None:
        self._pending = {}
        self._claimed = {}
        for item in sorted(self.items.values(), key=lambda i: i.seq):
            if item.state == "PENDING":
                self._pending.setdefault(item.queue_id, {})[item.id] = None
            elif item.state == "CLAIMED":
                self._claimed[item.id] = None

    def _next(self, kind: str) -> str:
        self._counter += 1
        return encode_id(kind, self._counter)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def now(self) -> float:
        return self._clock()

    def _save(self) -> None:
        if self._state_file is None:
            return
        doc = {
            "version": STATE_FILE_VERSION,
            "counter": self._counter,
            "claim_timeout": self.claim_timeout,
            # The first API key, for tools that read a ready key from this file.
            "api_key": next(iter(self.users), None),
            "users": {key: asdict(u) for key, u in self.users.items()},
            "entities": [asdict(e) for e in self.entities.values()],
            "projects": [asdict(p) for p in self.projects.values()],
            "resource_configs": [asdict(c) for c in self.resource_configs.values()],
            "queues": [asdict(q) for q in self.queues.values()],
            "items": [asdict(i) for i in self.items.values()],
            "agents": [asdict(a) for a in self.agents.values()],
            "runs": [asdict(r) for r in self.runs.values()],
            "files": {name: base64.b64encode(data).decode() for name, data in self.files.items()},
            "artifacts": self.artifacts.dump(),
            "sweeps": self.sweeps.dump(),
        }
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._state_file.parent, prefix=".emulator-state-")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self._state_file)

    def _load(self, path: Path) -> None:
        doc = json.loads(path.read_text())
        if doc.get("version") != STATE_FILE_VERSION:
            raise ValueError(f"{path}: unsupported emulator state version {doc.get('version')!r}")
        self._counter = doc["counter"]
        self.users = {key: User(**u) for key, u in doc["users"].items()}
        self.entities = {e["name"]: Entity(**e) for e in doc["entities"]}
        self.projects = {(p["entity"], p["name"]): Project(**p) for p in doc["projects"]}
        self.resource_configs = {c["id"]: ResourceConfig(**c) for c in doc["resource_configs"]}
        self.queues = {q["id"]: Queue(**q) for q in doc["queues"]}
        self.items = {i["id"]: Item(**i) for i in doc["items"]}
        self.agents = {a["id"]: Agent(**a) for a in doc["agents"]}
        self.runs = {(r["entity"], r["project"], r["name"]): Run(**r) for r in doc["runs"]}
        self.files = {name: base64.b64decode(data) for name, data in doc["files"].items()}
        self.artifacts.load(doc.get("artifacts", {}))
        self.sweeps.load(doc.get("sweeps", {}))
        self._reindex()

    def reset(self) -> None:
        """Forget everything except the API keys and their users' entities."""
        with self._lock:
            users = self.users
            self._clear()
            for key, user in users.items():
                self.users[key] = user
                self._ensure_entity(user.entity)
            self._save()

    # --- users, entities, projects -------------------------------------------------------

    def add_user(self, api_key: str, username: str, entity: str | None = None) -> User:
        with self._lock:
            user = User(username=username, entity=entity or username, email=f"{username}@localhost")
            self.users[api_key] = user
            self._ensure_entity(user.entity)
            self._save()
            return user

    def user_for_key(self, api_key: str) -> User | None:
        with self._lock:
            return self.users.get(api_key)

    def _ensure_entity(self, name: str, is_team: bool = False) -> Entity:
        entity = self.entities.get(name)
        if entity is None:
            entity = Entity(name=name, is_team=is_team, id=self._next("Entity"))
            self.entities[name] = entity
            self._ensure_project(name, LAUNCH_PROJECT)
        return entity

    def _ensure_project(self, entity: str, name: str) -> Project:
        key = (entity, name)
        project = self.projects.get(key)
        if project is None:
            project = Project(entity=entity, name=name, id=self._next("Project"))
            self.projects[key] = project
        return project

    def ensure_entity(self, name: str, is_team: bool = False) -> Entity:
        with self._lock:
            entity = self._ensure_entity(name, is_team)
            entity.is_team = is_team
            self._save()
            return entity

    def get_entity(self, name: str | None) -> Entity | None:
        with self._lock:
            return self.entities.get(name or "")

    def get_project(self, entity: str | None, name: str | None) -> Project | None:
        with self._lock:
            return self.projects.get((entity or "", name or ""))

    def ensure_project(self, entity: str, name: str) -> Project:
        with self._lock:
            if entity not in self.entities:
                raise StateError(f"entity {entity} not found")
            project = self._ensure_project(entity, name)
            self._save()
            return project

    # --- queues --------------------------------------------------------------------------

    def create_resource_config(
        self, entity: str, resource: str, config: dict[str, Any], template_variables: dict[str, Any] | None = None
    ) -> ResourceConfig:
        with self._lock:
            if entity not in self.entities:
                raise StateError(f"entity {entity} not found")
            rc = ResourceConfig(
                id=self._next("DefaultResourceConfig"),
                entity=entity,
                resource=resource,
                config=config,
                template_variables=dict(template_variables or {}),
            )
            self.resource_configs[rc.id] = rc
            self._save()
            return rc

    def find_queue(self, entity: str | None, project: str | None, name: str | None) -> Queue | None:
        with self._lock:
            for queue in self.queues.values():
                if (queue.entity, queue.project, queue.name) == (entity, project, name):
                    return queue
            return None

    def project_queues(self, entity: str, project: str) -> list[Queue]:
        with self._lock:
            return [q for q in self.queues.values() if (q.entity, q.project) == (entity, project)]

    def create_queue(
        self,
        entity: str,
        project: str,
        name: str,
        *,
        access: str = "PROJECT",
        created_by: str = "",
        prioritization_mode: str | None = None,
        resource_config_id: str | None = None,
        external_links: dict[str, Any] | None = None,
    ) -> Queue:
        with self._lock:
            if entity not in self.entities:
                raise StateError(f"entity {entity} not found")
            if not name or len(name) > 64:
                raise StateError("queue name must be 1 to 64 characters")
            if self.find_queue(entity, project, name) is not None:
                raise StateError(f"run queue {name} already exists in {entity}/{project}")
            if resource_config_id is not None and resource_config_id not in self.resource_configs:
                raise StateError(f"default resource config {resource_config_id} not found")
            self._ensure_project(entity, project)
            queue = Queue(
                id=self._next("RunQueue"),
                entity=entity,
                project=project,
                name=name,
                access=access,
                created_by=created_by or entity,
                prioritization_mode=prioritization_mode,
                resource_config_id=resource_config_id,
                external_links=external_links,
            )
            self.queues[queue.id] = queue
            self._save()
            return queue

    def upsert_queue(
        self,
        entity: str,
        project: str,
        name: str,
        resource: str,
        config: dict[str, Any],
        template_variables: dict[str, Any] | None = None,
        prioritization_mode: str | None = None,
        external_links: dict[str, Any] | None = None,
        created_by: str = "",
    ) -> Queue:
        """Create or replace a queue together with its default resource config."""
        with self._lock:
            rc = self.create_resource_config(entity, resource, config, template_variables)
            queue = self.find_queue(entity, project, name)
            if queue is None:
                return self.create_queue(
                    entity,
                    project,
                    name,
                    created_by=created_by,
                    prioritization_mode=prioritization_mode,
                    resource_config_id=rc.id,
                    external_links=external_links,
                )
            queue.resource_config_id = rc.id
            if prioritization_mode is not None:
                queue.prioritization_mode = prioritization_mode
            if external_links is not None:
                queue.external_links = external_links
            self._save()
            return queue

    def delete_queues(self, queue_ids: list[str]) -> bool:
        with self._lock:
            if any(qid not in self.queues for qid in queue_ids):
                return False
            for qid in queue_ids:
                del self.queues[qid]
                for item_id in [i.id for i in self.items.values() if i.queue_id == qid]:
                    del self.items[item_id]
            self._reindex()
            self._save()
            return True

    # --- items ---------------------------------------------------------------------------

    def _expire_claims(self) -> None:
        deadline = self.now() - self.claim_timeout
        for item_id in list(self._claimed):
            item = self.items.get(item_id)
            if item is None or item.state != "CLAIMED":
                del self._claimed[item_id]
            elif item.claimed_at is not None and item.claimed_at <= deadline:
                del self._claimed[item_id]
                item.state = "PENDING"
                item.claimed_by_user = None
                item.claimed_by_agent = None
                item.claimed_at = None
                pending = self._pending.setdefault(item.queue_id, {})
                pending[item.id] = None

    def push(
        self,
        queue: Queue,
        run_spec: dict[str, Any],
        *,
        priority: int | None = None,
        template_values: dict[str, Any] | None = None,
    ) -> Item:
        with self._lock:
            rc = self.resource_configs.get(queue.resource_config_id or "")
            try:
                spec = merge_run_spec(
                    run_spec,
                    rc.resource if rc else None,
                    rc.config if rc else None,
                    rc.template_variables if rc else None,
                    template_values,
                )
            except QueueConfigError as exc:
                raise StateError(str(exc)) from exc
            if priority is not None and not 0 <= priority <= 4:
                raise StateError("priority must be between 0 (highest) and 4 (lowest)")
            self._counter += 1
            item = Item(
                id=encode_id("RunQueueItem", self._counter),
                queue_id=queue.id,
                run_spec=spec,
                seq=self._counter,
                priority=DEFAULT_PRIORITY if priority is None else priority,
                created_at=self.now(),
            )
            self.items[item.id] = item
            self._pending.setdefault(queue.id, {})[item.id] = None
            self._save()
            return item

    def pop(self, queue: Queue, user: User, agent_id: str | None) -> Item | None:
        with self._lock:
            if agent_id is not None and agent_id not in self.agents:
                raise StateError(f"launch agent {agent_id} not found")
            self._expire_claims()
            pending = [self.items[i] for i in self._pending.get(queue.id, {})]
            if not pending:
                return None
            if queue.prioritization_mode == "V0":
                item = min(pending, key=lambda i: (i.priority, i.seq))
            else:
                item = min(pending, key=lambda i: i.seq)
            del self._pending[queue.id][item.id]
            self._claimed[item.id] = None
            item.state = "CLAIMED"
            item.claimed_by_user = user.username
            item.claimed_by_agent = agent_id
            item.claimed_at = self.now()
            item.claim_count += 1
            if agent_id is not None:
                self.agents[agent_id].heartbeat_at = self.now()
            self._save()
            return item

    def get_item(self, item_id: str) -> Item | None:
        with self._lock:
            self._expire_claims()
            return self.items.get(item_id)

    def queue_items(self, queue_id: str) -> list[Item]:
        with self._lock:
            self._expire_claims()
            return sorted((i for i in self.items.values() if i.queue_id == queue_id), key=lambda i: i.seq)

    def ack(self, item_id: str, user: User, run_name: str) -> bool:
        with self._lock:
            self._expire_claims()
            item = self.items.get(item_id)
            accepted = item is not None and item.state == "CLAIMED" and item.claimed_by_user == user.username
            if item is not None:
                item.acks.append({"runName": run_name, "accepted": accepted, "at": self.now()})
            if item is None or not accepted:
                if item is not None:
                    self._save()
                return False
            item.state = "LEASED"
            item.acked_at = self.now()
            item.associated_run_id = run_name
            entity = str(item.run_spec.get("entity") or self.queues[item.queue_id].entity)
            project = str(item.run_spec.get("project") or "uncategorized")
            if entity in self.entities:
                self._ensure_project(entity, project)
                key = (entity, project, run_name)
                if key not in self.runs:
                    state = "running" if self.auto_init_on_ack else "pending"
                    self.runs[key] = Run(id=self._next("Run"), entity=entity, project=project, name=run_name, state=state)
            self._save()
            return True

    def fail(self, item_id: str, message: str, stage: str, file_paths: list[str] | None) -> bool:
        with self._lock:
            self._expire_claims()
            item = self.items.get(item_id)
            accepted = item is not None and item.state in ("CLAIMED", "LEASED")
            if item is not None:
                item.reports.append({"kind": "fail", "message": message, "stage": stage, "accepted": accepted,
                                     "at": self.now()})
            if item is None or not accepted:
                if item is not None:
                    self._save()
                return False
            item.state = "FAILED"
            item.error = {"message": message, "stage": stage, "filePaths": list(file_paths or [])}
            self._save()
            return True

    def warn(self, item_id: str, message: str, stage: str, file_paths: list[str] | None) -> bool:
        with self._lock:
            item = self.items.get(item_id)
            if item is None:
                return False
            item.warnings.append({"message": message, "stage": stage, "filePaths": list(file_paths or [])})
            self._save()
            return True

    def delete_item(self, queue_id: str, item_id: str) -> bool:
        with self._lock:
            item = self.items.get(item_id)
            if item is None or item.queue_id != queue_id:
                return False
            del self.items[item_id]
            self._pending.get(queue_id, {}).pop(item_id, None)
            self._claimed.pop(item_id, None)
            self._save()
            return True

    # --- launch agents -------------------------------------------------------------------

    def create_agent(
        self,
        entity: str,
        project: str,
        queue_ids: list[str],
        hostname: str,
        config: dict[str, Any] | None,
        version: str | None,
    ) -> Agent:
        with self._lock:
            if entity not in self.entities:
                raise StateError(f"entity {entity} not found")
            missing = [qid for qid in queue_ids if qid not in self.queues]
            if missing:
                raise StateError(f"run queue(s) not found: {', '.join(missing)}")
            agent = Agent(
                id=self._next("LaunchAgent"),
                # Label-safe (DNS-1123, well under 63 characters) because agents use it as a
                # Kubernetes label value and as their own run id.
                name="agent-" + secrets.token_hex(6),
                entity=entity,
                project=project,
                queue_ids=list(queue_ids),
                hostname=hostname,
                version=version,
                config=config,
                created_at=self.now(),
                heartbeat_at=self.now(),
            )
            self.agents[agent.id] = agent
            self._save()
            return agent

    def get_agent(self, agent_id: str) -> Agent | None:
        with self._lock:
            return self.agents.get(agent_id)

    def update_agent(self, agent_id: str, status: str | None) -> bool:
        with self._lock:
            agent = self.agents.get(agent_id)
            if agent is None:
                return False
            if status is not None:
                agent.status = status
                agent.status_history.append(status)
                del agent.status_history[:-100]
            agent.heartbeat_at = self.now()
            self._save()
            return True

    def set_stop_polling(self, agent_id: str, stop: bool) -> Agent:
        with self._lock:
            agent = self.agents.get(agent_id)
            if agent is None:
                raise StateError(f"launch agent {agent_id} not found")
            agent.stop_polling = stop
            self._save()
            return agent

    def touch_agent(self, agent_id: str) -> None:
        with self._lock:
            agent = self.agents.get(agent_id)
            if agent is not None:
                agent.heartbeat_at = self.now()

    # --- runs and files ------------------------------------------------------------------

    def get_run(self, entity: str | None, project: str | None, name: str | None) -> Run | None:
        with self._lock:
            return self.runs.get((entity or "", project or "", name or ""))

    def upsert_run(
        self,
        entity: str,
        project: str,
        name: str,
        *,
        state: str | None = None,
        display_name: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        sweep: str | None = None,
    ) -> tuple[Run, bool]:
        """Create or update a run; a newly created run is running unless a state is given."""
        with self._lock:
            if entity not in self.entities:
                raise StateError(f"entity {entity} not found")
            self._ensure_project(entity, project)
            key = (entity, project, name)
            run = self.runs.get(key)
            inserted = run is None
            if run is None:
                run = Run(id=self._next("Run"), entity=entity, project=project, name=name, state="running")
                self.runs[key] = run
            elif run.state == "pending":
                # A run that calls wandb.init moves out of the pending state created by the ack.
                run.state = "running"
            if state:
                run.state = state
            if display_name is not None:
                run.display_name = display_name
            if job_type is not None:
                run.job_type = job_type
            if config is not None:
                run.config = config
            if tags is not None:
                run.tags = list(tags)
            if sweep:
                run.sweep = sweep
            self._finish_items_of(run)
            self._save()
            return run, inserted

    def set_run_state(self, entity: str, project: str, name: str, state: str) -> Run:
        run, _ = self.upsert_run(entity, project, name, state=state)
        return run

    def set_run_stopped(self, entity: str, project: str, name: str, stopped: bool = True) -> Run:
        with self._lock:
            run = self.runs.get((entity, project, name))
            if run is None:
                raise StateError(f"run {entity}/{project}/{name} not found")
            run.stopped = stopped
            self._save()
            return run

    def stop_run_by_id(self, run_id: str) -> bool:
        """Stop a run by its id: ours, or W&B's storage id (base64 ``Run:v1:<run>:<project>:<entity>``)."""
        with self._lock:
            path = storage_id_path(run_id)
            for key, run in self.runs.items():
                if run.id == run_id or key == path:
                    run.stopped = True
                    self._save()
                    return True
            return False

    def finish_run(self, entity: str, project: str, name: str, exit_code: int) -> None:
        with self._lock:
            run = self.runs.get((entity, project, name))
            if run is None:
                return
            run.exit_code = exit_code
            run.state = "finished" if exit_code == 0 else "failed"
            self._finish_items_of(run)
            self._save()

    def _finish_items_of(self, run: Run) -> None:
        if run.state not in TERMINAL_RUN_STATES:
            return
        for item in self.items.values():
            if item.state != "LEASED" or item.associated_run_id != run.name:
                continue
            entity = item.run_spec.get("entity") or self.queues[item.queue_id].entity
            if (entity, item.run_spec.get("project")) == (run.entity, run.project):
                item.state = "FINISHED"

    def delete_run_by_id(self, run_id: str) -> bool:
        with self._lock:
            found = [key for key, run in self.runs.items() if run.id == run_id]
            for key in found:
                del self.runs[key]
            self._save()
            return bool(found)

    def put_file(self, path: str, data: bytes) -> None:
        with self._lock:
            self.files[path] = data
            self._save()

    def get_file(self, path: str) -> bytes | None:
        with self._lock:
            return self.files.get(path)

    def list_files(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(p for p in self.files if p.startswith(prefix))
