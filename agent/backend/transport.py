"""A small async GraphQL client for the W&B API: timeouts, bounded backoff with jitter, in-band
errors, a cap on concurrent requests, and mutations that are never retried blindly.

A query can be sent again at no cost. A mutation (pop, fail, push, register) whose answer was
lost may have been applied, so it is retried only when the request cannot have reached the
service (the connection was refused, or the service said 429/503 before doing anything);
otherwise the error says `ambiguous` and the caller decides (read back, or let W&B re-queue).
"""

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
# Statuses a service sends before it does any work: retrying a mutation after them is safe.
_UNAPPLIED_STATUSES = frozenset({429, 503})


class BackendError(Exception):
    """A W&B API call that failed.

    `retryable`: trying again may help. `ambiguous`: the request may have been applied although
    no answer arrived (a mutation in this state is not sent again by the client).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 ambiguous: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.ambiguous = ambiguous


def backoff_delays(first: float, cap: float) -> Callable[[int], float]:
    """Exponential backoff with +-25 % jitter: attempt n (from 0) waits about first * 2**n, at most cap."""
    def delay(attempt: int) -> float:
        base = min(first * (2 ** attempt), cap)
        return base * (0.75 + random.random() / 2)
    return delay


class GraphQLClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 20.0, mutation_timeout: float = 120.0,
                 attempts: int = 4, backoff: tuple[float, float] = (0.5, 8.0), max_concurrency: int = 8,
                 observe: Callable[[str, float, bool], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Basic {token}", "User-Agent": f"launch-agent/{__version__}",
                     "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max(1, max_concurrency)),
            transport=transport,
        )
        self.timeout = timeout
        self.mutation_timeout = max(timeout, mutation_timeout)
        self._attempts = max(1, attempts)
        self._delay = backoff_delays(*backoff)
        self._backoff = backoff
        self._limit = asyncio.Semaphore(max(1, max_concurrency))
        self._observe = observe

    def worst_case(self, mutation: bool) -> float:
        """Seconds one `execute` can take at most (every attempt timing out, every backoff at its cap)."""
        per_try = self.mutation_timeout if mutation else self.timeout
        return self._attempts * per_try + (self._attempts - 1) * self._backoff[1] * 1.25

    async def aclose(self) -> None:
        await self._http.aclose()

    async def execute(self, operation: str, query: str, variables: dict[str, Any], *,
                      mutation: bool = False) -> dict[str, Any]:
        """Run one operation; returns `data`. Queries are retried on retryable errors; mutations
        only when the request cannot have been applied."""
        last: BackendError | None = None
        for attempt in range(self._attempts):
            started = time.monotonic()
            try:
                async with self._limit:
                    data = await self._once(query, variables, self.mutation_timeout if mutation else self.timeout)
                self._report(operation, started, True)
                return data
            except BackendError as exc:
                self._report(operation, started, False)
                last = exc
                again = exc.retryable and (not mutation or not exc.ambiguous)
                if not again or attempt == self._attempts - 1:
                    raise
            await asyncio.sleep(self._delay(attempt))
        raise last or BackendError(f"{operation}: failed")

    def _report(self, operation: str, started: float, ok: bool) -> None:
        if self._observe is not None:
            self._observe(operation, time.monotonic() - started, ok)

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body to another route of the W&B API (a run's file_stream), once; the answer's object."""
        started = time.monotonic()
        try:
            async with self._limit:
                payload = await self._post(path, body, self.timeout)
        except BackendError:
            self._report(path.rsplit("/", 1)[-1], started, False)
            raise
        self._report(path.rsplit("/", 1)[-1], started, True)
        return payload if isinstance(payload, dict) else {}

    async def _once(self, query: str, variables: dict[str, Any], timeout: float) -> dict[str, Any]:
        payload = await self._post("/graphql", {"query": query, "variables": variables, "operationName": ""}, timeout)
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            raise BackendError(f"W&B API error: {messages}", status=200)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise BackendError("W&B API answered without data", status=200)
        return data

    async def _post(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        """One POST; the parsed JSON answer of an HTTP 200."""
        try:
            resp = await self._http.post(path, json=body, timeout=httpx.Timeout(timeout))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendError(f"W&B API unreachable: {type(exc).__name__}", retryable=True) from None
        except httpx.TimeoutException:
            raise BackendError(f"W&B API did not answer within {timeout:g}s", retryable=True,
                               ambiguous=True) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"W&B API connection failed: {type(exc).__name__}", retryable=True,
                               ambiguous=True) from None
        if resp.status_code != 200:
            raise BackendError(f"W&B API answered HTTP {resp.status_code}", status=resp.status_code,
                               retryable=resp.status_code in _RETRY_STATUSES,
                               ambiguous=(resp.status_code >= 500 or resp.status_code == 408)
                               and resp.status_code not in _UNAPPLIED_STATUSES)
        try:
            return resp.json()
        except ValueError:
            raise BackendError("W&B API answered with a body that is not JSON", status=200,
                               retryable=True, ambiguous=True) from None
