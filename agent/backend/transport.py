"""A small async GraphQL client for the W&B API: timeouts, bounded backoff, in-band errors."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from agent import __version__

# Statuses worth retrying; everything else (400, 401, 403, 404, 409, 422, ...) fails at once.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class BackendError(Exception):
    """A W&B API call that failed; `retryable` tells whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class GraphQLClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 20.0, attempts: int = 4,
                 backoff: tuple[float, float] = (0.5, 8.0),
                 observe: Callable[[str, float, bool], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Basic {token}", "User-Agent": f"launch-agent/{__version__}",
                     "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._observe = observe

    async def aclose(self) -> None:
        await self._http.aclose()

    async def execute(self, operation: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run one operation; returns `data`. Retries transport errors and retryable statuses."""
        delay = self._backoff[0]
        last: BackendError | None = None
        for attempt in range(self._attempts):
            started = time.monotonic()
            try:
                data = await self._once(query, variables)
                self._report(operation, started, True)
                return data
            except BackendError as exc:
                self._report(operation, started, False)
                last = exc
                if not exc.retryable or attempt == self._attempts - 1:
                    raise
            await asyncio.sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, self._backoff[1])
        raise last or BackendError(f"{operation}: failed")

    def _report(self, operation: str, started: float, ok: bool) -> None:
        if self._observe is not None:
            self._observe(operation, time.monotonic() - started, ok)

    async def _once(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = {"query": query, "variables": variables, "operationName": ""}
        try:
            resp = await self._http.post("/graphql", json=body)
        except httpx.TimeoutException:
            raise BackendError("W&B API timed out", retryable=True) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"W&B API unreachable: {type(exc).__name__}", retryable=True) from None
        if resp.status_code != 200:
            raise BackendError(f"W&B API answered HTTP {resp.status_code}", status=resp.status_code,
                               retryable=resp.status_code in _RETRY_STATUSES)
        try:
            payload = resp.json()
        except ValueError:
            raise BackendError("W&B API answered with a body that is not JSON", status=200,
                               retryable=True) from None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            raise BackendError(f"W&B API error: {messages}", status=200)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise BackendError("W&B API answered without data", status=200)
        return data
