"""The Kubernetes side: one authenticated connection (lightkube's kubeconfig / in-cluster loader),
API discovery for plural and scope, create/get/patch/delete/list/watch on plain dicts, and the
rules this identity holds (SelfSubjectRulesReview).

Creation is idempotent: object names are deterministic per run-queue item, so `409 AlreadyExists`
means "already launched" and returns the existing object. At most `max_concurrency` requests are
in flight at once (watches are not counted).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


PODS = ResourceType("", "v1", "Pod", "pods")
JOBS = ResourceType("batch", "v1", "Job", "jobs")
EVENTS = ResourceType("", "v1", "Event", "events")
LEASES = ResourceType("coordination.k8s.io", "v1", "Lease", "leases")
CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps")


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpired(Exception):
    """410 Gone: the resourceVersion is too old; re-list."""


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def _error(resp: httpx.Response) -> KubeError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    return KubeError(resp.status_code, str(body.get("reason") or resp.reason_phrase),
                     str(body.get("message") or ""))


class Kube:
    def __init__(self, http: httpx.AsyncClient, namespace: str = "default",
                 observe: Callable[[str, float], None] | None = None, max_concurrency: int = 16) -> None:
        self._http = http
        self.default_namespace = namespace
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._groups: dict[str, str] = {}
        self.observe = observe
        self._limit = asyncio.Semaphore(max(1, max_concurrency))

    async def _send(self, verb: str, method: str, path: str, **kw: Any) -> httpx.Response:
        async with self._limit:
            started = time.monotonic()
            try:
                return await self._http.request(method, path, **kw)
            finally:
                if self.observe is not None:
                    self.observe(verb, time.monotonic() - started)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, timeout: float = 30.0, max_concurrency: int = 16) -> Kube:
        config = KubeConfig.from_file(kubeconfig).get() if kubeconfig else KubeConfig.from_env().get()
        params = client_adapter.ConnectionParams(timeout=httpx.Timeout(timeout))
        http = client_adapter.AsyncClient(config, params)
        return cls(http, config.namespace or "default", max_concurrency=max_concurrency)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def resolve(self, api_version: str, kind: str) -> ResourceType:
        """Plural and scope of a kind from the API server's discovery document."""
        cached = self._types.get((api_version, kind))
        if cached:
            return cached
        group, version = split_api_version(api_version)
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        resp = await self._send("discover", "GET", path)
        if resp.status_code == 404:
            raise KubeError(404, "NotFound", f"API {api_version} is not served by this cluster "
                                             f"(is the CRD for {kind} installed?)")
        if resp.status_code != 200:
            raise _error(resp)
        for res in resp.json().get("resources", []):
            if res.get("kind") == kind and "/" not in res.get("name", ""):
                rt = ResourceType(group, version, kind, res["name"], bool(res.get("namespaced")))
                self._types[(api_version, kind)] = rt
                return rt
        raise KubeError(404, "NotFound", f"kind {kind} is not served under {api_version} by this cluster")

    async def create(self, obj: dict[str, Any], *, read_existing: bool = True) -> tuple[dict[str, Any], bool]:
        """Create; returns (object, created). An existing object of that name is (existing, False), or
        (obj, False) without reading it when `read_existing` is False (kinds the agent may not get)."""
        rt = await self.resolve(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or self.default_namespace
        resp = await self._send("create", "POST", rt.path(ns), content=json.dumps(obj),
                                headers={"Content-Type": "application/json"})
        if resp.status_code in (200, 201, 202):
            return resp.json(), True
        if resp.status_code == 409 and not read_existing and _error(resp).reason == "AlreadyExists":
            return obj, False
        if resp.status_code == 409:
            existing = await self.get(rt, ns, meta["name"])
            if existing is not None:
                return existing, False
        raise _error(resp)

    async def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        resp = await self._send("get", "GET", rt.path(namespace, name))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise _error(resp)
        return resp.json()

    async def patch(self, rt: ResourceType, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch; None when the object is gone. A `metadata.resourceVersion` in *body*
        makes it conditional (409 when the object changed meanwhile)."""
        resp = await self._send("patch", "PATCH", rt.path(namespace, name), content=json.dumps(body),
                                headers={"Content-Type": "application/merge-patch+json"})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise _error(resp)
        result: dict[str, Any] = resp.json()
        return result

    async def preferred_version(self, group: str) -> str:
        """The preferred version of an API group ('' when the group is not served)."""
        if group in self._groups:
            return self._groups[group]
        resp = await self._send("discover", "GET", f"/apis/{group}")
        version = ""
        if resp.status_code == 200:
            version = str(((resp.json().get("preferredVersion") or {}).get("version")) or "")
        elif resp.status_code != 404:
            raise _error(resp)
        self._groups[group] = version
        return version

    async def kind_of(self, group: str, plural: str) -> ResourceType | None:
        """The resource type of `plural` in `group` at its preferred version, or None."""
        version = await self.preferred_version(group) if group else "v1"
        if not version:
            return None
        path = f"/apis/{group}/{version}" if group else "/api/v1"
        resp = await self._send("discover", "GET", path)
        if resp.status_code != 200:
            return None
        for res in resp.json().get("resources", []):
            if res.get("name") == plural:
                rt = ResourceType(group, version, str(res.get("kind")), plural, bool(res.get("namespaced")))
                self._types[(rt.api_version, rt.kind)] = rt
                return rt
        return None

    async def rules(self, namespace: str) -> list[dict[str, Any]]:
        """The resource rules this identity holds in *namespace* (SelfSubjectRulesReview)."""
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": namespace}}
        resp = await self._send("review", "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                content=json.dumps(body), headers={"Content-Type": "application/json"})
        if resp.status_code not in (200, 201):
            raise _error(resp)
        return list((resp.json().get("status") or {}).get("resourceRules") or [])

    async def delete(self, rt: ResourceType, namespace: str, name: str) -> bool:
        """Delete with background propagation; False when it was already gone (404 is success)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        resp = await self._send("delete", "DELETE", rt.path(namespace, name), content=json.dumps(body),
                                headers={"Content-Type": "application/json"})
        if resp.status_code == 404:
            return False
        if resp.status_code not in (200, 202):
            raise _error(resp)
        return True

    async def list(self, rt: ResourceType, namespace: str | None, selector: str = "",
                   field_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        if selector:
            params["labelSelector"] = selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            resp = await self._send("list", "GET", rt.path(namespace), params=params)
            if resp.status_code != 200:
                raise _error(resp)
            body = resp.json()
            for item in body.get("items") or []:
                item.setdefault("apiVersion", rt.api_version)
                item.setdefault("kind", rt.kind)
                items.append(item)
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items, str((body.get("metadata") or {}).get("resourceVersion") or "")
            params["continue"] = cont

    async def watch(self, rt: ResourceType, namespace: str | None, selector: str, resource_version: str,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events from resource_version until the server closes the stream; 410 raises WatchExpired."""
        params: dict[str, Any] = {"watch": "true", "resourceVersion": resource_version,
                                  "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds}
        if selector:
            params["labelSelector"] = selector
        timeout = httpx.Timeout(30.0, read=timeout_seconds + 30.0)
        async with self._http.stream("GET", rt.path(namespace), params=params, timeout=timeout) as resp:
            if resp.status_code == 410:
                raise WatchExpired()
            if resp.status_code != 200:
                await resp.aread()
                raise _error(resp)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                etype, obj = event.get("type", ""), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired()
                    raise KubeError(int(obj.get("code") or 500), str(obj.get("reason") or ""),
                                    str(obj.get("message") or ""))
                obj.setdefault("apiVersion", rt.api_version)
                obj.setdefault("kind", rt.kind)
                yield etype, obj

    async def pod_log(self, namespace: str, pod: str, container: str = "", tail_lines: int = 200) -> str:
        """The last lines of a container's log ('' when the pod or its log is gone)."""
        params: dict[str, Any] = {"tailLines": tail_lines}
        if container:
            params["container"] = container
        resp = await self._send("log", "GET", PODS.path(namespace, pod) + "/log", params=params)
        return resp.text if resp.status_code == 200 else ""

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      content_type: str = "application/json",
                      timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """A raw call outside the concurrency cap (the lease must never wait behind launches)."""
        kw: dict[str, Any] = {"content": json.dumps(body) if body is not None else None,
                              "headers": {"Content-Type": content_type}}
        if timeout is not None:
            kw["timeout"] = httpx.Timeout(timeout)
        started = time.monotonic()
        try:
            resp = await self._http.request(method, path, **kw)
        finally:
            if self.observe is not None:
                self.observe(method.lower(), time.monotonic() - started)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, {}
