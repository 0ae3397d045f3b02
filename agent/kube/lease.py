"""Leader election on a coordination.k8s.io/v1 Lease: only the holder pops queue items.

A standby retries every `retry` seconds and takes over once the holder stops renewing for
`duration` seconds. Writes are optimistic (resourceVersion), so two candidates never both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from agent.kube.client import LEASES, Kube


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaderElector:
    def __init__(self, kube: Kube, *, namespace: str, name: str, identity: str, log: logging.Logger,
                 duration: int = 15, renew: float = 5.0, retry: float = 2.0) -> None:
        self._kube = kube
        self._ns = namespace
        self._name = name
        self.identity = identity
        self._log = log
        self.duration = duration
        self._renew = renew
        self._retry = retry
        self.is_leader = False

    def _path(self) -> str:
        return LEASES.path(self._ns, self._name)

    def _body(self, existing: dict[str, Any] | None, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = _fmt(_now())
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._ns},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                     "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions},
        }
        if existing is not None:
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return body

    async def try_acquire(self) -> bool:
        status, lease = await self._kube.request("GET", self._path())
        if status == 404:
            status, _ = await self._kube.request("POST", LEASES.path(self._ns), self._body(None, 0, None))
            return status in (200, 201)
        if status != 200:
            self._log.warning("reading lease %s/%s failed: HTTP %s", self._ns, self._name, status)
            return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        expired = renewed is None or (_now() - renewed).total_seconds() > duration
        if holder not in (None, "", self.identity) and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        status, _ = await self._kube.request("PUT", self._path(), self._body(lease, transitions, acquired))
        return status == 200

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Block until this candidate holds the lease (True) or stop is set (False)."""
        while not stop.is_set():
            try:
                if await self.try_acquire():
                    self.is_leader = True
                    self._log.info("acquired lease %s/%s as %s", self._ns, self._name, self.identity)
                    return True
            except Exception as exc:
                self._log.warning("lease %s/%s: %s", self._ns, self._name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._retry)
        return False

    async def hold(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """Renew until stop; set `lost` when renewal fails for longer than the lease duration."""
        last_ok = asyncio.get_running_loop().time()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._renew)
                break
            except TimeoutError:
                pass
            try:
                ok = await self.try_acquire()
            except Exception:
                ok = False
            now = asyncio.get_running_loop().time()
            if ok:
                last_ok = now
            elif now - last_ok > self.duration - self._renew:
                self._log.error("lost lease %s/%s", self._ns, self._name)
                self.is_leader = False
                lost.set()
                return

    async def release(self) -> None:
        """Give the lease up on clean shutdown so a standby takes over at once."""
        if not self.is_leader:
            return
        try:
            status, lease = await self._kube.request("GET", self._path())
            if status == 200 and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["renewTime"] = _fmt(_now() - dt.timedelta(seconds=self.duration + 1))
                await self._kube.request("PUT", self._path(), lease)
        except Exception as exc:
            self._log.warning("releasing lease failed: %s", exc)
        self.is_leader = False
