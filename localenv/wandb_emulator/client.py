"""A small client for the emulator's admin API (and raw GraphQL calls), for tests and the demo.

Stdlib only: ``EmulatorClient(url, api_key)``; see docs/emulator.md for the routes.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode


class AdminCallError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class EmulatorClient:
    """A small client for the admin API plus a raw GraphQL call."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    # --- transport -------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw).get("error", raw.decode())
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise AdminCallError(exc.code, str(message)) from None
        ctype = response.headers.get("Content-Type", "")
        return json.loads(raw) if ctype.startswith("application/json") else raw

    def graphql(self, query: str, variables: dict[str, Any] | None = None, api_key: str | None = None) -> dict[str, Any]:
        """POST one GraphQL request the way W&B clients do (empty operationName, Basic auth)."""
        body = json.dumps({"query": query, "variables": variables or {}, "operationName": ""}).encode()
        request = urllib.request.Request(self.url + "/graphql", data=body, method="POST")
        token = base64.b64encode(f"api:{api_key or self.api_key}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as exc:
            doc: dict[str, Any] = json.loads(exc.read() or b"{}")
            doc["http_status"] = exc.code
            return doc

    def env(self) -> dict[str, str]:
        return {"WANDB_BASE_URL": self.url, "WANDB_API_KEY": self.api_key}

    # --- admin -----------------------------------------------------------------------------

    def health(self) -> bool:
        return bool(self.call("GET", "/_emulator/health").get("ok"))

    def reset(self) -> None:
        self.call("POST", "/_emulator/reset", {})

    def settings(self, *, claim_timeout: float | None = None, auto_init_on_ack: bool | None = None,
                 sweep_seed: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if sweep_seed is not None:
            body["sweepSeed"] = sweep_seed
        if claim_timeout is not None:
            body["claimTimeout"] = claim_timeout
        if auto_init_on_ack is not None:
            body["autoInitOnAck"] = auto_init_on_ack
        result: dict[str, Any] = self.call("PUT", "/_emulator/settings", body)
        return result

    def add_user(self, username: str, entity: str | None = None, api_key: str | None = None) -> str:
        body = {"username": username, "entity": entity, "apiKey": api_key}
        return str(self.call("POST", "/_emulator/users", body)["apiKey"])

    def create_entity(self, name: str, is_team: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/_emulator/entities", {"name": name, "isTeam": is_team})
        return result

    def create_queue(
        self,
        entity: str,
        name: str,
        config: dict[str, Any] | None = None,
        *,
        resource: str = "kubernetes",
        template_variables: dict[str, Any] | None = None,
        prioritization_mode: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "entity": entity,
            "name": name,
            "resource": resource,
            "config": config or {},
            "templateVariables": template_variables,
            "prioritizationMode": prioritization_mode,
        }
        result: dict[str, Any] = self.call("POST", "/_emulator/queues", body)
        return result

    def queues(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/_emulator/queues")
        return result

    def push(
        self,
        entity: str,
        queue: str,
        run_spec: dict[str, Any],
        *,
        priority: int | None = None,
        template_variables: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {"runSpec": run_spec, "priority": priority, "templateVariables": template_variables}
        result: dict[str, Any] = self.call("POST", f"/_emulator/queues/{quote(entity, safe='')}/{quote(queue, safe='')}/items", body)
        return result

    def push_many(self, entity: str, queue: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Push several items in one call; each entry is ``{"runSpec": ..., "priority"?: ...}``."""
        result: list[dict[str, Any]] = self.call(
            "POST", f"/_emulator/queues/{quote(entity, safe='')}/{quote(queue, safe='')}/items", {"items": entries})
        return result

    def items(self, entity: str, queue: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", f"/_emulator/queues/{quote(entity, safe='')}/{quote(queue, safe='')}/items")
        return result

    def item(self, item_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/_emulator/items/{quote(item_id, safe='')}")
        return result

    def agents(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/_emulator/agents")
        return result

    def stop_agent(self, agent_id: str, stop: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"/_emulator/agents/{quote(agent_id, safe='')}/stop-polling", {"stop": stop})
        return result

    def run(self, entity: str, project: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", self._run_path(entity, project, name))
        return result

    def set_run(self, entity: str, project: str, name: str, *, state: str | None = None, stopped: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if state is not None:
            body["state"] = state
        if stopped is not None:
            body["stopped"] = stopped
        result: dict[str, Any] = self.call("POST", self._run_path(entity, project, name), body)
        return result

    @staticmethod
    def _run_path(entity: str, project: str, name: str) -> str:
        return "/_emulator/runs/" + "/".join(quote(p, safe="") for p in (entity, project, name))

    def requests(self, operation: str | None = None) -> list[dict[str, Any]]:
        query = "?" + urlencode({"operation": operation}) if operation else ""
        result: list[dict[str, Any]] = self.call("GET", "/_emulator/requests" + query)
        return result

    def clear_requests(self) -> None:
        self.call("DELETE", "/_emulator/requests")

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = self.call("GET", "/_emulator/counts")
        return result

    def operations(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/_emulator/operations")
        return result

    def add_fault(self, operation: str, kind: str, **rule: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/_emulator/faults", {"operation": operation, "kind": kind, **rule})
        return result

    def clear_faults(self) -> None:
        self.call("DELETE", "/_emulator/faults")

    def files(self, prefix: str = "") -> list[str]:
        result: list[str] = self.call("GET", "/_emulator/files?" + urlencode({"prefix": prefix}))
        return result

    def upload(self, path: str) -> bytes:
        data: bytes = self.call("GET", "/_emulator/uploads/" + quote(path))
        return data

    def sweeps(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/_emulator/sweeps")
        return result

    def sweep(self, entity: str, project: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", self._sweep_path(entity, project, name))
        return result

    def set_sweep_state(self, entity: str, project: str, name: str, state: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", self._sweep_path(entity, project, name), {"state": state})
        return result

    @staticmethod
    def _sweep_path(entity: str, project: str, name: str) -> str:
        return "/_emulator/sweeps/" + "/".join(quote(p, safe="") for p in (entity, project, name))

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/_emulator/state")
        return result

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)
