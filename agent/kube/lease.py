"""Leader election on a coordination.k8s.io/v1 Lease: only the holder pops queue items.

The rules are client-go's:
- A candidate never compares the holder's `renewTime` with its own clock. It remembers when it
  last saw the lease record change (its own monotonic clock) and takes over only after the record
  stayed unchanged for `duration` seconds.
- The holder counts its term from the moment it *sent* its last successful renewal, on its own
  monotonic clock, and gives up after `renew_deadline` seconds (< `duration`) without one: each
  renewal attempt is cut off at that deadline, so a hanging API server cannot stretch the term.
  `valid()` turns False at that instant, whatever the renewal loop is doing; the agent checks it
  before every pop. Between the two deadlines (`duration - renew_deadline`) nobody leads.
- Writes carry the resourceVersion they read, so two candidates never both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

from agent.kube.client import LEASES, Kube


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: Kube, *, namespace: str, name: str, identity: str, log: logging.Logger,
                 duration: float = 15.0, renew_deadline: float = 10.0, retry: float = 2.0) -> None:
        if not 0 < renew_deadline < duration:
            raise ValueError("the renew deadline must be shorter than the lease duration")
        self._kube = kube
        self._ns = namespace
        self._name = name
        self.identity = identity
        self._log = log
        self.duration = duration
        self.renew_deadline = renew_deadline
        self._retry = retry
        self._valid_until = 0.0  # monotonic
        self._observed: tuple[str, str] | None = None  # (holder, resourceVersion) last seen
        self._observed_at = 0.0
        self.transitions = 0

    @property
    def is_leader(self) -> bool:
        return self.valid()

    def valid(self) -> bool:
        """True while this process holds a lease it renewed less than `renew_deadline` ago."""
        return time.monotonic() < self._valid_until

    def _path(self) -> str:
        return LEASES.path(self._ns, self._name)

    def _body(self, existing: dict[str, Any] | None, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = _fmt(dt.datetime.now(dt.UTC))
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._ns},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.duration)),
                     "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions},
        }
        if existing is not None:
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return body

    async def try_acquire(self, timeout: float | None = None) -> bool:
        """One attempt to acquire or renew. True when this process holds the lease (and `valid()`
        was extended from the moment the attempt started)."""
        sent = time.monotonic()
        status, lease = await self._kube.request("GET", self._path(), timeout=timeout)
        if status == 404:
            status, _ = await self._kube.request("POST", LEASES.path(self._ns), self._body(None, 0, None),
                                                 timeout=self._left(sent, timeout))
            return self._won(status in (200, 201), sent)
        if status != 200:
            self._log.warning("reading lease %s/%s failed: HTTP %s", self._ns, self._name, status)
            return False
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(lease["metadata"].get("resourceVersion")))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = time.monotonic() - self._observed_at > duration
        if holder not in ("", self.identity) and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        status, written = await self._kube.request("PUT", self._path(), self._body(lease, transitions, acquired),
                                                   timeout=self._left(sent, timeout))
        if status == 200:
            self._observed = (self.identity, str((written.get("metadata") or {}).get("resourceVersion")))
            self._observed_at = time.monotonic()
            self.transitions = transitions
        return self._won(status == 200, sent)

    @staticmethod
    def _left(sent: float, timeout: float | None) -> float | None:
        return None if timeout is None else max(0.1, timeout - (time.monotonic() - sent))

    def _won(self, ok: bool, sent: float) -> bool:
        if ok:
            self._valid_until = sent + self.renew_deadline
        return ok

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Block until this candidate holds the lease (True) or stop is set (False)."""
        while not stop.is_set():
            try:
                if await self.try_acquire(timeout=self.renew_deadline):
                    self._log.info("acquired lease %s/%s as %s", self._ns, self._name, self.identity)
                    return True
            except Exception as exc:
                self._log.warning("lease %s/%s: %s", self._ns, self._name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._retry)
        return False

    async def hold(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """Renew every `retry` seconds until stop; set `lost` the moment the term runs out."""
        while not stop.is_set():
            left = self._valid_until - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(stop.wait(), min(self._retry, left))
                return
            except TimeoutError:
                pass
            left = self._valid_until - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self.try_acquire(timeout=left), left)
            except Exception as exc:  # includes the deadline: the term ends below
                self._log.warning("renewing lease %s/%s failed: %s", self._ns, self._name,
                                  exc or type(exc).__name__)
        if not stop.is_set():
            self._log.error("lost lease %s/%s: no renewal within %gs", self._ns, self._name, self.renew_deadline)
            lost.set()

    async def release(self) -> None:
        """Give the lease up on clean shutdown so a standby takes over at once."""
        if not self.valid():
            return
        self._valid_until = 0.0
        try:
            status, lease = await self._kube.request("GET", self._path(), timeout=5)
            if status == 200 and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                await self._kube.request("PUT", self._path(), lease, timeout=5)
        except Exception as exc:
            self._log.warning("releasing lease failed: %s", exc)
